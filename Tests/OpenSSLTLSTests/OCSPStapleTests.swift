import Foundation
import OpenSSLTLS
import Testing

/// `OCSP.stapleEncoding`: a response from `openssl ocsp` that carries extra certificates (`-rother`) is re-encoded
/// with only the signer certificate a client needs, and still verifies, with our checks and with `openssl ocsp`.
@Suite("OCSP staples carry only the signer certificate they need")
struct OCSPStapleTests {
    let pki: OCSPTestPKI
    let now = Int64(Date().timeIntervalSince1970)

    init() throws {
        pki = try OCSPTestPKI.shared()
    }

    /// A response about the server certificate signed by `signer`, with the certificates in `others` added.
    func response(signer: String, key: String, extra: [String] = []) throws -> OCSPVerifiedResponse {
        let request = try OCSP.request(certificate: try TestHelpers.certificate(pki.server),
                                       issuer: try TestHelpers.certificate(pki.root))
        let der = try pki.respond(to: request, index: pki.rootIndex, ca: pki.root, signer: signer, signerKey: key,
                                  extra: extra)
        return try OCSP.validate(der, certificate: try TestHelpers.certificate(pki.server),
                                 issuer: try TestHelpers.certificate(pki.root), now: now).get()
    }

    /// `-rother` with these certificates in one PEM file.
    func others(_ paths: [String]) throws -> [String] {
        let path = pki.directory + "/responses/others-\(UUID().uuidString.prefix(8)).pem"
        let pem = try paths.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }.reduce(Data(), +)
        try pem.write(to: URL(fileURLWithPath: path))
        return ["-rother", path]
    }

    /// The subjects of the certificates in a response, and whether `openssl ocsp -respin … -CAfile root` (no
    /// `-issuer`, no `-verify_other`: the signer must be in the response) verifies it.
    func inspect(_ der: [UInt8]) throws -> (subjects: [String], verifies: Bool, signature: String) {
        let path = pki.directory + "/responses/staple-\(UUID().uuidString.prefix(8)).der"
        try Data(der).write(to: URL(fileURLWithPath: path))
        let text = try OpenSSLCommand.check(["ocsp", "-respin", path, "-resp_text", "-noverify"])
        let subjects = text.split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return trimmed.hasPrefix("Subject: ") ? String(trimmed.dropFirst("Subject: ".count)) : nil
        }
        let signature = text.components(separatedBy: "Signature Value:").dropFirst().first?
            .components(separatedBy: "Certificate:").first ?? ""
        let result = try OpenSSLCommand.run(["ocsp", "-respin", path, "-CAfile", pki.root])
        return (subjects, result.output.contains("Response verify OK"), signature)
    }

    func expectStillValid(_ staple: [UInt8], like original: OCSPVerifiedResponse) throws {
        let again = try OCSP.validate(staple, certificate: try TestHelpers.certificate(pki.server),
                                      issuer: try TestHelpers.certificate(pki.root), now: now).get()
        #expect(again.thisUpdate == original.thisUpdate && again.nextUpdate == original.nextUpdate)
        #expect(again.certificateStatus == .good)
        #expect(again.signerDER == original.signerDER)
    }

    @Test("a delegated responder's whole chain and more: only the responder's certificate stays")
    func delegatedWithExtras() throws {
        let original = try response(signer: pki.responder, key: pki.responderKey,
                                    extra: try others([pki.root, pki.intermediate, pki.other]))
        #expect(try inspect(original.derBytes).subjects.count == 4)
        let staple = try OCSP.stapleEncoding(
            of: original, servedChain: [try TestHelpers.certificate(pki.server)])
        let seen = try inspect(staple)
        #expect(seen.subjects == ["CN=responder, O=Gatehouse"])
        #expect(seen.verifies)
        #expect(seen.signature == (try inspect(original.derBytes)).signature)
        #expect(staple.count < original.derBytes.count)
        try expectStillValid(staple, like: original)
        // Nothing more to drop: the same bytes.
        let again = try OCSP.validate(staple, certificate: try TestHelpers.certificate(pki.server),
                                      issuer: try TestHelpers.certificate(pki.root), now: now).get()
        #expect(try OCSP.stapleEncoding(of: again, servedChain: []) == staple)
    }

    @Test("signed by the issuer, which the server does not send: the issuer's certificate stays, the rest goes")
    func issuerNotInChain() throws {
        let original = try response(signer: pki.root, key: pki.rootKey,
                                    extra: try others([pki.intermediate, pki.other]))
        let staple = try OCSP.stapleEncoding(
            of: original, servedChain: [try TestHelpers.certificate(pki.server)])
        let seen = try inspect(staple)
        #expect(seen.subjects == ["CN=OCSP Test Root, O=Gatehouse"])
        #expect(seen.verifies)
        try expectStillValid(staple, like: original)
    }

    @Test("signed by the issuer, which the server sends in its chain: no certificate at all")
    func issuerInChain() throws {
        let original = try response(signer: pki.root, key: pki.rootKey, extra: try others([pki.other]))
        let staple = try OCSP.stapleEncoding(
            of: original,
            servedChain: [try TestHelpers.certificate(pki.server), try TestHelpers.certificate(pki.root)])
        #expect(try inspect(staple).subjects.isEmpty)
        try expectStillValid(staple, like: original)
    }

    @Test("what needs nothing dropped is returned as it came", arguments: ["default", "no certificates"])
    func unchanged(_ which: String) throws {
        let original = which == "default"
            ? try response(signer: pki.responder, key: pki.responderKey)
            : try response(signer: pki.root, key: pki.rootKey, extra: ["-resp_no_certs"])
        let staple = try OCSP.stapleEncoding(
            of: original, servedChain: [try TestHelpers.certificate(pki.server)])
        #expect(staple == original.derBytes)
    }
}
