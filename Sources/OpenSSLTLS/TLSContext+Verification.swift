internal import COpenSSL
internal import COpenSSLShims

/// Client-chain verdicts taken against the generation in force: in the handshake (the certificate verify
/// callback), at resumption (the ticket callbacks) and at completion (`TLSConnection.recheck`). All run on the
/// connection's event loop, inside or right after `SSL_do_handshake`.
extension TLSContext {
    /// The certificate verify callback of every context (`SSL_CTX_set_cert_verify_callback`): OpenSSL's own
    /// verification against this connection's context, then, if the listener has installed a newer generation
    /// since the connection was accepted, the same verification against that one. A refusal by the newer one is
    /// set on `storeContext`, so OpenSSL sends the alert that belongs to it (certificate_revoked for a revocation).
    static func verifyClientChain(_ storeContext: OpaquePointer) -> Int32 {
        let verified = X509_verify_cert(storeContext)
        guard verified == 1, let ssl = TLSConnection.ssl(of: storeContext),
              let record = TLSConnection.record(forSSL: ssl)
        else {
            return verified
        }
        record.peerChain = certificates(in: X509_STORE_CTX_get0_untrusted(storeContext))
        let inForce = record.gate?.current ?? record.context
        guard inForce !== record.context else {
            record.subjects = record.context.revocationSubjects(
                verifiedChain: certificates(in: X509_STORE_CTX_get0_chain(storeContext)))
            record.verifiedAgainst = inForce
            return 1
        }
        let (result, chain) = inForce.verifyPeer(chain: record.peerChain, ssl: ssl)
        guard result == X509_V_OK else {
            X509_STORE_CTX_set_error(storeContext, result)
            return 0
        }
        record.subjects = inForce.revocationSubjects(verifiedChain: chain)
        record.verifiedAgainst = inForce
        return 1
    }

    /// Verifies a client chain (client certificate first, then what it sent with it) against this context's
    /// store exactly as a handshake does: purpose ssl_client, `ssl`'s verification parameters, the store's CRL
    /// flags and `CRLCheck`, the time now. The connection's record sees the failure as in a handshake. Returns the
    /// `X509_V_*` result and the verified chain.
    func verifyPeer(chain: [X509Certificate], ssl: OpaquePointer?) -> (result: Int32, verifiedChain: [X509Certificate]) {
        guard let leaf = chain.first else {
            return (X509_V_ERR_UNSPECIFIED, [])
        }
        guard let store = SSL_CTX_get_cert_store(pointer), let storeContext = X509_STORE_CTX_new(),
              let untrusted = OPENSSL_sk_new_null()
        else {
            ERR_clear_error()
            return (X509_V_ERR_OUT_OF_MEM, [])
        }
        defer {
            X509_STORE_CTX_free(storeContext)
            OPENSSL_sk_free(untrusted)
        }
        for certificate in chain {
            _ = OPENSSL_sk_push(untrusted, UnsafeRawPointer(certificate.pointer))
        }
        guard X509_STORE_CTX_init(storeContext, store, leaf.pointer, untrusted) == 1 else {
            ERR_clear_error()
            return (X509_V_ERR_UNSPECIFIED, [])
        }
        _ = X509_STORE_CTX_set_default(storeContext, "ssl_client")
        if let ssl {
            // As OpenSSL's own verification of a handshake: the SSL's parameters (depth, flags) and its ex-data,
            // through which `CRLCheck` and the verify callback reach the connection's record.
            if let parameters = X509_STORE_CTX_get0_param(storeContext), let own = SSL_get0_param(ssl) {
                _ = X509_VERIFY_PARAM_set1(parameters, own)
            }
            _ = X509_STORE_CTX_set_ex_data(storeContext, SSL_get_ex_data_X509_STORE_CTX_idx(), UnsafeMutableRawPointer(ssl))
        } else if let depth = configuration.verifyDepth, let parameters = X509_STORE_CTX_get0_param(storeContext) {
            X509_VERIFY_PARAM_set_depth(parameters, Int32(depth))
        }
        X509_STORE_CTX_set_verify_cb(storeContext) { preverified, storeContext in
            TLSConnection.noteVerification(preverified, storeContext)
        }
        let verified = X509_verify_cert(storeContext)
        let error = X509_STORE_CTX_get_error(storeContext)
        let verifiedChain = verified == 1 ? Self.certificates(in: X509_STORE_CTX_get0_chain(storeContext)) : []
        ERR_clear_error()
        return (verified == 1 ? X509_V_OK : (error == X509_V_OK ? X509_V_ERR_UNSPECIFIED : error), verifiedChain)
    }

    /// What live revocation watches of a verified chain: the client certificate, and with `crl_check_depth =
    /// chain` every certificate above it that is not self-issued (a trust anchor has no CRL of its own).
    func revocationSubjects(verifiedChain: [X509Certificate]) -> [RevocationSubject] {
        let watched = configuration.crlCheckDepth == .chain
            ? verifiedChain.filter { !$0.isSelfIssued }
            : Array(verifiedChain.prefix(1))
        return watched.map { RevocationSubject(subjectDN: $0.subjectDN, issuerDN: $0.issuerDN, serialHex: $0.serialHex) }
    }

    // MARK: - Tickets

    /// The ticket generation callback: a ticket carries, besides the session, the certificates the client sent
    /// with its own, so that a resumption can verify the whole chain again (`decideResumption`).
    static func prepareTicket(_ ssl: OpaquePointer) -> Int32 {
        guard let record = TLSConnection.record(forSSL: ssl), record.peerChain.count > 1,
              let session = SSL_get_session(ssl)
        else {
            return 1
        }
        let bytes = record.peerChain.dropFirst().flatMap(\.derBytes)
        let stored = bytes.withUnsafeBytes { SSL_SESSION_set1_ticket_appdata(session, $0.baseAddress, $0.count) }
        if stored != 1 {
            ERR_clear_error()
        }
        return 1
    }

    /// The ticket decryption callback: a ticket is honoured only if a full handshake with its client certificate
    /// would pass now, against the generation in force (revoked, expired, a CRL past its nextUpdate under
    /// `closed`, a CA no longer trusted: refused). A refused ticket is ignored, so the handshake continues in full
    /// and is decided, with its alert, like any other; a new ticket follows a successful one.
    static func decideResumption(_ ssl: OpaquePointer, session: OpaquePointer?, status: Int32) -> Int32 {
        switch status {
        case SSL_TICKET_SUCCESS, SSL_TICKET_SUCCESS_RENEW:
            break
        case SSL_TICKET_FATAL_ERR_MALLOC, SSL_TICKET_FATAL_ERR_OTHER:
            return SSL_TICKET_RETURN_ABORT
        default:
            return SSL_TICKET_RETURN_IGNORE_RENEW
        }
        let use = status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW
        guard let session else {
            return SSL_TICKET_RETURN_IGNORE_RENEW
        }
        guard let leaf = X509Certificate(retaining: SSL_SESSION_get0_peer(session)) else {
            // A session without a client certificate (verify_none, or none required): nothing to check again.
            return use
        }
        guard let record = TLSConnection.record(forSSL: ssl) else {
            return SSL_TICKET_RETURN_IGNORE_RENEW
        }
        var data: UnsafeMutableRawPointer?
        var length = 0
        var chain = [leaf]
        if SSL_SESSION_get0_ticket_appdata(session, &data, &length) == 1, let data, length > 0 {
            chain += certificates(inConcatenatedDER: UnsafeRawBufferPointer(start: data, count: length))
        }
        ERR_clear_error()
        let inForce = record.gate?.current ?? record.context
        let errorBefore = record.error
        let (result, verifiedChain) = inForce.verifyPeer(chain: chain, ssl: ssl)
        guard result == X509_V_OK else {
            // The ticket is refused, not the handshake: forget the error so that the full handshake's own
            // verification decides (and is logged) on its own.
            record.error = errorBefore
            record.errorDepth = nil
            record.errorCertificate = nil
            record.leafCertificate = nil
            record.staleCRL = nil
            record.refusedResumption = (result, leaf.peerCertificate)
            return SSL_TICKET_RETURN_IGNORE_RENEW
        }
        record.peerChain = chain
        record.subjects = inForce.revocationSubjects(verifiedChain: verifiedChain)
        record.verifiedAgainst = inForce
        return use
    }

    // MARK: - Certificates out of OpenSSL

    /// New references to the certificates of a `STACK_OF(X509)`, in order.
    static func certificates(in stack: OpaquePointer?) -> [X509Certificate] {
        guard let stack else { return [] }
        let count = COpenSSLShims_sk_X509_num(stack)
        guard count > 0 else { return [] }
        return (0..<count).compactMap { X509Certificate(retaining: COpenSSLShims_sk_X509_value(stack, $0)) }
    }

    /// Certificates DER-encoded one after the other (as `prepareTicket` stores them); stops at the first bytes
    /// that are not one.
    static func certificates(inConcatenatedDER bytes: UnsafeRawBufferPointer) -> [X509Certificate] {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return [] }
        var certificates: [X509Certificate] = []
        var cursor: UnsafePointer<UInt8>? = UnsafePointer(base)
        let end = base + bytes.count
        while let position = cursor, position < end {
            guard let parsed = d2i_X509(nil, &cursor, end - position) else {
                ERR_clear_error()
                break
            }
            certificates.append(X509Certificate(taking: parsed))
        }
        return certificates
    }
}
