internal import COpenSSL
internal import COpenSSLShims

/// One X.509 CRL (an owned `X509_CRL *`). Immutable after init.
///
/// A CRL comes out of `parse` unverified. `CRLSet.load` (or `TLSContext`, for CRLs it is handed unverified) checks
/// the signature once against a CA certificate and returns a copy that records which key signed it
/// (`verifiedIssuer`); the per-handshake CRL check of a `TLSContext` trusts that record instead of re-hashing the
/// whole CRL (see `CRLCheck`).
///
/// `@unchecked Sendable`: never mutated after init. The one lazy mutation inside OpenSSL (sorting the revoked list
/// on the first lookup) happens under the CRL's own lock, and `parse` triggers it up front anyway.
public final class CertificateRevocationList: @unchecked Sendable {
    /// The owned CRL (one reference). Module-internal; never public.
    let pointer: OpaquePointer
    /// The CA certificate whose key verified this CRL's signature, or nil if not verified yet.
    public let verifiedIssuer: X509Certificate?
    /// Established with the signature (`CRLSet.verify`): the scope the CRL covers and its lineage, so that
    /// nothing later walks the CRL's extensions and entries again.
    let scope: CRLScope?
    /// The lineage of a verified CRL (issuer, signing key, scope); nil before `CRLSet.validate`.
    public let lineage: CRLLineage?

    private init(
        taking pointer: OpaquePointer, verifiedIssuer: X509Certificate?, scope: CRLScope? = nil,
        lineage: CRLLineage? = nil
    ) {
        self.pointer = pointer
        self.verifiedIssuer = verifiedIssuer
        self.scope = scope
        self.lineage = lineage
    }

    deinit {
        X509_CRL_free(pointer)
    }

    /// Every CRL in `bytes`: all PEM blocks if the input is PEM (a file may concatenate several), else exactly one
    /// DER CRL. Each CRL's revoked list is sorted here (one lookup), so that no handshake pays for it later.
    /// Blocking and CPU-heavy for big CRLs: call off the event loops.
    public static func parse(_ bytes: [UInt8]) throws(OpenSSLError) -> [CertificateRevocationList] {
        let crls = try OpenSSLInput.withMemoryBIO(bytes) { bio throws(OpenSSLError) in
            if !OpenSSLInput.isPEM(bytes) {
                let pointer = try openSSLObject("d2i_X509_CRL_bio", "cannot parse DER CRL") {
                    d2i_X509_CRL_bio(bio, nil)
                }
                return [CertificateRevocationList(taking: pointer, verifiedIssuer: nil)]
            }
            var crls: [CertificateRevocationList] = []
            while true {
                OpenSSLErrorQueue.clear()
                // A passphrase callback that refuses: without one, OpenSSL answers a block marked
                // `Proc-Type: 4,ENCRYPTED` by asking the controlling terminal (or stdin) for a passphrase, and
                // this thread blocks until someone types one. CRLs are never encrypted.
                guard let pointer = PEM_read_bio_X509_CRL(bio, nil, { _, _, _, _ in -1 }, nil) else {
                    break
                }
                crls.append(CertificateRevocationList(taking: pointer, verifiedIssuer: nil))
            }
            try PEMReading.finish(found: crls.count, what: "CRL")
            return crls
        }
        for crl in crls {
            crl.sortRevokedList()
        }
        return crls
    }

    /// Reads and parses a PEM or DER CRL file. Blocking: call off the event loops.
    public static func load(file path: String) throws(OpenSSLError) -> [CertificateRevocationList] {
        let bytes = try OpenSSLInput.readFile(path, what: "CRL file")
        do {
            return try parse(bytes)
        } catch {
            throw OpenSSLError(operation: error.operation, message: "cannot load CRL \(path)",
                               openSSLErrors: error.openSSLErrors.isEmpty ? [error.message] : error.openSSLErrors)
        }
    }

    /// The issuer DN, RFC 2253 style.
    public var issuerDN: String {
        ASN1Conversions.distinguishedName(X509_CRL_get_issuer(pointer))
    }

    /// thisUpdate (OpenSSL calls it lastUpdate), in seconds since 1970 (UTC).
    public var thisUpdate: Int64? {
        ASN1Conversions.unixTime(X509_CRL_get0_lastUpdate(pointer))
    }

    /// nextUpdate in seconds since 1970 (UTC), or nil if the CRL has none.
    public var nextUpdate: Int64? {
        ASN1Conversions.unixTime(X509_CRL_get0_nextUpdate(pointer))
    }

    /// The cRLNumber extension in decimal, if present.
    public var crlNumber: String? {
        guard let raw = X509_CRL_get_ext_d2i(pointer, NID_crl_number, nil, nil) else {
            ERR_clear_error()
            return nil
        }
        let number = raw.assumingMemoryBound(to: ASN1_INTEGER.self)
        defer { ASN1_INTEGER_free(number) }
        return ASN1Conversions.integerDecimal(number)
    }

    /// The CRL in DER, as the fetcher publishes it.
    public var derBytes: [UInt8] {
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_X509_CRL(pointer, &output)
        guard length > 0, let output else {
            OpenSSLErrorQueue.clear()
            return []
        }
        defer { COpenSSLShims_OPENSSL_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }

    /// The number of revoked entries.
    public var revokedCount: Int {
        guard let revoked = X509_CRL_get_REVOKED(pointer) else {
            return 0
        }
        return Int(max(0, COpenSSLShims_sk_X509_REVOKED_num(revoked)))
    }

    /// Whether this is a delta CRL (has the deltaCRLIndicator extension).
    public var isDeltaCRL: Bool {
        X509_CRL_get_ext_by_NID(pointer, NID_delta_crl, -1) >= 0
    }

    /// Whether `issuer`'s public key verifies this CRL's signature. Hashes the whole CRL: call off the event loops.
    public func verifySignature(issuer: X509Certificate) -> Bool {
        OpenSSLErrorQueue.clear()
        guard let key = X509_get0_pubkey(issuer.pointer) else {
            ERR_clear_error()
            return false
        }
        let result = X509_CRL_verify(pointer, key)
        ERR_clear_error()
        return result == 1
    }

    /// Whether `issuer` could have issued this CRL: its subject equals the CRL issuer name.
    public func isIssuerNameMatching(_ issuer: X509Certificate) -> Bool {
        X509_NAME_cmp(X509_get_subject_name(issuer.pointer), X509_CRL_get_issuer(pointer)) == 0
    }

    /// Whether the CRL lists the serial number `serialHex` (hex, as `PeerCertificate.serialHex`) as revoked. The
    /// caller has matched the CRL's issuer to the certificate's.
    public func isRevoked(serialHex: String) -> Bool {
        var number: OpaquePointer?
        guard !serialHex.isEmpty, BN_hex2bn(&number, serialHex) > 0, let number else {
            ERR_clear_error()
            return false
        }
        defer { BN_free(number) }
        guard let serial = BN_to_ASN1_INTEGER(number, nil) else {
            ERR_clear_error()
            return false
        }
        defer { ASN1_INTEGER_free(serial) }
        var entry: OpaquePointer?
        let result = X509_CRL_get0_by_serial(pointer, &entry, serial)
        ERR_clear_error()
        // 1: revoked, 2: listed with reason removeFromCRL (i.e. not revoked), 0: not listed.
        return result == 1
    }

    /// Whether the CRL lists `certificate`'s serial number (and the CRL's issuer is `certificate`'s issuer).
    public func isRevoked(_ certificate: X509Certificate) -> Bool {
        var entry: OpaquePointer?
        let result = X509_CRL_get0_by_cert(pointer, &entry, certificate.pointer)
        ERR_clear_error()
        // 1: revoked, 2: listed with reason removeFromCRL (i.e. not revoked), 0: not listed.
        return result == 1
    }

    /// A copy sharing the same `X509_CRL` that records `issuer` as its verified signer and `scope`.
    func verified(by issuer: X509Certificate, scope: CRLScope) -> CertificateRevocationList? {
        guard X509_CRL_up_ref(pointer) == 1 else {
            ERR_clear_error()
            return nil
        }
        let lineage = CRLLineage(
            issuerDN: issuerDN, signerKeyDigest: SHA256.hex(issuer.publicKeyBits), scope: scope.text)
        return CertificateRevocationList(taking: pointer, verifiedIssuer: issuer, scope: scope, lineage: lineage)
    }

    /// Looks up a serial once so OpenSSL sorts the revoked list now (it does so lazily on the first lookup, which
    /// would otherwise land on some handshake: ~150 ms at a million entries).
    private func sortRevokedList() {
        guard let serial = ASN1_INTEGER_new() else {
            ERR_clear_error()
            return
        }
        defer { ASN1_INTEGER_free(serial) }
        var entry: OpaquePointer?
        _ = X509_CRL_get0_by_serial(pointer, &entry, serial)
        ERR_clear_error()
    }
}

/// The extension-level facts of a CRL that the per-handshake check needs, read once when a context is built.
struct CRLScope {
    /// IDP onlyContainsUserCerts.
    var onlyUserCertificates = false
    /// IDP onlyContainsCACerts.
    var onlyCACertificates = false
    /// IDP distributionPoint full-name URIs (empty: the CRL covers every certificate of its issuer).
    var distributionPointURIs: [String] = []

    /// Reads the issuingDistributionPoint extension. Throws a reason string for the forms we do not support
    /// (indirect CRLs, reason-partitioned CRLs, attribute-certificate CRLs, relative distribution point names),
    /// since accepting them could silently leave certificates unchecked.
    init(_ crl: OpaquePointer) throws(CRLRejectionReason) {
        if X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0 {
            throw CRLRejectionReason("delta CRLs are not supported")
        }
        try Self.rejectUnknownCriticalExtensions(crl)
        var critical: Int32 = 0
        guard let raw = X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &critical, nil) else {
            ERR_clear_error()
            if critical == -2 {
                throw CRLRejectionReason("issuingDistributionPoint extension occurs more than once")
            }
            if X509_CRL_get_ext_by_NID(crl, NID_issuing_distribution_point, -1) >= 0 {
                throw CRLRejectionReason("malformed issuingDistributionPoint extension")
            }
            return
        }
        let point = raw.assumingMemoryBound(to: ISSUING_DIST_POINT.self)
        defer { ISSUING_DIST_POINT_free(point) }
        if point.pointee.indirectCRL != 0 {
            throw CRLRejectionReason("indirect CRLs are not supported")
        }
        if point.pointee.onlysomereasons != nil {
            throw CRLRejectionReason("CRLs partitioned by reason (onlySomeReasons) are not supported")
        }
        if point.pointee.onlyattr != 0 {
            throw CRLRejectionReason("attribute-certificate CRLs are not supported")
        }
        onlyUserCertificates = point.pointee.onlyuser != 0
        onlyCACertificates = point.pointee.onlyCA != 0
        if let name = point.pointee.distpoint {
            guard name.pointee.type == 0 else {
                throw CRLRejectionReason("relative distribution point names are not supported")
            }
            distributionPointURIs = ASN1Conversions.uniformResourceIdentifiers(in: name.pointee.name.fullname)
            if distributionPointURIs.isEmpty {
                throw CRLRejectionReason("issuingDistributionPoint names no URI")
            }
        }
    }
}

extension CRLScope {
    /// The CRL extensions that may be critical: exactly those OpenSSL's verifier handles (x_crl.c). A CRL with any
    /// other critical extension is flagged by OpenSSL (EXFLAG_CRITICAL) and then, alone, refuses every client of
    /// its CA ("unhandled critical CRL extension"), or, next to another CRL of the same issuer, scores below it so
    /// that its revocations are ignored. RFC 5280 5.2 says as much: an unrecognized critical extension makes a CRL
    /// unusable. cRLNumber, issuerAltName, freshestCRL and authorityInfoAccess are non-critical by RFC 5280; a
    /// CRL marking them critical is refused here rather than trusted wrongly. (Delta CRLs are refused apart.)
    private static let understoodExtensions: Set<Int32> = [
        NID_authority_key_identifier, NID_issuing_distribution_point, NID_delta_crl,
    ]

    static func rejectUnknownCriticalExtensions(_ crl: OpaquePointer) throws(CRLRejectionReason) {
        let count = X509_CRL_get_ext_count(crl)
        guard count > 0 else { return }
        for index in 0..<count {
            guard let extensionPointer = X509_CRL_get_ext(crl, index),
                  X509_EXTENSION_get_critical(extensionPointer) != 0
            else { continue }
            let object = X509_EXTENSION_get_object(extensionPointer)
            let nid = OBJ_obj2nid(object)
            if understoodExtensions.contains(nid) { continue }
            throw CRLRejectionReason(
                "critical extension \(objectName(object)) is not handled by the verifier (it would refuse every client)")
        }
        try rejectUnknownCriticalEntryExtensions(crl)
    }

    /// The entry extensions that may be critical: exactly what OpenSSL's verifier handles (certificateIssuer).
    /// OpenSSL flags a CRL any other critical entry extension of which (reasonCode, invalidityDate,
    /// holdInstructionCode: non-critical by RFC 5280 5.3) and then refuses every client of the CA, so such a CRL
    /// must never replace a good one.
    private static let understoodEntryExtensions: Set<Int32> = [NID_certificate_issuer]

    /// "issuerAltName (2.5.29.18)" (the short name), or the dotted form alone for an OID OpenSSL has no name for.
    private static func objectName(_ object: OpaquePointer?) -> String {
        let dotted = objectIdentifier(object)
        let nid = OBJ_obj2nid(object)
        guard nid != NID_undef, let name = OBJ_nid2sn(nid) else { return dotted }
        return "\(String(cString: name)) (\(dotted))"
    }

    /// An ASN.1 object identifier in dotted form, for log lines.
    private static func objectIdentifier(_ object: OpaquePointer?) -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        let length = OBJ_obj2txt(&buffer, Int32(buffer.count), object, 1)
        guard length > 0 else { return "?" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func rejectUnknownCriticalEntryExtensions(_ crl: OpaquePointer) throws(CRLRejectionReason) {
        guard let revoked = X509_CRL_get_REVOKED(crl) else { return }
        let count = COpenSSLShims_sk_X509_REVOKED_num(revoked)
        guard count > 0 else { return }
        for index in 0..<count {
            guard let entry = OPENSSL_sk_value(revoked, index).map({ OpaquePointer($0) }) else {
                continue
            }
            let extensions = X509_REVOKED_get_ext_count(entry)
            guard extensions > 0 else { continue }
            for position in 0..<extensions {
                guard let extensionPointer = X509_REVOKED_get_ext(entry, position),
                      X509_EXTENSION_get_critical(extensionPointer) != 0
                else { continue }
                let object = X509_EXTENSION_get_object(extensionPointer)
                if understoodEntryExtensions.contains(OBJ_obj2nid(object)) { continue }
                throw CRLRejectionReason(
                    "critical entry extension \(objectName(object)) is not handled by the verifier (it would refuse every client)")
            }
        }
    }
}

/// A reason a CRL is not used, in words for a log line.
struct CRLRejectionReason: Error {
    var text: String

    init(_ text: String) {
        self.text = text
    }
}
