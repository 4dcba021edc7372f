import Foundation
import OpenSSLTLS
import Testing

@Suite("CRLSet and CertificateRevocationList")
struct CRLSetTests {
    let pki: TestPKI

    init() throws {
        pki = try TestPKI.shared()
    }

    @Test("PEM and DER CRLs load with the same facts")
    func pemAndDER() throws {
        let cas = try X509Certificate.load(file: pki.caBundle)
        let result = CRLSet.load(files: [pki.rootRevokedCRL, pki.rootRevokedCRLDER], cas: cas)
        #expect(result.rejected.isEmpty)
        try #require(result.usable.count == 2)
        for crl in result.usable {
            #expect(crl.issuerDN == pki.rootSubjectDN)
            #expect(crl.revokedCount == 1)
            #expect(crl.crlNumber != nil)
            #expect(crl.verifiedIssuer?.subjectDN == pki.rootSubjectDN)
            let thisUpdate = try #require(crl.thisUpdate)
            let nextUpdate = try #require(crl.nextUpdate)
            #expect(nextUpdate > thisUpdate)
            #expect(crl.isRevoked(try TestHelpers.certificate(pki.revokedClient)))
            #expect(!crl.isRevoked(try TestHelpers.certificate(pki.goodClient)))
            // By serial, as live connections are checked against a newly loaded CRL.
            let revoked = try TestHelpers.certificate(pki.revokedClient)
            #expect(crl.isRevoked(serialHex: revoked.serialHex))
            #expect(crl.isRevoked(serialHex: revoked.serialHex.lowercased()))
            #expect(!crl.isRevoked(serialHex: try TestHelpers.certificate(pki.goodClient).serialHex))
            #expect(!crl.isRevoked(serialHex: ""))
            #expect(!crl.isRevoked(serialHex: "not hex"))
        }
    }

    @Test("a PEM file may hold several CRLs")
    func severalCRLsInOneFile() throws {
        let combined = pki.directory + "/combined-\(UUID().uuidString.prefix(6)).crl.pem"
        let first = try Data(contentsOf: URL(fileURLWithPath: pki.rootRevokedCRL))
        let second = try Data(contentsOf: URL(fileURLWithPath: pki.intermediateCRL))
        try (first + second).write(to: URL(fileURLWithPath: combined))
        let result = CRLSet.load(files: [combined], cas: try X509Certificate.load(file: pki.caBundle))
        #expect(result.rejected.isEmpty)
        #expect(result.usable.map(\.issuerDN) == [pki.rootSubjectDN, "O=Gatehouse,CN=Gatehouse Test Intermediate"])
    }

    @Test("a CRL signed by the wrong key is rejected with a reason")
    func wrongKey() throws {
        let result = CRLSet.load(files: [pki.wrongKeyCRL], cas: try X509Certificate.load(file: pki.caBundle))
        #expect(result.usable.isEmpty)
        let rejection = try #require(result.rejected.first)
        #expect(rejection.path == pki.wrongKeyCRL)
        #expect(rejection.reason.contains("signature does not verify"), "\(rejection.reason)")
    }

    @Test("a CRL from an issuer that is not among the CAs is rejected")
    func unknownIssuer() throws {
        let result = CRLSet.load(files: [pki.intermediateCRL], cas: [try TestHelpers.certificate(pki.root)])
        #expect(result.usable.isEmpty)
        #expect(result.rejected.first?.reason.contains("no CA certificate matches issuer") == true)
    }

    @Test("unreadable and malformed files are rejected")
    func malformed() throws {
        let garbage = pki.directory + "/garbage-\(UUID().uuidString.prefix(6)).crl"
        try Data("not a CRL at all".utf8).write(to: URL(fileURLWithPath: garbage))
        let result = CRLSet.load(files: [garbage, pki.directory + "/missing.crl"],
                                 cas: try X509Certificate.load(file: pki.caBundle))
        #expect(result.usable.isEmpty)
        #expect(result.rejected.map(\.path) == [garbage, pki.directory + "/missing.crl"])
        #expect(result.rejected.allSatisfy { !$0.reason.isEmpty })
    }

    /// Regression (found by the revocation fuzz tests): with no passphrase callback OpenSSL answered a PEM block
    /// marked `Proc-Type: 4,ENCRYPTED` by asking the terminal or stdin for a passphrase ("Enter PEM pass phrase:"),
    /// blocking the fetcher or the worker until someone typed one; a CRL body from a plain-HTTP distribution point
    /// could do that. Now it is refused at once, without asking (the time limit catches a prompt that blocks).
    @Test("a PEM CRL marked encrypted is refused without asking for a passphrase", .timeLimit(.minutes(1)))
    func encryptedPEMIsRefusedWithoutAPrompt() throws {
        let der = try #require(try CertificateRevocationList.load(file: pki.rootRevokedCRL).first).derBytes
        let body = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        for cipher in ["AES-128-CBC,00112233445566778899AABBCCDDEEFF", "DES-EDE3-CBC,0011223344556677"] {
            let pem = "-----BEGIN X509 CRL-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: \(cipher)\n\n\(body)\n"
                + "-----END X509 CRL-----\n"
            do {
                let crls = try CertificateRevocationList.parse(Array(pem.utf8))
                Issue.record("parsed \(crls.count) CRLs from an encrypted block")
            } catch {
                let text = error.openSSLErrors.joined(separator: "; ")
                #expect(text.contains("bad password read"), "\(text)")
                #expect(!text.contains("PEM_def_callback") && !text.contains("UI routines"), "\(text)")
            }
        }
    }

    @Test("an expired CRL still loads (the handshake refuses with 'CRL has expired')")
    func expiredLoads() throws {
        let result = CRLSet.load(files: [pki.rootExpiredCRL], cas: try X509Certificate.load(file: pki.caBundle))
        #expect(result.rejected.isEmpty)
        let crl = try #require(result.usable.first)
        #expect(crl.nextUpdate == 1_577_923_200)
    }
}

@Suite("X509Certificate and TLSContext")
struct X509CertificateAndContextTests {
    let pki: TestPKI

    init() throws {
        pki = try TestPKI.shared()
    }

    @Test("certificate fields")
    func fields() throws {
        let server = try TestHelpers.certificate(pki.server)
        #expect(server.subjectDN == "O=Gatehouse,CN=localhost")
        #expect(server.commonName == "localhost")
        #expect(server.issuerDN == pki.rootSubjectDN)
        #expect(server.serialHex == "01000010")
        #expect(server.crlDistributionPointURLs == ["http://127.0.0.1:1/root.crl"])
        #expect(server.ocspResponderURLs == ["http://127.0.0.1:1/ocsp"])
        #expect(!server.isCertificateAuthority)
        let notBefore = try #require(server.notBefore)
        let notAfter = try #require(server.notAfter)
        #expect(notAfter - notBefore >= 29 * 86_400)

        let der = try X509Certificate(derBytes: server.derBytes)
        #expect(der.subjectDN == server.subjectDN)
        let root = try TestHelpers.certificate(pki.root)
        #expect(root.isCertificateAuthority)
        #expect(root.isSelfIssued)
        #expect(try X509Certificate.load(file: pki.caBundle).count == 2)
    }

    @Test("context build errors are clear")
    func contextErrors() throws {
        #expect {
            _ = try TLSContextConfiguration.loading(
                certificateChainPath: "/nonexistent/chain.pem", privateKeyPath: pki.serverKey, caBundlePath: pki.caBundle)
        } throws: { error in
            (error as? OpenSSLError)?.description.hasPrefix("cannot load certificate chain /nonexistent/chain.pem") == true
        }
        #expect {
            _ = try TLSContextConfiguration.loading(
                certificateChainPath: pki.server, privateKeyPath: pki.goodClientKey, caBundlePath: pki.caBundle)
        } throws: { error in
            (error as? OpenSSLError)?.message.contains("private key does not match certificate") == true
        }
        var badCiphers = try TLSContextConfiguration.loading(
            certificateChainPath: pki.server, privateKeyPath: pki.serverKey, caBundlePath: pki.caBundle)
        badCiphers.ciphers = ["NO-SUCH-CIPHER"]
        #expect(throws: OpenSSLError.self) {
            _ = try TLSContext(configuration: badCiphers)
        }
        var goodCiphers = badCiphers
        goodCiphers.ciphers = ["ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_AES_256_GCM_SHA384"]
        _ = try TLSContext(configuration: goodCiphers)
    }
}
