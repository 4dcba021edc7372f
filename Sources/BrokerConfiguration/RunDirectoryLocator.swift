import Foundation

/// Finds `node.run_dir` from a configuration file without validating the rest of it, so `gatehouse status`,
/// `stop` and `reload` still reach a running supervisor when the file on disk has since been broken (the
/// supervisor then reports the errors itself).
public enum RunDirectoryLocator {
    /// The run directory a supervisor started with this file uses, or nil when the file cannot be read.
    public static func runDirectory(forConfigurationAt path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let base = PathNormalizer.parent(of: PathNormalizer.absolute(path))
        var dataDirectory: String?
        var runDirectory: String?
        for rawLine in text.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard !value.isEmpty else { continue }
            switch key {
            case "node.data_dir": dataDirectory = PathNormalizer.absolute(value, relativeTo: base)
            case "node.run_dir": runDirectory = PathNormalizer.absolute(value, relativeTo: base)
            default: continue
            }
        }
        return runDirectory ?? (dataDirectory ?? PathNormalizer.absolute("../var", relativeTo: base)) + "/run"
    }
}
