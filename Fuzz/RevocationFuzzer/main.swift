// libFuzzer harness for the paths that parse CRLs and OCSP responses from outside. Like MQTTDecoderFuzzer (see the
// shared notes, section 10) it hands control to libFuzzer through LLVMFuzzerRunDriver from top-level code.
//
// Built with `-Xswiftc -DFUZZING -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld` (bin/fuzz) it is
// a libFuzzer binary. Built without that flag (a plain `swift build`) it replays the files or directories named on
// its command line through the same checks, to reproduce a crash or re-run a corpus.
//
// The first byte of an input (modulo 3) picks the path; the rest is the body:
//   0  CRLAcceptance.check: the fetcher's check of a downloaded CRL, PEM or DER;
//   1  OCSP.validate: the fetcher's check of a responder's answer, and a worker's of the file it staples;
//   2  CertificateRevocationList.parse, every accessor of every CRL found, then CRLSet.validate: what a worker does
//      with a file in the cache's crl/ directory.
//
// The trust anchor and the references come from the environment (bin/fuzz makes them with the openssl CLI):
//   GATEHOUSE_FUZZ_CA         the CA certificate (PEM) that signed the CRL and the OCSP response
//   GATEHOUSE_FUZZ_CRL        a CRL it signed
//   GATEHOUSE_FUZZ_OCSP_CERT  the certificate the OCSP response is about
//   GATEHOUSE_FUZZ_OCSP       a good OCSP response for it (DER)
//
// Besides not crashing, whatever is accepted must be the reference: a CRL with its issuer, times, number and
// entries, re-encoded to its DER; an OCSP response with its serial and times. Only a forged signature gets anything
// else through the checks, so a failure here means a check let something in.

import Fetcher
import FuzzSupport
import OpenSSLTLS

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the references are, and what every accepted input must equal. Loaded once, before fuzzing; immutable.
private struct Reference: Sendable {
    struct CRLFacts: Equatable {
        var issuer: String
        var thisUpdate: Int64?
        var nextUpdate: Int64?
        var number: String?
        var entries: Int
        var der: [UInt8]

        init(_ crl: CertificateRevocationList) {
            issuer = crl.issuerDN
            thisUpdate = crl.thisUpdate
            nextUpdate = crl.nextUpdate
            number = crl.crlNumber
            entries = crl.revokedCount
            der = crl.derBytes
        }
    }

    struct OCSPFacts: Equatable {
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
    }

    var authorities: [X509Certificate]
    var issuer: X509Certificate
    var ocspCertificate: X509Certificate
    var now: Int64
    var crl: CRLFacts
    var ocsp: OCSPFacts
    /// Of the certificate the OCSP response is about, for `isRevoked(serialHex:)` on every parsed CRL.
    var serialHex: String

    /// Loads the references and checks that they pass; a harness whose references fail would find nothing.
    static func load() -> Reference {
        func fail(_ message: String) -> Never {
            let line = Array("RevocationFuzzer: \(message)\n".utf8)
            _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            exit(2)
        }
        func path(_ name: String) -> String {
            guard let value = getenv(name) else {
                fail("\(name) is not set (bin/fuzz sets GATEHOUSE_FUZZ_CA, _CRL, _OCSP_CERT and _OCSP)")
            }
            return String(cString: value)
        }
        func bytes(_ name: String) -> [UInt8] {
            let file = path(name)
            guard let contents = FuzzDriver.readFile(file) else { fail("cannot read \(name)=\(file)") }
            return contents
        }
        let now = Int64(time(nil))
        do {
            let authorities = try X509Certificate.load(file: path("GATEHOUSE_FUZZ_CA"))
            guard let issuer = authorities.first,
                  let certificate = try X509Certificate.load(file: path("GATEHOUSE_FUZZ_OCSP_CERT")).first
            else { fail("no certificate in GATEHOUSE_FUZZ_CA or GATEHOUSE_FUZZ_OCSP_CERT") }
            let crl: CRLAcceptance.Accepted
            switch CRLAcceptance.check(bytes("GATEHOUSE_FUZZ_CRL"), authorities: authorities, publishedNumber: nil,
                                       now: now) {
            case .success(let accepted): crl = accepted
            case .failure(let failure): fail("the reference CRL is refused: \(failure)")
            }
            let ocsp: OCSPVerifiedResponse
            switch OCSP.validate(bytes("GATEHOUSE_FUZZ_OCSP"), certificate: certificate, issuer: issuer, now: now) {
            case .success(let response): ocsp = response
            case .failure(let failure): fail("the reference OCSP response is refused: \(failure)")
            }
            return Reference(
                authorities: authorities, issuer: issuer, ocspCertificate: certificate, now: now,
                crl: CRLFacts(crl.crl), ocsp: OCSPFacts(ocsp), serialHex: certificate.serialHex)
        } catch {
            fail("cannot load the references: \(error)")
        }
    }
}

private let reference = Reference.load()

private func fetcherCRL(_ body: [UInt8]) {
    guard case .success(let accepted) = CRLAcceptance.check(
        body, authorities: reference.authorities, publishedNumber: nil, now: reference.now)
    else { return }
    let facts = Reference.CRLFacts(accepted.crl)
    guard facts == reference.crl, accepted.der == reference.crl.der, accepted.number == facts.number,
          accepted.thisUpdate == facts.thisUpdate, accepted.nextUpdate == facts.nextUpdate
    else {
        fatalError("CRLAcceptance accepted a CRL that is not the reference: \(facts.issuer) \(facts.number ?? "-")")
    }
}

private func ocsp(_ body: [UInt8]) {
    guard case .success(let response) = OCSP.validate(
        body, certificate: reference.ocspCertificate, issuer: reference.issuer, now: reference.now)
    else { return }
    guard Reference.OCSPFacts(response) == reference.ocsp, response.derBytes == body else {
        fatalError("OCSP.validate accepted a response that is not the reference: \(response)")
    }
}

private func workerCRL(_ contents: [UInt8]) {
    guard let crls = try? CertificateRevocationList.parse(contents) else { return }
    for crl in crls {
        // Everything a worker or `status` may read off a CRL, on whatever parsed, before any check.
        _ = (crl.issuerDN, crl.thisUpdate, crl.nextUpdate, crl.crlNumber, crl.revokedCount, crl.isDeltaCRL)
        _ = (crl.derBytes.count, crl.isRevoked(serialHex: reference.serialHex), crl.isRevoked(reference.issuer))
        guard case .success(let verified) = CRLSet.validate(crl, cas: reference.authorities) else { continue }
        let facts = Reference.CRLFacts(verified)
        guard facts == reference.crl else {
            fatalError("CRLSet.validate accepted a CRL that is not the reference: \(facts.issuer)")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func revocationFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 3 {
    case 0: fetcherCRL(body)
    case 1: ocsp(body)
    default: workerCRL(body)
    }
    return 0
}

FuzzDriver.main(revocationFuzzerTestOneInput)
