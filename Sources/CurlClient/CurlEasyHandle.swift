#if canImport(Glibc)
import Glibc
#endif
internal import CCurl
internal import CCurlShims
import Synchronization

/// One libcurl easy handle: typed options in, `HTTPResponse` or `CurlError` out. Not Sendable: one transfer at a
/// time, on the thread that owns it (the fetcher gives each worker thread its own).
///
/// http and https only (redirects too), certificate verification on, no signals (`CURLOPT_NOSIGNAL`), the body
/// limit enforced while downloading, proxies from the usual environment variables (libcurl's default).
/// Redirects are followed here, one transfer per hop, so that each target is checked against the request's
/// `RedirectPolicy` before anything is sent to it; at most `maximumRedirects`, all within the request's timeout.
public final class CurlEasyHandle {
    private let handle: UnsafeMutableRawPointer

    public init() throws(CurlError) {
        CurlGlobal.initializeOnce()
        guard let handle = curl_easy_init() else {
            throw CurlError(code: Int32(CURLE_FAILED_INIT.rawValue), status: nil, url: "", message: "curl_easy_init failed")
        }
        self.handle = handle
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    /// What one transfer (one hop) gave.
    private enum Hop {
        case final(HTTPResponse)
        case redirect(status: Int, location: String)
    }

    /// Runs the request, following the redirects its policy allows; blocking (call it off the event loops).
    public func perform(_ request: HTTPRequest) throws(CurlError) -> HTTPResponse {
        let deadline = ContinuousClock.now + request.timeout
        var current = request
        var redirects = 0
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                throw CurlError(
                    code: Int32(CURLE_OPERATION_TIMEDOUT.rawValue), status: nil, url: request.url,
                    message: "timed out after \(redirects) redirects")
            }
            switch try transfer(current, timeout: remaining, originalURL: request.url) {
            case .final(let response):
                return response
            case .redirect(let status, let location):
                guard redirects < request.maximumRedirects else {
                    throw CurlError(
                        code: Int32(CURLE_TOO_MANY_REDIRECTS.rawValue), status: status, url: request.url,
                        message: "more than \(request.maximumRedirects) redirects")
                }
                if let reason = request.redirectPolicy.refusal(from: current.url, to: location) {
                    throw CurlError(
                        code: 0, status: status, url: request.url,
                        message: "redirect to \(location) refused: \(reason)", refusedRedirect: location)
                }
                redirects += 1
                // As browsers and libcurl do: 303 turns any method into GET, 301 and 302 turn POST into GET.
                if status == 303 || ((status == 301 || status == 302) && current.method != .get) {
                    current.method = .get
                }
                current.url = location
            }
        }
    }

    private func transfer(
        _ request: HTTPRequest, timeout: Duration, originalURL: String
    ) throws(CurlError) -> Hop {
        curl_easy_reset(handle)
        let transfer = Transfer(limit: request.maximumBodySize)
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headers) }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        func check(_ result: CURLcode, _ what: String) throws(CurlError) {
            guard result == CURLE_OK else {
                throw CurlError(
                    code: Int32(result.rawValue), status: nil, url: originalURL,
                    message: "cannot set \(what): \(String(cString: curl_easy_strerror(result)))")
            }
        }

        let milliseconds = max(1, Int(timeout.components.seconds) * 1000
            + Int(timeout.components.attoseconds / 1_000_000_000_000_000))
        try check(CCurlShims_setopt_pointer(handle, CURLOPT_URL, request.url), "the URL")
        try check(CCurlShims_setopt_pointer(handle, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols")
        try check(CCurlShims_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0), "redirects")
        try check(CCurlShims_setopt_long(handle, CURLOPT_NOSIGNAL, 1), "no signals")
        try check(CCurlShims_setopt_long(handle, CURLOPT_TIMEOUT_MS, milliseconds), "the timeout")
        try check(CCurlShims_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, milliseconds), "the connect timeout")
        try check(CCurlShims_setopt_off_t(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(request.maximumBodySize)), "the size limit")
        try check(CCurlShims_setopt_pointer(handle, CURLOPT_USERAGENT, "gatehouse-fetcher"), "the user agent")
        if let caBundle = request.caBundlePath {
            try check(CCurlShims_setopt_pointer(handle, CURLOPT_CAINFO, caBundle), "the CA bundle")
        }
        if let tag = request.ifNoneMatch { headers = curl_slist_append(headers, "If-None-Match: \(tag)") }
        if let date = request.ifModifiedSince { headers = curl_slist_append(headers, "If-Modified-Since: \(date)") }
        if case .post(let body, let contentType) = request.method {
            headers = curl_slist_append(headers, "Content-Type: \(contentType)")
            try check(CCurlShims_setopt_long(handle, CURLOPT_POST, 1), "POST")
            try check(CCurlShims_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)), "the body size")
            // COPYPOSTFIELDS: libcurl keeps its own copy, so the Swift array may go away.
            try check(body.withUnsafeBytes { CCurlShims_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, $0.baseAddress) }, "the body")
        }
        if headers != nil {
            try check(CCurlShims_setopt_pointer(handle, CURLOPT_HTTPHEADER, headers), "headers")
        }
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        try check(CCurlShims_setopt_write_function(handle, CURLOPT_WRITEFUNCTION, { data, size, count, context in
            guard let data, let context else { return 0 }
            let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
            let length = size * count
            guard transfer.body.count + length <= transfer.limit else {
                transfer.exceeded = true
                return 0  // Aborts the transfer with CURLE_WRITE_ERROR.
            }
            data.withMemoryRebound(to: UInt8.self, capacity: length) {
                transfer.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: length))
            }
            return length
        }), "the body callback")
        try check(CCurlShims_setopt_pointer(handle, CURLOPT_WRITEDATA, context), "the body context")
        try check(CCurlShims_setopt_write_function(handle, CURLOPT_HEADERFUNCTION, { data, size, count, context in
            guard let data, let context else { return 0 }
            let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
            let length = size * count
            let line = data.withMemoryRebound(to: UInt8.self, capacity: length) {
                String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
            }
            transfer.header(line)
            return length
        }), "the header callback")
        try check(CCurlShims_setopt_pointer(handle, CURLOPT_HEADERDATA, context), "the header context")

        let result = errorBuffer.withUnsafeMutableBufferPointer { buffer -> CURLcode in
            _ = CCurlShims_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
            let result = withExtendedLifetime(transfer) { curl_easy_perform(handle) }
            _ = CCurlShims_setopt_pointer(handle, CURLOPT_ERRORBUFFER, nil)
            return result
        }
        var status = 0
        _ = CCurlShims_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)

        guard result == CURLE_OK else {
            let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let message: String
            if transfer.exceeded || result == CURLE_FILESIZE_EXCEEDED {
                message = "body larger than \(request.maximumBodySize) bytes"
            } else {
                message = detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
            }
            throw CurlError(code: Int32(result.rawValue), status: status == 0 ? nil : status, url: originalURL, message: message)
        }
        if [301, 302, 303, 307, 308].contains(status) {
            var location: UnsafePointer<CChar>?
            _ = CCurlShims_getinfo_string(handle, CURLINFO_REDIRECT_URL, &location)
            guard let location else {
                throw CurlError(code: 0, status: status, url: originalURL, message: "redirect without a Location")
            }
            return .redirect(status: status, location: String(cString: location))
        }
        guard status == 200 || status == 304 else {
            throw CurlError(code: 0, status: status, url: originalURL, message: "unexpected HTTP status")
        }
        return .final(HTTPResponse(
            status: status, body: status == 304 ? [] : transfer.body, etag: transfer.etag,
            lastModified: HTTPDate.validatingLastModified(transfer.lastModified, date: transfer.date),
            effectiveURL: request.url, contentType: transfer.contentType))
    }
}

/// HTTP dates, parsed by libcurl.
public enum HTTPDate {
    /// Seconds since the epoch, or nil when `text` is not a date libcurl understands.
    public static func parse(_ text: String) -> Int? {
        let seconds = curl_getdate(text, nil)
        return seconds < 0 ? nil : Int(seconds)
    }

    /// `lastModified` when it can validate a later If-Modified-Since, else nil (the next request is unconditional).
    ///
    /// Last-Modified has a resolution of one second: a file changed again within the second it was served keeps
    /// the same Last-Modified, and a server comparing dates answers 304 to every later request until the file
    /// changes once more. A CA that regenerates its CRL right after a revocation does exactly that. So, as RFC 9110
    /// 8.8.2.2 has it, the date validates only when it is at least one second older than the response's Date; an
    /// answer without a Date header gives no such proof.
    public static func validatingLastModified(_ lastModified: String?, date: String?) -> String? {
        guard let lastModified, let modified = parse(lastModified), let date, let served = parse(date),
            served - modified >= 1
        else { return nil }
        return lastModified
    }
}

@available(*, unavailable)
extension CurlEasyHandle: Sendable {}

/// State the C callbacks fill in during one transfer.
private final class Transfer {
    let limit: Int
    var body: [UInt8] = []
    var exceeded = false
    var etag: String?
    var lastModified: String?
    var date: String?
    var contentType: String?

    init(limit: Int) {
        self.limit = limit
    }

    /// Header lines of every response in a redirect chain arrive here; a status line starts a new response.
    func header(_ line: String) {
        if line.hasPrefix("HTTP/") {
            etag = nil
            lastModified = nil
            date = nil
            contentType = nil
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t\r\n")
        switch name {
        case "etag": etag = value
        case "last-modified": lastModified = value
        case "date": date = value
        case "content-type": contentType = value
        default: break
        }
    }
}

/// `curl_global_init` exactly once per process, before the first handle.
/// `curl_global_init`, once per process. A process that uses libcurl from several threads calls this on its main
/// thread before starting them (`CurlEasyHandle` also calls it, for single-threaded use).
public enum CurlGlobal {
    private static let done = Mutex(false)

    public static func initializeOnce() {
        done.withLock { done in
            guard !done else { return }
            _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
            done = true
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in characters: String) -> String {
        var result = self
        while let first = result.first, characters.contains(first) { result.removeFirst() }
        while let last = result.last, characters.contains(last) { result.removeLast() }
        return String(result)
    }
}
