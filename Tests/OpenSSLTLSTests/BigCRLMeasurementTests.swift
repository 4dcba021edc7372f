import Foundation
@testable import OpenSSLTLS
import Testing

/// A CRL with a million entries: correctness of the pre-verified CRL check, and the per-verification cost with
/// and without it (printed, not asserted).
@Suite("Million-entry CRL")
struct BigCRLMeasurementTests {
    static let entries = 1_000_000
    static let firstSerial: UInt32 = 0x0100_0000

    let pki: TestPKI

    init() throws {
        pki = try TestPKI.shared()
    }

    @Test("revoked serial refused, other accepted; cost per verification measured")
    func millionEntries() throws {
        let root = try TestHelpers.certificate(pki.root)
        let good = try TestHelpers.certificate(pki.goodClient)
        let revoked = try TestHelpers.certificate(pki.revokedClient)
        guard let goodSerial = UInt32(good.serialHex, radix: 16) else {
            Issue.record("unexpected serial \(good.serialHex)")
            return
        }

        var clock = ContinuousClock.now
        let path = pki.directory + "/big-\(UUID().uuidString.prefix(6)).crl.der"
        try BigCRLBuilder.write(
            to: path, issuerName: try BigCRLBuilder.subjectName(ofCertificateDER: root.derBytes),
            signingKey: pki.rootKey, serials: (0..<UInt32(Self.entries)).lazy
                .map { Self.firstSerial + $0 }.filter { $0 != goodSerial }
        )
        let buildTime = ContinuousClock.now - clock
        defer {
            for file in [path, path + ".tbs", path + ".sig"] {
                try? FileManager.default.removeItem(atPath: file)
            }
        }

        clock = ContinuousClock.now
        let loaded = CRLSet.load(files: [path], cas: try X509Certificate.load(file: pki.caBundle))
        let loadTime = ContinuousClock.now - clock
        #expect(loaded.rejected.isEmpty, "\(loaded.rejected)")
        let big = try #require(loaded.usable.first)
        #expect(big.revokedCount == Self.entries - 1)

        let fast = try context(crl: big, defaultCheck: false)
        #expect(fast.verifyClientCertificate(good) == 0)
        #expect(fast.verifyClientCertificate(revoked) == 23)

        // Real handshakes over the big CRL too.
        let server = try TestServer(context: fast)
        defer { server.shutdown() }
        let accepted = try SClient.connect(port: server.port, version: .tls13, certificate: pki.goodClient,
                                           key: pki.goodClientKey, caFile: pki.root)
        #expect(accepted.echoed, "\(accepted.output)")
        let refused = try SClient.connect(port: server.port, version: .tls13, certificate: pki.revokedClient,
                                          key: pki.revokedClientKey, caFile: pki.root)
        #expect(refused.sawRevokedAlert, "\(refused.output)")

        let empty = try #require(
            CRLSet.load(files: [pki.rootEmptyCRL], cas: try X509Certificate.load(file: pki.caBundle)).usable.first
        )
        let slow = try context(crl: big, defaultCheck: true)
        #expect(slow.verifyClientCertificate(revoked) == 23)
        let rows: [(String, TLSContext, Int)] = [
            ("0 entries, OpenSSL default check_crl", try context(crl: empty, defaultCheck: true), 300),
            ("0 entries, pre-verified check_crl", try context(crl: empty, defaultCheck: false), 300),
            ("1M entries, OpenSSL default check_crl", slow, 10),
            ("1M entries, pre-verified check_crl", fast, 300),
        ]
        print("[measurement] building the 1M-entry DER CRL: \(buildTime); CRLSet.load (parse+verify+sort): \(loadTime)")
        for (label, context, iterations) in rows {
            #expect(context.verifyClientCertificate(good) == 0)
            let start = ContinuousClock.now
            for _ in 0..<iterations {
                _ = context.verifyClientCertificate(good)
            }
            let perVerification = (ContinuousClock.now - start) / iterations
            print("[measurement] \(label): \(perVerification) per client-certificate verification")
        }
    }

    private func context(crl: CertificateRevocationList, defaultCheck: Bool) throws -> TLSContext {
        var configuration = try TLSContextConfiguration.loading(
            certificateChainPath: pki.server, privateKeyPath: pki.serverKey, caBundlePath: pki.caBundle,
            isCRLCheckEnabled: true, crls: [crl]
        )
        configuration.usesOpenSSLDefaultCRLCheck = defaultCheck
        return try TLSContext(configuration: configuration)
    }
}

/// Writes a big CRL as DER by hand (TBSCertList with fixed-size entries), signed with `openssl dgst -sign`, so a
/// million entries take seconds rather than a million `openssl ca -revoke` runs. Stateless.
enum BigCRLBuilder {
    struct Malformed: Error {}

    /// The raw subject Name TLV of a DER certificate.
    static func subjectName(ofCertificateDER der: [UInt8]) throws -> [UInt8] {
        let certificate = try element(der, at: 0)
        let tbs = try element(der, at: certificate.contentStart)
        var offset = tbs.contentStart
        var index = 0
        // [0] version (optional), serial, signature, issuer, validity, subject
        let first = try element(der, at: offset)
        if der[offset] == 0xA0 {
            offset = first.end
        }
        while index < 4 {
            offset = try element(der, at: offset).end
            index += 1
        }
        let subject = try element(der, at: offset)
        return Array(der[offset..<subject.end])
    }

    static func write(to path: String, issuerName: [UInt8], signingKey: String, serials: some Sequence<UInt32>)
        throws
    {
        let now = Date()
        let thisUpdate = utcTime(now.addingTimeInterval(-3600))
        let nextUpdate = utcTime(now.addingTimeInterval(7 * 86_400))
        let revocationDate = thisUpdate

        var entries: [UInt8] = []
        entries.reserveCapacity(23 * 1_000_000)
        for serial in serials {
            entries += [0x30, 0x15, 0x02, 0x04,
                        UInt8(truncatingIfNeeded: serial >> 24), UInt8(truncatingIfNeeded: serial >> 16),
                        UInt8(truncatingIfNeeded: serial >> 8), UInt8(truncatingIfNeeded: serial)]
            entries += revocationDate
        }
        let ecdsaWithSHA256: [UInt8] = [0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]
        let tbs = tlv(0x30, [0x02, 0x01, 0x01] + ecdsaWithSHA256 + issuerName + thisUpdate + nextUpdate
            + tlv(0x30, entries))

        let tbsPath = path + ".tbs"
        let signaturePath = path + ".sig"
        try Data(tbs).write(to: URL(fileURLWithPath: tbsPath))
        try OpenSSLCommand.check(["dgst", "-sha256", "-sign", signingKey, "-out", signaturePath, tbsPath])
        let signature = Array(try Data(contentsOf: URL(fileURLWithPath: signaturePath)))
        let crl = tlv(0x30, tbs + ecdsaWithSHA256 + tlv(0x03, [0x00] + signature))
        try Data(crl).write(to: URL(fileURLWithPath: path))
    }

    /// UTCTime TLV (13 content bytes: YYMMDDHHMMSSZ).
    private static func utcTime(_ date: Date) -> [UInt8] {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let text = String(format: "%02d%02d%02d%02d%02d%02dZ", parts.tm_year % 100, parts.tm_mon + 1, parts.tm_mday,
                          parts.tm_hour, parts.tm_min, parts.tm_sec)
        return tlv(0x17, Array(text.utf8))
    }

    private static func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var length: [UInt8] = []
        if content.count < 0x80 {
            length = [UInt8(content.count)]
        } else {
            var remaining = content.count
            var bytes: [UInt8] = []
            while remaining > 0 {
                bytes.insert(UInt8(truncatingIfNeeded: remaining), at: 0)
                remaining >>= 8
            }
            length = [0x80 | UInt8(bytes.count)] + bytes
        }
        return [tag] + length + content
    }

    /// Header of the TLV at `offset`: where its content starts and where it ends.
    private static func element(_ der: [UInt8], at offset: Int) throws -> (contentStart: Int, end: Int) {
        guard offset + 2 <= der.count else {
            throw Malformed()
        }
        let first = der[offset + 1]
        var length = 0
        var header = 2
        if first < 0x80 {
            length = Int(first)
        } else {
            let count = Int(first & 0x7F)
            guard count > 0, count <= 4, offset + 2 + count <= der.count else {
                throw Malformed()
            }
            for byte in der[(offset + 2)..<(offset + 2 + count)] {
                length = length << 8 | Int(byte)
            }
            header += count
        }
        guard offset + header + length <= der.count else {
            throw Malformed()
        }
        return (offset + header, offset + header + length)
    }
}
