import OpenSSLTLS

/// The checks a downloaded CRL passes before it is published (the worker checks again when it loads it):
/// exactly one CRL, PEM or DER; at most `maximumEntries` revoked entries, counted from its encoding before OpenSSL
/// parses it (`CRLEnvelope`); signed by one of the CA certificates (issuer name, key, keyUsage cRLSign); no
/// unsupported form (delta, indirect, critical extension we do not understand); thisUpdate not in the future
/// beyond the leeway; nextUpdate not before thisUpdate; a cRLNumber not lower than the one published (rollback).
/// Stateless. Public for the revocation fuzzer (`Fuzz/RevocationFuzzer`), which feeds it bytes.
public enum CRLAcceptance {
    /// A CRL that passed, with what the fetcher publishes (`der`) and records in its metadata.
    public struct Accepted {
        public var crl: CertificateRevocationList
        public var der: [UInt8]
        public var thisUpdate: Int64?
        public var nextUpdate: Int64?
        public var number: String?
        /// Which CRLs it succeeds (the rollback floors are kept per lineage).
        public var lineage: CRLLineage
    }

    public static let clockLeeway: Int64 = RevocationClock.skewLeeway

    /// `crl_cache_max_entries`'s default.
    public static let defaultMaximumEntries = 2_000_000

    /// - Parameters:
    ///   - publishedNumber, publishedThisUpdate: of the CRL published from the same source, if any: a lower
    ///     cRLNumber (or, when either CRL has none, an older thisUpdate) is a rollback.
    ///   - maximumEntries: `crl_cache_max_entries`.
    public static func check(
        _ body: [UInt8], authorities: [X509Certificate], publishedNumber: String?, publishedThisUpdate: Int64? = nil,
        maximumEntries: Int = defaultMaximumEntries, now: Int64
    ) -> Result<Accepted, FetchFailure> {
        let encodings: [[UInt8]]
        do {
            encodings = try CRLEnvelope.derEncodings(body)
        } catch {
            return .failure(.invalid("not a CRL (PEM or DER): \(error.message)"))
        }
        guard encodings.count == 1, let der = encodings.first else {
            return .failure(.invalid(
                encodings.isEmpty ? "not a CRL (PEM or DER): no X509 CRL block" : "expected one CRL, found \(encodings.count)"))
        }
        // Counted before OpenSSL allocates anything per entry.
        let entries: Int
        do {
            entries = try CRLEnvelope.revokedEntryCount(der: der)
        } catch {
            return .failure(.invalid("not a CRL (PEM or DER): \(error.message)"))
        }
        guard entries <= maximumEntries else {
            return .failure(.invalid(
                "the CRL lists \(entries) revoked entries, more than crl_cache_max_entries (\(maximumEntries))"))
        }
        let crl: CertificateRevocationList
        do {
            guard let parsed = try CertificateRevocationList.parse(der).first else {
                return .failure(.invalid("not a CRL (PEM or DER)"))
            }
            crl = parsed
        } catch {
            return .failure(.invalid("not a CRL (PEM or DER): \(error)"))
        }
        let verified: CertificateRevocationList
        switch CRLSet.validate(crl, cas: authorities) {
        case .success(let result):
            verified = result
        case .failure(let rejection):
            return .failure(.invalid(rejection.reason))
        }
        let thisUpdate = verified.thisUpdate
        let nextUpdate = verified.nextUpdate
        if let thisUpdate, thisUpdate > now + clockLeeway {
            return .failure(.invalid("thisUpdate \(Timestamp.iso8601(thisUpdate)) is in the future"))
        }
        if let thisUpdate, let nextUpdate, nextUpdate < thisUpdate {
            return .failure(.invalid("nextUpdate is before thisUpdate"))
        }
        let number = verified.crlNumber
        if let number, number.hasPrefix("-") {
            return .failure(.invalid("cRLNumber \(number) is negative"))
        }
        if let publishedNumber, let number {
            if CRLOrder.compareDecimal(number, publishedNumber) < 0 {
                return .failure(.invalid(
                    "rollback: cRLNumber \(number) is lower than the published \(publishedNumber)"))
            }
        } else if let publishedThisUpdate, let thisUpdate, thisUpdate < publishedThisUpdate {
            return .failure(.invalid(
                "rollback: thisUpdate \(Timestamp.iso8601(thisUpdate)) is older than the published CRL's "
                    + Timestamp.iso8601(publishedThisUpdate)))
        }
        guard let lineage = verified.lineage else {
            return .failure(.invalid("cannot tell the CRL's lineage (issuer, signer, scope)"))
        }
        let encoded = verified.derBytes
        guard !encoded.isEmpty else {
            return .failure(.invalid("cannot encode the CRL as DER"))
        }
        return .success(Accepted(
            crl: verified, der: encoded, thisUpdate: thisUpdate, nextUpdate: nextUpdate, number: number,
            lineage: lineage))
    }
}

/// Why a fetch did not publish anything.
public enum FetchFailure: Error, Sendable, CustomStringConvertible {
    /// The transfer failed (curl error, HTTP status, timeout, size limit).
    case download(String)
    /// The content arrived but may not be used.
    case invalid(String)

    public var description: String {
        switch self {
        case .download(let text), .invalid(let text): return text
        }
    }
}
