/// One problem found while loading a configuration file: where it is (file, line, key) and what is wrong.
///
/// Produced by `ConfigurationLoader`; always delivered inside a `ConfigurationErrors` so that a caller sees every
/// problem of a file at once. A plain value.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The display path of the file.
    public var file: String
    /// 1-based line number; `nil` for whole-file problems such as an unreadable file.
    public var line: Int?
    public var key: String?
    public var message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// `FILE:LINE: KEY: MESSAGE`, leaving out the parts that are `nil`.
    public var description: String {
        var location = file
        if let line {
            location += ":\(line)"
        }
        if let key {
            return "\(location): \(key): \(message)"
        }
        return "\(location): \(message)"
    }
}
