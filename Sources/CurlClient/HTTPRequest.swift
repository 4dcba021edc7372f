/// One HTTP exchange for the fetcher: a GET (optionally conditional) or a POST with a body.
public struct HTTPRequest: Sendable, Equatable {
    public enum Method: Sendable, Equatable {
        case get
        case post(body: [UInt8], contentType: String)
    }

    public var url: String
    public var method: Method
    /// The whole transfer, connection included.
    public var timeout: Duration
    /// The largest body accepted; a larger one aborts the transfer while it downloads.
    public var maximumBodySize: Int
    /// At most this many redirects, each to http or https only.
    public var maximumRedirects: Int
    /// Which redirects are followed at all.
    public var redirectPolicy: RedirectPolicy
    /// A CA bundle for https (default: the system's).
    public var caBundlePath: String?
    /// Sent as If-None-Match: a matching server answers 304 and no body.
    public var ifNoneMatch: String?
    /// Sent as If-Modified-Since (the Last-Modified value of the previous answer).
    public var ifModifiedSince: String?

    public init(
        url: String, method: Method = .get, timeout: Duration = .seconds(15), maximumBodySize: Int = 64 << 20,
        maximumRedirects: Int = 3, redirectPolicy: RedirectPolicy = .sameHost, caBundlePath: String? = nil,
        ifNoneMatch: String? = nil, ifModifiedSince: String? = nil
    ) {
        self.url = url
        self.method = method
        self.timeout = timeout
        self.maximumBodySize = maximumBodySize
        self.maximumRedirects = maximumRedirects
        self.redirectPolicy = redirectPolicy
        self.caBundlePath = caBundlePath
        self.ifNoneMatch = ifNoneMatch
        self.ifModifiedSince = ifModifiedSince
    }
}

/// What came back: the status, the body (empty for 304), the validators for the next conditional request, and
/// where the answer finally came from after redirects.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var body: [UInt8]
    public var etag: String?
    public var lastModified: String?
    public var effectiveURL: String
    public var contentType: String?

    /// 304: the cached copy is still current.
    public var isNotModified: Bool { status == 304 }
}
