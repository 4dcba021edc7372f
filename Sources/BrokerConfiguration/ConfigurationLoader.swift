import Foundation

/// Reads `gatehouse.conf` (EMQX 4.x `key = value` format) into a validated `GatehouseConfiguration`.
///
/// Stateless; safe to call from any isolation. Every problem in a file is reported at once, in line order.
public enum ConfigurationLoader {
    /// Every global key, in the order of the reference file.
    public static var knownGlobalKeys: [String] {
        KnownKeys.global.map(\.name)
    }

    /// The subkeys (the part after `listener.<kind>.<name>.`) that a listener of `kind` acts on, besides
    /// `access.<N>`.
    public static func knownListenerSubkeys(for kind: ListenerConfiguration.Kind) -> [String] {
        KnownKeys.listenerSubkeys(for: kind).map(\.name)
    }

    /// EMQX listener subkeys that are refused with a reason (no key is accepted without effect).
    public static var refusedListenerSubkeys: [String] {
        KnownKeys.refusedListenerSubkeys.map(\.subkey)
    }

    /// Reads the file at `path` (relative paths inside it resolve against the file's directory).
    public static func load(
        path: String, options: ConfigurationLoadOptions = .init()
    ) throws(ConfigurationErrors) -> GatehouseConfiguration {
        let absolutePath = PathNormalizer.absolute(path)
        let text = try readText(at: absolutePath, displayPath: path)
        var parser = ConfigurationParser(
            displayPath: path, sourcePath: absolutePath, baseDirectory: PathNormalizer.parent(of: absolutePath),
            options: options)
        return try parser.parse(text)
    }

    /// Parses text. `displayPath` appears in error messages and becomes `sourcePath`; `baseDirectory` resolves
    /// relative paths.
    public static func parse(
        _ text: String, displayPath: String, baseDirectory: String, options: ConfigurationLoadOptions = .init()
    ) throws(ConfigurationErrors) -> GatehouseConfiguration {
        var parser = ConfigurationParser(
            displayPath: displayPath, sourcePath: displayPath, baseDirectory: PathNormalizer.absolute(baseDirectory),
            options: options)
        return try parser.parse(text)
    }

    private static func readText(at absolutePath: String, displayPath: String) throws(ConfigurationErrors) -> String {
        func failure(_ message: String) -> ConfigurationErrors {
            ConfigurationErrors(errors: [ConfigurationError(file: displayPath, line: nil, key: nil, message: message)])
        }
        if let problem = FileCheck.problem(at: absolutePath) {
            throw failure(problem)
        }
        guard let data = FileManager.default.contents(atPath: absolutePath) else {
            throw failure("file not readable: \(absolutePath)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw failure("file is not valid UTF-8: \(absolutePath)")
        }
        return text
    }
}
