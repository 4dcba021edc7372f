import Foundation

/// A CRL built field by field, for forms `openssl ca` cannot produce (extensions of our choosing, critical or
/// not, on the CRL and on its entry): the TBSCertList comes from `openssl asn1parse -genconf`, is signed with
/// `openssl dgst -sha256 -sign` (the CA key must be EC, as TestCA makes them), and the signature is put around it
/// by a second `-genconf` run of the same description. Stateless.
enum CraftedCRL {
    /// One extension: its OID (name or dotted), whether it is critical, and its value as an `asn1parse -genconf`
    /// value, without the OCTET STRING wrapping (e.g. `INTEGER:5000`, `SEQUENCE:some_section`).
    struct Extension {
        var oid: String
        var critical: Bool
        var value: String
        /// `-genconf` sections the value refers to.
        var sections = ""
    }

    /// One revoked serial whose entry carries an extension `entryExtensionOID` (value NULL), critical or not;
    /// issuer CN/O as `openssl req -subj /CN=…/O=…` writes them; cRLNumber 5000. Returns the DER file's path.
    static func withEntryExtension(
        directory: String, issuerCommonName: String, issuerOrganization: String, caKey: String,
        revokedSerialHex: String, entryExtensionOID: String, critical: Bool
    ) throws -> String {
        try make(
            directory: directory, issuerCommonName: issuerCommonName, issuerOrganization: issuerOrganization,
            caKey: caKey, revokedSerialHex: revokedSerialHex,
            crlExtensions: [Extension(oid: "crlNumber", critical: false, value: "INTEGER:5000")],
            entryExtensions: [Extension(oid: entryExtensionOID, critical: critical, value: "NULL")])
    }

    /// A CRL of the issuer CN/O (as `openssl req -subj /CN=…/O=…` writes them), thisUpdate 2025, nextUpdate 2049,
    /// revoking `revokedSerialHex` with `entryExtensions` on its entry, and `crlExtensions` (none: a v2 CRL without
    /// extensions). Returns the DER file's path.
    static func make(
        directory: String, issuerCommonName: String, issuerOrganization: String, caKey: String,
        revokedSerialHex: String, crlExtensions: [Extension], entryExtensions: [Extension] = []
    ) throws -> String {
        let name = "crafted-\(UUID().uuidString.prefix(8))"
        let base = directory + "/" + name
        func extensionSections(_ prefix: String, _ extensions: [Extension]) -> (list: String, sections: String) {
            var list = "[\(prefix)_list]\n"
            var sections = ""
            for (index, item) in extensions.enumerated() {
                list += "e\(index) = SEQUENCE:\(prefix)_\(index)\n"
                sections += "[\(prefix)_\(index)]\noid = OID:\(item.oid)\n"
                if item.critical { sections += "critical = BOOLEAN:TRUE\n" }
                sections += "value = OCTWRAP,\(item.value)\n\n" + item.sections + "\n"
            }
            return (list, sections)
        }
        let crl = extensionSections("crl_ext", crlExtensions)
        let entry = extensionSections("entry_ext", entryExtensions)
        let sections = """
            [tbs]
            version = INTEGER:1
            signature = SEQUENCE:algorithm
            issuer = SEQUENCE:issuer
            thisUpdate = UTCTIME:250101000000Z
            nextUpdate = UTCTIME:491231000000Z
            revoked = SEQUENCE:revoked
            \(crlExtensions.isEmpty ? "" : "extensions = EXPLICIT:0,SEQUENCE:crl_ext_list")

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
            \(entryExtensions.isEmpty ? "" : "extensions = SEQUENCE:entry_ext_list")

            \(crl.list)
            \(crl.sections)
            \(entry.list)
            \(entry.sections)
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
