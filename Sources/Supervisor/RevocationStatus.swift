#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import Foundation
import OpenSSLTLS
import ProcessSupport
import RevocationCache

/// The revocation part of `gatehouse status`, read from the cache directory: what the fetcher keeps (its
/// metadata sidecars) and whether each stapling listener has a staple to give. Workers decide from the same files
/// with the same rule (a validated response before its nextUpdate), so this is what they do.
enum RevocationStatus {
    static func cacheItems(layout: CacheLayout) -> [StatusReport.CacheItem] {
        CacheItemMetadata.readAll(in: layout).map { metadata in
                var item = StatusReport.CacheItem(
                    kind: metadata.kind.rawValue, url: metadata.sourceURL, origin: metadata.origin.rawValue,
                    listener: metadata.listener, published: isPublished(metadata, layout: layout),
                    fetchedAt: metadata.fetchedAt, nextUpdate: metadata.nextUpdate,
                    nextAttempt: metadata.nextAttempt, crlNumber: metadata.crlNumber, lastError: metadata.lastError,
                    consecutiveFailures: metadata.consecutiveFailures)
                item.thisUpdate = metadata.thisUpdate
                item.issuer = metadata.issuer
                item.entries = metadata.entries
                item.certificate = metadata.certificate
                item.certStatus = metadata.certStatus
                item.producedAt = metadata.producedAt
                return item
            }
    }

    static func stapling(configuration: GatehouseConfiguration, layout: CacheLayout) -> [StatusReport.Stapling] {
        let now = WallClock.seconds
        var result: [StatusReport.Stapling] = []
        for listener in configuration.listeners {
            guard let tls = listener.tls, tls.enableOCSPStapling else { continue }
            let identity = try? OCSP.stapledIdentity(
                certificateChainPath: tls.certFile, issuerPath: tls.ocspIssuerPEM, caBundlePath: tls.caCertFile,
                configuredResponderURL: tls.ocspResponderURL)
            let mustStaple = identity?.certificate.isMustStaple ?? false
            let hasURL = identity?.responderURL != nil
            guard hasURL, identity?.issuer != nil else {
                result.append(.init(
                    listener: listener.name, state: "off",
                    detail: hasURL ? "no issuer certificate found" : "no OCSP URL (certificate or ocsp_responder_url)",
                    mustStaple: mustStaple, nextUpdate: nil))
                continue
            }
            let metadata = CacheItemMetadata.read(layout.ocspMetadataFile(listener: listener.name))
            let published = metadata.map { isPublished($0, layout: layout) } ?? false
            // As the workers decide (`OCSPVerifiedResponse.staplingExpiry`).
            let expiry = metadata.flatMap {
                $0.nextUpdate ?? $0.thisUpdate.map { $0 + Double(OCSP.maximumAgeWithoutNextUpdate) }
            }
            let nextUpdate = published ? expiry : nil
            if published, let metadata, let reason = withdrawal(metadata) {
                // The responder vouched for REVOKED or unknown: the workers withdraw the staple.
                var detail = reason
                if mustStaple {
                    detail += "; must-staple certificate: handshakes are refused"
                }
                result.append(.init(
                    listener: listener.name, state: "withdrawn", detail: detail, mustStaple: mustStaple,
                    nextUpdate: nextUpdate))
                continue
            }
            if published, let nextUpdate, nextUpdate > now {
                result.append(.init(
                    listener: listener.name, state: "stapled", detail: "until " + Timestamp.iso8601(Int64(nextUpdate)),
                    mustStaple: mustStaple, nextUpdate: nextUpdate))
                continue
            }
            var detail = published
                ? "the OCSP response expired at \(Timestamp.iso8601(Int64(nextUpdate ?? 0)))"
                : "no OCSP response yet"
            if let error = metadata?.lastError {
                detail += "; last fetch: \(error)"
            }
            if mustStaple {
                detail += "; must-staple certificate: handshakes are refused"
            }
            result.append(.init(
                listener: listener.name, state: "unstapled", detail: detail, mustStaple: mustStaple,
                nextUpdate: metadata?.nextUpdate))
        }
        return result
    }

    /// Why a published OCSP response withdraws the staple, when it does: the responder says the certificate is
    /// revoked (when, why) or unknown to it.
    static func withdrawal(_ metadata: CacheItemMetadata) -> String? {
        guard metadata.kind == .ocsp, let status = metadata.certStatus, status != "good" else { return nil }
        var text = "withdrawn: the OCSP responder says the server certificate is \(status)"
        var details: [String] = []
        if let at = metadata.revokedAt { details.append("revoked at " + Timestamp.iso8601(Int64(at))) }
        if let reason = metadata.revocationReason { details.append("reason " + reason) }
        if !details.isEmpty { text += " (" + details.joined(separator: ", ") + ")" }
        if let certificate = metadata.certificate { text += "; certificate " + certificate }
        return text
    }

    private static func isPublished(_ metadata: CacheItemMetadata, layout: CacheLayout) -> Bool {
        FileDescriptor.fileExists(layout.root + "/" + metadata.file) && metadata.sha256 != nil
    }
}
