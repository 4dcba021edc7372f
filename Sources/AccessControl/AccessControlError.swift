/// A problem in a password or ACL file, with where it is.
public struct AccessControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int?
    public var message: String

    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String {
        var prefix = path
        if let line { prefix += ":\(line)" }
        return prefix.isEmpty ? message : "\(prefix): \(message)"
    }
}
