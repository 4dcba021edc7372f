@testable import Fetcher
import Foundation
import OpenSSLTLS
import ProcessSupport
import RevocationCache
import Testing

/// `FetchJob.run()` against a loopback HTTP server, publishing into a temporary cache directory. Each test gets
/// its own server and cache.
@Suite final class FetchJobTests {
    let pki: FetcherTestPKI
    let server: RevocationHTTPServer
    let layout: CacheLayout
    let authorities: [X509Certificate]
    let crlURL: String

    init() throws {
        pki = try FetcherTestPKI.shared()
        server = try RevocationHTTPServer()
        layout = CacheLayout(root: try TestFiles.makeDirectory("gatehouse-fetcher-cache") + "/cache")
        try layout.create()
        authorities = try X509Certificate.load(file: pki.ca)
        crlURL = server.url("/a.crl")
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: layout.root)
    }

    func crlJob(
        metadata: CacheItemMetadata? = nil, maximumSize: Int = 1 << 20, floors: CRLFloors? = nil
    ) -> FetchJob {
        let source = FetchSource(kind: .crl, url: crlURL, origin: .configured)
        let fresh = CacheItemMetadata(
            kind: .crl, sourceURL: crlURL, origin: .configured, listener: nil,
            file: "crl/\(CacheLayout.identifier(forURL: crlURL)).der")
        return FetchJob(
            source: source, metadata: metadata ?? fresh, layout: layout,
            settings: FetchSettings(crlTimeout: .seconds(5), maximumSize: maximumSize, httpsCABundle: nil),
            authorities: authorities, stapling: nil, floors: floors)
    }

    var crlPath: String { layout.crlFile(forURL: crlURL) }
    var crlMetadataPath: String { layout.crlMetadataFile(forURL: crlURL) }

    /// Publishes `crl4097` (served as PEM) with a first, unconditional fetch.
    func publishFirst() throws -> FetchResult {
        try server.serve(file: pki.crl4097, as: "a.crl")
        let result = crlJob().run()
        guard case .published = result.outcome else {
            Issue.record("first fetch did not publish: \(result.outcome)")
            throw OpenSSLTool.Failure(arguments: ["FetchJob.run"], status: nil, output: "\(result.outcome)")
        }
        return result
    }

    func failure(_ result: FetchResult) -> FetchFailure? {
        if case .failed(let failure) = result.outcome { return failure }
        Issue.record("expected a failure, got \(result.outcome)")
        return nil
    }

    /// No `*.tmp.*` file anywhere in the cache.
    func expectNoTemporaryFiles(sourceLocation: SourceLocation = #_sourceLocation) {
        for directory in [layout.crlDirectory, layout.metadataDirectory, layout.ocspDirectory] {
            let temporary = TestFiles.names(in: directory).filter { $0.contains(".tmp.") }
            #expect(temporary.isEmpty, "\(directory): \(temporary)", sourceLocation: sourceLocation)
        }
    }

    @Test func aFirstFetchPublishesDERAndItsMetadata() throws {
        let before = WallClock.seconds
        let result = try publishFirst()
        let after = WallClock.seconds
        guard case .published(let details) = result.outcome else { return }
        #expect(details.path == crlPath)
        #expect(details.path.hasSuffix("/crl/\(CacheLayout.identifier(forURL: crlURL)).der"))
        #expect(details.bytes == (try TestFiles.bytes(pki.crl4097)).count)
        #expect(details.entries == 1)

        // The published file is the DER of the CRL, whatever the server sent, and always parses.
        #expect(try TestFiles.bytes(crlPath) == (try TestFiles.bytes(pki.crl4097DER)))
        try OpenSSLTool.check(["crl", "-inform", "DER", "-in", crlPath, "-noout"])
        let mode = try FileManager.default.attributesOfItem(atPath: crlPath)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)

        // The sidecar on disk is the returned metadata, and its checksum is the published file's.
        let metadata = result.metadata
        #expect(CacheItemMetadata.read(crlMetadataPath) == metadata)
        #expect(crlMetadataPath.hasSuffix("/meta/crl-\(CacheLayout.identifier(forURL: crlURL)).json"))
        #expect(metadata.sha256 == (try OpenSSLTool.sha256(ofFile: crlPath)))
        #expect(metadata.crlNumber == "4097")
        #expect(metadata.etag?.hasPrefix("\"") == true)
        #expect(metadata.lastModified == RevocationHTTPServer.lastModified)
        #expect(metadata.thisUpdate != nil && metadata.nextUpdate != nil)
        #expect(metadata.consecutiveFailures == 0)
        #expect(metadata.lastError == nil)
        let fetchedAt = try #require(metadata.fetchedAt)
        let publishedAt = try #require(metadata.publishedAt)
        let lastAttempt = try #require(metadata.lastAttempt)
        #expect(before <= lastAttempt && lastAttempt <= fetchedAt && fetchedAt <= publishedAt && publishedAt <= after)
        expectNoTemporaryFiles()
        // The first request was unconditional.
        #expect(server.requests == ["GET /a.crl -"])
    }

    @Test func aSecondFetchIsConditionalAndA304LeavesTheFileAlone() throws {
        let first = try publishFirst()
        let inode = try TestFiles.inode(crlPath)
        let metadataBytes = try TestFiles.bytes(crlMetadataPath)

        let second = crlJob(metadata: first.metadata).run()
        guard case .notModified(let status) = second.outcome else {
            Issue.record("expected not modified, got \(second.outcome)")
            return
        }
        #expect(status == 304)
        #expect(server.requests.last == "GET /a.crl \(first.metadata.etag ?? "?")")
        #expect(try TestFiles.inode(crlPath) == inode)
        #expect(try TestFiles.bytes(crlPath) == (try TestFiles.bytes(pki.crl4097DER)))
        #expect(second.metadata.consecutiveFailures == 0)
        #expect(second.metadata.sha256 == first.metadata.sha256)
        #expect(second.metadata.crlNumber == "4097")
        #expect((second.metadata.fetchedAt ?? 0) >= (first.metadata.fetchedAt ?? .infinity))
        // Nothing was published, so the job did not touch the sidecar (the service writes it).
        #expect(try TestFiles.bytes(crlMetadataPath) == metadataBytes)
        expectNoTemporaryFiles()
    }

    @Test func aByteIdenticalDERBodyIsNotModifiedWith200() throws {
        try server.serve(file: pki.crl4097DER, as: "a.crl")
        try server.ignoreConditional("a.crl")
        let first = crlJob().run()
        guard case .published = first.outcome else {
            Issue.record("first fetch did not publish: \(first.outcome)")
            return
        }
        let inode = try TestFiles.inode(crlPath)
        let second = crlJob(metadata: first.metadata).run()
        guard case .notModified(let status) = second.outcome else {
            Issue.record("expected not modified, got \(second.outcome)")
            return
        }
        #expect(status == 200)
        #expect(try TestFiles.inode(crlPath) == inode)
    }

    @Test func aByteIdenticalPEMBodyIsNotModifiedEither() throws {
        // A server without ETag/Last-Modified support serving the same PEM CRL again: the contract says a
        // byte-identical body is "not modified"; re-publishing would make every worker reload its CRLs.
        try server.ignoreConditional("a.crl")
        let first = try publishFirst()
        let inode = try TestFiles.inode(crlPath)
        let second = crlJob(metadata: first.metadata).run()
        let inodeAfter = try TestFiles.inode(crlPath)
        guard case .notModified(let status) = second.outcome else {
            Issue.record("expected not modified, got \(second.outcome)")
            return
        }
        #expect(status == 200)
        #expect(inodeAfter == inode)
        // Whatever happens, the same CRL stays published.
        #expect(try TestFiles.bytes(crlPath) == (try TestFiles.bytes(pki.crl4097DER)))
    }

    @Test func anHTTPErrorFailsAndKeepsThePublishedFile() throws {
        let first = try publishFirst()
        let inode = try TestFiles.inode(crlPath)
        let metadataBytes = try TestFiles.bytes(crlMetadataPath)
        try server.answer("a.crl", status: 500)

        let second = crlJob(metadata: first.metadata).run()
        guard case .download(let text) = failure(second) else {
            Issue.record("expected a download failure, got \(second.outcome)")
            return
        }
        #expect(text.contains("HTTP 500"), "\(text)")
        #expect(second.metadata.consecutiveFailures == 1)
        #expect(second.metadata.lastError == text)
        #expect(second.metadata.sha256 == first.metadata.sha256)
        #expect(second.metadata.fetchedAt == first.metadata.fetchedAt)
        #expect((second.metadata.lastAttempt ?? 0) >= (first.metadata.lastAttempt ?? .infinity))

        let third = crlJob(metadata: second.metadata).run()
        #expect(failure(third) != nil)
        #expect(third.metadata.consecutiveFailures == 2)

        #expect(try TestFiles.inode(crlPath) == inode)
        #expect(try TestFiles.bytes(crlPath) == (try TestFiles.bytes(pki.crl4097DER)))
        #expect(try TestFiles.bytes(crlMetadataPath) == metadataBytes)

        // A success resets the count.
        try server.answer("a.crl", status: nil)
        let fourth = crlJob(metadata: third.metadata).run()
        guard case .notModified(304) = fourth.outcome else {
            Issue.record("expected 304, got \(fourth.outcome)")
            return
        }
        #expect(fourth.metadata.consecutiveFailures == 0)
        #expect(fourth.metadata.lastError == nil)
        expectNoTemporaryFiles()
    }

    @Test func anOlderCRLIsARollbackAndKeepsThePublishedFile() throws {
        let first = try publishFirst()
        let inode = try TestFiles.inode(crlPath)
        try server.serve(file: pki.crl4096, as: "a.crl")
        let second = crlJob(metadata: first.metadata).run()
        guard case .invalid(let text) = failure(second) else {
            Issue.record("expected an invalid CRL, got \(second.outcome)")
            return
        }
        #expect(text.contains("rollback"), "\(text)")
        #expect(try TestFiles.inode(crlPath) == inode)
        #expect(second.metadata.crlNumber == "4097")
    }

    /// The floor outlives what the cache knows: with the sidecar no longer matching (or the cache gone), an older
    /// CRL is still a rollback; the same CRL again is not.
    @Test func anOlderCRLIsARollbackEvenWhenTheCacheNoLongerVouches() throws {
        let floors = CRLFloors.load(path: layout.root + "/crl-floors.json").0
        try server.serve(file: pki.crl4097, as: "a.crl")
        let first = crlJob(floors: floors).run()
        guard case .published = first.outcome else {
            Issue.record("first fetch did not publish: \(first.outcome)")
            return
        }
        #expect(first.floorSaveError == nil)
        var lost = first.metadata
        lost.sha256 = nil
        try server.serve(file: pki.crl4096, as: "a.crl")
        let second = crlJob(metadata: lost, floors: floors).run()
        guard case .invalid(let text) = failure(second) else {
            Issue.record("expected a rollback, got \(second.outcome)")
            return
        }
        #expect(text.hasPrefix("rollback: cRLNumber 4096"), "\(text)")
        #expect(text.contains("older than cRLNumber 4097"), "\(text)")
        #expect(try TestFiles.bytes(crlPath) == (try TestFiles.bytes(pki.crl4097DER)))

        // Without floors the same fetch publishes the older CRL: what the floors are for.
        let unguarded = crlJob(metadata: lost).run()
        guard case .published = unguarded.outcome else {
            Issue.record("expected the old behaviour to publish, got \(unguarded.outcome)")
            return
        }
        try server.serve(file: pki.crl4097, as: "a.crl")
        let third = crlJob(metadata: lost, floors: floors).run()
        guard case .published = third.outcome else {
            Issue.record("the current CRL again was refused: \(third.outcome)")
            return
        }
    }

    @Test func aPublishedFileThatDoesNotMatchItsMetadataIsFetchedUnconditionally() throws {
        let first = try publishFirst()
        var stale = first.metadata
        stale.sha256 = String(repeating: "0", count: 64)
        let second = crlJob(metadata: stale).run()
        // Neither the validators nor the cRLNumber of a file we cannot vouch for are used.
        #expect(server.requests.last == "GET /a.crl -")
        guard case .published = second.outcome else {
            Issue.record("expected a publish, got \(second.outcome)")
            return
        }
        #expect(second.metadata.sha256 == first.metadata.sha256)
    }

    @Test("bodies that may not be published fail and publish nothing", arguments: [
        ("garbage", "not a CRL"), ("wrong-key", "signature does not verify"), ("two", "expected one CRL"),
    ])
    func refusedBodies(_ which: String, _ expected: String) throws {
        switch which {
        case "garbage": try server.serve(Array("<html>gone</html>".utf8), as: "a.crl")
        case "wrong-key": try server.serve(file: pki.wrongKeyCRL, as: "a.crl")
        default: try server.serve(file: pki.twoCRLs, as: "a.crl")
        }
        let result = crlJob().run()
        let text = failure(result)?.description ?? ""
        #expect(text.contains(expected), "\(text)")
        #expect(result.metadata.consecutiveFailures == 1)
        #expect(!FileManager.default.fileExists(atPath: crlPath))
        #expect(!FileManager.default.fileExists(atPath: crlMetadataPath))
        expectNoTemporaryFiles()
    }

    @Test func anOversizedBodyFails() throws {
        try server.serve(file: pki.crl4097, as: "a.crl")
        let result = crlJob(maximumSize: 100).run()
        let text = failure(result)?.description ?? ""
        #expect(text.contains("body larger than 100 bytes"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: crlPath))
    }

    @Test func a304ToAnUnconditionalRequestFails() throws {
        try server.answer("a.crl", status: 304)
        let result = crlJob().run()
        let text = failure(result)?.description ?? ""
        #expect(text.contains("304"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: crlPath))
    }

    // MARK: OCSP

    func ocspJob(certificate: String, metadata: CacheItemMetadata? = nil) throws -> FetchJob {
        let responder = server.url("/ocsp")
        let target = StaplingTarget(
            listener: "external", certificatePath: certificate, issuerPath: pki.ca, caBundlePath: nil,
            configuredResponderURL: responder, responderURL: responder,
            schedule: FetchSchedule(interval: .seconds(60), floor: .seconds(1)), httpTimeout: .seconds(5))
        let fresh = CacheItemMetadata(kind: .ocsp, sourceURL: responder, origin: .stapling, listener: "external",
                                      file: "ocsp/external.der")
        return FetchJob(
            source: FetchSource(kind: .ocsp(listener: "external"), url: responder, origin: .stapling),
            metadata: metadata ?? fresh, layout: layout,
            settings: FetchSettings(crlTimeout: .seconds(5), maximumSize: 1 << 20, httpsCABundle: nil),
            authorities: authorities, stapling: target)
    }

    @Test func anOCSPResponseIsPostedForValidatedAndPublished() throws {
        try server.serve(file: pki.serverOCSP, as: "ocsp")
        let first = try ocspJob(certificate: pki.server).run()
        guard case .published(let details) = first.outcome else {
            Issue.record("expected a publish, got \(first.outcome)")
            return
        }
        let path = layout.ocspFile(listener: "external")
        #expect(details.path == path)
        #expect(try TestFiles.bytes(path) == (try TestFiles.bytes(pki.serverOCSP)))
        #expect(first.metadata.sha256 == (try OpenSSLTool.sha256(ofFile: path)))
        #expect(CacheItemMetadata.read(layout.ocspMetadataFile(listener: "external")) == first.metadata)
        let thisUpdate = try #require(first.metadata.thisUpdate)
        #expect(first.metadata.nextUpdate == thisUpdate + 86_400)
        #expect(server.requests == ["POST /ocsp -"])

        // The same response again: not modified, file untouched.
        let inode = try TestFiles.inode(path)
        let second = try ocspJob(certificate: pki.server, metadata: first.metadata).run()
        guard case .notModified(200) = second.outcome else {
            Issue.record("expected not modified, got \(second.outcome)")
            return
        }
        #expect(try TestFiles.inode(path) == inode)
        expectNoTemporaryFiles()
    }

    @Test func anOCSPResponderRefusingPOSTIsAskedWithGET() throws {
        try server.serve(file: pki.serverOCSP, as: "ocsp")
        try server.answerPost("ocsp", status: 405)
        let result = try ocspJob(certificate: pki.server).run()
        guard case .published = result.outcome else {
            Issue.record("expected a publish, got \(result.outcome)")
            return
        }
        let requests = server.requests
        #expect(requests.count == 2)
        #expect(requests.first == "POST /ocsp -")
        // GET /ocsp/<percent-encoded base64 of the request DER> (RFC 6960 A.1).
        let get = try #require(requests.last).split(separator: " ")
        #expect(get.first == "GET")
        let path = try #require(get.dropFirst().first)
        #expect(path.hasPrefix("/ocsp/"))
        let encoded = path.dropFirst("/ocsp/".count)
        #expect(encoded.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "%") }, "\(encoded)")
        let base64 = try #require(String(encoded).removingPercentEncoding)
        let request = try #require(Data(base64Encoded: base64))
        let expected = try OCSP.request(certificate: try #require(try X509Certificate.load(file: pki.server).first),
                                        issuer: try #require(authorities.first))
        #expect(Array(request) == expected)
    }

    /// A verified REVOKED answer is published (the workers withdraw the staple when they see it), with its
    /// status, time and reason in the metadata.
    @Test func aRevokedServerCertificateIsPublishedAsRevoked() throws {
        try server.serve(file: pki.revokedOCSP, as: "ocsp")
        let result = try ocspJob(certificate: pki.revoked).run()
        guard case .published(let details) = result.outcome else {
            Issue.record("expected a publish, got \(result.outcome)")
            return
        }
        guard case .revoked(let at, let reason) = details.certificateStatus else {
            Issue.record("expected revoked, got \(String(describing: details.certificateStatus))")
            return
        }
        #expect(reason == "keyCompromise")
        #expect(at != nil)
        let path = layout.ocspFile(listener: "external")
        #expect(try TestFiles.bytes(path) == (try TestFiles.bytes(pki.revokedOCSP)))
        #expect(result.metadata.certStatus == "revoked")
        #expect(result.metadata.revocationReason == "keyCompromise")
        #expect(result.metadata.revokedAt == at.map(Double.init))
        #expect(CacheItemMetadata.read(layout.ocspMetadataFile(listener: "external")) == result.metadata)
        #expect(result.metadata.consecutiveFailures == 0 && result.metadata.lastError == nil)
    }

    /// A certfile that does not parse (being rewritten) is a clear failure; the published response stays.
    @Test func anUnreadableCertfileFailsClearly() throws {
        try server.serve(file: pki.serverOCSP, as: "ocsp")
        let first = try ocspJob(certificate: pki.server).run()
        guard case .published = first.outcome else {
            Issue.record("expected a publish, got \(first.outcome)")
            return
        }
        let half = pki.directory + "/half.pem"
        let pem = try TestFiles.bytes(pki.server)
        try TestFiles.write(Array(pem.prefix(pem.count / 2)), to: half)
        let second = try ocspJob(certificate: half, metadata: first.metadata).run()
        guard case .invalid(let text) = failure(second) else {
            Issue.record("expected .invalid, got \(second.outcome)")
            return
        }
        #expect(text.contains("cannot read the server certificate") && text.contains(half), "\(text)")
        #expect(try TestFiles.bytes(layout.ocspFile(listener: "external")) == (try TestFiles.bytes(pki.serverOCSP)))
        #expect(server.requests == ["POST /ocsp -"])
    }

    @Test func anOCSPResponseAboutAnotherCertificateIsRefused() throws {
        try server.serve(file: pki.revokedOCSP, as: "ocsp")
        let result = try ocspJob(certificate: pki.server).run()
        guard case .invalid(let text) = failure(result) else {
            Issue.record("expected .invalid, got \(result.outcome)")
            return
        }
        #expect(text.contains("does not cover"), "\(text)")
    }
}
