internal import COpenSSL
internal import COpenSSLShims

/// One X.509 certificate (an owned `X509 *`). Immutable after init; the accessors only read it.
///
/// `@unchecked Sendable`: the object is never mutated after parsing, and OpenSSL guards the lazily computed
/// extension cache of a shared `X509` with its own lock, so concurrent readers on several threads are safe.
public final class X509Certificate: @unchecked Sendable {
    /// The owned certificate. Module-internal so the context and CRL code can hand it to OpenSSL; never public.
    let pointer: OpaquePointer

    /// Takes ownership of one reference.
    init(taking pointer: OpaquePointer) {
        self.pointer = pointer
    }

    /// Takes a new reference on a certificate owned elsewhere (e.g. by an `X509_STORE_CTX`).
    convenience init?(retaining pointer: OpaquePointer?) {
        guard let pointer, X509_up_ref(pointer) == 1 else {
            return nil
        }
        self.init(taking: pointer)
    }

    deinit {
        X509_free(pointer)
    }

    /// Parses one DER-encoded certificate.
    public convenience init(derBytes: [UInt8]) throws(OpenSSLError) {
        let pointer = try OpenSSLInput.withMemoryBIO(derBytes) { bio throws(OpenSSLError) in
            try openSSLObject("d2i_X509_bio", "cannot parse DER certificate") { d2i_X509_bio(bio, nil) }
        }
        self.init(taking: pointer)
    }

    /// Every certificate in `bytes`: all PEM blocks in order if the input is PEM, else exactly one DER certificate.
    /// Throws if the input holds no certificate.
    public static func parse(_ bytes: [UInt8]) throws(OpenSSLError) -> [X509Certificate] {
        guard OpenSSLInput.isPEM(bytes) else {
            return [try X509Certificate(derBytes: bytes)]
        }
        let certificates = try OpenSSLInput.withMemoryBIO(bytes) { bio throws(OpenSSLError) in
            var certificates: [X509Certificate] = []
            while true {
                OpenSSLErrorQueue.clear()
                guard let pointer = PEM_read_bio_X509(bio, nil, nil, nil) else {
                    break
                }
                certificates.append(X509Certificate(taking: pointer))
            }
            try PEMReading.finish(found: certificates.count, what: "certificate")
            return certificates
        }
        return certificates
    }

    /// Reads and parses a PEM (one or more certificates) or DER (one certificate) file. Blocking: call off the event
    /// loops.
    public static func load(file path: String) throws(OpenSSLError) -> [X509Certificate] {
        let bytes = try OpenSSLInput.readFile(path, what: "certificate file")
        do {
            return try parse(bytes)
        } catch {
            throw OpenSSLError(operation: error.operation, message: "cannot load certificates from \(path)",
                               openSSLErrors: error.openSSLErrors.isEmpty ? [error.message] : error.openSSLErrors)
        }
    }

    /// The subject DN, RFC 2253 style (e.g. "CN=client1,O=Example,C=SE").
    public var subjectDN: String {
        ASN1Conversions.distinguishedName(X509_get_subject_name(pointer))
    }

    /// The issuer DN, RFC 2253 style.
    public var issuerDN: String {
        ASN1Conversions.distinguishedName(X509_get_issuer_name(pointer))
    }

    /// The first commonName of the subject, if any.
    public var commonName: String? {
        ASN1Conversions.commonName(X509_get_subject_name(pointer))
    }

    /// The serial number in upper-case hex (as `openssl ca` writes it in index.txt).
    public var serialHex: String {
        ASN1Conversions.integerHex(X509_get0_serialNumber(pointer))
    }

    /// notBefore, in seconds since 1970 (UTC).
    public var notBefore: Int64? {
        ASN1Conversions.unixTime(X509_get0_notBefore(pointer))
    }

    /// notAfter, in seconds since 1970 (UTC).
    public var notAfter: Int64? {
        ASN1Conversions.unixTime(X509_get0_notAfter(pointer))
    }

    /// Whether basicConstraints says CA:TRUE.
    public var isCertificateAuthority: Bool {
        X509_get_extension_flags(pointer) & UInt32(EXFLAG_CA) != 0
    }

    /// Whether the subject and issuer names are equal (a root or other self-issued certificate).
    public var isSelfIssued: Bool {
        X509_NAME_cmp(X509_get_subject_name(pointer), X509_get_issuer_name(pointer)) == 0
    }

    /// The full-name URIs of the CRL distribution points extension, in order (for a fetcher).
    public var crlDistributionPointURLs: [String] {
        CertificateExtensions.distributionPointURIs(of: pointer)
    }

    /// The OCSP responder URIs of the authority information access extension.
    public var ocspResponderURLs: [String] {
        guard let raw = X509_get_ext_d2i(pointer, NID_info_access, nil, nil) else {
            ERR_clear_error()
            return []
        }
        let accesses = OpaquePointer(raw)
        defer { COpenSSLShims_sk_ACCESS_DESCRIPTION_pop_free(accesses) }
        var urls: [String] = []
        for index in 0..<COpenSSLShims_sk_ACCESS_DESCRIPTION_num(accesses) {
            guard let access = COpenSSLShims_sk_ACCESS_DESCRIPTION_value(accesses, index),
                  OBJ_obj2nid(access.pointee.method) == NID_ad_OCSP,
                  let location = access.pointee.location, location.pointee.type == GEN_URI,
                  let uri = ASN1Conversions.rawString(location.pointee.d.uniformResourceIdentifier)
            else {
                continue
            }
            urls.append(uri)
        }
        return urls
    }

    /// Whether `issuer`'s subject is this certificate's issuer name and its key verifies this certificate.
    public func isIssued(by issuer: X509Certificate) -> Bool {
        guard X509_NAME_cmp(X509_get_issuer_name(pointer), X509_get_subject_name(issuer.pointer)) == 0,
              let key = X509_get0_pubkey(issuer.pointer)
        else {
            ERR_clear_error()
            return false
        }
        let verified = X509_verify(pointer, key)
        ERR_clear_error()
        return verified == 1
    }

    /// Whether the certificate carries the TLS feature extension with status_request (RFC 7633 "must-staple").
    public var isMustStaple: Bool {
        guard let raw = X509_get_ext_d2i(pointer, NID_tlsfeature, nil, nil) else {
            ERR_clear_error()
            return false
        }
        let features = OpaquePointer(raw)
        defer { OPENSSL_sk_pop_free(features) { ASN1_INTEGER_free(OpaquePointer($0).map { UnsafeMutablePointer<ASN1_INTEGER>($0) }) } }
        for index in 0..<max(0, OPENSSL_sk_num(features)) {
            guard let value = OPENSSL_sk_value(features, index) else { continue }
            let integer = value.assumingMemoryBound(to: ASN1_INTEGER.self)
            if ASN1_INTEGER_get(integer) == 5 { return true }
        }
        return false
    }

    /// The DER encoding.
    public var derBytes: [UInt8] {
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_X509(pointer, &output)
        guard length > 0, let output else {
            ERR_clear_error()
            return []
        }
        defer { COpenSSLShims_OPENSSL_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }

    /// The identity fields a broker maps to usernames and client ids.
    public var peerCertificate: PeerCertificate {
        PeerCertificate(subjectDN: subjectDN, issuerDN: issuerDN, commonName: commonName, serialHex: serialHex)
    }

    /// The subjectPublicKey BIT STRING content, which identifies the key (used to tie a CRL to its verified signer).
    var publicKeyBits: [UInt8] {
        guard let bits = X509_get0_pubkey_bitstr(pointer) else {
            return []
        }
        return ASN1Conversions.rawBytes(bits)
    }
}

/// Helpers shared by the certificate and CRL code for X.509 extensions. Stateless.
enum CertificateExtensions {
    /// The full-name URIs of `certificate`'s CRL distribution points that have no cRLIssuer (an indirect CRL is not
    /// supported, so such points can never be served by a CRL in our store).
    static func distributionPointURIs(of certificate: OpaquePointer, directOnly: Bool = false) -> [String] {
        guard let raw = X509_get_ext_d2i(certificate, NID_crl_distribution_points, nil, nil) else {
            ERR_clear_error()
            return []
        }
        let points = OpaquePointer(raw)
        defer { COpenSSLShims_sk_DIST_POINT_pop_free(points) }
        var uris: [String] = []
        for index in 0..<COpenSSLShims_sk_DIST_POINT_num(points) {
            guard let point = COpenSSLShims_sk_DIST_POINT_value(points, index) else {
                continue
            }
            if directOnly, point.pointee.CRLissuer != nil {
                continue
            }
            guard let name = point.pointee.distpoint, name.pointee.type == 0 else {
                continue
            }
            uris += ASN1Conversions.uniformResourceIdentifiers(in: name.pointee.name.fullname)
        }
        return uris
    }
}

/// Reading several PEM objects from one BIO ends with a PEM "no start line" error; anything else is a real failure.
enum PEMReading {
    static func finish(found count: Int, what: String) throws(OpenSSLError) {
        let last = ERR_peek_last_error()
        let isEndOfInput = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE
        if count > 0 && (last == 0 || isEndOfInput) {
            ERR_clear_error()
            return
        }
        if count == 0 && (last == 0 || isEndOfInput) {
            ERR_clear_error()
            throw OpenSSLError(operation: "PEM_read_bio", message: "no PEM \(what) found")
        }
        throw .drained("PEM_read_bio", "malformed PEM \(what)")
    }
}
