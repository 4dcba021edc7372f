/// Why `DevelopmentPKI.generate` failed: the failing operation plus either the drained OpenSSL error queue or the
/// errno of a failed system call. A plain value; Sendable.
public struct DevelopmentPKIError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is, for callers that need to act on it.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case invalidArgument
            case fileExists
            case openSSL
            case system
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// An argument of `generate` was rejected before anything was written.
        public static let invalidArgument = Code(.invalidArgument)
        /// One of the output files already exists; nothing was written.
        public static let fileExists = Code(.fileExists)
        /// An OpenSSL call failed; see `openSSLErrors`.
        public static let openSSL = Code(.openSSL)
        /// A system call failed; see `errno` and `path`.
        public static let system = Code(.system)

        public var description: String {
            switch base {
            case .invalidArgument: "invalid argument"
            case .fileExists: "file exists"
            case .openSSL: "OpenSSL error"
            case .system: "system error"
            }
        }
    }

    public var code: Code
    /// The failing call or step, e.g. `X509_sign` or `open`.
    public var operation: String
    /// The file or directory involved, if any.
    public var path: String?
    /// errno of a failed system call (`code == .system`).
    public var errno: Int32?
    /// The OpenSSL error queue at the time of failure, oldest first (`code == .openSSL`).
    public var openSSLErrors: [String]
    /// Free-form detail for `invalidArgument`.
    public var reason: String?

    init(
        code: Code,
        operation: String,
        path: String? = nil,
        errno: Int32? = nil,
        openSSLErrors: [String] = [],
        reason: String? = nil
    ) {
        self.code = code
        self.operation = operation
        self.path = path
        self.errno = errno
        self.openSSLErrors = openSSLErrors
        self.reason = reason
    }

    public var description: String {
        var text = "DevelopmentPKIError(\(code)): \(operation)"
        if let path {
            text += " [\(path)]"
        }
        if let reason {
            text += ": \(reason)"
        }
        if let errno {
            text += ": errno \(errno) (\(systemErrorMessage(errno)))"
        }
        if !openSSLErrors.isEmpty {
            text += ": " + openSSLErrors.joined(separator: "; ")
        } else if code == .openSSL {
            text += ": (OpenSSL error queue empty)"
        }
        return text
    }
}
