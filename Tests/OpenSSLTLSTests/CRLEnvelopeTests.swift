import Foundation
import OpenSSLTLS
import Testing

/// `CRLEnvelope`: counting a CRL's revoked entries from its encoding, before OpenSSL parses it. Real CRLs from
/// `openssl ca -gencrl` (PEM and DER, one and several per file) must count what OpenSSL counts; crafted outlines
/// (no version, no nextUpdate, BER indefinite lengths, hostile lists of empty entries) count by structure alone;
/// broken ones are refused with a reason.
@Suite("CRL envelope: entries counted before parsing")
struct CRLEnvelopeTests {
    let pki: TestPKI

    init() throws {
        pki = try TestPKI.shared()
    }

    /// A DER element.
    static func der(_ tag: UInt8, _ contents: [UInt8]) -> [UInt8] {
        var length: [UInt8]
        if contents.count < 0x80 {
            length = [UInt8(contents.count)]
        } else {
            length = []
            var rest = contents.count
            while rest > 0 {
                length.insert(UInt8(rest & 0xff), at: 0)
                rest >>= 8
            }
            length.insert(0x80 | UInt8(length.count), at: 0)
        }
        return [tag] + length + contents
    }

    /// The outline of a CRL: tbsCertList (optional version and nextUpdate) with `entries`, an algorithm and a
    /// signature that mean nothing (nothing here verifies signatures).
    static func crl(entries: [[UInt8]]?, version: Bool = true, nextUpdate: Bool = true) -> [UInt8] {
        der(0x30, crlContents(entries: entries, version: version, nextUpdate: nextUpdate))
    }

    /// What `crl` puts inside the outer SEQUENCE.
    static func crlContents(entries: [[UInt8]]?, version: Bool = true, nextUpdate: Bool = true) -> [UInt8] {
        let algorithm = der(0x30, der(0x06, [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]))
        let issuer = der(0x30, der(0x31, der(0x30, der(0x06, [0x55, 0x04, 0x03]) + der(0x0c, Array("CA".utf8)))))
        let time = der(0x17, Array("250101000000Z".utf8))
        var tbs: [UInt8] = version ? der(0x02, [0x01]) : []
        tbs += algorithm + issuer + time + (nextUpdate ? time : [])
        if let entries {
            tbs += der(0x30, entries.flatMap { $0 })
        }
        return der(0x30, tbs) + algorithm + der(0x03, [0x00, 0x01])
    }

    static func entry(_ serial: UInt8) -> [UInt8] {
        der(0x30, der(0x02, [serial]) + der(0x17, Array("250101000000Z".utf8)))
    }

    @Test("real CRLs count what OpenSSL counts, PEM and DER", arguments: [
        "root-empty.crl.pem", "root-revoked.crl.pem", "root-revoked.crl.der", "root-revokes-intermediate.crl.pem",
    ])
    func realCRLs(_ name: String) throws {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: pki.directory + "/crls/" + name)))
        let parsed = try CertificateRevocationList.parse(bytes)
        #expect(try CRLEnvelope.revokedEntryCount(bytes) == parsed.reduce(0) { $0 + $1.revokedCount })
        let encodings = try CRLEnvelope.derEncodings(bytes)
        #expect(encodings.count == 1)
        #expect(encodings.first == parsed.first?.derBytes)
    }

    @Test("several PEM blocks: each decoded, entries summed; text around them ignored")
    func severalBlocks() throws {
        let empty = try Data(contentsOf: URL(fileURLWithPath: pki.directory + "/crls/root-empty.crl.pem"))
        let two = try Data(contentsOf: URL(fileURLWithPath: pki.directory + "/crls/root-revokes-intermediate.crl.pem"))
        let bytes = Array(Data("Certificate Revocation List (CRL):\n  text openssl crl -text prints\n".utf8) + empty
            + Data("\r\n".utf8) + two)
        #expect(try CRLEnvelope.derEncodings(bytes).count == 2)
        #expect(try CRLEnvelope.revokedEntryCount(bytes) == 2)
    }

    @Test("the outline alone decides: optional fields, BER indefinite lengths, empty entries")
    func crafted() throws {
        #expect(try CRLEnvelope.revokedEntryCount(der: Self.crl(entries: nil)) == 0)
        #expect(try CRLEnvelope.revokedEntryCount(der: Self.crl(entries: [])) == 0)
        let three = (1...3).map { Self.entry($0) }
        #expect(try CRLEnvelope.revokedEntryCount(der: Self.crl(entries: three)) == 3)
        #expect(try CRLEnvelope.revokedEntryCount(der: Self.crl(entries: three, version: false)) == 3)
        #expect(try CRLEnvelope.revokedEntryCount(der: Self.crl(entries: three, nextUpdate: false)) == 3)
        // Trailing bytes after the CRL are ignored, as OpenSSL's parser does.
        #expect(try CRLEnvelope.revokedEntryCount(der: Self.crl(entries: three) + [0, 0, 1]) == 3)
        // 30 00 entries: two bytes each, what OpenSSL would allocate a structure for before failing.
        let hostile = Self.crl(entries: Array(repeating: [0x30, 0x00], count: 50_000))
        #expect(try CRLEnvelope.revokedEntryCount(der: hostile) == 50_000)
        // The outer SEQUENCE and the list in BER indefinite form.
        let inside = Self.crlContents(entries: three)
        #expect(try CRLEnvelope.revokedEntryCount(der: [0x30, 0x80] + inside + [0, 0]) == 3)
    }

    @Test("broken outlines are refused with a reason", arguments: [
        ("garbage", Array("<html>gone</html>".utf8), "does not start with a SEQUENCE"),
        ("empty", [], "truncated"),
        ("truncated", Array(Self.crl(entries: [Self.entry(1)]).dropLast(4)), "past its end"),
        ("length past the end", [0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30, 0x00], "past its end"),
        ("length of 9 bytes", [0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9], "bad length"),
        ("no end-of-contents", [0x30, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01], "end-of-contents"),
        ("indefinite primitive", [0x30, 0x80, 0x04, 0x80, 0x00, 0x00], "primitive"),
        ("no issuer", Self.der(0x30, Self.der(0x30, Self.der(0x02, [1]) + Self.der(0x30, []))), "no issuer"),
    ] as [(String, [UInt8], String)])
    func broken(_ name: String, _ bytes: [UInt8], _ reason: String) {
        do {
            let count = try CRLEnvelope.revokedEntryCount(der: bytes)
            Issue.record("\(name): counted \(count)")
        } catch {
            #expect(error.message.contains(reason), "\(name): \(error)")
            #expect(error.description.hasPrefix("not a CRL"), "\(name): \(error)")
        }
    }

    @Test("deep BER nesting is refused, not recursed into without bound")
    func deepNesting() {
        let depth = 100_000
        let nested = Array(repeatElement([UInt8]([0x30, 0x80]), count: depth).joined())
            + [UInt8](repeating: 0, count: 2 * depth)
        #expect(throws: CRLEnvelopeError.self) { try CRLEnvelope.revokedEntryCount(der: nested) }
    }

    @Test("PEM that is not base64, or has no END line, is refused")
    func badPEM() throws {
        let begin = "-----BEGIN X509 CRL-----\n"
        for (text, reason) in [
            (begin + "MIIB!!!!\n-----END X509 CRL-----\n", "not valid base64"),
            (begin + "Proc-Type: 4,ENCRYPTED\n\nMIIB\n-----END X509 CRL-----\n", "not valid base64"),
            (begin + "MIIBAA==AA\n-----END X509 CRL-----\n", "not valid base64"),
            (begin + "MIIBAAAA\n", "no END line"),
        ] {
            #expect(throws: CRLEnvelopeError(reason == "no END line" ? "PEM block 1 has no END line"
                                                : "PEM block 1 is not valid base64")) {
                try CRLEnvelope.derEncodings(Array(text.utf8))
            }
        }
        // A PEM certificate is not a CRL: no block to decode.
        #expect(try CRLEnvelope.derEncodings(Array("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".utf8)).isEmpty)
    }

    @Test("two million entries are counted in bounded time")
    func twoMillion() throws {
        let list = Array(repeatElement(Self.entry(7), count: 2_000_001).joined())
        let bytes = Self.der(0x30, Self.der(0x30, Self.der(0x02, [1])
            + Self.der(0x30, Self.der(0x06, [0x2a]))
            + Self.der(0x30, [])
            + Self.der(0x17, Array("250101000000Z".utf8))
            + Self.der(0x30, list)) + Self.der(0x30, []) + Self.der(0x03, [0]))
        let started = Date()
        #expect(try CRLEnvelope.revokedEntryCount(der: bytes) == 2_000_001)
        let seconds = Date().timeIntervalSince(started)
        print("crl-envelope: counted 2,000,001 entries (\(bytes.count) bytes) in \(String(format: "%.2f", seconds)) s")
        #expect(seconds < 30)
    }
}
