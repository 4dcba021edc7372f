internal import COpenSSL

/// A CRL file (or one CRL inside a PEM file) that `CRLSet.load` did not accept, and why.
public struct CRLRejection: Sendable, Equatable, CustomStringConvertible {
    /// The file it came from.
    public var path: String
    /// Why, in words for a log line (e.g. "signature does not verify with the key of CA CN=Root").
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String {
        "\(path): \(reason)"
    }
}

/// What `CRLSet.load` made of a list of CRL files.
public struct CRLLoadResult: Sendable {
    /// The CRLs whose signature verified against one of the CAs, each carrying that CA as `verifiedIssuer`.
    public var usable: [CertificateRevocationList]
    /// Files or entries that were not accepted. The caller logs these and keeps its previous good CRLs.
    public var rejected: [CRLRejection]
}

/// Loads and validates CRL files once, off the event loops, for `TLSContextConfiguration.crls`. Stateless.
public enum CRLSet {
    /// Parses each file (PEM may hold several CRLs, DER one) and checks every CRL's signature against the CA
    /// certificate whose subject equals the CRL issuer (all candidates with that name are tried). Expired CRLs are
    /// accepted here: the handshake check refuses clients with "CRL has expired" while such a CRL is the best one.
    ///
    /// Blocking and CPU-heavy (a million-entry CRL takes about a second to parse): call off the event loops.
    public static func load(files: [String], cas: [X509Certificate]) -> CRLLoadResult {
        var usable: [CertificateRevocationList] = []
        var rejected: [CRLRejection] = []
        for path in files {
            let crls: [CertificateRevocationList]
            do {
                crls = try CertificateRevocationList.load(file: path)
            } catch {
                rejected.append(CRLRejection(path: path, reason: error.description))
                continue
            }
            for (index, crl) in crls.enumerated() {
                let label = crls.count > 1 ? "CRL #\(index + 1) (issuer \(crl.issuerDN)): " : ""
                switch validate(crl, cas: cas) {
                case .success(let verified):
                    usable.append(verified)
                case .failure(let reason):
                    rejected.append(CRLRejection(path: path, reason: label + reason.reason))
                }
            }
        }
        return CRLLoadResult(usable: usable, rejected: rejected)
    }

    /// Checks one parsed CRL against `cas` and returns the copy that records its verified signer.
    public static func validate(
        _ crl: CertificateRevocationList,
        cas: [X509Certificate]
    ) -> Result<CertificateRevocationList, CRLRejectionError> {
        switch verify(crl, cas: cas) {
        case .success(let verified):
            return .success(verified)
        case .failure(let reason):
            return .failure(CRLRejectionError(reason: reason.text))
        }
    }

    /// The signer check shared with `TLSContext` (which re-checks CRLs handed to it unverified).
    static func verify(
        _ crl: CertificateRevocationList,
        cas: [X509Certificate]
    ) -> Result<CertificateRevocationList, CRLRejectionReason> {
        let scope: CRLScope
        do throws(CRLRejectionReason) {
            scope = try CRLScope(crl.pointer)
        } catch {
            return .failure(error)
        }
        let candidates = cas.filter { crl.isIssuerNameMatching($0) }
        guard !candidates.isEmpty else {
            return .failure(CRLRejectionReason("no CA certificate matches issuer \(crl.issuerDN)"))
        }
        for candidate in candidates where crl.verifySignature(issuer: candidate) {
            let usage = X509_get_key_usage(candidate.pointer)
            guard usage & UInt32(KU_CRL_SIGN) != 0 else {
                return .failure(CRLRejectionReason(
                    "CA \(candidate.subjectDN) may not sign CRLs (keyUsage lacks cRLSign)"))
            }
            guard let verified = crl.verified(by: candidate, scope: scope) else {
                return .failure(CRLRejectionReason("out of memory"))
            }
            return .success(verified)
        }
        return .failure(CRLRejectionReason(
            "signature does not verify with the key of CA \(crl.issuerDN)"))
    }
}

/// Why `CRLSet.validate` refused a CRL.
public struct CRLRejectionError: Error, Sendable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String {
        reason
    }
}
