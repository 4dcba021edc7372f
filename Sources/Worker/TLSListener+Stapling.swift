import Logging
import OpenSSLTLS
import ProcessSupport

#if canImport(Glibc)
import Glibc
#endif

/// The OCSP staple: the fetcher's verified response for the certificate served now, checked again here, stapled
/// while it says good and until its nextUpdate. A response in which the responder says the certificate is revoked
/// (or unknown) withdraws the staple at once: from the next handshake on nothing is stapled, and a must-staple
/// listener refuses handshakes.
extension TLSListener {
    /// The server certificate and its issuer, when this listener staples.
    struct StaplingIdentity {
        var certificate: X509Certificate
        var issuer: X509Certificate
        var path: String
    }

    /// A validated OCSP response and the file identity it came from.
    struct LoadedStaple: Equatable {
        var identity: FileIdentity
        /// The certificate it was checked against (a rotation makes it stale).
        var certificateSerial: String
        var response: OCSPVerifiedResponse
    }

    /// What the listener staples.
    enum StapleState: Equatable {
        /// Nothing (stapling off, or no valid response yet).
        case none
        case stapled(LoadedStaple)
        /// The responder's signed answer says the certificate is revoked or unknown.
        case withdrawn(identity: FileIdentity, certificateSerial: String, reason: String)

        var stapled: OCSPVerifiedResponse? {
            if case .stapled(let staple) = self { return staple.response }
            return nil
        }

        var certificateSerial: String? {
            switch self {
            case .none: nil
            case .stapled(let staple): staple.certificateSerial
            case .withdrawn(_, let serial, _): serial
            }
        }

        var fileIdentity: FileIdentity? {
            switch self {
            case .none: nil
            case .stapled(let staple): staple.identity
            case .withdrawn(let identity, _, _): identity
            }
        }
    }

    /// Loads the published response if it (or the certificate served) changed, checking it again (signature,
    /// CertID, status, window): the worker does not trust the file alone. A response that fails the checks keeps
    /// the previous state, as long as that is about the certificate served. Internal, not private, so that the
    /// revocation fuzz tests reach the worker's own path for a file in the cache directory.
    static func loadStaple(_ stapling: StaplingIdentity?, previous: StapleState, logger: Logger) -> StapleState {
        guard let stapling else { return .none }
        let serial = stapling.certificate.serialHex
        let sameCertificate = previous.certificateSerial == serial
        let kept = sameCertificate ? previous : .none
        guard let identity = FileIdentity(path: stapling.path) else {
            return kept
        }
        if sameCertificate, previous.fileIdentity == identity {
            return previous
        }
        guard let bytes = FileDescriptor.readFile(stapling.path, limit: 1 << 20) else {
            return kept
        }
        let verdict = OCSP.verify(
            bytes, certificate: stapling.certificate, issuer: stapling.issuer, now: Int64(time(nil)))
        switch verdict {
        case .success(let response) where response.certificateStatus == .good:
            return .stapled(LoadedStaple(identity: identity, certificateSerial: serial, response: response))
        case .success(let response):
            // Signed by the issuer or its responder, about our certificate, inside its window: the certificate must
            // not be vouched for any more, whatever the previous staple said.
            let reason = "the responder says \(response.certificateStatus.name)"
                + (response.certificateStatus.revocationDetail.map { " (\($0))" } ?? "")
            logger.error(
                "OCSP staple withdrawn: the responder no longer says good",
                metadata: ["ocsp.file": "\(stapling.path)", "ocsp.status": "\(reason)", "tls.certificate_serial": "\(serial)"])
            return .withdrawn(identity: identity, certificateSerial: serial, reason: reason)
        case .failure(let error):
            logger.warning(
                "OCSP response rejected, keeping the last good one",
                metadata: [
                    "ocsp.file": "\(stapling.path)", "error": "\(error)",
                    "ocsp.kept": "\(kept.stapled != nil)",
                ])
            return kept
        }
    }

    func logStapleState(context: TLSContext, staple: StapleState, stapling: StaplingIdentity?) {
        let requiresStaple = context.configuration.requiresStaple
        guard stapling != nil else {
            if requiresStaple {
                logger.error(
                    "the server certificate is must-staple but OCSP stapling is not set up: every handshake is refused")
            }
            return
        }
        switch staple {
        case .stapled(let loaded) where context.hasValidStaple():
            logger.info(
                "OCSP staple loaded",
                metadata: [
                    "ocsp.this_update": "\(Timestamp.iso8601(loaded.response.thisUpdate))",
                    "ocsp.next_update": "\(loaded.response.nextUpdate.map { Timestamp.iso8601($0) } ?? "-")",
                    "ocsp.must_staple": "\(requiresStaple)",
                    "tls.certificate_serial": "\(loaded.certificateSerial)",
                ])
        case .withdrawn(_, _, let reason) where requiresStaple:
            logger.critical(
                "must-staple certificate withdrawn by its OCSP responder: handshakes are refused",
                metadata: ["ocsp.status": "\(reason)"])
        case .withdrawn:
            break
        default:
            if requiresStaple {
                logger.error(
                    "must-staple certificate without a valid OCSP response: handshakes are refused until one arrives")
            } else {
                logger.info("no valid OCSP response to staple yet; handshakes go unstapled until one arrives")
            }
        }
    }
}

extension OCSPCertificateStatus {
    /// "revoked at …, reason …" for a revocation, nil otherwise.
    fileprivate var revocationDetail: String? {
        guard case .revoked(let at, let reason) = self else { return nil }
        let parts = [at.map { "revoked at " + Timestamp.iso8601($0) }, reason.map { "reason " + $0 }].compactMap { $0 }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
}
