internal import CCurl

/// Which redirects a fetch follows (`node.fetch_redirects`). A CRL or OCSP URL names a host the operator (or a CA
/// certificate) chose; a redirect elsewhere lets whoever answers that URL send the fetcher to any host it can
/// reach, internal ones included. A plain value.
public enum RedirectPolicy: String, Sendable, Equatable, CaseIterable {
    /// None: a 3xx answer is a failure.
    case none
    /// Only to the same host name (or address); scheme (http/https), port and path may change.
    case sameHost = "same_host"
    /// Anywhere over http or https.
    case any

    /// Why a redirect from `from` to `to` may not be followed, or nil if it may. Both are absolute URLs (curl
    /// resolves a relative Location against the URL that answered).
    public func refusal(from: String, to: String) -> String? {
        guard let target = URLParts(to), target.scheme == "http" || target.scheme == "https" else {
            return "not an http or https URL"
        }
        switch self {
        case .none:
            return "redirects are not followed"
        case .sameHost:
            guard let origin = URLParts(from), origin.host == target.host else {
                return "another host"
            }
            return nil
        case .any:
            return nil
        }
    }
}

/// The scheme and host of a URL, parsed by libcurl's URL parser (lower-cased).
struct URLParts: Equatable {
    var scheme: String
    var host: String

    init?(_ url: String) {
        guard let handle = curl_url() else { return nil }
        defer { curl_url_cleanup(handle) }
        guard curl_url_set(handle, CURLUPART_URL, url, 0) == CURLUE_OK else { return nil }
        func part(_ which: CURLUPart) -> String? {
            var value: UnsafeMutablePointer<CChar>?
            guard curl_url_get(handle, which, &value, 0) == CURLUE_OK, let value else { return nil }
            defer { curl_free(value) }
            return String(cString: value).lowercased()
        }
        guard let scheme = part(CURLUPART_SCHEME), let host = part(CURLUPART_HOST) else { return nil }
        self.scheme = scheme
        self.host = host
    }
}
