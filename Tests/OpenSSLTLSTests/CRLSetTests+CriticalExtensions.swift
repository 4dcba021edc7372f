import Foundation
import OpenSSLTLS
import Testing

extension CRLSetTests {
    /// `openssl ca -gencrl` on the OCSP test root with a crl_extensions section holding `extensionLine`.
    static func crlWithExtension(_ extensionLine: String, pki: OCSPTestPKI) throws -> String {
        let name = "ext-\(UUID().uuidString.prefix(8))"
        let config = pki.directory + "/\(name).cnf"
        let rootConfig = try String(contentsOfFile: pki.rootConfig, encoding: .utf8)
        let section = "\n[ \(name) ]\nauthorityKeyIdentifier = keyid:always\n\(extensionLine)\n"
        try Data((rootConfig + section).utf8).write(to: URL(fileURLWithPath: config))
        let output = pki.directory + "/\(name).crl.pem"
        try OpenSSLCommand.check(["ca", "-config", config, "-gencrl", "-crlexts", name, "-out", output])
        return output
    }

    @Test("a CRL with an unknown critical extension is rejected; a non-critical one is fine")
    func unknownCriticalExtension() throws {
        let ocspPKI = try OCSPTestPKI.shared()
        let root = try TestHelpers.certificate(ocspPKI.root)

        let critical = try Self.crlWithExtension("1.2.3.4 = critical,ASN1:NULL", pki: ocspPKI)
        let text = try OpenSSLCommand.check(["crl", "-in", critical, "-noout", "-text"])
        #expect(text.contains("1.2.3.4: critical"), "\(text)")
        let parsed = try #require(try CertificateRevocationList.load(file: critical).first)
        switch CRLSet.validate(parsed, cas: [root]) {
        case .success:
            Issue.record("a CRL with an unknown critical extension was accepted")
        case .failure(let rejection):
            #expect(rejection.reason.contains("critical extension"), "\(rejection.reason)")
            #expect(rejection.reason.contains("1.2.3.4"), "\(rejection.reason)")
        }
        let loaded = CRLSet.load(files: [critical], cas: [root])
        #expect(loaded.usable.isEmpty)
        #expect(loaded.rejected.first?.reason.contains("critical extension") == true)

        let nonCritical = try Self.crlWithExtension("1.2.3.4 = ASN1:NULL", pki: ocspPKI)
        let accepted = try #require(try CertificateRevocationList.load(file: nonCritical).first)
        let verified = try CRLSet.validate(accepted, cas: [root]).get()
        #expect(verified.verifiedIssuer?.subjectDN == root.subjectDN)
    }

    @Test("derBytes is the DER openssl writes for the same CRL, and parses back")
    func derBytes() throws {
        let crl = try #require(try CertificateRevocationList.load(file: pki.rootRevokedCRL).first)
        let expected = Array(try Data(contentsOf: URL(fileURLWithPath: pki.rootRevokedCRLDER)))
        #expect(crl.derBytes == expected)
        let again = try #require(try CertificateRevocationList.parse(crl.derBytes).first)
        #expect(again.crlNumber == crl.crlNumber)
        #expect(again.revokedCount == crl.revokedCount)
    }
}

extension CRLSetTests {
    /// A CRL signed by the OCSP test root revoking the sibling certificate, whose entry carries extension 1.2.3.5.
    static func crlWithEntryExtension(critical: Bool, pki: OCSPTestPKI) throws -> CertificateRevocationList {
        let path = try CraftedCRL.withEntryExtension(
            directory: pki.directory, issuerCommonName: "OCSP Test Root", issuerOrganization: "Gatehouse",
            caKey: pki.rootKey, revokedSerialHex: try TestHelpers.certificate(pki.sibling).serialHex,
            entryExtensionOID: "1.2.3.5", critical: critical)
        let text = try OpenSSLCommand.check(["crl", "-inform", "DER", "-in", path, "-noout", "-text"])
        #expect(text.contains(critical ? "1.2.3.5: critical" : "1.2.3.5:"), "\(text)")
        return try #require(try CertificateRevocationList.load(file: path).first)
    }

    @Test("a CRL with an unknown critical entry extension is rejected (RFC 5280 5.3)")
    func unknownCriticalEntryExtension() throws {
        let ocspPKI = try OCSPTestPKI.shared()
        let root = try TestHelpers.certificate(ocspPKI.root)
        // The same CRL with the extension non-critical is well formed, signed by the root and usable.
        let plain = try CRLSet.validate(try Self.crlWithEntryExtension(critical: false, pki: ocspPKI), cas: [root]).get()
        #expect(plain.crlNumber == "5000")
        #expect(plain.revokedCount == 1)
        #expect(plain.isRevoked(try TestHelpers.certificate(ocspPKI.sibling)))

        let critical = try Self.crlWithEntryExtension(critical: true, pki: ocspPKI)
        let result = CRLSet.validate(critical, cas: [root])
        switch result {
        case .success:
            Issue.record("a CRL with an unknown critical entry extension was accepted")
        case .failure(let rejection):
            #expect(rejection.reason.contains("critical entry extension 1.2.3.5"), "\(rejection.reason)")
        }
    }
}
