@testable import Fetcher
import Foundation
import Logging
import OpenSSLTLS
import Testing
@testable import Worker

/// The facts of a CRL that decide revocation; two CRLs with equal facts revoke exactly the same certificates.
struct CRLFacts: Equatable, CustomStringConvertible {
    var issuer: String
    var signer: String?
    var thisUpdate: Int64?
    var nextUpdate: Int64?
    var number: String?
    var serials: [String]?

    init(_ crl: CertificateRevocationList) {
        issuer = crl.issuerDN
        signer = crl.verifiedIssuer?.subjectDN
        thisUpdate = crl.thisUpdate
        nextUpdate = crl.nextUpdate
        number = crl.crlNumber
        serials = DERWalker.revokedSerials(ofCRL: crl.derBytes)
    }

    var description: String {
        "issuer \(issuer), signer \(signer ?? "-"), thisUpdate \(thisUpdate.map(String.init) ?? "-"), "
            + "nextUpdate \(nextUpdate.map(String.init) ?? "-"), number \(number ?? "-"), "
            + "serials \(serials.map { $0.joined(separator: ",") } ?? "unreadable")"
    }
}

/// The facts of a validated OCSP response that a handshake relies on.
struct OCSPFacts: Equatable, CustomStringConvertible {
    var serial: String
    var thisUpdate: Int64
    var nextUpdate: Int64?
    var producedAt: Int64?

    init(_ response: OCSPVerifiedResponse) {
        serial = response.serialHex
        thisUpdate = response.thisUpdate
        nextUpdate = response.nextUpdate
        producedAt = response.producedAt
    }

    var description: String {
        "serial \(serial), thisUpdate \(thisUpdate), nextUpdate \(nextUpdate.map(String.init) ?? "-"), "
            + "producedAt \(producedAt.map(String.init) ?? "-")"
    }
}

/// Feeds fuzz inputs to the four places revocation bytes are parsed and judges each outcome:
///
/// - fetcher, CRL: `CRLAcceptance.check` on a downloaded body;
/// - fetcher, OCSP: `OCSP.validate` on a responder's answer, exactly as `FetchJob` calls it;
/// - worker, CRL: `TLSListener.load` on a file in the cache's `crl/` directory;
/// - worker, OCSP: `TLSListener.loadStaple` on the listener's file in `ocsp/`.
///
/// An input passes if it is refused, or if what was accepted is the original: the same facts as one of the
/// reference CRLs (or the reference response), and for what gets published or stapled, one whole DER element.
/// Used by one test on one thread; not Sendable.
final class RevocationFuzzHarness {
    enum Kind: String {
        case crl, ocsp
    }

    enum Side: String {
        case fetcher, worker
    }

    enum Outcome {
        case rejected
        /// The same facts as a reference; `sameBytes` false when an OCSP response would be stapled with bytes
        /// that differ from the reference's only inside the certificates it carries, which its signature does not
        /// cover.
        case acceptedUnchanged(sameBytes: Bool)
        case acceptedChanged(String)
    }

    struct Tally {
        var tried = 0
        var rejected = 0
        var unchanged = 0
        /// Of `unchanged`: OCSP responses that differ from the reference inside their certificates field.
        var otherBytes = 0
    }

    let authorities: [X509Certificate]
    let server: X509Certificate
    let issuer: X509Certificate
    let now: Int64
    /// CRLs an input may legitimately turn out to be, with the DER the fetcher publishes for each.
    let crlReferences: [(facts: CRLFacts, der: [UInt8])]
    let ocspReference: OCSPFacts
    let ocspReferenceDER: [UInt8]
    /// Where the reference response's `certs` field lies (BasicOCSPResponse [0]).
    let ocspCertificates: Range<Int>
    let directory: String
    let crlFile: String
    let stapling: TLSListener.StaplingIdentity
    private let logger = Logger(label: "revocation-fuzz", factory: { _ in SwiftLogNoOpLogHandler() })
    private(set) var totals = Tally()
    /// Inputs accepted as something else, per family (recorded as issues, at most a few each).
    private var reported: [String: Int] = [:]

    init(pki: FetcherTestPKI, referenceCRLs: [String], referenceOCSP: [UInt8]) throws {
        authorities = try X509Certificate.load(file: pki.ca)
        issuer = try #require(authorities.first)
        server = try #require(try X509Certificate.load(file: pki.server).first)
        now = Int64(Date().timeIntervalSince1970)
        var references: [(CRLFacts, [UInt8])] = []
        for path in referenceCRLs {
            let accepted = try CRLAcceptance.check(
                try TestFiles.bytes(path), authorities: authorities, publishedNumber: nil, now: now
            ).get()
            references.append((CRLFacts(accepted.crl), accepted.der))
        }
        crlReferences = references
        ocspReferenceDER = referenceOCSP
        ocspCertificates = try #require(DERWalker.element(in: referenceOCSP, path: [1, 0, 1, 0, 3])).range
        ocspReference = OCSPFacts(
            try OCSP.validate(referenceOCSP, certificate: server, issuer: issuer, now: now).get())
        directory = try TestFiles.makeDirectory("gatehouse-revocation-fuzz")
        for folder in ["crl", "ocsp", "failures"] {
            try FileManager.default.createDirectory(atPath: directory + "/" + folder, withIntermediateDirectories: true)
        }
        crlFile = directory + "/crl/fuzz.der"
        stapling = TLSListener.StaplingIdentity(
            certificate: server, issuer: issuer, path: directory + "/ocsp/fuzz.der")
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Running a family

    /// Feeds every input to the fetcher and the worker for `kind`, checks each outcome, and adds one summary line
    /// per side: "revocation-fuzz: <family> [<kind> <side>] N tried, R rejected, A accepted unchanged". With
    /// `labels` (one per input), the line names the inputs that were accepted.
    @discardableResult
    func run(
        _ family: String, _ kind: Kind, _ inputs: [[UInt8]], labels: [String]? = nil,
        sides: [Side] = [.fetcher, .worker], sourceLocation: SourceLocation = #_sourceLocation
    ) -> [Side: Tally] {
        var tallies: [Side: Tally] = [:]
        for side in sides {
            let started = ContinuousClock.now
            var tally = Tally()
            var acceptedLabels: [String] = []
            for (index, input) in inputs.enumerated() {
                tally.tried += 1
                switch outcome(of: input, kind: kind, side: side) {
                case .rejected:
                    tally.rejected += 1
                case .acceptedUnchanged(let sameBytes):
                    tally.unchanged += 1
                    if !sameBytes { tally.otherBytes += 1 }
                    if let labels, index < labels.count { acceptedLabels.append(labels[index]) }
                case .acceptedChanged(let detail):
                    report(family: family, kind: kind, side: side, index: index, input: input, detail: detail,
                           sourceLocation: sourceLocation)
                }
            }
            let elapsed = ContinuousClock.now - started
            let milliseconds = elapsed.components.seconds * 1000
                + elapsed.components.attoseconds / 1_000_000_000_000_000
            let line = "revocation-fuzz: \(family) [\(kind.rawValue) \(side.rawValue)] \(tally.tried) tried, "
                + "\(tally.rejected) rejected, \(tally.unchanged) accepted unchanged"
                + (kind == .ocsp ? " (\(tally.otherBytes) of them changed only in the unsigned certs field)" : "")
                + (acceptedLabels.isEmpty ? "" : ": " + acceptedLabels.joined(separator: "; "))
                + " in \(milliseconds) ms"
            print(line)
            totals.tried += tally.tried
            totals.rejected += tally.rejected
            totals.unchanged += tally.unchanged
            totals.otherBytes += tally.otherBytes
            tallies[side] = tally
        }
        return tallies
    }

    func outcome(of input: [UInt8], kind: Kind, side: Side) -> Outcome {
        switch (kind, side) {
        case (.crl, .fetcher): return fetcherCRL(input)
        case (.crl, .worker): return workerCRL(input)
        case (.ocsp, .fetcher): return fetcherOCSP(input)
        case (.ocsp, .worker): return workerOCSP(input)
        }
    }

    private func report(
        family: String, kind: Kind, side: Side, index: Int, input: [UInt8], detail: String,
        sourceLocation: SourceLocation
    ) {
        let key = "\(family) \(kind) \(side)"
        reported[key, default: 0] += 1
        guard reported[key, default: 0] <= 5 else { return }
        let name = key.map { $0.isLetter || $0.isNumber ? $0 : "-" }
        let path = directory + "/failures/\(String(name))-\(index).bin"
        try? TestFiles.write(input, to: path)
        let message = "\(family) [\(kind) \(side)] input #\(index) (\(input.count) bytes, first "
            + "\(hex(input.prefix(16))), saved as \(path)) was accepted as something else: \(detail)"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    }

    private func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }

    // MARK: The four paths

    private func fetcherCRL(_ body: [UInt8]) -> Outcome {
        switch CRLAcceptance.check(body, authorities: authorities, publishedNumber: nil, now: now) {
        case .failure:
            return .rejected
        case .success(let accepted):
            let facts = CRLFacts(accepted.crl)
            guard let reference = crlReferences.first(where: { $0.facts == facts }) else {
                return .acceptedChanged("a CRL with \(facts)")
            }
            guard accepted.thisUpdate == facts.thisUpdate, accepted.nextUpdate == facts.nextUpdate,
                  accepted.number == facts.number
            else {
                return .acceptedChanged("accepted fields differ from the CRL's: \(accepted.number ?? "-")")
            }
            guard accepted.der == reference.der else {
                return .acceptedChanged("publishes \(accepted.der.count) bytes that differ from the reference DER")
            }
            return .acceptedUnchanged(sameBytes: true)
        }
    }

    private func workerCRL(_ contents: [UInt8]) -> Outcome {
        do {
            try TestFiles.write(contents, to: crlFile)
        } catch {
            return .acceptedChanged("cannot write \(crlFile): \(error)")
        }
        switch TLSListener.load(crlFile, cas: authorities, requireIssuerMatch: true) {
        case .failure:
            return .rejected
        case .success(let crls):
            // Nothing usable (every CRL in it belongs to another CA) leaves the worker's CRLs as they were.
            guard !crls.isEmpty else { return .rejected }
            for crl in crls {
                let facts = CRLFacts(crl)
                guard crlReferences.contains(where: { $0.facts == facts }) else {
                    return .acceptedChanged("loaded a CRL with \(facts)")
                }
            }
            return .acceptedUnchanged(sameBytes: true)
        }
    }

    private func fetcherOCSP(_ body: [UInt8]) -> Outcome {
        switch OCSP.validate(body, certificate: server, issuer: issuer, now: now) {
        case .failure:
            return .rejected
        case .success(let response):
            return judge(response)
        }
    }

    private func workerOCSP(_ contents: [UInt8]) -> Outcome {
        do {
            try TestFiles.write(contents, to: stapling.path)
        } catch {
            return .acceptedChanged("cannot write \(stapling.path): \(error)")
        }
        guard case .stapled(let staple) = TLSListener.loadStaple(stapling, previous: .none, logger: logger) else {
            return .rejected
        }
        return judge(staple.response)
    }

    /// An accepted response must say what the reference says; what would be stapled must be one whole DER
    /// element (strict clients refuse trailing bytes and BER) and differ from the reference, if at all, only
    /// inside the certificates it carries, the one part its signature does not cover.
    private func judge(_ response: OCSPVerifiedResponse) -> Outcome {
        let facts = OCSPFacts(response)
        guard facts == ocspReference else {
            return .acceptedChanged("a response with \(facts)")
        }
        let der = response.derBytes
        guard let whole = DERWalker.element(in: der, at: 0), whole.range == 0..<der.count else {
            return .acceptedChanged("would staple \(der.count) bytes that are not one DER element")
        }
        if der == ocspReferenceDER {
            return .acceptedUnchanged(sameBytes: true)
        }
        let outside = zip(der, ocspReferenceDER).enumerated().first { position, pair in
            pair.0 != pair.1 && !ocspCertificates.contains(position)
        }
        guard der.count == ocspReferenceDER.count, outside == nil else {
            return .acceptedChanged("would staple \(der.count) bytes that differ from the reference outside "
                + "its certificates (first at \(outside.map { String($0.offset) } ?? "the end"))")
        }
        return .acceptedUnchanged(sameBytes: false)
    }
}
