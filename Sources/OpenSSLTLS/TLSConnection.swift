internal import COpenSSL
internal import COpenSSLShims
import NIOCore

/// What the verify callback saw for one connection: the first failed check, and the certificates involved (OpenSSL
/// does not keep the client's certificate when its verification fails, so it is captured here), and what the
/// completion check needs: the client's chain and the context it was last verified against. Owned by one
/// `TLSConnection`; written only from inside that connection's `SSL_do_handshake` and by its handler, on its event
/// loop.
final class VerificationRecord {
    /// The context the connection was created with.
    let context: TLSContext
    /// The listener's gate, which knows the context in force; nil for a connection on a bare context.
    let gate: TLSGate?
    /// The client's chain as it sent it (client certificate first), from its verification or its ticket, kept
    /// until the handshake completes.
    var peerChain: [X509Certificate] = []
    /// The certificates live revocation watches (see `TLSGate.Admission.subjects`).
    var subjects: [RevocationSubject] = []
    /// The context the client chain was last verified against (nil: no client certificate verified).
    var verifiedAgainst: TLSContext?
    /// A ticket refused because a full handshake with its certificate would fail now: the verify error and the
    /// certificate (the handshake then continues in full).
    var refusedResumption: (error: Int32, peer: PeerCertificate)?
    var error: Int32 = 0
    var errorDepth: Int?
    var errorCertificate: X509Certificate?
    var leafCertificate: X509Certificate?
    /// For "unable to get certificate CRL": the failing certificate's CRL distribution points, when it is
    /// provably issued by a trusted CA certificate (so that no forged certificate can make us fetch a URL).
    var missingCRLDistributionPoints: [String] = []
    /// Set when a CRL past its nextUpdate was used under `crl_fail_policy = grace`.
    var staleCRL: StaleCRLUse?

    init(context: TLSContext, gate: TLSGate?) {
        self.context = context
        self.gate = gate
    }
}

/// A handshake decided on a CRL past its nextUpdate, within the grace period.
public struct StaleCRLUse: Sendable, Hashable {
    public var issuerDN: String
    public var nextUpdate: Int64
    public var secondsPast: Int64
}

/// The outcome of a handshake step, in Swift terms: WANT_READ/WANT_WRITE mean incomplete, not failed.
enum TLSHandshakeStep {
    case complete
    case incomplete
    /// The handshake failed; the error queue was drained into `openSSLErrors` (first reason separately).
    case failed(firstReason: String?, openSSLErrors: [String])
}

/// The outcome of one `SSL_read`.
enum TLSReadStep {
    case bytes(Int)
    case wantMoreCiphertext
    /// The peer sent close_notify.
    case closeNotify
    case failed(openSSLErrors: [String])
}

/// One server-side TLS connection: an owned `SSL *` driven over two memory BIOs (ciphertext in, ciphertext out),
/// never touching a socket. Owned by one `TLSServerHandler` and used only on its channel's event loop; not
/// Sendable. Holds its `TLSContext` strongly: the status callback and the store's CRL table point into it.
final class TLSConnection {
    /// Index of the `SSL` ex-data slot holding this connection's `VerificationRecord` (unretained).
    static let recordIndex: Int32 = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, nil, nil, nil, nil)

    private let ssl: OpaquePointer
    /// Owned by `ssl` (SSL_set_bio); borrowed here.
    private var readBIO: OpaquePointer
    private var writeBIO: OpaquePointer
    let context: TLSContext
    let verification: VerificationRecord

    init(context: TLSContext, gate: TLSGate? = nil) throws(OpenSSLError) {
        let ssl = try openSSLObject("SSL_new", "cannot create SSL") { SSL_new(context.pointer) }
        guard let readBIO = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .drained("BIO_new", "cannot create memory BIO")
        }
        guard let writeBIO = BIO_new(BIO_s_mem()) else {
            BIO_free(readBIO)
            SSL_free(ssl)
            throw .drained("BIO_new", "cannot create memory BIO")
        }
        SSL_set_bio(ssl, readBIO, writeBIO)
        SSL_set_accept_state(ssl)
        self.ssl = ssl
        self.readBIO = readBIO
        self.writeBIO = writeBIO
        self.context = context
        verification = VerificationRecord(context: context, gate: gate)
        guard Self.recordIndex >= 0,
              SSL_set_ex_data(ssl, Self.recordIndex, Unmanaged.passUnretained(verification).toOpaque()) == 1
        else {
            throw .drained("SSL_set_ex_data", "cannot attach verification record")
        }
    }

    deinit {
        SSL_free(ssl)
    }

    /// The verification record of the connection a store context verifies for, if any.
    static func record(for storeContext: OpaquePointer) -> VerificationRecord? {
        guard let ssl = ssl(of: storeContext) else {
            return nil
        }
        return record(forSSL: ssl)
    }

    /// The `SSL` a store context verifies for, if any.
    static func ssl(of storeContext: OpaquePointer) -> OpaquePointer? {
        X509_STORE_CTX_get_ex_data(storeContext, SSL_get_ex_data_X509_STORE_CTX_idx()).map { OpaquePointer($0) }
    }

    /// The verification record of `ssl`'s connection, if it is one of ours.
    static func record(forSSL ssl: OpaquePointer) -> VerificationRecord? {
        guard let rawRecord = SSL_get_ex_data(ssl, recordIndex) else {
            return nil
        }
        return Unmanaged<VerificationRecord>.fromOpaque(rawRecord).takeUnretainedValue()
    }

    /// The verify callback of every context: records the first failure on the connection being verified, and
    /// returns OpenSSL's verdict unchanged.
    static func noteVerification(_ preverified: Int32, _ storeContext: OpaquePointer?) -> Int32 {
        guard preverified == 0, let storeContext, let record = record(for: storeContext) else {
            return preverified
        }
        if record.error == 0 {
            record.error = X509_STORE_CTX_get_error(storeContext)
            record.errorDepth = Int(X509_STORE_CTX_get_error_depth(storeContext))
            record.errorCertificate = X509Certificate(retaining: X509_STORE_CTX_get_current_cert(storeContext))
            record.leafCertificate = X509Certificate(retaining: X509_STORE_CTX_get0_cert(storeContext))
            if record.error == X509_V_ERR_UNABLE_TO_GET_CRL {
                record.missingCRLDistributionPoints = trustedDistributionPoints(storeContext)
            }
        }
        return preverified
    }

    /// OpenSSL checks revocation before signatures, so at a missing CRL nothing about the certificate is
    /// verified yet. Its distribution points are used only if its issuer came from the trust store (not from the
    /// client) and the issuer's key verifies the certificate's signature.
    private static func trustedDistributionPoints(_ storeContext: OpaquePointer) -> [String] {
        guard let current = X509_STORE_CTX_get_current_cert(storeContext),
              let chain = X509_STORE_CTX_get0_chain(storeContext)
        else {
            return []
        }
        let depth = Int32(X509_STORE_CTX_get_error_depth(storeContext))
        let issuerIndex = depth + 1
        guard issuerIndex < COpenSSLShims_sk_X509_num(chain),
              issuerIndex >= X509_STORE_CTX_get_num_untrusted(storeContext),
              let issuer = COpenSSLShims_sk_X509_value(chain, issuerIndex),
              let key = X509_get0_pubkey(issuer),
              X509_verify(current, key) == 1,
              let certificate = X509Certificate(retaining: current)
        else {
            ERR_clear_error()
            return []
        }
        return certificate.crlDistributionPointURLs
    }

    // MARK: - Ciphertext in and out

    /// Appends received ciphertext to the read BIO (a memory BIO takes everything).
    func receive(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let chunk = Int32(min(bytes.count - offset, Int(Int32.max)))
                let written = BIO_write(readBIO, bytes.baseAddress.map { $0 + offset }, chunk)
                guard written > 0 else {
                    break
                }
                offset += Int(written)
            }
        }
    }

    /// A memory BIO keeps the largest buffer it ever needed (the handshake flights, a large message) for the life
    /// of the connection, and most MQTT connections sit idle for hours after the handshake. When both BIOs are
    /// empty and either holds more than `retainedBufferLimit` bytes, fresh ones replace them (SSL_set_bio frees
    /// the old pair): a few KiB less per idle connection.
    func releaseBuffersIfIdle() {
        guard BIO_ctrl_pending(readBIO) == 0, BIO_ctrl_pending(writeBIO) == 0,
              Self.capacity(of: readBIO) > Self.retainedBufferLimit
                || Self.capacity(of: writeBIO) > Self.retainedBufferLimit,
              let freshRead = BIO_new(BIO_s_mem())
        else {
            return
        }
        guard let freshWrite = BIO_new(BIO_s_mem()) else {
            BIO_free(freshRead)
            return
        }
        SSL_set_bio(ssl, freshRead, freshWrite)
        readBIO = freshRead
        writeBIO = freshWrite
    }

    static let retainedBufferLimit = 1024

    /// The bytes a memory BIO has allocated (not what it holds).
    private static func capacity(of bio: OpaquePointer) -> Int {
        var memory: UnsafeMutablePointer<BUF_MEM>?
        guard BIO_ctrl(bio, BIO_C_GET_BUF_MEM_PTR, 0, &memory) > 0, let memory else {
            return 0
        }
        return memory.pointee.max
    }

    /// Received ciphertext not yet consumed by OpenSSL.
    var bufferedCiphertextIn: Int {
        Int(BIO_ctrl_pending(readBIO))
    }

    /// Ciphertext produced but not yet taken by `takeCiphertext`.
    var bufferedCiphertextOut: Int {
        Int(BIO_ctrl_pending(writeBIO))
    }

    /// Everything in the write BIO, or nil if it is empty.
    func takeCiphertext(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = Int(BIO_ctrl_pending(writeBIO))
        guard pending > 0 else {
            return nil
        }
        var buffer = allocator.buffer(capacity: pending)
        while true {
            let available = Int(BIO_ctrl_pending(writeBIO))
            guard available > 0 else {
                break
            }
            let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: available) { target in
                let count = Int32(min(target.count, Int(Int32.max)))
                let read = BIO_read(writeBIO, target.baseAddress, count)
                return max(0, Int(read))
            }
            if read == 0 {
                break
            }
        }
        return buffer.readableBytes > 0 ? buffer : nil
    }

    // MARK: - TLS operations (error queue cleared before, SSL_get_error right after)

    func doHandshake() -> TLSHandshakeStep {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            return .complete
        }
        let error = SSL_get_error(ssl, result)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        default:
            let drained = OpenSSLErrorQueue.drainWithFirstReason()
            return .failed(firstReason: drained.firstReason, openSSLErrors: drained.all)
        }
    }

    /// Decrypts as much as fits into `buffer`'s writable space (at least `minimum` bytes are reserved).
    func read(into buffer: inout ByteBuffer, minimum: Int) -> TLSReadStep {
        var sslError: Int32 = SSL_ERROR_NONE
        let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: minimum) { target in
            ERR_clear_error()
            let result = SSL_read(ssl, target.baseAddress, Int32(min(target.count, Int(Int32.max))))
            if result > 0 {
                return Int(result)
            }
            sslError = SSL_get_error(ssl, result)
            return 0
        }
        if count > 0 {
            return .bytes(count)
        }
        switch sslError {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantMoreCiphertext
        case SSL_ERROR_ZERO_RETURN:
            return .closeNotify
        default:
            return .failed(openSSLErrors: OpenSSLErrorQueue.drain())
        }
    }

    /// Encrypts all of `buffer` into the write BIO (a memory BIO never refuses, so writes are never partial).
    /// Returns nil on success, else the drained error queue.
    func write(_ buffer: ByteBuffer) -> [String]? {
        var failure: [String]?
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let chunk = Int32(min(bytes.count - offset, Int(Int32.max)))
                ERR_clear_error()
                let written = SSL_write(ssl, bytes.baseAddress.map { $0 + offset }, chunk)
                if written <= 0 {
                    _ = SSL_get_error(ssl, written)
                    failure = OpenSSLErrorQueue.drain()
                    return
                }
                offset += Int(written)
            }
        }
        return failure
    }

    /// Queues close_notify in the write BIO (does not wait for the peer's).
    func shutdown() {
        ERR_clear_error()
        let result = SSL_shutdown(ssl)
        if result < 0 {
            _ = SSL_get_error(ssl, result)
            ERR_clear_error()
        }
    }

    // MARK: - Completion

    /// Verifies the client chain again against `inForce` if it was last verified against another context (or a
    /// resumed session's certificate was never checked); X509_V_OK when nothing needs checking or it passed.
    func recheck(against inForce: TLSContext) -> Int32 {
        let record = verification
        if record.verifiedAgainst === inForce {
            return X509_V_OK
        }
        if record.peerChain.isEmpty, let leaf = peerCertificate {
            record.peerChain = [leaf]
        }
        guard !record.peerChain.isEmpty else {
            return X509_V_OK
        }
        let (result, chain) = inForce.verifyPeer(chain: record.peerChain, ssl: ssl)
        guard result == X509_V_OK else {
            return result
        }
        record.subjects = inForce.revocationSubjects(verifiedChain: chain)
        record.verifiedAgainst = inForce
        return X509_V_OK
    }

    /// Lets go of what only the handshake needed (the client's chain and contexts), once it is decided.
    func releaseHandshakeState() {
        verification.peerChain = []
        verification.verifiedAgainst = nil
    }

    /// Drops whatever OpenSSL queued for the client (a handshake refused after OpenSSL finished it: its Finished
    /// and tickets must not go out).
    func discardCiphertext() {
        let pending = Int(BIO_ctrl_pending(writeBIO))
        guard pending > 0 else { return }
        var scratch = [UInt8](repeating: 0, count: min(pending, 16 * 1024))
        while BIO_ctrl_pending(writeBIO) > 0 {
            let read = scratch.withUnsafeMutableBytes { BIO_read(writeBIO, $0.baseAddress, Int32($0.count)) }
            if read <= 0 { break }
        }
    }

    /// The TLS alert for a verification error, as OpenSSL chooses it for a failed handshake (ssl_x509err2alert).
    static func alert(for verifyError: Int32) -> UInt8 {
        switch verifyError {
        case X509_V_ERR_CERT_REVOKED: return UInt8(SSL_AD_CERTIFICATE_REVOKED)
        case X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CRL_HAS_EXPIRED,
             X509_V_ERR_CRL_NOT_YET_VALID:
            return UInt8(SSL_AD_CERTIFICATE_EXPIRED)
        case X509_V_ERR_UNABLE_TO_GET_CRL, X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
            return UInt8(SSL_AD_UNKNOWN_CA)
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
             X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
             X509_V_ERR_CERT_UNTRUSTED:
            return UInt8(SSL_AD_UNKNOWN_CA)
        default: return UInt8(SSL_AD_BAD_CERTIFICATE)
        }
    }

    // MARK: - Results

    var negotiatedVersion: String {
        SSL_get_version(ssl).map { String(cString: $0) } ?? ""
    }

    var negotiatedCipher: String {
        guard let cipher = SSL_get_current_cipher(ssl), let name = SSL_CIPHER_get_name(cipher) else {
            return ""
        }
        return String(cString: name)
    }

    var isSessionResumed: Bool {
        SSL_session_reused(ssl) == 1
    }

    /// The verified client certificate after a successful handshake (also after resumption).
    var peerCertificate: X509Certificate? {
        X509Certificate(retaining: SSL_get0_peer_certificate(ssl))
    }

    var verifyResult: Int {
        SSL_get_verify_result(ssl)
    }
}

@available(*, unavailable)
extension TLSConnection: Sendable {}

@available(*, unavailable)
extension VerificationRecord: Sendable {}
