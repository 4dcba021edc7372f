internal import COpenSSL
internal import COpenSSLShims
import OpenSSLTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// One `final class` per OpenSSL object: `init` takes ownership, `deinit` frees it, and the raw pointer is
// `fileprivate` so that only the typed methods in this file touch it. None of these are Sendable: each is created,
// used and dropped by one `DevelopmentPKI.generate` call on one thread (the OpenSSL error queue is thread-local too).

// MARK: - Error queue (OpenSSLTLS.OpenSSLErrorQueue)

extension DevelopmentPKIError {
    /// An OpenSSL failure of `operation`, carrying (and emptying) the current error queue.
    static func openSSL(_ operation: String) -> DevelopmentPKIError {
        DevelopmentPKIError(code: .openSSL, operation: operation, openSSLErrors: OpenSSLErrorQueue.drain())
    }
}

/// Runs an OpenSSL call that returns a positive value on success and 0 or a negative value on failure.
@discardableResult
func openSSLCall(_ operation: String, _ body: () -> Int32) throws(DevelopmentPKIError) -> Int32 {
    OpenSSLErrorQueue.clear()
    let result = body()
    guard result > 0 else {
        throw .openSSL(operation)
    }
    return result
}

/// Runs an OpenSSL call that returns NULL on failure.
func openSSLObject<Object>(_ operation: String, _ body: () -> Object?) throws(DevelopmentPKIError) -> Object {
    OpenSSLErrorQueue.clear()
    guard let object = body() else {
        throw .openSSL(operation)
    }
    return object
}

// MARK: - Memory BIO

/// An in-memory `BIO` that PEM encoders write into.
final class MemoryBIO {
    fileprivate let pointer: OpaquePointer

    init() throws(DevelopmentPKIError) {
        pointer = try openSSLObject("BIO_new(BIO_s_mem())") { BIO_new(BIO_s_mem()) }
    }

    deinit {
        BIO_free(pointer)
    }

    /// Everything written so far.
    func contents() throws(DevelopmentPKIError) -> [UInt8] {
        let pending = BIO_ctrl_pending(pointer)
        guard pending > 0, pending <= Int32.max else {
            throw .openSSL("BIO_ctrl_pending")
        }
        var bytes = [UInt8](repeating: 0, count: Int(pending))
        let count = try openSSLCall("BIO_read") {
            bytes.withUnsafeMutableBytes { BIO_read(pointer, $0.baseAddress, Int32(pending)) }
        }
        guard count == Int32(pending) else {
            throw .openSSL("BIO_read (short read)")
        }
        return bytes
    }
}

// MARK: - Private key

/// An `EVP_PKEY` holding a private key.
final class PrivateKey {
    fileprivate let pointer: OpaquePointer

    /// A fresh ECDSA key on NIST P-256.
    static func generateP256() throws(DevelopmentPKIError) -> PrivateKey {
        PrivateKey(taking: try openSSLObject("EVP_EC_gen(P-256)") { COpenSSLShims_EVP_EC_gen("P-256") })
    }

    private init(taking pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        EVP_PKEY_free(pointer)
    }

    /// Unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY").
    func pkcs8PEM() throws(DevelopmentPKIError) -> [UInt8] {
        let bio = try MemoryBIO()
        try openSSLCall("PEM_write_bio_PKCS8PrivateKey") {
            PEM_write_bio_PKCS8PrivateKey(bio.pointer, pointer, nil, nil, 0, nil, nil)
        }
        return try bio.contents()
    }
}

// MARK: - Distinguished name

/// An `X509_NAME`.
final class DistinguishedName {
    fileprivate let pointer: OpaquePointer

    /// Builds a name from (short field name, UTF-8 value) pairs in order, e.g. `[("CN", "x"), ("O", "y")]`.
    init(_ entries: [(field: String, value: String)]) throws(DevelopmentPKIError) {
        pointer = try openSSLObject("X509_NAME_new") { X509_NAME_new() }
        for entry in entries {
            let bytes = Array(entry.value.utf8)
            guard bytes.count <= Int32.max else {
                throw DevelopmentPKIError(code: .invalidArgument, operation: "X509_NAME_add_entry_by_txt",
                                          reason: "\(entry.field) value is too long")
            }
            try openSSLCall("X509_NAME_add_entry_by_txt(\(entry.field))") {
                X509_NAME_add_entry_by_txt(pointer, entry.field, MBSTRING_UTF8, bytes, Int32(bytes.count), -1, 0)
            }
        }
    }

    deinit {
        X509_NAME_free(pointer)
    }
}

// MARK: - X.509 extension

/// An `X509_EXTENSION`, made from an OpenSSL configuration-style value such as `"critical,CA:TRUE"`.
final class CertificateExtension {
    fileprivate let pointer: OpaquePointer

    /// `issuer`, `subject` and `crl` fill the `X509V3_CTX`, which extensions such as `subjectKeyIdentifier = hash`
    /// and `authorityKeyIdentifier = keyid:always` read from.
    init(
        nid: Int32,
        value: String,
        issuer: Certificate?,
        subject: Certificate?,
        crl: CertificateRevocationList? = nil
    ) throws(DevelopmentPKIError) {
        // X509V3_CTX is a public struct; zero-initialising it has the effect of X509V3_set_ctx_nodb (db == NULL).
        let context = UnsafeMutablePointer<X509V3_CTX>.allocate(capacity: 1)
        context.initialize(to: X509V3_CTX())
        defer {
            context.deinitialize(count: 1)
            context.deallocate()
        }
        X509V3_set_ctx(context, issuer?.pointer, subject?.pointer, nil, crl?.pointer, 0)
        let name = OBJ_nid2sn(nid).map { String(cString: $0) } ?? "NID \(nid)"
        pointer = try openSSLObject("X509V3_EXT_conf_nid(\(name) = \(value))") {
            X509V3_EXT_conf_nid(nil, context, nid, value)
        }
    }

    deinit {
        X509_EXTENSION_free(pointer)
    }
}

// MARK: - Certificate

/// An `X509` certificate being built, then signed and encoded.
final class Certificate {
    fileprivate let pointer: OpaquePointer

    init() throws(DevelopmentPKIError) {
        pointer = try openSSLObject("X509_new") { X509_new() }
    }

    deinit {
        X509_free(pointer)
    }

    func setVersion3() throws(DevelopmentPKIError) {
        try openSSLCall("X509_set_version") { X509_set_version(pointer, Int(X509_VERSION_3)) }
    }

    /// A random positive 16-byte serial number (top bit clear, next bit set so the encoding is exactly 16 bytes).
    func setRandomSerialNumber() throws(DevelopmentPKIError) {
        var bytes = [UInt8](repeating: 0, count: 16)
        try openSSLCall("RAND_bytes") { RAND_bytes(&bytes, Int32(bytes.count)) }
        bytes[0] = (bytes[0] & 0x7F) | 0x40
        let serial = try openSSLObject("ASN1_INTEGER_new") { ASN1_INTEGER_new() }
        defer { ASN1_INTEGER_free(serial) }
        try openSSLCall("ASN1_STRING_set") { ASN1_STRING_set(serial, bytes, Int32(bytes.count)) }
        try openSSLCall("X509_set_serialNumber") { X509_set_serialNumber(pointer, serial) }
    }

    func setSubjectName(_ name: DistinguishedName) throws(DevelopmentPKIError) {
        try openSSLCall("X509_set_subject_name") { X509_set_subject_name(pointer, name.pointer) }
    }

    func setIssuerName(_ name: DistinguishedName) throws(DevelopmentPKIError) {
        try openSSLCall("X509_set_issuer_name") { X509_set_issuer_name(pointer, name.pointer) }
    }

    /// Sets the issuer name to `issuer`'s subject name.
    func setIssuerName(from issuer: Certificate) throws(DevelopmentPKIError) {
        let name = try openSSLObject("X509_get_subject_name") { X509_get_subject_name(issuer.pointer) }
        try openSSLCall("X509_set_issuer_name") { X509_set_issuer_name(pointer, name) }
    }

    /// notBefore = `now` − `backdateSeconds`, notAfter = `now` + `days`.
    func setValidity(now: time_t, backdateSeconds: Int, days: Int32) throws(DevelopmentPKIError) {
        var reference = now
        let notBefore = try openSSLObject("X509_getm_notBefore") { X509_getm_notBefore(pointer) }
        _ = try openSSLObject("X509_time_adj_ex(notBefore)") {
            X509_time_adj_ex(notBefore, 0, -backdateSeconds, &reference)
        }
        let notAfter = try openSSLObject("X509_getm_notAfter") { X509_getm_notAfter(pointer) }
        _ = try openSSLObject("X509_time_adj_ex(notAfter)") { X509_time_adj_ex(notAfter, days, 0, &reference) }
    }

    func setPublicKey(of key: PrivateKey) throws(DevelopmentPKIError) {
        try openSSLCall("X509_set_pubkey") { X509_set_pubkey(pointer, key.pointer) }
    }

    /// Adds an extension built from a configuration-style value, with this certificate as the subject.
    func addExtension(nid: Int32, value: String, issuer: Certificate) throws(DevelopmentPKIError) {
        let ext = try CertificateExtension(nid: nid, value: value, issuer: issuer, subject: self)
        try openSSLCall("X509_add_ext") { X509_add_ext(pointer, ext.pointer, -1) }
    }

    /// Adds a non-critical subjectAltName built entry by entry, so no name is ever parsed as configuration syntax.
    func addSubjectAltName(dnsNames: [String], ipAddresses: [String]) throws(DevelopmentPKIError) {
        let names = try openSSLObject("GENERAL_NAMES_new") { GENERAL_NAMES_new() }
        defer { GENERAL_NAMES_free(names) }
        let entries = dnsNames.map { (GEN_DNS, $0) } + ipAddresses.map { (GEN_IPADD, $0) }
        for (type, value) in entries {
            let name = try openSSLObject("a2i_GENERAL_NAME(\(value))") {
                a2i_GENERAL_NAME(nil, nil, nil, type, value, 0)
            }
            OpenSSLErrorQueue.clear()
            guard COpenSSLShims_sk_GENERAL_NAME_push(names, name) > 0 else {
                GENERAL_NAME_free(name)
                throw .openSSL("sk_GENERAL_NAME_push")
            }
        }
        try openSSLCall("X509_add1_ext_i2d(subjectAltName)") {
            X509_add1_ext_i2d(pointer, NID_subject_alt_name, UnsafeMutableRawPointer(names), 0, 0)
        }
    }

    func sign(with key: PrivateKey) throws(DevelopmentPKIError) {
        let digest = try openSSLObject("EVP_sha256") { EVP_sha256() }
        try openSSLCall("X509_sign") { X509_sign(pointer, key.pointer, digest) }
    }

    func pem() throws(DevelopmentPKIError) -> [UInt8] {
        let bio = try MemoryBIO()
        try openSSLCall("PEM_write_bio_X509") { PEM_write_bio_X509(bio.pointer, pointer) }
        return try bio.contents()
    }
}

// MARK: - CRL

/// An `X509_CRL` being built, then signed and encoded.
final class CertificateRevocationList {
    fileprivate let pointer: OpaquePointer

    init() throws(DevelopmentPKIError) {
        pointer = try openSSLObject("X509_CRL_new") { X509_CRL_new() }
    }

    deinit {
        X509_CRL_free(pointer)
    }

    func setVersion2() throws(DevelopmentPKIError) {
        try openSSLCall("X509_CRL_set_version") { X509_CRL_set_version(pointer, Int(X509_CRL_VERSION_2)) }
    }

    func setIssuerName(from issuer: Certificate) throws(DevelopmentPKIError) {
        let name = try openSSLObject("X509_get_subject_name") { X509_get_subject_name(issuer.pointer) }
        try openSSLCall("X509_CRL_set_issuer_name") { X509_CRL_set_issuer_name(pointer, name) }
    }

    /// lastUpdate = `now` − `backdateSeconds`, nextUpdate = `now` + `days`.
    func setUpdateTimes(now: time_t, backdateSeconds: Int, days: Int32) throws(DevelopmentPKIError) {
        var reference = now
        let lastUpdate = try openSSLObject("X509_time_adj_ex(lastUpdate)") {
            X509_time_adj_ex(nil, 0, -backdateSeconds, &reference)
        }
        defer { ASN1_TIME_free(lastUpdate) }
        try openSSLCall("X509_CRL_set1_lastUpdate") { X509_CRL_set1_lastUpdate(pointer, lastUpdate) }

        let nextUpdate = try openSSLObject("X509_time_adj_ex(nextUpdate)") {
            X509_time_adj_ex(nil, days, 0, &reference)
        }
        defer { ASN1_TIME_free(nextUpdate) }
        try openSSLCall("X509_CRL_set1_nextUpdate") { X509_CRL_set1_nextUpdate(pointer, nextUpdate) }
    }

    func setCRLNumber(_ number: Int) throws(DevelopmentPKIError) {
        let value = try openSSLObject("ASN1_INTEGER_new") { ASN1_INTEGER_new() }
        defer { ASN1_INTEGER_free(value) }
        try openSSLCall("ASN1_INTEGER_set") { ASN1_INTEGER_set(value, number) }
        try openSSLCall("X509_CRL_add1_ext_i2d(cRLNumber)") {
            X509_CRL_add1_ext_i2d(pointer, NID_crl_number, value, 0, 0)
        }
    }

    /// Adds authorityKeyIdentifier = keyid:always, taken from `issuer`'s subjectKeyIdentifier.
    func addAuthorityKeyIdentifier(issuer: Certificate) throws(DevelopmentPKIError) {
        let ext = try CertificateExtension(
            nid: NID_authority_key_identifier, value: "keyid:always", issuer: issuer, subject: nil, crl: self
        )
        try openSSLCall("X509_CRL_add_ext") { X509_CRL_add_ext(pointer, ext.pointer, -1) }
    }

    func sign(with key: PrivateKey) throws(DevelopmentPKIError) {
        try openSSLCall("X509_CRL_sort") { X509_CRL_sort(pointer) }
        let digest = try openSSLObject("EVP_sha256") { EVP_sha256() }
        try openSSLCall("X509_CRL_sign") { X509_CRL_sign(pointer, key.pointer, digest) }
    }

    func pem() throws(DevelopmentPKIError) -> [UInt8] {
        let bio = try MemoryBIO()
        try openSSLCall("PEM_write_bio_X509_CRL") { PEM_write_bio_X509_CRL(bio.pointer, pointer) }
        return try bio.contents()
    }
}

@available(*, unavailable)
extension MemoryBIO: Sendable {}

@available(*, unavailable)
extension PrivateKey: Sendable {}

@available(*, unavailable)
extension DistinguishedName: Sendable {}

@available(*, unavailable)
extension CertificateExtension: Sendable {}

@available(*, unavailable)
extension Certificate: Sendable {}

@available(*, unavailable)
extension CertificateRevocationList: Sendable {}
