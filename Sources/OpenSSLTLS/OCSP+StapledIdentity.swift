extension OCSP {
    /// `stapledIdentity` for a chain already loaded (the identity a listener serves now): the issuer is
    /// `ocsp_issuer_pem`'s first certificate, else the one in the rest of the chain or in `authorities` that issued
    /// the server certificate. Blocking only when `issuerPath` is set (one file read).
    public static func stapledIdentity(
        chain: [X509Certificate], issuerPath: String?, authorities: [X509Certificate], configuredResponderURL: String?
    ) throws(OpenSSLError) -> StapledIdentity {
        guard let certificate = chain.first else {
            throw OpenSSLError(operation: "OCSP.stapledIdentity", message: "no server certificate")
        }
        let issuer: X509Certificate?
        if let issuerPath {
            issuer = try X509Certificate.load(file: issuerPath).first
        } else {
            issuer = (chain.dropFirst() + authorities).first { certificate.isIssued(by: $0) }
        }
        let responderURL = configuredResponderURL ?? certificate.ocspResponderURLs.first { url in
            let lower = url.lowercased()
            return lower.hasPrefix("http://") || lower.hasPrefix("https://")
        }
        return StapledIdentity(chain: chain, certificate: certificate, issuer: issuer, responderURL: responderURL)
    }
}
