internal import COpenSSL

/// The CRLs that succeed one another: those of one issuer (its name and the key that verified the signature) and
/// one scope (the issuingDistributionPoint). Within a lineage the cRLNumber only grows (RFC 5280 5.2.3), so of
/// several CRLs of one lineage, whatever their sources (`crlfile`, URLs, distribution points), exactly one is in
/// force: the newest (`CRLOrder`). Two CA certificates with one name and different keys make two lineages.
/// A plain value; Sendable.
public struct CRLLineage: Hashable, Sendable, CustomStringConvertible {
    /// The CRL issuer name, RFC 2253 style.
    public var issuerDN: String
    /// Lower-case hex SHA-256 of the verified signer's subjectPublicKey.
    public var signerKeyDigest: String
    /// "all" for a CRL that covers every certificate of its issuer, else its issuingDistributionPoint
    /// (distribution point URIs and the only-user / only-CA flags).
    public var scope: String

    public init(issuerDN: String, signerKeyDigest: String, scope: String) {
        self.issuerDN = issuerDN
        self.signerKeyDigest = signerKeyDigest
        self.scope = scope
    }

    /// A stable name for the lineage in files and JSON keys: hex SHA-256 of its three parts.
    public var key: String {
        SHA256.hex(Array("\(issuerDN)\n\(signerKeyDigest)\n\(scope)".utf8))
    }

    public var description: String {
        scope == "all" ? issuerDN : "\(issuerDN) (\(scope))"
    }
}

/// Which of two CRLs of one lineage is newer: by cRLNumber when both carry one, else by thisUpdate. Stateless.
public enum CRLOrder {
    /// -1, 0 or 1 as (`number`, `thisUpdate`) is older than, as new as, or newer than (`otherNumber`,
    /// `otherThisUpdate`). Numbers are non-negative decimal strings of any length.
    public static func compare(
        number: String?, thisUpdate: Int64?, to otherNumber: String?, otherThisUpdate: Int64?
    ) -> Int {
        if let number, let otherNumber {
            let byNumber = compareDecimal(number, otherNumber)
            if byNumber != 0 { return byNumber }
        }
        switch (thisUpdate, otherThisUpdate) {
        case let (left?, right?): return left < right ? -1 : (left > right ? 1 : 0)
        case (.some, nil): return 1
        case (nil, .some): return -1
        case (nil, nil): return 0
        }
    }

    /// Compares two non-negative decimal integers of any length: -1, 0, 1.
    public static func compareDecimal(_ lhs: String, _ rhs: String) -> Int {
        let left = lhs.drop { $0 == "0" }
        let right = rhs.drop { $0 == "0" }
        if left.count != right.count { return left.count < right.count ? -1 : 1 }
        if left == right { return 0 }
        return left < right ? -1 : 1
    }
}

/// Which CRLs are in force. Stateless.
public enum CRLSelection {
    /// Of `crls` (verified), the newest of each lineage, in the order their lineages first appear, and the others.
    /// A CRL without a lineage (unverified, unsupported scope) stays in force on its own.
    public static func newestPerLineage(
        _ crls: [CertificateRevocationList]
    ) -> (inForce: [CertificateRevocationList], superseded: [CertificateRevocationList]) {
        var order: [CRLLineage] = []
        var newest: [CRLLineage: CertificateRevocationList] = [:]
        var loose: [CertificateRevocationList] = []
        var superseded: [CertificateRevocationList] = []
        for crl in crls {
            guard let lineage = crl.lineage else {
                loose.append(crl)
                continue
            }
            guard let held = newest[lineage] else {
                order.append(lineage)
                newest[lineage] = crl
                continue
            }
            if crl.isNewer(than: held) {
                superseded.append(held)
                newest[lineage] = crl
            } else {
                superseded.append(crl)
            }
        }
        return (order.compactMap { newest[$0] } + loose, superseded)
    }
}

/// How far in the future a thisUpdate (of a CRL or an OCSP response) may lie and still be used: the issuer's clock
/// may run ahead of ours. One value for the fetcher's checks, the worker's loading and the per-handshake check, so
/// that nothing the fetcher publishes is refused by a worker for the same reason.
public enum RevocationClock {
    public static let skewLeeway: Int64 = 300
}

extension CertificateRevocationList {
    /// Whether this CRL is newer than `other` (`CRLOrder`); meaningful within one lineage.
    public func isNewer(than other: CertificateRevocationList) -> Bool {
        CRLOrder.compare(
            number: crlNumber, thisUpdate: thisUpdate, to: other.crlNumber, otherThisUpdate: other.thisUpdate) > 0
    }
}

extension CRLScope {
    /// The scope as `CRLLineage.scope` spells it.
    var text: String {
        guard onlyUserCertificates || onlyCACertificates || !distributionPointURIs.isEmpty else {
            return "all"
        }
        var parts = distributionPointURIs.sorted().map { "dp=\($0)" }
        if onlyUserCertificates { parts.append("only-user") }
        if onlyCACertificates { parts.append("only-ca") }
        return parts.joined(separator: ",")
    }
}

/// SHA-256 through OpenSSL, for identifiers (not for security decisions on their own).
enum SHA256 {
    static func hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBufferPointer { input in
            EVP_Digest(input.baseAddress, input.count, &digest, &length, EVP_sha256(), nil)
        }
        guard ok == 1 else {
            ERR_clear_error()
            return ""
        }
        let hexDigits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(Int(length) * 2)
        for byte in digest.prefix(Int(length)) {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
