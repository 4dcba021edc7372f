internal import COpenSSL

/// Why an OpenSSL-backed operation of this module failed: the failing call, a human-readable summary that names the
/// file or setting involved, and the OpenSSL error queue drained at the time of failure. A plain value; Sendable.
public struct OpenSSLError: Error, Sendable, CustomStringConvertible {
    /// The failing OpenSSL call or step, e.g. `SSL_CTX_use_certificate_chain_file`.
    public var operation: String
    /// What could not be done, e.g. "cannot load certificate chain /etc/gatehouse/server.pem".
    public var message: String
    /// The calling thread's OpenSSL error queue at the time of failure, oldest first (`ERR_error_string_n` text).
    public var openSSLErrors: [String]

    public init(operation: String, message: String, openSSLErrors: [String] = []) {
        self.operation = operation
        self.message = message
        self.openSSLErrors = openSSLErrors
    }

    public var description: String {
        if openSSLErrors.isEmpty {
            return "\(message) (\(operation))"
        }
        return "\(message): \(openSSLErrors.joined(separator: "; "))"
    }

    /// A failure of `operation`, carrying (and emptying) the current thread's error queue.
    static func drained(_ operation: String, _ message: String) -> OpenSSLError {
        OpenSSLError(operation: operation, message: message, openSSLErrors: OpenSSLErrorQueue.drain())
    }
}

/// The calling thread's OpenSSL error queue. OpenSSL keeps one queue per thread, shared by every connection on an
/// event loop, so it is cleared before each call whose errors we report and drained right after.
public enum OpenSSLErrorQueue {
    public static func clear() {
        ERR_clear_error()
    }

    /// Removes and returns every queued error, oldest first, as `ERR_error_string_n` text.
    public static func drain() -> [String] {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 {
                break
            }
            messages.append(errorString(code))
        }
        return messages
    }

    /// Removes every queued error and returns the reason text of the first one (e.g. "peer did not return a
    /// certificate"), plus the full text of all of them.
    static func drainWithFirstReason() -> (firstReason: String?, all: [String]) {
        var first: String?
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 {
                break
            }
            if first == nil, let reason = ERR_reason_error_string(code) {
                first = String(cString: reason)
            }
            messages.append(errorString(code))
        }
        return (first, messages)
    }

    private static func errorString(_ code: UInt) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return string(fromNulTerminated: buffer)
    }
}

/// Decodes a NUL-terminated C buffer as UTF-8 (with replacement), without the deprecated `String(cString: [CChar])`.
func string(fromNulTerminated buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Runs an OpenSSL call that returns a positive value on success; throws `message` with the drained queue otherwise.
@discardableResult
func openSSLCall(_ operation: String, _ message: @autoclosure () -> String, _ body: () -> Int32)
    throws(OpenSSLError) -> Int32
{
    OpenSSLErrorQueue.clear()
    let result = body()
    guard result > 0 else {
        throw .drained(operation, message())
    }
    return result
}

/// Runs an OpenSSL call that returns NULL on failure; throws `message` with the drained queue otherwise.
func openSSLObject<Object>(_ operation: String, _ message: @autoclosure () -> String, _ body: () -> Object?)
    throws(OpenSSLError) -> Object
{
    OpenSSLErrorQueue.clear()
    guard let object = body() else {
        throw .drained(operation, message())
    }
    return object
}
