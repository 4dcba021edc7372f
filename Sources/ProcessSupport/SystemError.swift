#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what, and the errno it left.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    public var detail: String?

    public init(call: String, errno: Int32, detail: String? = nil) {
        self.call = call
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        if let detail {
            return "\(call)(\(detail)): \(reason) (errno \(errno))"
        }
        return "\(call): \(reason) (errno \(errno))"
    }
}

/// Runs a system call that returns -1 on failure, retrying on EINTR, and throws the errno otherwise.
@discardableResult
public func systemCall<T: FixedWidthInteger>(
    _ name: String, detail: String? = nil, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(call: name, errno: code, detail: detail)
    }
}
