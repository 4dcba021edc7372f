internal import COpenSSL
internal import COpenSSLShims
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One listener generation's server-side TLS setup: an owned `SSL_CTX` with the certificate chain and key, the CA
/// store with its CRLs and the CRL check, the verification mode, protocol versions, ciphers, session tickets and
/// the OCSP staple. Built off the event loops (it may verify big CRLs), then shared by every connection the
/// listener accepts until a newer generation replaces it (`TLSGate`); connections keep the context they started
/// with, but every verdict is taken against the generation in force when it is taken:
///
/// - a client chain verified while a newer generation is in force is verified again against that one (in the
///   handshake, so a refusal carries its proper alert);
/// - a ticket is honoured only if a full handshake with the same certificate would pass at that moment against the
///   generation in force (revoked, expired certificate, stale CRL under `closed`: refused, and a full handshake
///   follows); every generation also has its own ticket keys;
/// - the staple sent is the one of the generation in force when it serves the same certificate.
///
/// `@unchecked Sendable`: fully configured in init and never mutated afterwards; OpenSSL allows `SSL_new` and
/// handshakes on many threads over one unchanging `SSL_CTX` (its session cache and store lock internally).
public final class TLSContext: @unchecked Sendable {
    /// The owned `SSL_CTX`. Module-internal; never public.
    let pointer: OpaquePointer
    /// The configuration this context was built from (it also keeps the CRL objects alive).
    public let configuration: TLSContextConfiguration
    /// The CA certificates of `cacertfile`, in file order.
    public var caCertificates: [X509Certificate] {
        configuration.certificateAuthorities
    }
    /// The server certificate this context presents.
    public var certificate: X509Certificate {
        configuration.identity.certificate
    }
    /// The verified CRLs in the store (also what `registry` points into).
    public let crls: [CertificateRevocationList]
    /// The verified CRL table the store's `check_crl` reads; must live as long as the `SSL_CTX` is used.
    private let registry: CRLRegistry
    /// What the status callback staples.
    let ocspResponseDER: [UInt8]?
    /// Set once the staple's nextUpdate was seen to have passed (so that is reported once).
    private let stapleExpiryReported = Atomic<Bool>(false)

    /// Builds the context. Blocking (file reads, key checks, CRL verification): call off the event loops.
    public init(configuration: TLSContextConfiguration) throws(OpenSSLError) {
        let ctx = try openSSLObject("SSL_CTX_new", "cannot create SSL_CTX") { SSL_CTX_new(TLS_server_method()) }
        var pendingCTX: OpaquePointer? = ctx
        defer {
            if let pendingCTX {
                SSL_CTX_free(pendingCTX)
            }
        }

        try Self.configureProtocol(ctx, configuration)
        try Self.loadIdentity(ctx, configuration)
        let cas = try Self.loadCertificateAuthorities(ctx, configuration)
        let (crls, registry) = try Self.loadCRLs(ctx, configuration, cas: cas)

        pointer = ctx
        self.configuration = configuration
        self.crls = crls
        self.registry = registry
        ocspResponseDER = configuration.ocspResponseDER
        pendingCTX = nil

        // Every callback finds its connection through the SSL's ex-data (`TLSConnection.record`), which also
        // leads to the listener's gate and so to the context in force; none holds a pointer to this context.
        SSL_CTX_set_cert_verify_callback(ctx, { storeContext, _ in
            guard let storeContext else { return 0 }
            return TLSContext.verifyClientChain(storeContext)
        }, nil)
        _ = SSL_CTX_set_session_ticket_cb(ctx, { ssl, _ in
            guard let ssl else { return 1 }
            return TLSContext.prepareTicket(ssl)
        }, { ssl, session, _, _, status, _ in
            // No session for the statuses other than success (no ticket, one we cannot decrypt).
            guard let ssl else { return SSL_TICKET_RETURN_ABORT }
            return TLSContext.decideResumption(ssl, session: session, status: status)
        }, nil)
        // The status callback runs only when the client sent status_request.
        COpenSSLShims_SSL_CTX_set_tlsext_status_cb(ctx) { ssl, _ in
            guard let ssl else { return SSL_TLSEXT_ERR_NOACK }
            return TLSContext.staple(on: ssl)
        }
        if configuration.requiresStaple {
            // Must-staple without a valid staple: refuse at the ClientHello with an internal_error alert, so the
            // client learns the handshake failed rather than seeing the connection drop.
            SSL_CTX_set_client_hello_cb(ctx, { ssl, alert, _ in
                guard let ssl, let record = TLSConnection.record(forSSL: ssl) else { return 0 }
                guard record.context.handshakeRefusal(inForce: record.gate?.current) == nil else {
                    alert?.pointee = SSL_AD_INTERNAL_ERROR
                    return 0
                }
                return 1
            }, nil)
        }
    }

    deinit {
        SSL_CTX_free(pointer)
    }

    /// Whether a staple is available at `now` (it exists and its nextUpdate has not passed).
    public func hasValidStaple(now: Int64? = nil) -> Bool {
        guard let der = ocspResponseDER, !der.isEmpty else {
            return false
        }
        if let nextUpdate = configuration.ocspNextUpdate, now ?? Int64(time(nil)) >= nextUpdate {
            if !stapleExpiryReported.exchange(true, ordering: .relaxed) {
                configuration.onStapleExpired?()
            }
            return false
        }
        return true
    }

    /// Why a new handshake must be refused before it starts, if it must: a must-staple certificate without a
    /// valid staple. `inForce`: the listener's current context, whose staple counts when it serves the same
    /// certificate (a staple withdrawn since this context was built is withdrawn here too).
    public func handshakeRefusal(now: Int64? = nil, inForce: TLSContext? = nil) -> String? {
        guard configuration.requiresStaple, !stapleSource(inForce: inForce).hasValidStaple(now: now) else {
            return nil
        }
        return "the server certificate is must-staple (RFC 7633) and no valid OCSP response is available"
    }

    /// The context whose staple a handshake on this context sends: the one in force if it presents the same
    /// certificate (it carries the newest verdict of the responder, withdrawal included), else this one.
    private func stapleSource(inForce: TLSContext?) -> TLSContext {
        guard let inForce, inForce !== self,
              X509_cmp(inForce.certificate.pointer, certificate.pointer) == 0
        else {
            return self
        }
        return inForce
    }

    private static func staple(on ssl: OpaquePointer) -> Int32 {
        guard let record = TLSConnection.record(forSSL: ssl) else {
            return SSL_TLSEXT_ERR_NOACK
        }
        let source = record.context.stapleSource(inForce: record.gate?.current)
        guard source.hasValidStaple(), let der = source.ocspResponseDER else {
            return SSL_TLSEXT_ERR_NOACK
        }
        let stapled = der.withUnsafeBufferPointer { COpenSSLShims_SSL_set_ocsp_response_copy(ssl, $0.baseAddress, $0.count) }
        if stapled != 1 {
            ERR_clear_error()
            return SSL_TLSEXT_ERR_NOACK
        }
        return SSL_TLSEXT_ERR_OK
    }

    /// Verifies `certificate` against this context's store the way a handshake verifies a client certificate
    /// (purpose ssl_client, the store's CRL flags and check), returning the `X509_V_*` result. For tests and
    /// measurements.
    func verifyClientCertificate(_ certificate: X509Certificate) -> Int32 {
        guard let store = SSL_CTX_get_cert_store(pointer), let storeContext = X509_STORE_CTX_new() else {
            ERR_clear_error()
            return X509_V_ERR_OUT_OF_MEM
        }
        defer { X509_STORE_CTX_free(storeContext) }
        guard X509_STORE_CTX_init(storeContext, store, certificate.pointer, nil) == 1 else {
            ERR_clear_error()
            return X509_V_ERR_UNSPECIFIED
        }
        _ = X509_STORE_CTX_set_default(storeContext, "ssl_client")
        let verified = X509_verify_cert(storeContext)
        let error = X509_STORE_CTX_get_error(storeContext)
        ERR_clear_error()
        return verified == 1 ? X509_V_OK : error
    }

    // MARK: - Building

    private static func configureProtocol(_ ctx: OpaquePointer, _ configuration: TLSContextConfiguration)
        throws(OpenSSLError)
    {
        let versions = configuration.versions.sorted()
        guard let lowest = versions.first, let highest = versions.last else {
            throw OpenSSLError(operation: "SSL_CTX_set_min_proto_version", message: "tls_versions is empty")
        }
        func number(_ version: TLSContextConfiguration.ProtocolVersion) -> Int32 {
            switch version {
            case .tls1_2: TLS1_2_VERSION
            case .tls1_3: TLS1_3_VERSION
            }
        }
        try openSSLCall("SSL_CTX_set_min_proto_version", "cannot set minimum TLS version \(lowest.rawValue)") {
            COpenSSLShims_SSL_CTX_set_min_proto_version(ctx, number(lowest))
        }
        try openSSLCall("SSL_CTX_set_max_proto_version", "cannot set maximum TLS version \(highest.rawValue)") {
            COpenSSLShims_SSL_CTX_set_max_proto_version(ctx, number(highest))
        }

        var options = COpenSSLShims_SSL_OP_NO_RENEGOTIATION() | COpenSSLShims_SSL_OP_NO_COMPRESSION()
        if configuration.honorCipherOrder {
            options |= COpenSSLShims_SSL_OP_CIPHER_SERVER_PREFERENCE()
        }
        if !configuration.reuseSessions {
            options |= COpenSSLShims_SSL_OP_NO_TICKET()
        }
        _ = SSL_CTX_set_options(ctx, options)
        _ = COpenSSLShims_SSL_CTX_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS))

        // Elliptic-curve key exchange only (TLS 1.3 would otherwise also offer the finite-field DH groups).
        try openSSLCall("SSL_CTX_set1_groups_list", "cannot set the key exchange groups") {
            COpenSSLShims_SSL_CTX_set1_groups_list(ctx, TLSContextConfiguration.keyExchangeGroups)
        }
        let ciphers = configuration.cipherStrings
        try openSSLCall("SSL_CTX_set_cipher_list", "no usable TLS 1.2 cipher in \"\(ciphers.tls12)\"") {
            SSL_CTX_set_cipher_list(ctx, ciphers.tls12)
        }
        if let tls13 = ciphers.tls13 {
            try openSSLCall("SSL_CTX_set_ciphersuites", "no usable TLS 1.3 ciphersuite in \"\(tls13)\"") {
                SSL_CTX_set_ciphersuites(ctx, tls13)
            }
        }

        let context = Array(configuration.sessionIDContext.utf8)
        guard !context.isEmpty, context.count <= Int(SSL_MAX_SID_CTX_LENGTH) else {
            throw OpenSSLError(operation: "SSL_CTX_set_session_id_context",
                               message: "session id context must be 1 to \(SSL_MAX_SID_CTX_LENGTH) bytes")
        }
        try openSSLCall("SSL_CTX_set_session_id_context", "cannot set session id context") {
            SSL_CTX_set_session_id_context(ctx, context, UInt32(context.count))
        }
        // No server-side session cache: resumption is by ticket only, and every ticket is checked again
        // (`decideResumption`).
        _ = COpenSSLShims_SSL_CTX_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_OFF))
        _ = SSL_CTX_set_num_tickets(ctx, configuration.reuseSessions ? 1 : 0)
        _ = SSL_CTX_set_timeout(ctx, configuration.sessionLifetime)
        if let depth = configuration.verifyDepth {
            SSL_CTX_set_verify_depth(ctx, Int32(depth))
        }
    }

    private static func loadIdentity(_ ctx: OpaquePointer, _ configuration: TLSContextConfiguration)
        throws(OpenSSLError)
    {
        let identity = configuration.identity
        try openSSLCall("SSL_CTX_use_certificate", "cannot use certificate \(identity.certificate.subjectDN)") {
            SSL_CTX_use_certificate(ctx, identity.certificate.pointer)
        }
        for intermediate in identity.chain.dropFirst() {
            try openSSLCall("SSL_CTX_add1_chain_cert", "cannot add chain certificate \(intermediate.subjectDN)") {
                COpenSSLShims_SSL_CTX_add1_chain_cert(ctx, intermediate.pointer)
            }
        }
        try openSSLCall("SSL_CTX_use_PrivateKey", "cannot use the private key") {
            SSL_CTX_use_PrivateKey(ctx, identity.key.pointer)
        }
        try openSSLCall("SSL_CTX_check_private_key", "private key does not match certificate") {
            SSL_CTX_check_private_key(ctx)
        }
    }

    private static func loadCertificateAuthorities(_ ctx: OpaquePointer, _ configuration: TLSContextConfiguration)
        throws(OpenSSLError) -> [X509Certificate]
    {
        var mode = SSL_VERIFY_NONE
        if configuration.verifyPeer {
            mode = SSL_VERIFY_PEER | (configuration.failIfNoPeerCertificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0)
        }
        SSL_CTX_set_verify(ctx, mode) { preverified, storeContext in
            TLSConnection.noteVerification(preverified, storeContext)
        }

        let cas = configuration.certificateAuthorities
        guard !cas.isEmpty else {
            if configuration.verifyPeer {
                throw OpenSSLError(operation: "SSL_CTX_get_cert_store",
                                   message: "verify_peer needs a CA bundle (cacertfile)")
            }
            return []
        }
        let store = try openSSLObject("SSL_CTX_get_cert_store", "cannot get certificate store") {
            SSL_CTX_get_cert_store(ctx)
        }
        for ca in cas {
            try openSSLCall("X509_STORE_add_cert", "cannot add CA \(ca.subjectDN)") {
                X509_STORE_add_cert(store, ca.pointer)
            }
            // Tell clients which CAs are acceptable (CertificateRequest certificate_authorities).
            _ = SSL_CTX_add_client_CA(ctx, ca.pointer)
        }
        ERR_clear_error()
        return cas
    }

    private static func loadCRLs(
        _ ctx: OpaquePointer,
        _ configuration: TLSContextConfiguration,
        cas: [X509Certificate]
    ) throws(OpenSSLError) -> ([CertificateRevocationList], CRLRegistry) {
        guard configuration.isCRLCheckEnabled else {
            return ([], CRLRegistry(records: [:]))
        }
        let store = try openSSLObject("SSL_CTX_get_cert_store", "cannot get certificate store") {
            SSL_CTX_get_cert_store(ctx)
        }
        var verified: [CertificateRevocationList] = []
        for candidate in configuration.crls {
            if let signer = candidate.verifiedIssuer, cas.contains(where: { X509_cmp($0.pointer, signer.pointer) == 0 }) {
                verified.append(candidate)
            } else {
                switch CRLSet.verify(candidate, cas: cas) {
                case .success(let checked):
                    verified.append(checked)
                case .failure(let reason):
                    throw OpenSSLError(operation: "X509_CRL_verify",
                                       message: "CRL of \(candidate.issuerDN) rejected: \(reason.text)")
                }
            }
        }
        // One CRL per lineage in the store: OpenSSL would otherwise pick among them by its own score, which prefers
        // an older CRL whose nextUpdate has not passed over a newer one that has (ignoring newer revocations).
        var crls: [CertificateRevocationList] = []
        var records: [Int: CRLRegistry.Record] = [:]
        for crl in CRLSelection.newestPerLineage(verified).inForce {
            guard let signer = crl.verifiedIssuer else {
                throw OpenSSLError(operation: "X509_CRL_verify", message: "CRL of \(crl.issuerDN) is unverified")
            }
            guard let scope = crl.scope else {
                throw OpenSSLError(operation: "X509_CRL_verify", message: "CRL of \(crl.issuerDN) has no verified scope")
            }
            try openSSLCall("X509_STORE_add_crl", "cannot add CRL of \(crl.issuerDN)") {
                X509_STORE_add_crl(store, crl.pointer)
            }
            records[CRLRegistry.key(crl.pointer)] = CRLRegistry.Record(
                signerKeyBits: signer.publicKeyBits,
                thisUpdate: crl.thisUpdate,
                nextUpdate: crl.nextUpdate,
                scope: scope
            )
            crls.append(crl)
        }
        let registry = CRLRegistry(
            records: records, staleGrace: configuration.crlStaleGrace.map { $0.components.seconds })
        guard configuration.usesOpenSSLDefaultCRLCheck || CRLCheck.install(on: store, registry: registry) else {
            throw .drained("X509_STORE_set_ex_data", "cannot install the CRL check")
        }
        var flags = UInt(X509_V_FLAG_CRL_CHECK)
        if configuration.crlCheckDepth == .chain {
            flags |= UInt(X509_V_FLAG_CRL_CHECK_ALL)
        }
        try openSSLCall("X509_STORE_set_flags", "cannot enable CRL checking") {
            X509_STORE_set_flags(store, flags)
        }
        return (crls, registry)
    }
}
