import Foundation

/// A CRL built field by field, for forms `openssl ca` cannot produce (a CRL entry extension of our choosing):
/// the TBSCertList comes from `openssl asn1parse -genconf`, is signed with `openssl dgst -sha256 -sign` (the CA
/// key must be EC, as TestCA makes them), and the signature is put around it by a second `-genconf` run of the
/// same description. Stateless.
enum CraftedCRL {
    /// One revoked serial whose entry carries an extension `entryExtensionOID` (value NULL), critical or not;
    /// issuer CN/O as `openssl req -subj /CN=…/O=…` writes them; cRLNumber 5000. Returns the DER file's path.
    static func withEntryExtension(
        directory: String, issuerCommonName: String, issuerOrganization: String, caKey: String,
        revokedSerialHex: String, entryExtensionOID: String, critical: Bool
    ) throws -> String {
        let name = "crafted-\(UUID().uuidString.prefix(8))"
        let base = directory + "/" + name
        let sections = """
            [tbs]
            version = INTEGER:1
            signature = SEQUENCE:algorithm
            issuer = SEQUENCE:issuer
            thisUpdate = UTCTIME:250101000000Z
            nextUpdate = UTCTIME:491231000000Z
            revoked = SEQUENCE:revoked
            extensions = EXPLICIT:0,SEQUENCE:crl_extensions

            [algorithm]
            oid = OID:ecdsa-with-SHA256

            [issuer]
            cn = SET:cn_set
            o = SET:o_set

            [cn_set]
            attribute = SEQUENCE:cn_attribute

            [cn_attribute]
            type = OID:commonName
            value = UTF8:\(issuerCommonName)

            [o_set]
            attribute = SEQUENCE:o_attribute

            [o_attribute]
            type = OID:organizationName
            value = UTF8:\(issuerOrganization)

            [revoked]
            entry = SEQUENCE:entry

            [entry]
            serial = INTEGER:0x\(revokedSerialHex)
            date = UTCTIME:250101000000Z
            extensions = SEQUENCE:entry_extensions

            [entry_extensions]
            extension = SEQUENCE:entry_extension

            [entry_extension]
            oid = OID:\(entryExtensionOID)
            \(critical ? "critical = BOOLEAN:TRUE" : "")
            value = FORMAT:HEX,OCTETSTRING:0500

            [crl_extensions]
            number = SEQUENCE:crl_number

            [crl_number]
            oid = OID:crlNumber
            value = OCTWRAP,INTEGER:5000

            """
        try Data(("asn1 = SEQUENCE:tbs\n\n" + sections).utf8).write(to: URL(fileURLWithPath: base + "-tbs.cnf"))
        try OpenSSLCommand.check(["asn1parse", "-genconf", base + "-tbs.cnf", "-noout", "-out", base + "-tbs.der"])
        try OpenSSLCommand.check([
            "dgst", "-sha256", "-sign", caKey, "-out", base + "-signature.der", base + "-tbs.der",
        ])
        let signature = try Data(contentsOf: URL(fileURLWithPath: base + "-signature.der"))
        let hex = signature.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
        let whole = """
            asn1 = SEQUENCE:certificate_list

            [certificate_list]
            tbs = SEQUENCE:tbs
            algorithm = SEQUENCE:algorithm
            signature = FORMAT:HEX,BITSTRING:\(hex)

            """ + sections
        try Data(whole.utf8).write(to: URL(fileURLWithPath: base + ".cnf"))
        try OpenSSLCommand.check(["asn1parse", "-genconf", base + ".cnf", "-noout", "-out", base + ".crl.der"])
        return base + ".crl.der"
    }
}
