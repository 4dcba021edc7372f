@testable import Fetcher
import Foundation
import OpenSSLTLS
import RevocationCache
import Testing

/// Bounded, seeded structured fuzzing of every place that parses a CRL or an OCSP response from outside: the
/// fetcher's acceptance of a downloaded body and a worker's loading of a file from the cache directory (see
/// `RevocationFuzzHarness`). Every input must be refused, or accepted as exactly the original. Each family prints
/// one line per path, `revocation-fuzz: <family> [<kind> <side>] N tried, R rejected, A accepted unchanged`.
@Suite struct RevocationInputFuzzTests {
    let pki: FetcherTestPKI
    let crlDER: [UInt8]
    let crlPEM: [UInt8]
    let otherCRLPEM: [UInt8]
    let ocspDER: [UInt8]

    init() throws {
        pki = try FetcherTestPKI.shared()
        crlDER = try TestFiles.bytes(pki.crl4097DER)
        crlPEM = try TestFiles.bytes(pki.crl4097)
        otherCRLPEM = try TestFiles.bytes(pki.crl4096)
        ocspDER = try TestFiles.bytes(pki.serverOCSP)
    }

    /// Every family in one test, so that the final check really comes after all of them.
    @Test(.timeLimit(.minutes(2)))
    func badInputIsRefusedOrAcceptedUnchanged() throws {
        let harness = try RevocationFuzzHarness(
            pki: pki, referenceCRLs: [pki.crl4097, pki.crl4096], referenceOCSP: ocspDER)
        try expectOriginalsAccepted(by: harness, "before fuzzing")

        // Garbage and text: nothing of it may pass anywhere.
        let garbage = FuzzInputs.garbage(seed: 0x6761_7262_6167_6501)
        expectAllRejected(harness.run("garbage bytes", .crl, garbage))
        expectAllRejected(harness.run("garbage bytes", .ocsp, garbage))
        let text = FuzzInputs.textBodies(validDER: crlDER)
        expectAllRejected(harness.run("text and HTML bodies", .crl, text))
        expectAllRejected(harness.run("text and HTML bodies", .ocsp, text))

        // Truncations: a DER prefix is never whole. A PEM prefix that lost only the final newline still is.
        expectAllRejected(harness.run("crl truncations (DER)", .crl, FuzzInputs.prefixes(of: crlDER)))
        harness.run("crl truncations (PEM)", .crl, FuzzInputs.prefixes(of: crlPEM))
        expectAllRejected(harness.run("ocsp truncations (DER)", .ocsp, FuzzInputs.prefixes(of: ocspDER)))

        // Mutations: refused, or (a change outside what the signature covers) accepted as the original.
        harness.run("crl mutations (DER)", .crl, FuzzInputs.mutations(of: crlDER, count: 2000, seed: 0xC41))
        harness.run("crl mutations (PEM text)", .crl, FuzzInputs.mutations(of: crlPEM, count: 600, seed: 0xC42))
        harness.run(
            "crl mutations (PEM of mutated DER)", .crl,
            FuzzInputs.mutations(of: crlDER, count: 600, seed: 0xC43).map { FuzzInputs.pem("X509 CRL", $0) })
        harness.run("ocsp mutations (DER)", .ocsp, FuzzInputs.mutations(of: ocspDER, count: 2000, seed: 0x0C5))

        // Bytes after a whole DER object. A CRL is re-encoded before it is published and a worker keeps only the
        // parsed CRL, so what follows is ignored (the fetcher still publishes exactly the reference DER); an OCSP
        // response is stapled byte for byte, so it must be refused.
        let otherCRLDER = try #require(try CertificateRevocationList.parse(otherCRLPEM).first).derBytes
        harness.run(
            "trailing data", .crl, trailingData(after: crlDER, other: otherCRLDER),
            labels: ["00", "LF", "CR LF", "empty SEQUENCE", "1 KiB garbage", "itself", "another CRL"])
        expectAllRejected(harness.run("trailing data", .ocsp, trailingData(after: ocspDER, other: crlDER)))

        // Huge inputs, absurd lengths, BER.
        expectAllRejected(harness.run("huge bodies", .crl, try hugeBodies(around: crlDER)))
        expectAllRejected(harness.run("huge bodies", .ocsp, try hugeBodies(around: ocspDER)))
        expectAllRejected(harness.run("enormous length headers", .crl, try enormousLengths(around: crlDER)))
        expectAllRejected(harness.run("enormous length headers", .ocsp, try enormousLengths(around: ocspDER)))
        harness.run("indefinite-length BER", .crl, try indefiniteLengths(of: crlDER, tbs: [0]))
        harness.run("indefinite-length BER", .ocsp, try indefiniteLengths(of: ocspDER, tbs: [1, 0, 1, 0, 0]))

        // Deep nesting, alone and in place of a part of a real CRL or response.
        let nests = deepNests()
        expectAllRejected(harness.run("deep nesting (bare)", .crl, nests))
        expectAllRejected(harness.run("deep nesting (bare)", .ocsp, nests))
        expectAllRejected(harness.run(
            "deep nesting inside a CRL", .crl, try nestedInside(crlDER, at: Self.crlParts, alsoAsPEM: true)))
        expectAllRejected(harness.run(
            "deep nesting inside an OCSP response", .ocsp,
            try nestedInside(ocspDER, at: Self.ocspParts, alsoAsPEM: false)))

        // PEM oddities, and each kind handed to the other's parser.
        let oddities = try pemOddities()
        harness.run("PEM oddities", .crl, oddities.map(\.bytes), labels: oddities.map(\.label))
        expectAllRejected(
            harness.run("PEM oddities", .ocsp, oddities.map(\.bytes) + [FuzzInputs.pem("OCSP RESPONSE", ocspDER)]))
        expectAllRejected(harness.run("wrong kind", .crl, [ocspDER, try certificateDER()]))
        expectAllRejected(harness.run("wrong kind", .ocsp, [crlDER, crlPEM, try certificateDER()]))

        // Whatever came before, the originals still pass: no state was left behind.
        try expectOriginalsAccepted(by: harness, "after fuzzing")
        let totals = harness.totals
        print(
            "revocation-fuzz: total \(totals.tried) tried, \(totals.rejected) rejected, \(totals.unchanged) "
                + "accepted unchanged (\(totals.otherBytes) OCSP responses changed only in the unsigned certs field)")
    }

    /// `crl_cache_max_size` is enforced while downloading (curl's size limit and the write callback): a body one
    /// byte over it fails as a download and publishes nothing, even if it starts with a valid CRL. Under the cap,
    /// validation refuses garbage, 32 MiB of it against the default 64 MiB cap included. OCSP answers have their
    /// own fixed cap.
    @Test(.timeLimit(.minutes(1)))
    func bodiesOverTheSizeCapFailAsDownloadsAndGarbageUnderItAsInvalid() throws {
        let server = try RevocationHTTPServer()
        defer { server.stop() }
        let layout = CacheLayout(root: try TestFiles.makeDirectory("gatehouse-fuzz-cache") + "/cache")
        try layout.create()
        defer { try? FileManager.default.removeItem(atPath: layout.root) }
        let authorities = try X509Certificate.load(file: pki.ca)
        let url = server.url("/big.crl")

        func fetchCRL(cap: Int) -> FetchResult {
            let metadata = CacheItemMetadata(
                kind: .crl, sourceURL: url, origin: .configured, listener: nil,
                file: "crl/\(CacheLayout.identifier(forURL: url)).der")
            return FetchJob(
                source: FetchSource(kind: .crl, url: url, origin: .configured), metadata: metadata, layout: layout,
                settings: FetchSettings(crlTimeout: .seconds(20), maximumSize: cap, httpsCABundle: nil),
                authorities: authorities, stapling: nil
            ).run()
        }
        let defaultCap = 64 << 20
        let cases: [(name: String, body: [UInt8], cap: Int, download: Bool)] = [
            ("a valid CRL padded to cap + 1", crlDER + [UInt8](repeating: 0, count: (1 << 20) + 1 - crlDER.count),
             1 << 20, true),
            ("garbage of cap + 1", FuzzInputs.hugeGarbage(count: (1 << 20) + 1, seed: 1), 1 << 20, true),
            ("garbage of exactly the cap", FuzzInputs.hugeGarbage(count: 1 << 20, seed: 2), 1 << 20, false),
            ("32 MiB of garbage under the default cap", FuzzInputs.hugeGarbage(count: 32 << 20, seed: 3), defaultCap,
             false),
        ]
        for (name, body, cap, download) in cases {
            try server.serve(body, as: "big.crl")
            let result = fetchCRL(cap: cap)
            switch result.outcome {
            case .failed(.download(let text)) where download:
                #expect(text.contains("larger than \(cap) bytes"), "\(name): \(text)")
            case .failed(.invalid(let text)) where !download:
                #expect(text.contains("not a CRL"), "\(name): \(text)")
            default:
                Issue.record("\(name): \(result.outcome)")
            }
            #expect(!FileManager.default.fileExists(atPath: layout.crlFile(forURL: url)), "\(name)")
            print("revocation-fuzz: download cap: \(name) (\(body.count) bytes, cap \(cap)): \(result.outcome)")
        }

        // OCSP: a valid response padded past the responder cap never reaches validation.
        let responder = server.url("/ocsp")
        let target = StaplingTarget(
            listener: "fuzz", certificatePath: pki.server, issuerPath: pki.ca, caBundlePath: nil,
            configuredResponderURL: responder, responderURL: responder,
            schedule: FetchSchedule(interval: .seconds(60), floor: .seconds(1)), httpTimeout: .seconds(20))
        let padded = ocspDER + [UInt8](repeating: 0, count: FetchSettings.maximumOCSPResponseSize + 1 - ocspDER.count)
        try server.serve(padded, as: "ocsp")
        let result = FetchJob(
            source: FetchSource(kind: .ocsp(listener: "fuzz"), url: responder, origin: .stapling),
            metadata: CacheItemMetadata(
                kind: .ocsp, sourceURL: responder, origin: .stapling, listener: "fuzz", file: "ocsp/fuzz.der"),
            layout: layout,
            settings: FetchSettings(crlTimeout: .seconds(20), maximumSize: defaultCap, httpsCABundle: nil),
            authorities: authorities, stapling: target
        ).run()
        guard case .failed(.download(let text)) = result.outcome else {
            Issue.record("an OCSP answer over the cap: \(result.outcome)")
            return
        }
        #expect(text.contains("larger than \(FetchSettings.maximumOCSPResponseSize) bytes"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: layout.ocspFile(listener: "fuzz")))
        print("revocation-fuzz: download cap: OCSP answer of \(padded.count) bytes: \(result.outcome)")
    }

    // MARK: Expectations

    private func expectAllRejected(
        _ tallies: [RevocationFuzzHarness.Side: RevocationFuzzHarness.Tally],
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for (side, tally) in tallies {
            #expect(tally.rejected == tally.tried, "\(side): \(tally.tried - tally.rejected) accepted",
                    sourceLocation: sourceLocation)
        }
    }

    private func expectOriginalsAccepted(by harness: RevocationFuzzHarness, _ when: String) throws {
        for (kind, input) in [(RevocationFuzzHarness.Kind.crl, crlDER), (.crl, crlPEM), (.ocsp, ocspDER)] {
            for side in [RevocationFuzzHarness.Side.fetcher, .worker] {
                guard case .acceptedUnchanged(sameBytes: true) = harness.outcome(of: input, kind: kind, side: side)
                else {
                    Issue.record("\(when): the original \(kind) (\(input.count) bytes) is not accepted by the \(side)")
                    continue
                }
            }
        }
    }

    // MARK: Families built from the originals

    /// The original followed by a zero byte, a newline, an empty SEQUENCE, 1 KiB of garbage, itself, another
    /// object.
    private func trailingData(after original: [UInt8], other: [UInt8]) -> [[UInt8]] {
        [
            original + [0x00], original + [0x0A], original + [0x0D, 0x0A], original + [0x30, 0x00],
            original + FuzzInputs.hugeGarbage(count: 1024, seed: 0x5441_494C), original + original, original + other,
        ]
    }

    /// 32 MiB of garbage; 32 MiB of base64 after a PEM header that never ends; a header claiming 32 MiB whose
    /// content starts as the original's and continues with zeros.
    private func hugeBodies(around original: [UInt8]) throws -> [[UInt8]] {
        let size = 32 << 20
        let root = try #require(DERWalker.element(in: original, at: 0))
        let claimed = DERWalker.header(tag: 0x30, length: size) + Array(original[root.content])
        let base64Line = Array(String(repeating: "A", count: 64).utf8) + [0x0A]
        var endlessPEM = Array("-----BEGIN X509 CRL-----\n".utf8)
        endlessPEM.reserveCapacity(size + 65)
        while endlessPEM.count < size { endlessPEM += base64Line }
        return [
            FuzzInputs.hugeGarbage(count: size, seed: 0x4855_4745),
            endlessPEM,
            claimed + [UInt8](repeating: 0, count: size - claimed.count + 6),
        ]
    }

    /// Length fields that claim up to 2^72 bytes, alone, in front of the original's content, and in place of the
    /// length of its first inner element.
    private func enormousLengths(around original: [UInt8]) throws -> [[UInt8]] {
        let root = try #require(DERWalker.element(in: original, at: 0))
        let first = try #require(DERWalker.element(in: original, path: [0]))
        let content = Array(original[root.content])
        let innerTail = Array(original[first.content.lowerBound...])
        var inputs: [[UInt8]] = [
            [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF],
            [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF] + content,
            [0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF] + content,
            [0x30, 0x83, 0xFF, 0xFF, 0xFF] + content,
            [0x30, 0x88] + [UInt8](repeating: 0xFF, count: 8) + content,
            [0x30, 0x89] + [UInt8](repeating: 0xFF, count: 9) + content,
            [0x30, 0xFF] + content,
            [0x30, 0x84, 0x00, 0x00, 0x00, 0x00] + content,
            // Outer length right, first inner element claiming 4 GiB.
            Array(original[..<first.range.lowerBound]) + [first.tag, 0x84, 0xFF, 0xFF, 0xFF, 0xFF] + innerTail,
        ]
        var random = SeededRandom(seed: 0x4C45_4E)
        for count in 1...8 {
            inputs.append([0x30, 0x80 | UInt8(count)] + [UInt8](repeating: 0xFF, count: count) + random.bytes(64))
        }
        return inputs
    }

    /// BER indefinite lengths: the outer element (which the signature does not cover), the signed part, left
    /// unterminated, and 100 000 unterminated levels.
    private func indefiniteLengths(of original: [UInt8], tbs: [Int]) throws -> [[UInt8]] {
        let signed = try #require(DERWalker.element(in: original, path: tbs))
        let signedIndefinite = try #require(DERWalker.indefinite(Array(original[signed.range])))
        let innerChanged = try #require(DERWalker.replacing(path: tbs, in: original, with: signedIndefinite))
        return [
            try #require(DERWalker.indefinite(original)),
            try #require(DERWalker.indefinite(original, terminated: false)),
            innerChanged,
            // The outer length still counts the definite form, so it no longer matches.
            Array(original[..<signed.range.lowerBound]) + signedIndefinite
                + Array(original[signed.range.upperBound...]),
            DERWalker.nestedIndefiniteSequences(depth: 100_000, terminated: false),
        ]
    }

    /// SEQUENCEs nested 10 000 and 100 000 deep, definite and indefinite, bare and in a PEM block.
    private func deepNests() -> [[UInt8]] {
        let ten = DERWalker.nestedSequences(depth: 10_000)
        let hundred = DERWalker.nestedSequences(depth: 100_000)
        return [
            ten, hundred,
            DERWalker.nestedIndefiniteSequences(depth: 10_000, terminated: true),
            DERWalker.nestedIndefiniteSequences(depth: 100_000, terminated: true),
            FuzzInputs.pem("X509 CRL", ten), FuzzInputs.pem("X509 CRL", hundred),
        ]
    }

    /// In the CRL: the revoked list, the extensions, the issuer name, the outer signature algorithm.
    static let crlParts: [[Int]] = [[0, 5], [0, 6, 0], [0, 2], [1]]
    /// In the response: the single responses, the certificates, the responder ID, the whole basic response.
    static let ocspParts: [[Int]] = [[1, 0, 1, 0, 0, 2], [1, 0, 1, 0, 3, 0], [1, 0, 1, 0, 0, 0], [1, 0, 1, 0]]

    /// The original with each part replaced by 10 000 and by 100 000 nested SEQUENCEs (lengths recomputed, so
    /// only the nesting and the signature are wrong), and each also as PEM if asked.
    private func nestedInside(_ original: [UInt8], at parts: [[Int]], alsoAsPEM: Bool) throws -> [[UInt8]] {
        var inputs: [[UInt8]] = []
        for depth in [10_000, 100_000] {
            let nest = DERWalker.nestedSequences(depth: depth)
            for path in parts {
                try #require(DERWalker.element(in: original, path: path) != nil, "no element at \(path)")
                let replaced = try #require(DERWalker.replacing(path: path, in: original, with: nest))
                inputs.append(replaced)
                if alsoAsPEM {
                    inputs.append(FuzzInputs.pem("X509 CRL", replaced))
                }
            }
        }
        return inputs
    }

    private func certificateDER() throws -> [UInt8] {
        try #require(try X509Certificate.load(file: pki.ca).first).derBytes
    }

    /// Broken base64, two CRLs, a certificate instead of a CRL, empty and unterminated blocks, mismatched
    /// labels, and an "encrypted" block (which must not make OpenSSL ask a terminal for a passphrase).
    private func pemOddities() throws -> [(label: String, bytes: [UInt8])] {
        let certificatePEM = try TestFiles.bytes(pki.ca)
        let body = Data(crlDER).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        func block(_ text: String, label: String = "X509 CRL", end: String? = nil) -> [UInt8] {
            Array("-----BEGIN \(label)-----\n\(text)\n-----END \(end ?? label)-----\n".utf8)
        }
        var badCharacter = Array(body.utf8)
        badCharacter[badCharacter.count / 2] = UInt8(ascii: "!")
        var highByte = Array(body.utf8)
        highByte[highByte.count / 3] = 0xC3
        let middle = body.index(body.startIndex, offsetBy: body.count / 2)
        let withoutOne = String(body.prefix(body.count / 2)) + String(body.dropFirst(body.count / 2 + 1))
        let emptyBlock = Array("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n".utf8)
        let encrypted = "Proc-Type: 4,ENCRYPTED\nDEK-Info: "
        return [
            ("'!' in the base64",
             Array("-----BEGIN X509 CRL-----\n".utf8) + badCharacter + Array("\n-----END X509 CRL-----\n".utf8)),
            ("a non-ASCII byte in the base64",
             Array("-----BEGIN X509 CRL-----\n".utf8) + highByte + Array("\n-----END X509 CRL-----\n".utf8)),
            ("'=' in the middle", block(String(body[..<middle]) + "=" + String(body[middle...]))),
            ("one base64 character missing", block(withoutOne)),
            ("extra padding", block(body + "==")),
            ("half the base64", block(String(body.prefix(body.count / 2)))),
            ("base64 of garbage", block(Data(FuzzInputs.hugeGarbage(count: 700, seed: 0x504D)).base64EncodedString())),
            ("base64 on one line", block(body.replacingOccurrences(of: "\n", with: ""))),
            ("lines joined by spaces", block(body.replacingOccurrences(of: "\n", with: " "))),
            ("two CRLs", otherCRLPEM + crlPEM),
            ("the same CRL twice", crlPEM + crlPEM),
            ("a certificate instead of a CRL", certificatePEM),
            ("a certificate, then the CRL", certificatePEM + crlPEM),
            ("the CRL, then a certificate", crlPEM + certificatePEM),
            ("an empty block", block("")),
            ("an empty block, then the CRL", emptyBlock + crlPEM),
            ("the CRL, then an empty block", crlPEM + emptyBlock),
            ("END label of a certificate", block(body, end: "CERTIFICATE")),
            ("the CRL labelled CERTIFICATE", block(body, label: "CERTIFICATE")),
            ("label 'X509 CR'", block(body, label: "X509 CR")),
            ("BEGIN without END", Array("-----BEGIN X509 CRL-----\n\(body)\n".utf8)),
            ("a BEGIN line alone", Array("-----BEGIN X509 CRL-----".utf8)),
            ("encrypted, AES", block(encrypted + "AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n" + body)),
            ("encrypted, 3DES", block(encrypted + "DES-EDE3-CBC,0011223344556677\n\n" + body)),
            ("encrypted, unknown cipher", block(encrypted + "NOT-A-CIPHER,00\n\n" + body)),
            ("Proc-Type not ENCRYPTED", block("Proc-Type: 4,CRL\n\n" + body)),
        ]
    }
}
