@testable import Fetcher
import Foundation
import OpenSSLTLS
import Testing

@Suite struct CRLAcceptanceTests {
    let pki: FetcherTestPKI
    let authorities: [X509Certificate]
    let now = Int64(Date().timeIntervalSince1970)

    init() throws {
        pki = try FetcherTestPKI.shared()
        authorities = try X509Certificate.load(file: pki.ca)
    }

    func check(
        _ path: String, published: String? = nil, now: Int64? = nil
    ) throws -> Result<CRLAcceptance.Accepted, FetchFailure> {
        CRLAcceptance.check(try TestFiles.bytes(path), authorities: authorities, publishedNumber: published,
                            now: now ?? self.now)
    }

    /// The reason of a refusal, or nil (and an issue) if the CRL was accepted.
    func reason(_ result: Result<CRLAcceptance.Accepted, FetchFailure>) -> String? {
        switch result {
        case .success:
            Issue.record("accepted, expected a refusal")
            return nil
        case .failure(.invalid(let text)):
            return text
        case .failure(let other):
            Issue.record("expected .invalid, got \(other)")
            return nil
        }
    }

    @Test func aGoodPEMCRLIsAcceptedAndConvertedToOpenSSLsDER() throws {
        let accepted = try check(pki.crl4097).get()
        #expect(accepted.der == (try TestFiles.bytes(pki.crl4097DER)))
        #expect(accepted.number == "4097")
        #expect(accepted.crl.revokedCount == 1)
        #expect(accepted.crl.verifiedIssuer?.subjectDN == "O=Gatehouse,CN=Fetcher Test CA")
        let thisUpdate = try #require(accepted.thisUpdate)
        let nextUpdate = try #require(accepted.nextUpdate)
        #expect(abs(thisUpdate - now) < 600)
        #expect(nextUpdate - thisUpdate == 7 * 86_400)
    }

    /// `crl_cache_max_entries`: counted from the encoding before OpenSSL parses, PEM or DER.
    @Test func aCRLWithMoreEntriesThanTheLimitIsRefusedBeforeParsing() throws {
        for path in [pki.crl4097, pki.crl4097DER] {
            let body = try TestFiles.bytes(path)
            let refused = CRLAcceptance.check(
                body, authorities: authorities, publishedNumber: nil, maximumEntries: 0, now: now)
            let text = reason(refused)
            #expect(text == "the CRL lists 1 revoked entries, more than crl_cache_max_entries (0)", "\(text ?? "")")
            let accepted = CRLAcceptance.check(
                body, authorities: authorities, publishedNumber: nil, maximumEntries: 1, now: now)
            #expect(throws: Never.self) { try accepted.get() }
        }
    }

    @Test func anAcceptedCRLNamesItsLineage() throws {
        let newer = try check(pki.crl4097).get()
        let older = try check(pki.crl4096).get()
        #expect(newer.lineage == older.lineage)
        #expect(newer.lineage.issuerDN == "O=Gatehouse,CN=Fetcher Test CA")
        #expect(newer.lineage.scope == "all")
    }

    @Test func aDERCRLIsAcceptedUnchanged() throws {
        let der = try TestFiles.bytes(pki.crl4097DER)
        let accepted = try check(pki.crl4097DER).get()
        #expect(accepted.der == der)
    }

    @Test func theSameOrAHigherNumberIsAcceptedALowerOneIsARollback() throws {
        #expect(throws: Never.self) { try check(pki.crl4097, published: "4097").get() }
        #expect(throws: Never.self) { try check(pki.crl4097, published: "4096").get() }
        #expect(throws: Never.self) { try check(pki.crl4097, published: "00004097").get() }
        let text = reason(try check(pki.crl4096, published: "4097"))
        #expect(text?.contains("rollback") == true, "\(text ?? "")")
        #expect(text?.contains("4096") == true && text?.contains("4097") == true, "\(text ?? "")")
        // Numbers longer than 64 bits compare as decimals.
        let big = reason(try check(pki.crl4097, published: "18446744073709551616"))
        #expect(big?.contains("rollback") == true, "\(big ?? "")")
    }

    @Test func withoutANumberThisUpdateDecidesRollback() throws {
        // No cRLNumber on one side: an older thisUpdate than the published CRL's is a rollback, a newer one is not.
        let accepted = try check(pki.unnumberedCRL, published: "4097").get()
        #expect(accepted.number == nil)
        let thisUpdate = try #require(accepted.thisUpdate)
        let newer = CRLAcceptance.check(
            try TestFiles.bytes(pki.unnumberedCRL), authorities: authorities, publishedNumber: "4097",
            publishedThisUpdate: thisUpdate - 60, now: thisUpdate + 60)
        #expect((try? newer.get()) != nil)
        let older = CRLAcceptance.check(
            try TestFiles.bytes(pki.unnumberedCRL), authorities: authorities, publishedNumber: "4097",
            publishedThisUpdate: thisUpdate + 60, now: thisUpdate + 120)
        guard case .failure(let failure) = older else {
            Issue.record("an older unnumbered CRL was accepted")
            return
        }
        #expect(failure.description.contains("rollback"), "\(failure)")
    }

    @Test func aCRLSignedByAnotherKeyIsRefused() throws {
        let text = reason(try check(pki.wrongKeyCRL))
        #expect(text?.contains("signature does not verify") == true, "\(text ?? "")")
    }

    @Test func aCRLOfAnotherIssuerIsRefused() throws {
        let text = reason(try check(pki.foreignCRL))
        #expect(text?.contains("no CA certificate matches issuer") == true, "\(text ?? "")")
    }

    @Test func aCRLWithAnUnknownCriticalExtensionIsRefused() throws {
        let text = reason(try check(pki.criticalExtensionCRL))
        #expect(text?.contains("critical extension 1.2.3.4") == true, "\(text ?? "")")
    }

    @Test func thisUpdateInTheFutureIsRefusedBeyondTheLeeway() throws {
        let future = FetcherTestPKI.futureThisUpdate
        let text = reason(try check(pki.futureCRL))
        #expect(text?.contains("in the future") == true, "\(text ?? "")")
        #expect(text?.contains("2030-01-01T00:00:00Z") == true, "\(text ?? "")")
        // 300 s of clock skew are tolerated, 301 are not.
        #expect(throws: Never.self) { try check(pki.futureCRL, now: future - 300).get() }
        #expect(reason(try check(pki.futureCRL, now: future - 301)) != nil)
    }

    @Test func nextUpdateBeforeThisUpdateIsRefused() throws {
        let text = reason(try check(pki.invertedCRL))
        #expect(text == "nextUpdate is before thisUpdate")
    }

    @Test("garbage is not a CRL", arguments: [
        [UInt8](), Array("<html>not found</html>".utf8), [0x30, 0x82, 0x01],
        Array("-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n".utf8),
    ])
    func garbage(_ body: [UInt8]) throws {
        let result = CRLAcceptance.check(body, authorities: authorities, publishedNumber: nil, now: now)
        let text = reason(result)
        #expect(text?.contains("not a CRL") == true, "\(text ?? "")")
    }

    @Test func aCertificateIsNotACRL() throws {
        let text = reason(try check(pki.ca))
        #expect(text?.contains("not a CRL") == true, "\(text ?? "")")
    }

    @Test func twoCRLsInOneBodyAreRefused() throws {
        let text = reason(try check(pki.twoCRLs))
        #expect(text == "expected one CRL, found 2")
    }

    @Test("decimal comparison of any length", arguments: [
        ("0", "0", 0), ("1", "2", -1), ("2", "1", 1), ("9", "10", -1), ("10", "9", 1), ("4096", "4097", -1),
        ("007", "7", 0), ("0", "000", 0), ("", "0", 0), ("0000100", "99", 1), ("00099", "100", -1),
        ("18446744073709551615", "18446744073709551616", -1),
        ("18446744073709551616", "18446744073709551615", 1),
        ("123456789012345678901234567890123456789", "123456789012345678901234567890123456789", 0),
        ("123456789012345678901234567890123456789", "123456789012345678901234567890123456788", 1),
        ("99999999999999999999999999999999999999", "100000000000000000000000000000000000000", -1),
        ("000000000000000000000000000000000000001", "2", -1),
    ])
    func compareDecimal(_ lhs: String, _ rhs: String, _ expected: Int) {
        #expect(CRLOrder.compareDecimal(lhs, rhs) == expected)
        #expect(CRLOrder.compareDecimal(rhs, lhs) == -expected)
    }
}
