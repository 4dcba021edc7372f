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

/// Which critical CRL and CRL-entry extensions a CRL may carry: exactly those OpenSSL's verifier handles. A CRL
/// with any other critical extension is flagged by OpenSSL (EXFLAG_CRITICAL): with it alone, every client of its
/// CA is refused ("unhandled critical CRL extension"); next to another CRL of the same issuer, OpenSSL scores it
/// below the other one and ignores its revocations. So our checks must refuse exactly those, at fetch and at load.
struct CriticalExtensionTests {
    let pki: TestPKI

    init() throws {
        pki = try TestPKI.shared()
    }

    struct Case: CustomStringConvertible, Sendable {
        var label: String
        var crl: [String]
        var entry: [String]
        var description: String { label }
    }

    /// Each extension by name, critical; the same names non-critical make a control case each.
    static let cases: [Case] = [
        Case(label: "no extension critical", crl: [], entry: []),
        Case(label: "authorityKeyIdentifier", crl: ["akid"], entry: []),
        Case(label: "issuingDistributionPoint (only user certificates)", crl: ["idp"], entry: []),
        Case(label: "cRLNumber", crl: ["number"], entry: []),
        Case(label: "issuerAltName", crl: ["ian"], entry: []),
        Case(label: "freshestCRL", crl: ["freshest"], entry: []),
        Case(label: "authorityInfoAccess", crl: ["aia"], entry: []),
        Case(label: "unknown 1.2.3.4", crl: ["unknown"], entry: []),
        Case(label: "entry reasonCode", crl: [], entry: ["reason"]),
        Case(label: "entry invalidityDate", crl: [], entry: ["invalidity"]),
        Case(label: "entry holdInstructionCode", crl: [], entry: ["hold"]),
        Case(label: "entry unknown 1.2.3.5", crl: [], entry: ["unknown"]),
    ]

    private func crlExtension(_ name: String, critical: Bool) throws -> CraftedCRL.Extension {
        switch name {
        case "akid":
            let text = try OpenSSLCommand.check(["x509", "-in", pki.root, "-noout", "-ext", "subjectKeyIdentifier"])
            let keyID = try #require(text.split(separator: "\n").last).trimmingCharacters(in: .whitespaces)
                .replacingOccurrences(of: ":", with: "")
            return .init(oid: "authorityKeyIdentifier", critical: critical, value: "SEQUENCE:akid",
                         sections: "[akid]\nkeyid = IMPLICIT:0,FORMAT:HEX,OCTETSTRING:\(keyID)\n")
        case "idp":
            return .init(oid: "issuingDistributionPoint", critical: critical, value: "SEQUENCE:idp",
                         sections: "[idp]\nonlyuser = IMPLICIT:1,BOOLEAN:TRUE\n")
        case "number":
            return .init(oid: "crlNumber", critical: critical, value: "INTEGER:5000")
        case "ian":
            return .init(oid: "issuerAltName", critical: critical, value: "SEQUENCE:ian",
                         sections: "[ian]\nuri = IMPLICIT:6,IA5STRING:http://ca.example/\n")
        case "freshest":
            return .init(oid: "freshestCRL", critical: critical, value: "SEQUENCE:fcrl", sections: """
                [fcrl]
                dp = SEQUENCE:fcrl_dp
                [fcrl_dp]
                name = IMPLICIT:0,SEQUENCE:fcrl_name
                [fcrl_name]
                full = IMPLICIT:0,SEQUENCE:fcrl_uris
                [fcrl_uris]
                uri = IMPLICIT:6,IA5STRING:http://ca.example/delta.crl

                """)
        case "aia":
            return .init(oid: "authorityInfoAccess", critical: critical, value: "SEQUENCE:aia", sections: """
                [aia]
                ad = SEQUENCE:aia_ad
                [aia_ad]
                method = OID:caIssuers
                location = IMPLICIT:6,IA5STRING:http://ca.example/ca.pem

                """)
        default:
            return .init(oid: "1.2.3.4", critical: critical, value: "NULL")
        }
    }

    private func entryExtension(_ name: String, critical: Bool) -> CraftedCRL.Extension {
        switch name {
        case "reason": return .init(oid: "CRLReason", critical: critical, value: "ENUMERATED:1")
        case "invalidity": return .init(oid: "invalidityDate", critical: critical, value: "GENERALIZEDTIME:20250101000000Z")
        case "hold": return .init(oid: "holdInstructionCode", critical: critical, value: "OID:holdInstructionNone")
        default: return .init(oid: "1.2.3.5", critical: critical, value: "NULL")
        }
    }

    /// The CRL of `testCase` (its extensions critical or not) revoking `revokedClient`, in PEM for `openssl verify`.
    private func crl(_ testCase: Case, critical: Bool) throws -> String {
        var crlExtensions = try testCase.crl.map { try crlExtension($0, critical: critical) }
        if !testCase.crl.contains("number") {
            crlExtensions.append(.init(oid: "crlNumber", critical: false, value: "INTEGER:5000"))
        }
        let der = try CraftedCRL.make(
            directory: pki.directory, issuerCommonName: "Gatehouse Test Root", issuerOrganization: "Gatehouse",
            caKey: pki.rootKey, revokedSerialHex: try TestHelpers.certificate(pki.revokedClient).serialHex,
            crlExtensions: crlExtensions, entryExtensions: testCase.entry.map { entryExtension($0, critical: critical) })
        let pem = der + ".pem"
        try OpenSSLCommand.check(["crl", "-inform", "DER", "-in", der, "-out", pem])
        return pem
    }

    /// What OpenSSL's verifier says of `client` with only the root and `crl` (`openssl verify -crl_check`).
    private func openSSLVerdict(_ client: String, crl: String) throws -> String {
        let result = try OpenSSLCommand.run([
            "verify", "-crl_check", "-purpose", "sslclient", "-CAfile", pki.root, "-CRLfile", crl, client,
        ])
        return result.output
    }

    @Test("a critical extension is accepted exactly when OpenSSL's verifier handles it", arguments: cases)
    func matchesTheVerifier(_ testCase: Case) throws {
        let root = try TestHelpers.certificate(pki.root)
        for critical in [true, false] {
            let path = try crl(testCase, critical: critical)
            let parsed = try #require(try CertificateRevocationList.load(file: path).first)
            let ours = CRLSet.validate(parsed, cas: [root])
            let good = try openSSLVerdict(pki.goodClient, crl: path)
            let verifierUsesIt = good.contains(": OK")
            switch ours {
            case .success:
                #expect(verifierUsesIt, "accepted, but OpenSSL refuses a good client with it (\(critical)): \(good)")
                let revoked = try openSSLVerdict(pki.revokedClient, crl: path)
                #expect(revoked.contains("certificate revoked"), "\(revoked)")
            case .failure(let rejection):
                #expect(!verifierUsesIt, "refused (\(rejection.reason)), but OpenSSL's verifier uses it")
                #expect(critical, "a non-critical form was refused: \(rejection.reason)")
                #expect(good.contains("unhandled critical"), "\(good)")
            }
        }
    }
}
