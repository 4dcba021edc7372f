/// Everything a `TLSContext` is built from: one listener's TLS settings plus the CRLs and OCSP response current at
/// build time. A plain value; Sendable. Changing it has no effect on contexts already built.
public struct TLSContextConfiguration: Sendable {
    /// A TLS protocol version a listener may negotiate (`tls_versions`).
    public enum ProtocolVersion: String, Sendable, Hashable, CaseIterable, Comparable {
        case tls1_2 = "tlsv1.2"
        case tls1_3 = "tlsv1.3"

        public static func < (lhs: Self, rhs: Self) -> Bool {
            lhs == .tls1_2 && rhs == .tls1_3
        }
    }

    /// Which certificates of a client's chain must have a current CRL (`crl_check_depth`).
    public enum CRLCheckDepth: String, Sendable, Hashable {
        /// Only the client certificate (OpenSSL `X509_V_FLAG_CRL_CHECK`).
        case leaf
        /// Every certificate of the chain, so every CA level needs a CRL from its issuer
        /// (`X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL`).
        case chain
    }

    /// The server certificate chain and its key, already loaded and checked to match (`certfile`, `keyfile`).
    public var identity: TLSIdentity
    /// The CA certificates client certificates are verified against (`cacertfile`), in file order; also the
    /// names sent in the CertificateRequest.
    public var certificateAuthorities: [X509Certificate]
    /// Ask for and verify a client certificate (`verify = verify_peer`).
    public var verifyPeer: Bool
    /// Refuse clients that send no certificate (`fail_if_no_peer_cert = true`). Only meaningful with `verifyPeer`.
    public var failIfNoPeerCertificate: Bool
    /// The versions to offer; must be contiguous (both, or one of them).
    public var versions: Set<ProtocolVersion>
    /// OpenSSL cipher names. Names starting with `TLS_` are TLS 1.3 ciphersuites; the rest form the TLS 1.2 cipher
    /// string. A TLS 1.2 group left empty is `defaultTLS12Ciphers`; a TLS 1.3 group left empty, OpenSSL's defaults.
    public var ciphers: [String]
    /// The session id context (at most 32 bytes). Required for resumption when client certificates are verified.
    public var sessionIDContext: String
    /// Resumption with session tickets (TLS 1.2 and 1.3) (`reuse_sessions`). Every resumption is checked again
    /// as a full handshake would be at that moment (`TLSContext`), so a ticket never outlives a revocation.
    public var reuseSessions = true
    /// How long a ticket may be used (seconds; OpenSSL's default is 7200).
    public var sessionLifetime = TLSContextConfiguration.defaultSessionLifetime
    public static let defaultSessionLifetime = 600
    /// The server's cipher order wins over the client's (`honor_cipher_order`).
    public var honorCipherOrder = true
    /// The longest client chain accepted: intermediates between the client certificate and a trusted CA
    /// (`depth`, OpenSSL `SSL_CTX_set_verify_depth`); nil keeps OpenSSL's default (100).
    public var verifyDepth: Int?
    /// Check client certificates against `crls`; with no usable CRL for an issuer the handshake is refused.
    public var isCRLCheckEnabled: Bool
    /// Which chain levels are checked when `isCRLCheckEnabled`.
    public var crlCheckDepth: CRLCheckDepth
    /// Every CRL that applies to the CAs, ideally from `CRLSet.load` (already verified). Unverified CRLs are
    /// verified against the CA bundle when the context is built, and the build fails if one does not verify.
    public var crls: [CertificateRevocationList]
    /// A DER OCSP response for the server certificate, stapled when a client sends status_request. The caller
    /// has checked it (`OCSP.validate`); the context staples it only until `ocspNextUpdate`.
    public var ocspResponseDER: [UInt8]?
    /// `crl_fail_policy = grace`: a CRL past its nextUpdate is still used for this long after it (each such
    /// handshake is logged); nil (`closed`): an expired CRL refuses its issuer's clients.
    public var crlStaleGrace: Duration?
    /// The staple's nextUpdate (Unix seconds): from then on it is never stapled.
    public var ocspNextUpdate: Int64?
    /// The server certificate carries the TLS feature status_request (RFC 7633 must-staple): handshakes are
    /// refused while there is no valid staple, since a conforming client would abort them anyway.
    public var requiresStaple = false
    /// Called once, on whichever thread noticed, when the staple's nextUpdate has passed.
    public var onStapleExpired: (@Sendable () -> Void)?
    /// Measurement switch for tests: keep OpenSSL's own per-handshake CRL check (re-verifies every CRL signature on
    /// every handshake) instead of `CRLCheck`. Never set in production.
    var usesOpenSSLDefaultCRLCheck = false

    public init(
        identity: TLSIdentity,
        certificateAuthorities: [X509Certificate] = [],
        verifyPeer: Bool = true,
        failIfNoPeerCertificate: Bool = true,
        versions: Set<ProtocolVersion> = [.tls1_2, .tls1_3],
        ciphers: [String] = [],
        sessionIDContext: String = "gatehouse",
        isCRLCheckEnabled: Bool = false,
        crlCheckDepth: CRLCheckDepth = .leaf,
        crls: [CertificateRevocationList] = [],
        ocspResponseDER: [UInt8]? = nil
    ) {
        self.identity = identity
        self.certificateAuthorities = certificateAuthorities
        self.verifyPeer = verifyPeer
        self.failIfNoPeerCertificate = failIfNoPeerCertificate
        self.versions = versions
        self.ciphers = ciphers
        self.sessionIDContext = sessionIDContext
        self.isCRLCheckEnabled = isCRLCheckEnabled
        self.crlCheckDepth = crlCheckDepth
        self.crls = crls
        self.ocspResponseDER = ocspResponseDER
    }

    /// A configuration read from files: `certificateChainPath` and `privateKeyPath` (which must belong together)
    /// and the optional CA bundle. Blocking file reads.
    public static func loading(
        certificateChainPath: String,
        privateKeyPath: String,
        caBundlePath: String? = nil,
        verifyPeer: Bool = true,
        failIfNoPeerCertificate: Bool = true,
        versions: Set<ProtocolVersion> = [.tls1_2, .tls1_3],
        ciphers: [String] = [],
        sessionIDContext: String = "gatehouse",
        isCRLCheckEnabled: Bool = false,
        crlCheckDepth: CRLCheckDepth = .leaf,
        crls: [CertificateRevocationList] = [],
        ocspResponseDER: [UInt8]? = nil
    ) throws(OpenSSLError) -> TLSContextConfiguration {
        TLSContextConfiguration(
            identity: try TLSIdentity.load(certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath),
            certificateAuthorities: try caBundlePath.map { path throws(OpenSSLError) in
                try X509Certificate.load(file: path)
            } ?? [],
            verifyPeer: verifyPeer, failIfNoPeerCertificate: failIfNoPeerCertificate, versions: versions,
            ciphers: ciphers, sessionIDContext: sessionIDContext, isCRLCheckEnabled: isCRLCheckEnabled,
            crlCheckDepth: crlCheckDepth, crls: crls, ocspResponseDER: ocspResponseDER)
    }

    /// The TLS 1.2 cipher string when `ciphers` names none: ECDHE key exchange with AEAD ciphers only (no CBC, no
    /// static RSA, no DHE), ECDSA and RSA certificates.
    public static let defaultTLS12Ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// The key exchange groups offered (TLS 1.2 ECDHE and TLS 1.3): elliptic curves only, no finite-field DH.
    public static let keyExchangeGroups = "X25519:P-256:P-384:P-521"

    /// `ciphers` split into the TLS 1.2 cipher string (`defaultTLS12Ciphers` when none is named) and the TLS 1.3
    /// ciphersuites string (nil: OpenSSL's defaults, all AEAD).
    var cipherStrings: (tls12: String, tls13: String?) {
        let tls13 = ciphers.filter { $0.hasPrefix("TLS_") }
        let tls12 = ciphers.filter { !$0.hasPrefix("TLS_") && !$0.isEmpty }
        return (
            tls12.isEmpty ? Self.defaultTLS12Ciphers : tls12.joined(separator: ":"),
            tls13.isEmpty ? nil : tls13.joined(separator: ":")
        )
    }
}
