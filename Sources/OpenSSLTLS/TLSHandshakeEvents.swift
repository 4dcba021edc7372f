/// The identity fields of a client certificate, for `peer_cert_as_username` / `peer_cert_as_clientid`. Sendable.
public struct PeerCertificate: Sendable, Hashable {
    /// Subject DN, RFC 2253 style (e.g. "CN=device-7,O=Example,C=SE").
    public var subjectDN: String
    /// Issuer DN, RFC 2253 style.
    public var issuerDN: String
    /// The first subject commonName, if any.
    public var commonName: String?
    /// Serial number, upper-case hex.
    public var serialHex: String

    public init(subjectDN: String, issuerDN: String, commonName: String?, serialHex: String) {
        self.subjectDN = subjectDN
        self.issuerDN = issuerDN
        self.commonName = commonName
        self.serialHex = serialHex
    }
}

/// Fired by `TLSServerHandler` as a user inbound event once the handshake succeeded, before any plaintext is
/// passed on. Sendable.
public struct TLSHandshakeCompleted: Sendable, Hashable {
    /// e.g. "TLSv1.3".
    public var protocolVersion: String
    /// e.g. "TLS_AES_256_GCM_SHA384".
    public var cipher: String
    /// The verified client certificate, if the client sent one.
    public var peer: PeerCertificate?
    /// Whether an earlier session (id or ticket) was resumed.
    public var isSessionResumed: Bool
    /// Set when the client was accepted on a CRL past its nextUpdate (`crl_fail_policy = grace`).
    public var staleCRL: StaleCRLUse?

    public init(protocolVersion: String, cipher: String, peer: PeerCertificate?, isSessionResumed: Bool) {
        self.protocolVersion = protocolVersion
        self.cipher = cipher
        self.peer = peer
        self.isSessionResumed = isSessionResumed
    }
}

/// Why a handshake did not complete. `TLSServerHandler` logs it, counts it by `reason` and fires it as a user
/// inbound event before closing the connection. Sendable.
public struct TLSHandshakeFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure.
    public enum Kind: String, Sendable, Hashable {
        /// The client certificate chain did not verify (revoked, unknown CA, no CRL, expired, …).
        case verificationFailed = "verification failed"
        /// Any other TLS error (no certificate sent, no shared cipher, protocol version, bad record, client alert).
        case protocolError = "protocol error"
        /// The handshake did not finish within the handshake timeout.
        case timedOut = "timed out"
        /// The client closed the connection before the handshake finished, without an alert.
        case closedByPeer = "closed by peer"
        /// The listener cannot serve handshakes right now (a must-staple certificate without a valid staple).
        case unavailable = "unavailable"
    }

    public var kind: Kind
    /// One short phrase, also the counter key: the verify result text for verification failures ("certificate
    /// revoked", "unable to get certificate CRL", "CRL has expired"), otherwise the first OpenSSL reason ("peer did
    /// not return a certificate"), "handshake timeout", or "connection closed during handshake".
    public var reason: String
    /// `SSL_get_verify_result` (0 = X509_V_OK).
    public var verifyResult: Int32
    /// `X509_verify_cert_error_string(verifyResult)`.
    public var verifyResultDescription: String
    /// Depth in the client chain of the certificate that failed verification (0 = the client certificate).
    public var errorDepth: Int?
    /// The certificate that failed verification (may be a CA certificate when `errorDepth > 0`).
    public var errorCertificate: PeerCertificate?
    /// For CRL errors: the issuer whose CRL is missing, expired, not yet valid or bad (the issuer of
    /// `errorCertificate`).
    public var crlIssuerDN: String?
    /// The client certificate, if the client sent one.
    public var peer: PeerCertificate?
    /// The OpenSSL error queue at the failure, oldest first.
    public var openSSLErrors: [String]
    /// When the CRL of a certificate's issuer was missing: that certificate's CRL distribution points (only for a
    /// certificate signed by a trusted CA certificate), for the fetcher to fetch.
    public var missingCRLDistributionPoints: [String]
    /// When the verdict was not OpenSSL's own: where it was taken (e.g. at handshake completion).
    public var detail: String?

    public init(
        kind: Kind,
        reason: String,
        verifyResult: Int32 = 0,
        verifyResultDescription: String = "ok",
        errorDepth: Int? = nil,
        errorCertificate: PeerCertificate? = nil,
        crlIssuerDN: String? = nil,
        peer: PeerCertificate? = nil,
        openSSLErrors: [String] = [],
        missingCRLDistributionPoints: [String] = []
    ) {
        self.missingCRLDistributionPoints = missingCRLDistributionPoints
        self.kind = kind
        self.reason = reason
        self.verifyResult = verifyResult
        self.verifyResultDescription = verifyResultDescription
        self.errorDepth = errorDepth
        self.errorCertificate = errorCertificate
        self.crlIssuerDN = crlIssuerDN
        self.peer = peer
        self.openSSLErrors = openSSLErrors
    }

    public var description: String {
        "TLS handshake failed (\(kind.rawValue)): \(reason)"
    }
}
