/// Every problem found in one configuration file, in line order (whole-file problems first).
///
/// The only error `ConfigurationLoader` throws. Its description has one `ConfigurationError` per line, ready to be
/// printed to stderr by the executable.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigurationError]

    public init(errors: [ConfigurationError]) {
        self.errors = errors
    }

    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}
