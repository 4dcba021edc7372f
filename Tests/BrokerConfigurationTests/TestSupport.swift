import Foundation
import Testing

@testable import BrokerConfiguration

/// Helpers shared by the configuration tests: parse text under a fixed display path and base directory.
enum TestSupport {
    static let displayPath = "test.conf"
    static let baseDirectory = "/srv/gatehouse/etc"

    /// Parses `text` with `checkFiles: false` (unless asked) and 4 CPUs.
    static func parse(
        _ text: String, checkFiles: Bool = false, cpuCount: Int = 4, baseDirectory: String = baseDirectory
    ) throws(ConfigurationErrors) -> GatehouseConfiguration {
        try ConfigurationLoader.parse(
            text, displayPath: displayPath, baseDirectory: baseDirectory,
            options: ConfigurationLoadOptions(checkFiles: checkFiles, cpuCount: cpuCount))
    }

    /// The error descriptions for `text`, or an empty array when it parses.
    static func errors(_ text: String, checkFiles: Bool = false, baseDirectory: String = baseDirectory) -> [String] {
        do {
            _ = try parse(text, checkFiles: checkFiles, baseDirectory: baseDirectory)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    /// The one error description for `text`; records an issue when there is not exactly one.
    static func error(
        _ text: String, checkFiles: Bool = false, sourceLocation: SourceLocation = #_sourceLocation
    ) -> String? {
        let found = errors(text, checkFiles: checkFiles)
        #expect(found.count == 1, "expected one error, got \(found)", sourceLocation: sourceLocation)
        return found.first
    }

    /// A valid ssl listener `listener.ssl.s` on port 8883, for tests that need one.
    static let sslListener = """
        listener.ssl.s = 8883
        listener.ssl.s.keyfile = key.pem
        listener.ssl.s.certfile = cert.pem
        """

    /// The ssl listener `s` of `text` (with `sslListener` prepended).
    static func tls(_ text: String) throws -> TLSSettings {
        let configuration = try parse(sslListener + "\n" + text)
        return try #require(configuration.listeners.first?.tls)
    }

    /// A fresh temporary directory, removed by the caller.
    static func makeTemporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "gatehouse-config-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return PathNormalizer.absolute(path)
    }
}
