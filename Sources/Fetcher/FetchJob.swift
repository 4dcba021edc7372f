#if canImport(Glibc)
import Glibc
#endif
import CurlClient
import Foundation
import OpenSSLTLS
import ProcessSupport
import RevocationCache

/// The fetcher-wide settings a job needs.
struct FetchSettings: Sendable {
    /// `crl_cache_http_timeout`.
    var crlTimeout: Duration
    /// `crl_cache_max_size`.
    var maximumSize: Int
    /// `crl_cache_https_cacertfile`.
    var httpsCABundle: String?
    /// `crl_cache_max_entries`.
    var maximumEntries: Int = CRLAcceptance.defaultMaximumEntries
    /// `node.fetch_redirects`.
    var redirects: RedirectPolicy = .sameHost

    /// OCSP responses are small; anything bigger is not one.
    static let maximumOCSPResponseSize = 256 << 10
}

/// What one fetch did.
struct FetchResult: Sendable {
    enum Outcome: Sendable {
        case published(PublishedDetails)
        /// 304, or a 200 with the bytes already published.
        case notModified(httpStatus: Int)
        case failed(FetchFailure)

        var isPublished: Bool {
            if case .published = self { return true }
            return false
        }
    }

    struct PublishedDetails: Sendable {
        var bytes: Int
        var entries: Int?
        /// OCSP: what the published response says.
        var certificateStatus: OCSPCertificateStatus?
        var downloadMilliseconds: Int64
        var validateMilliseconds: Int64
        var publishMilliseconds: Int64
        var path: String
    }

    var source: FetchSource
    /// The item's metadata after the attempt (already written to disk when something was published).
    var metadata: CacheItemMetadata
    var outcome: Outcome
    /// A rollback floor rose but could not be saved (it holds in memory).
    var floorSaveError: String?
}

/// One download-validate-publish of one item, run on its own thread: the fetcher runs at most one job per item
/// at a time (single flight). Blocking. Publishes with write-temp, fsync, rename: the data file first, then its
/// metadata, so a crash in between leaves a newer file whose checksum the old metadata does not match (the next
/// fetcher notices and re-reads it). A CRL raises its lineage's rollback floor (`floors`) before it is published.
struct FetchJob: Sendable {
    var source: FetchSource
    var metadata: CacheItemMetadata
    var layout: CacheLayout
    var settings: FetchSettings
    var authorities: [X509Certificate]
    var stapling: StaplingTarget?
    var floors: CRLFloors?

    func run() -> FetchResult {
        var metadata = metadata
        let now = WallClock.seconds
        metadata.lastAttempt = now
        let outcome: FetchResult.Outcome
        var floorSaveError: String?
        switch source.kind {
        case .crl:
            outcome = fetchCRL(&metadata, now: now, floorSaveError: &floorSaveError)
        case .ocsp:
            outcome = fetchOCSP(&metadata, now: now)
        }
        switch outcome {
        case .published, .notModified:
            metadata.lastError = nil
            metadata.consecutiveFailures = 0
            metadata.fetchedAt = now
        case .failed(let failure):
            metadata.lastError = failure.description
            metadata.consecutiveFailures += 1
        }
        return FetchResult(source: source, metadata: metadata, outcome: outcome, floorSaveError: floorSaveError)
    }

    // MARK: CRL

    private func fetchCRL(
        _ metadata: inout CacheItemMetadata, now: Double, floorSaveError: inout String?
    ) -> FetchResult.Outcome {
        let path = source.dataPath(in: layout)
        let published = publishedChecksumMatches(path: path, metadata: metadata)
        var request = HTTPRequest(
            url: source.url, timeout: settings.crlTimeout, maximumBodySize: settings.maximumSize,
            redirectPolicy: settings.redirects, caBundlePath: settings.httpsCABundle)
        if published {
            request.ifNoneMatch = metadata.etag
            request.ifModifiedSince = metadata.lastModified
        }
        let started = MonotonicInstant.now()
        let response: HTTPResponse
        do {
            response = try Self.perform(request)
        } catch {
            return .failed(.download(describe(error)))
        }
        if response.isNotModified {
            guard published else {
                return .failed(.download("HTTP 304 to an unconditional request"))
            }
            return .notModified(httpStatus: 304)
        }
        let downloaded = MonotonicInstant.now()
        if published, let known = metadata.sha256, Digest.sha256Hex(response.body) == known {
            metadata.etag = response.etag
            metadata.lastModified = response.lastModified
            return .notModified(httpStatus: response.status)
        }
        let accepted: CRLAcceptance.Accepted
        switch CRLAcceptance.check(
            response.body, authorities: authorities, publishedNumber: published ? metadata.crlNumber : nil,
            publishedThisUpdate: published ? metadata.thisUpdate.map { Int64($0) } : nil,
            maximumEntries: settings.maximumEntries, now: Int64(now))
        {
        case .success(let result): accepted = result
        case .failure(let failure): return .failed(failure)
        }
        if let floors {
            switch floors.admit(
                accepted.lineage, number: accepted.number, thisUpdate: accepted.thisUpdate, sourceURL: source.url,
                now: now)
            {
            case .accepted(let saveError):
                floorSaveError = saveError
            case .rollback(let floor):
                return .failed(.invalid("rollback: " + Self.describe(accepted) + " is older than "
                    + Self.describe(floor) + ", the newest accepted for \(accepted.lineage)"))
            }
        }
        if published, let known = metadata.sha256, Digest.sha256Hex(accepted.der) == known {
            // The same CRL in another encoding (a PEM source without conditional GET): nothing to publish.
            metadata.etag = response.etag
            metadata.lastModified = response.lastModified
            return .notModified(httpStatus: response.status)
        }
        let validated = MonotonicInstant.now()
        var updated = metadata
        updated.thisUpdate = accepted.thisUpdate.map(Double.init)
        updated.nextUpdate = accepted.nextUpdate.map(Double.init)
        updated.crlNumber = accepted.number
        updated.issuer = accepted.crl.issuerDN
        updated.entries = accepted.crl.revokedCount
        updated.etag = response.etag
        updated.lastModified = response.lastModified
        updated.sha256 = Digest.sha256Hex(accepted.der)
        updated.publishedAt = WallClock.seconds
        updated.fetchedAt = now
        updated.lastError = nil
        updated.consecutiveFailures = 0
        do {
            try publish(accepted.der, to: path, metadata: updated)
        } catch {
            return .failed(.download("cannot publish \(path): \(error)"))
        }
        metadata = updated
        let finished = MonotonicInstant.now()
        return .published(FetchResult.PublishedDetails(
            bytes: response.body.count, entries: accepted.crl.revokedCount,
            downloadMilliseconds: Self.milliseconds(downloaded, since: started),
            validateMilliseconds: Self.milliseconds(validated, since: downloaded),
            publishMilliseconds: Self.milliseconds(finished, since: validated), path: path))
    }

    // MARK: OCSP

    /// Asks about the certificate certfile holds now (read again for every fetch) and publishes what the responder
    /// vouches for: a good answer, and also a REVOKED or unknown one, which is what makes the workers stop
    /// stapling at once. The published response carries only the signer certificate a client needs
    /// (`OCSP.stapleEncoding`), and is verified again in that form.
    private func fetchOCSP(_ metadata: inout CacheItemMetadata, now: Double) -> FetchResult.Outcome {
        guard let stapling else {
            return .failed(.invalid("no stapling target"))
        }
        let target: ResolvedStapling
        switch stapling.resolve() {
        case .success(let resolved): target = resolved
        case .failure(let failure): return .failed(failure)
        }
        metadata.sourceURL = target.responderURL
        let path = source.dataPath(in: layout)
        let requestDER: [UInt8]
        do {
            requestDER = try OCSP.request(certificate: target.certificate, issuer: target.issuer)
        } catch {
            return .failed(.invalid("cannot build the OCSP request: \(error)"))
        }
        let started = MonotonicInstant.now()
        let body: [UInt8]
        switch exchange(requestDER, target: target, timeout: stapling.httpTimeout) {
        case .success(let received): body = received
        case .failure(let failure): return .failed(failure)
        }
        let downloaded = MonotonicInstant.now()
        let verified: OCSPVerifiedResponse
        switch OCSP.verify(body, certificate: target.certificate, issuer: target.issuer, now: Int64(now)) {
        case .success(let response): verified = response
        case .failure(let error): return .failed(.invalid(error.description))
        }
        let staple: [UInt8]
        do {
            staple = try OCSP.stapleEncoding(of: verified, servedChain: target.chain)
        } catch {
            return .failed(.invalid(error.description))
        }
        if staple != verified.derBytes {
            guard case .success(let again) = OCSP.verify(
                staple, certificate: target.certificate, issuer: target.issuer, now: Int64(now)),
                again.certificateStatus == verified.certificateStatus, again.thisUpdate == verified.thisUpdate
            else {
                return .failed(.invalid("the response with fewer certificates does not verify"))
            }
        }
        let certificate = StaplingTarget.label(of: target.certificate)
        let published = publishedChecksumMatches(path: path, metadata: metadata)
        // A response about the certificate served before a rotation is no floor for one about the new certificate.
        if published, metadata.certificate == certificate, let previous = metadata.thisUpdate {
            if Double(verified.thisUpdate) < previous {
                return .failed(.invalid(
                    "rollback: thisUpdate \(Timestamp.iso8601(verified.thisUpdate)) is older than the published response"))
            }
            // Good after revoked or unknown only from a newer answer: never the same instant's other story.
            if verified.certificateStatus == .good, let status = metadata.certStatus, status != "good",
               Double(verified.thisUpdate) <= previous
            {
                return .failed(.invalid(
                    "rollback: a good answer no newer than the published \(status) one"))
            }
        }
        if published, let known = metadata.sha256, Digest.sha256Hex(staple) == known {
            return .notModified(httpStatus: 200)
        }
        let validated = MonotonicInstant.now()
        var updated = metadata
        updated.thisUpdate = Double(verified.thisUpdate)
        updated.nextUpdate = verified.nextUpdate.map(Double.init)
        updated.sha256 = Digest.sha256Hex(staple)
        updated.certificate = certificate
        updated.certStatus = verified.certificateStatus.name
        if case .revoked(let at, let reason) = verified.certificateStatus {
            updated.revokedAt = at.map(Double.init)
            updated.revocationReason = reason
        } else {
            updated.revokedAt = nil
            updated.revocationReason = nil
        }
        updated.producedAt = verified.producedAt.map(Double.init)
        updated.publishedAt = WallClock.seconds
        updated.fetchedAt = now
        updated.lastError = nil
        updated.consecutiveFailures = 0
        do {
            try publish(staple, to: path, metadata: updated)
        } catch {
            return .failed(.download("cannot publish \(path): \(error)"))
        }
        metadata = updated
        let finished = MonotonicInstant.now()
        return .published(FetchResult.PublishedDetails(
            bytes: body.count, entries: nil, certificateStatus: verified.certificateStatus,
            downloadMilliseconds: Self.milliseconds(downloaded, since: started),
            validateMilliseconds: Self.milliseconds(validated, since: downloaded),
            publishMilliseconds: Self.milliseconds(finished, since: validated), path: path))
    }

    /// POST (RFC 6960 A.1); when the responder answers the POST with an HTTP error, GET with the request in the
    /// URL as a fallback (not after a redirect the policy refused: the GET would go the same way).
    private func exchange(
        _ requestDER: [UInt8], target: ResolvedStapling, timeout: Duration
    ) -> Result<[UInt8], FetchFailure> {
        let post = HTTPRequest(
            url: target.responderURL, method: .post(body: requestDER, contentType: "application/ocsp-request"),
            timeout: timeout, maximumBodySize: FetchSettings.maximumOCSPResponseSize,
            redirectPolicy: settings.redirects, caBundlePath: settings.httpsCABundle)
        do {
            return .success(try Self.perform(post).body)
        } catch {
            guard error.status != nil, error.refusedRedirect == nil else {
                return .failure(.download(describe(error)))
            }
            let encoded = Data(requestDER).base64EncodedString()
                .addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            let base = target.responderURL.hasSuffix("/") ? target.responderURL : target.responderURL + "/"
            let get = HTTPRequest(
                url: base + encoded, timeout: timeout, maximumBodySize: FetchSettings.maximumOCSPResponseSize,
                redirectPolicy: settings.redirects, caBundlePath: settings.httpsCABundle)
            do {
                return .success(try Self.perform(get).body)
            } catch let fallback {
                return .failure(.download("POST: \(describe(error)); GET: \(fallback.message)"))
            }
        }
    }

    // MARK: Publishing

    private func publish(_ bytes: [UInt8], to path: String, metadata: CacheItemMetadata) throws {
        try FileDescriptor.writeAtomically(bytes, to: path, mode: 0o600)
        try metadata.write(metadataPath)
    }

    var metadataPath: String {
        source.metadataPath(in: layout)
    }

    /// Whether the published file is the one the metadata describes (only then are its validators and
    /// cRLNumber trusted).
    private func publishedChecksumMatches(path: String, metadata: CacheItemMetadata) -> Bool {
        guard let expected = metadata.sha256,
              let bytes = FileDescriptor.readFile(path, limit: settings.maximumSize + 1)
        else { return false }
        return Digest.sha256Hex(bytes) == expected
    }

    private static func describe(_ accepted: CRLAcceptance.Accepted) -> String {
        describe(number: accepted.number, thisUpdate: accepted.thisUpdate)
    }

    private static func describe(_ floor: CRLFloors.Floor) -> String {
        describe(number: floor.crlNumber, thisUpdate: floor.thisUpdate)
    }

    private static func describe(number: String?, thisUpdate: Int64?) -> String {
        var parts: [String] = []
        if let number { parts.append("cRLNumber \(number)") }
        if let thisUpdate { parts.append("thisUpdate \(Timestamp.iso8601(thisUpdate))") }
        return parts.isEmpty ? "a CRL" : parts.joined(separator: ", ")
    }

    /// A transfer's error for a log line; a refused redirect names the setting that refused it.
    private func describe(_ error: CurlError) -> String {
        guard error.refusedRedirect != nil else { return error.description }
        return error.description + " (node.fetch_redirects = \(settings.redirects.rawValue))"
    }

    private static func perform(_ request: HTTPRequest) throws(CurlError) -> HTTPResponse {
        let handle = try CurlEasyHandle()
        return try handle.perform(request)
    }

    private static func milliseconds(_ later: MonotonicInstant, since earlier: MonotonicInstant) -> Int64 {
        let duration = later.duration(since: earlier).components
        return duration.seconds * 1000 + duration.attoseconds / 1_000_000_000_000_000
    }
}
