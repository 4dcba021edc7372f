import Foundation
import OpenSSLTLS
import Testing

/// `OCSP.request` and `OCSP.validate` against real `openssl ocsp` responses: every response is produced by a
/// one-shot `openssl ocsp -index …` responder from the request `OCSP.request` built, so each test also shows that
/// the request is one a real responder accepts.
@Suite("OCSP requests and response validation")
struct OCSPTests {
    let pki: OCSPTestPKI
    let now = Int64(Date().timeIntervalSince1970)

    init() throws {
        pki = try OCSPTestPKI.shared()
    }

    /// A response from the root's own responder (signed by the root) about `certificate`.
    func rootResponse(
        for certificate: String, issuer: String? = nil, validity: [String] = ["-ndays", "1"], extra: [String] = []
    ) throws -> [UInt8] {
        let request = try OCSP.request(certificate: try TestHelpers.certificate(certificate),
                                       issuer: try TestHelpers.certificate(issuer ?? pki.root))
        return try pki.respond(to: request, index: pki.rootIndex, ca: pki.root, signer: pki.root,
                               signerKey: pki.rootKey, validity: validity, extra: extra)
    }

    func validate(
        _ der: [UInt8], certificate: String, issuer: String? = nil, now: Int64? = nil
    ) throws -> Result<OCSPVerifiedResponse, OCSPValidationError> {
        OCSP.validate(der, certificate: try TestHelpers.certificate(certificate),
                      issuer: try TestHelpers.certificate(issuer ?? pki.root), now: now ?? self.now)
    }

    @Test("the request is DER a real responder parses, naming the certificate's serial")
    func requestIsUnderstood() throws {
        let server = try TestHelpers.certificate(pki.server)
        let request = try OCSP.request(certificate: server, issuer: try TestHelpers.certificate(pki.root))
        #expect(request.first == 0x30)
        let path = pki.directory + "/responses/text-\(UUID().uuidString.prefix(8)).der"
        try Data(request).write(to: URL(fileURLWithPath: path))
        let text = try OpenSSLCommand.check(["ocsp", "-reqin", path, "-req_text"])
        #expect(text.contains("Serial Number: \(server.serialHex)"), "\(text)")
        #expect(text.contains("Hash Algorithm: sha1"), "\(text)")
        // No nonce: the answer must be cacheable and stapled to every client.
        #expect(!text.contains("Nonce"), "\(text)")
    }

    @Test("a good response signed by the issuer is accepted with its times")
    func good() throws {
        let der = try rootResponse(for: pki.server)
        let verified = try validate(der, certificate: pki.server).get()
        let server = try TestHelpers.certificate(pki.server)
        #expect(verified.derBytes == der)
        #expect(verified.serialHex == server.serialHex)
        #expect(abs(verified.thisUpdate - now) < 120)
        let nextUpdate = try #require(verified.nextUpdate)
        #expect(nextUpdate - verified.thisUpdate == 86_400)
        let producedAt = try #require(verified.producedAt)
        #expect(abs(producedAt - now) < 120)
    }

    @Test("a response that carries no certificates verifies against the issuer itself")
    func goodWithoutCertificates() throws {
        let der = try rootResponse(for: pki.server, extra: ["-resp_no_certs", "-resp_key_id"])
        #expect(throws: Never.self) { try validate(der, certificate: pki.server).get() }
    }

    @Test("a response without nextUpdate is accepted, however old")
    func withoutNextUpdate() throws {
        let der = try rootResponse(for: pki.server, validity: [])
        let verified = try validate(der, certificate: pki.server).get()
        #expect(verified.nextUpdate == nil)
        // Nothing bounds its age: OCSP.validate leaves that to the caller.
        #expect(throws: Never.self) { try validate(der, certificate: pki.server, now: now + 365 * 86_400).get() }
    }

    @Test("a response whose CertID uses another hash than the request's does not cover the certificate")
    func responderCertIDHash() throws {
        // Responders echo the request's (SHA-1) CertID; one that re-hashes it with SHA-256 is not matched.
        let der = try rootResponse(for: pki.server, extra: ["-rcid", "sha256"])
        let server = try TestHelpers.certificate(pki.server)
        #expect(try validate(der, certificate: pki.server).failure == .notCovered(serial: server.serialHex))
    }

    @Test("a revoked certificate is reported as revoked, with time and reason")
    func revoked() throws {
        let der = try rootResponse(for: pki.revoked)
        let error = try #require(try validate(der, certificate: pki.revoked).failure)
        #expect(error.isRevoked)
        guard case .revoked(let serial, let at, let reason) = error else {
            Issue.record("expected .revoked, got \(error)")
            return
        }
        #expect(serial == (try TestHelpers.certificate(pki.revoked)).serialHex)
        let revokedAt = try #require(at)
        #expect(abs(revokedAt - now) < 600)
        #expect(reason == "keyCompromise")
        #expect(error.description.contains("revoked"))
    }

    @Test("verify accepts a revoked answer that passes every other check, with its time and reason")
    func verifyRevoked() throws {
        let der = try rootResponse(for: pki.revoked)
        let verified = try OCSP.verify(
            der, certificate: try TestHelpers.certificate(pki.revoked), issuer: try TestHelpers.certificate(pki.root),
            now: now
        ).get()
        guard case .revoked(let at, let reason) = verified.certificateStatus else {
            Issue.record("expected revoked, got \(verified.certificateStatus)")
            return
        }
        #expect(abs((at ?? 0) - now) < 600)
        #expect(reason == "keyCompromise")
        #expect(verified.certificateStatus.name == "revoked")
        #expect(verified.derBytes == der)
        #expect(verified.isSignedByIssuer)
        #expect(verified.signerDER == (try TestHelpers.certificate(pki.root)).derBytes)
        // The same checks still apply: past its nextUpdate, a revoked answer is refused like a good one.
        let stale = OCSP.verify(
            der, certificate: try TestHelpers.certificate(pki.revoked), issuer: try TestHelpers.certificate(pki.root),
            now: now + 2 * 86_400)
        guard case .outsideValidity = stale.failure else {
            Issue.record("expected outsideValidity, got \(stale)")
            return
        }
    }

    @Test("verify accepts an unknown answer; a forged one is still refused")
    func verifyUnknown() throws {
        let der = try rootResponse(for: pki.unindexed)
        let verified = try OCSP.verify(
            der, certificate: try TestHelpers.certificate(pki.unindexed),
            issuer: try TestHelpers.certificate(pki.root), now: now
        ).get()
        #expect(verified.certificateStatus == .unknown)
        let request = try OCSP.request(certificate: try TestHelpers.certificate(pki.revoked),
                                       issuer: try TestHelpers.certificate(pki.root))
        let forged = try pki.respond(to: request, index: pki.rootIndex, ca: pki.root, signer: pki.impostor,
                                     signerKey: pki.impostorKey)
        let result = OCSP.verify(
            forged, certificate: try TestHelpers.certificate(pki.revoked),
            issuer: try TestHelpers.certificate(pki.root), now: now)
        guard case .signature = result.failure else {
            Issue.record("expected .signature, got \(result)")
            return
        }
    }

    @Test("verify names a delegated signer")
    func verifyDelegatedSigner() throws {
        let request = try OCSP.request(certificate: try TestHelpers.certificate(pki.server),
                                       issuer: try TestHelpers.certificate(pki.root))
        let der = try pki.respond(to: request, index: pki.rootIndex, ca: pki.root, signer: pki.responder,
                                  signerKey: pki.responderKey)
        let verified = try OCSP.verify(
            der, certificate: try TestHelpers.certificate(pki.server), issuer: try TestHelpers.certificate(pki.root),
            now: now
        ).get()
        #expect(verified.certificateStatus == .good)
        #expect(!verified.isSignedByIssuer)
        #expect(verified.signerDER == (try TestHelpers.certificate(pki.responder)).derBytes)
    }

    @Test("a certificate missing from the responder's index is unknown")
    func unknownSerial() throws {
        let der = try rootResponse(for: pki.unindexed)
        let error = try #require(try validate(der, certificate: pki.unindexed).failure)
        #expect(error == .unknown(serial: "05999999"))
        #expect(!error.isRevoked)
        #expect(error.description.contains("unknown"))
    }

    @Test("another CA's certificate: the root's responder is not authorized for it, and the root's answers do not cover it")
    func anotherCAsCertificate() throws {
        let leaf = try TestHelpers.certificate(pki.otherLeaf)
        // The root's responder answers "unknown" for a CertID it does not serve: with the right issuer, and with
        // the root as issuer (the CertID then mixes the other CA's name hash with the root's key hash, since
        // OCSP_cert_to_id takes the name from the certificate's issuer field). Either way the root is not the
        // CertID's issuer, so its signature does not count, whichever CA the response is checked against.
        let withRightIssuer = try rootResponse(for: pki.otherLeaf, issuer: pki.other)
        let withRootAsIssuer = try rootResponse(for: pki.otherLeaf)
        for response in [withRightIssuer, withRootAsIssuer] {
            for issuer in [pki.root, pki.other] {
                let result = try validate(response, certificate: pki.otherLeaf, issuer: issuer)
                guard case .signature(let text) = result.failure else {
                    Issue.record("expected .signature under \(issuer), got \(result)")
                    continue
                }
                #expect(text.contains("does not verify"), "\(text)")
            }
        }
        // A (valid) response about the root's own certificate does not cover the other CA's certificate.
        let aboutServer = try rootResponse(for: pki.server)
        let result = try validate(aboutServer, certificate: pki.otherLeaf)
        #expect(result.failure == .notCovered(serial: leaf.serialHex), "\(result)")
    }

    @Test("a response about another certificate of the same CA does not cover ours")
    func anotherCertificate() throws {
        let der = try rootResponse(for: pki.sibling)
        let server = try TestHelpers.certificate(pki.server)
        let error = try #require(try validate(der, certificate: pki.server).failure)
        #expect(error == .notCovered(serial: server.serialHex))
        #expect(error.description.contains("does not cover"))
    }

    @Test("a response past its nextUpdate is expired, with no leeway")
    func expired() throws {
        let der = try rootResponse(for: pki.server)
        let error = try #require(try validate(der, certificate: pki.server, now: now + 2 * 86_400).failure)
        guard case .outsideValidity(let text) = error else {
            Issue.record("expected .outsideValidity, got \(error)")
            return
        }
        #expect(text.contains("expired"), "\(text)")
        // Good until the second before nextUpdate; at nextUpdate it is stale (never stapled past it).
        let nextUpdate = try #require(try validate(der, certificate: pki.server).get().nextUpdate)
        #expect(throws: Never.self) { try validate(der, certificate: pki.server, now: nextUpdate - 1).get() }
        #expect(try validate(der, certificate: pki.server, now: nextUpdate).failure != nil)
    }

    @Test("a response whose thisUpdate is in the future is refused")
    func notYetValid() throws {
        let der = try rootResponse(for: pki.server)
        let error = try #require(try validate(der, certificate: pki.server, now: now - 2 * 86_400).failure)
        guard case .outsideValidity(let text) = error else {
            Issue.record("expected .outsideValidity, got \(error)")
            return
        }
        #expect(text.contains("in the future"), "\(text)")
        // Clock skew within the leeway is tolerated.
        #expect(throws: Never.self) { try validate(der, certificate: pki.server, now: now - 200).get() }
    }

    @Test("a delegated responder with id-kp-OCSPSigning issued by the CA is accepted")
    func delegatedResponder() throws {
        let request = try OCSP.request(certificate: try TestHelpers.certificate(pki.server),
                                       issuer: try TestHelpers.certificate(pki.root))
        let der = try pki.respond(to: request, index: pki.rootIndex, ca: pki.root, signer: pki.responder,
                                  signerKey: pki.responderKey)
        #expect(throws: Never.self) { try validate(der, certificate: pki.server).get() }
    }

    @Test("a delegated responder without id-kp-OCSPSigning is refused")
    func responderWithoutOCSPSigning() throws {
        let request = try OCSP.request(certificate: try TestHelpers.certificate(pki.server),
                                       issuer: try TestHelpers.certificate(pki.root))
        let der = try pki.respond(to: request, index: pki.rootIndex, ca: pki.root, signer: pki.plainResponder,
                                  signerKey: pki.plainResponderKey)
        let error = try #require(try validate(der, certificate: pki.server).failure)
        guard case .signature(let text) = error else {
            Issue.record("expected .signature, got \(error)")
            return
        }
        #expect(text.contains("responder"), "\(text)")
    }

    @Test("responses signed by an unrelated CA, or by a CA with the issuer's name but another key, are refused",
          arguments: ["other", "impostor"])
    func foreignSigner(_ which: String) throws {
        let request = try OCSP.request(certificate: try TestHelpers.certificate(pki.server),
                                       issuer: try TestHelpers.certificate(pki.root))
        let signer = which == "other" ? (pki.other, pki.otherKey) : (pki.impostor, pki.impostorKey)
        let der = try pki.respond(to: request, index: pki.rootIndex, ca: pki.root, signer: signer.0,
                                  signerKey: signer.1)
        let error = try #require(try validate(der, certificate: pki.server).failure)
        guard case .signature = error else {
            Issue.record("expected .signature, got \(error)")
            return
        }
    }

    @Test("an intermediate CA is a sufficient trust anchor (partial chain)")
    func intermediateIssuer() throws {
        let request = try OCSP.request(certificate: try TestHelpers.certificate(pki.intermediateLeaf),
                                       issuer: try TestHelpers.certificate(pki.intermediate))
        let der = try pki.respond(to: request, index: pki.intermediateIndex, ca: pki.intermediate,
                                  signer: pki.intermediate, signerKey: pki.intermediateKey)
        let verified = try validate(der, certificate: pki.intermediateLeaf, issuer: pki.intermediate).get()
        #expect(verified.serialHex == (try TestHelpers.certificate(pki.intermediateLeaf)).serialHex)
        // The root did not sign it and is not the leaf's issuer: refused when checked against the root.
        #expect(try validate(der, certificate: pki.intermediateLeaf, issuer: pki.root).failure != nil)
    }

    @Test("a responder error status is reported by name", arguments: [
        (UInt8(1), "malformedRequest"), (2, "internalError"), (3, "tryLater"), (5, "sigRequired"),
        (6, "unauthorized"),
    ])
    func responderStatus(_ code: UInt8, _ name: String) throws {
        // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } with no responseBytes.
        let der: [UInt8] = [0x30, 0x03, 0x0A, 0x01, code]
        let error = try #require(try validate(der, certificate: pki.server).failure)
        #expect(error == .responderStatus(name))
        #expect(error.description.contains(name))
    }

    @Test("empty input and garbage are malformed", arguments: [
        [UInt8](), Array("not an OCSP response".utf8), [0x30, 0x03, 0x0A, 0x01], [0x30, 0x80],
        // A successful status without responseBytes.
        [0x30, 0x03, 0x0A, 0x01, 0x00],
    ])
    func malformed(_ der: [UInt8]) throws {
        let error = try #require(try validate(der, certificate: pki.server).failure)
        guard case .malformed = error else {
            Issue.record("expected .malformed, got \(error)")
            return
        }
    }

    /// Regression (found by the revocation fuzz tests): OpenSSL's parser ignored bytes after the response and
    /// accepted an indefinite-length outer SEQUENCE, and the fetcher published, and workers stapled, those bytes
    /// as they were. Strict clients refuse such a staple ("trailing data in OCSP response").
    @Test("a real response with bytes after it, or in BER, is malformed")
    func notExactlyDER() throws {
        let der = try rootResponse(for: pki.server)
        #expect(throws: Never.self) { try validate(der, certificate: pki.server).get() }
        // Outer SEQUENCE: 30 82 <2-byte length>; the same content with an indefinite length and end-of-contents.
        try #require(der.count > 4 && der[0] == 0x30 && der[1] == 0x82)
        let indefinite = [0x30, 0x80] + Array(der[4...]) + [0x00, 0x00]
        let overlong = [0x30, 0x83, 0x00] + Array(der[2...])
        for variant in [der + [0x00], der + Array("\n".utf8), der + der, indefinite, overlong] {
            let error = try #require(try validate(variant, certificate: pki.server).failure)
            guard case .malformed(let text) = error else {
                Issue.record("expected .malformed, got \(error)")
                continue
            }
            #expect(text.contains("DER"), "\(text)")
        }
    }

    @Test("a truncated real response is malformed")
    func truncated() throws {
        let der = try rootResponse(for: pki.server)
        let error = try #require(try validate(Array(der.dropLast(10)), certificate: pki.server).failure)
        guard case .malformed = error else {
            Issue.record("expected .malformed, got \(error)")
            return
        }
    }
}

extension Result {
    /// The error, or nil on success.
    var failure: Failure? {
        if case .failure(let error) = self {
            return error
        }
        return nil
    }
}
