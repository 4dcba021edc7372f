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
    }

    struct PublishedDetails: Sendable {
        var bytes: Int
        var entries: Int?
        var downloadMilliseconds: Int64
        var validateMilliseconds: Int64
        var publishMilliseconds: Int64
        var path: String
    }

    var source: FetchSource
    /// The item's metadata after the attempt (already written to disk when something was published).
    var metadata: CacheItemMetadata
    var outcome: Outcome
}

/// One download-validate-publish of one item, run on its own thread: the fetcher runs at most one job per item
/// at a time (single flight). Blocking. Publishes with write-temp, fsync, rename: the data file first, then its
/// metadata, so a crash in between leaves a newer file whose checksum the old metadata does not match (the next
/// fetcher notices and re-reads it).
struct FetchJob: Sendable {
    var source: FetchSource
    var metadata: CacheItemMetadata
    var layout: CacheLayout
    var settings: FetchSettings
    var authorities: [X509Certificate]
    var stapling: StaplingTarget?

    func run() -> FetchResult {
        var metadata = metadata
        let now = WallClock.seconds
        metadata.lastAttempt = now
        let outcome: FetchResult.Outcome
        switch source.kind {
        case .crl:
            outcome = fetchCRL(&metadata, now: now)
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
        return FetchResult(source: source, metadata: metadata, outcome: outcome)
    }

    // MARK: CRL

    private func fetchCRL(_ metadata: inout CacheItemMetadata, now: Double) -> FetchResult.Outcome {
        let path = source.dataPath(in: layout)
        let published = publishedChecksumMatches(path: path, metadata: metadata)
        var request = HTTPRequest(
            url: source.url, timeout: settings.crlTimeout, maximumBodySize: settings.maximumSize,
            caBundlePath: settings.httpsCABundle)
        if published {
            request.ifNoneMatch = metadata.etag
            request.ifModifiedSince = metadata.lastModified
        }
        let started = MonotonicInstant.now()
        let response: HTTPResponse
        do {
            response = try Self.perform(request)
        } catch {
            return .failed(.download(error.description))
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
            publishedThisUpdate: published ? metadata.thisUpdate.map { Int64($0) } : nil, now: Int64(now))
        {
        case .success(let result): accepted = result
        case .failure(let failure): return .failed(failure)
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

    private func fetchOCSP(_ metadata: inout CacheItemMetadata, now: Double) -> FetchResult.Outcome {
        guard let target = stapling else {
            return .failed(.invalid("no stapling target"))
        }
        let path = source.dataPath(in: layout)
        let requestDER: [UInt8]
        do {
            requestDER = try OCSP.request(certificate: target.certificate, issuer: target.issuer)
        } catch {
            return .failed(.invalid("cannot build the OCSP request: \(error)"))
        }
        let started = MonotonicInstant.now()
        let body: [UInt8]
        switch exchange(requestDER, target: target) {
        case .success(let received): body = received
        case .failure(let failure): return .failed(failure)
        }
        let downloaded = MonotonicInstant.now()
        let verified: OCSPVerifiedResponse
        switch OCSP.validate(body, certificate: target.certificate, issuer: target.issuer, now: Int64(now)) {
        case .success(let response):
            verified = response
        case .failure(let error):
            return .failed(error.isRevoked ? .revoked(error.description) : .invalid(error.description))
        }
        let published = publishedChecksumMatches(path: path, metadata: metadata)
        if published, let previous = metadata.thisUpdate, Double(verified.thisUpdate) < previous {
            return .failed(.invalid(
                "rollback: thisUpdate \(Timestamp.iso8601(verified.thisUpdate)) is older than the published response"))
        }
        if published, let known = metadata.sha256, Digest.sha256Hex(body) == known {
            return .notModified(httpStatus: 200)
        }
        let validated = MonotonicInstant.now()
        var updated = metadata
        updated.thisUpdate = Double(verified.thisUpdate)
        updated.nextUpdate = verified.nextUpdate.map(Double.init)
        updated.sha256 = Digest.sha256Hex(body)
        updated.certificate = "\(target.certificate.subjectDN) serial \(verified.serialHex)"
        updated.certStatus = "good"
        updated.producedAt = verified.producedAt.map(Double.init)
        updated.publishedAt = WallClock.seconds
        updated.fetchedAt = now
        updated.lastError = nil
        updated.consecutiveFailures = 0
        do {
            try publish(body, to: path, metadata: updated)
        } catch {
            return .failed(.download("cannot publish \(path): \(error)"))
        }
        metadata = updated
        let finished = MonotonicInstant.now()
        return .published(FetchResult.PublishedDetails(
            bytes: body.count, entries: nil,
            downloadMilliseconds: Self.milliseconds(downloaded, since: started),
            validateMilliseconds: Self.milliseconds(validated, since: downloaded),
            publishMilliseconds: Self.milliseconds(finished, since: validated), path: path))
    }

    /// POST (RFC 6960 A.1); when the responder answers the POST with an HTTP error, GET with the request in the
    /// URL as a fallback.
    private func exchange(_ requestDER: [UInt8], target: StaplingTarget) -> Result<[UInt8], FetchFailure> {
        let post = HTTPRequest(
            url: target.responderURL, method: .post(body: requestDER, contentType: "application/ocsp-request"),
            timeout: target.httpTimeout, maximumBodySize: FetchSettings.maximumOCSPResponseSize,
            caBundlePath: settings.httpsCABundle)
        do {
            return .success(try Self.perform(post).body)
        } catch {
            guard error.status != nil else {
                return .failure(.download(error.description))
            }
            let encoded = Data(requestDER).base64EncodedString()
                .addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            let base = target.responderURL.hasSuffix("/") ? target.responderURL : target.responderURL + "/"
            let get = HTTPRequest(
                url: base + encoded, timeout: target.httpTimeout,
                maximumBodySize: FetchSettings.maximumOCSPResponseSize, caBundlePath: settings.httpsCABundle)
            do {
                return .success(try Self.perform(get).body)
            } catch let fallback {
                return .failure(.download("POST: \(error.description); GET: \(fallback.message)"))
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

    private static func perform(_ request: HTTPRequest) throws(CurlError) -> HTTPResponse {
        let handle = try CurlEasyHandle()
        return try handle.perform(request)
    }

    private static func milliseconds(_ later: MonotonicInstant, since earlier: MonotonicInstant) -> Int64 {
        let duration = later.duration(since: earlier).components
        return duration.seconds * 1000 + duration.attoseconds / 1_000_000_000_000_000
    }
}
