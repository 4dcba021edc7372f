/// A failed HTTP transfer: the libcurl result code (0 when curl succeeded but the HTTP answer was unusable), the
/// HTTP status if one arrived, the URL, and what went wrong, so a log line can say all of it.
public struct CurlError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int32
    public var status: Int?
    public var url: String
    public var message: String
    /// The Location of a redirect the request's `RedirectPolicy` refused (the transfer stopped there).
    public var refusedRedirect: String?

    public init(code: Int32, status: Int?, url: String, message: String, refusedRedirect: String? = nil) {
        self.code = code
        self.status = status
        self.url = url
        self.message = message
        self.refusedRedirect = refusedRedirect
    }

    public var description: String {
        var text = "\(url): \(message)"
        if let status { text += " (HTTP \(status))" }
        if code != 0 { text += " (curl error \(code))" }
        return text
    }
}
