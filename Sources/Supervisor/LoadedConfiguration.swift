#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ProcessSupport

/// A configuration file read once: the exact text and what it validated to. The text is what children get, so
/// they run exactly what the supervisor checked.
public struct LoadedConfiguration: Sendable {
    public var path: String
    public var text: String
    public var configuration: GatehouseConfiguration

    /// Reads and validates `path` (absolute).
    public static func load(
        path: String, options: ConfigurationLoadOptions = .init()
    ) throws(ConfigurationErrors) -> LoadedConfiguration {
        guard let bytes = FileDescriptor.readFile(path) else {
            let reason = String(cString: strerror(errno))
            throw ConfigurationErrors(errors: [
                ConfigurationError(file: path, line: nil, key: nil, message: "cannot read configuration: \(reason)")
            ])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let configuration = try ConfigurationLoader.parse(
            text, displayPath: path, baseDirectory: directory(of: path), options: options)
        return LoadedConfiguration(path: path, text: text, configuration: configuration)
    }

    /// Reads the snapshot a supervisor wrote, resolving relative paths as in the original file.
    public static func loadSnapshot(
        snapshotPath: String, originalPath: String
    ) throws(ConfigurationErrors) -> LoadedConfiguration {
        guard let bytes = FileDescriptor.readFile(snapshotPath) else {
            let reason = String(cString: strerror(errno))
            throw ConfigurationErrors(errors: [
                ConfigurationError(file: snapshotPath, line: nil, key: nil, message: "cannot read snapshot: \(reason)")
            ])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let configuration = try ConfigurationLoader.parseSnapshot(text, originalPath: originalPath)
        return LoadedConfiguration(path: originalPath, text: text, configuration: configuration)
    }

    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }
}
