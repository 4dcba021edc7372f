internal import COpenSSL

/// The version of the OpenSSL library loaded at run time (not the headers built against).
/// Stateless; safe from any isolation domain.
public enum OpenSSLVersion {
    /// `OpenSSL_version(OPENSSL_VERSION)`, e.g. "OpenSSL 3.0.19 27 Jan 2026".
    public static var description: String {
        guard let text = OpenSSL_version(OPENSSL_VERSION) else {
            return "OpenSSL (unknown version)"
        }
        return String(cString: text)
    }
}
