#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BrokerConfiguration
import Supervisor

/// `--config FILE`, shared by every operator command. Default: `$GATEHOUSE_CONFIG`, else `etc/gatehouse.conf`.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "The configuration file (default: $GATEHOUSE_CONFIG or etc/gatehouse.conf).")
    var config: String?

    /// The absolute path of the configuration file.
    func resolvedPath() throws -> String {
        let given = config ?? getenv("GATEHOUSE_CONFIG").map { String(cString: $0) } ?? "etc/gatehouse.conf"
        guard let resolved = realpath(given, nil) else {
            let reason = String(cString: strerror(errno))
            throw Failure("cannot open configuration file \(given): \(reason)")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The run directory of the supervisor started with this file (found without validating the file).
    func runDirectory() throws -> String {
        let path = try resolvedPath()
        guard let directory = RunDirectoryLocator.runDirectory(forConfigurationAt: path) else {
            throw Failure("cannot read configuration file \(path)")
        }
        return directory
    }

    /// Reads and validates the configuration; prints every error and exits non-zero when it is invalid.
    func load(checkFiles: Bool = true) throws -> LoadedConfiguration {
        let path = try resolvedPath()
        do {
            return try LoadedConfiguration.load(path: path, options: ConfigurationLoadOptions(checkFiles: checkFiles))
        } catch {
            Console.error(error.description)
            Console.error("gatehouse: \(path): configuration is invalid (\(error.errors.count) error(s))")
            throw ExitCode(78)
        }
    }
}

/// An error message for the operator, printed without a stack of context.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Plain output on stdout/stderr (not logs).
enum Console {
    static func out(_ text: String) {
        write(1, text + "\n")
    }

    static func error(_ text: String) {
        write(2, text + "\n")
    }

    private static func write(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}
