internal import CCurl

/// The libcurl this process is linked against, for `gatehouse version` and startup logs.
public enum CurlVersion {
    /// For example `libcurl/7.88.1 OpenSSL/3.0.19 zlib/1.2.13 …`.
    public static var description: String {
        guard let text = curl_version() else { return "libcurl (unknown version)" }
        return String(cString: text)
    }
}
