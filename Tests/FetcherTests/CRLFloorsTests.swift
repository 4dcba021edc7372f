@testable import Fetcher
import Foundation
import OpenSSLTLS
import Testing

/// `CRLFloors`: the newest CRL accepted per lineage, kept in a file of its own. Real CRLs of the fetcher test CA
/// (cRLNumber 4096 and 4097, one lineage) and an unnumbered one.
@Suite struct CRLFloorsTests {
    let pki: FetcherTestPKI
    let authorities: [X509Certificate]
    let directory: String
    let now = Date().timeIntervalSince1970

    init() throws {
        pki = try FetcherTestPKI.shared()
        authorities = try X509Certificate.load(file: pki.ca)
        directory = try TestFiles.makeDirectory("gatehouse-floors")
    }

    func accepted(_ path: String) throws -> CRLAcceptance.Accepted {
        try CRLAcceptance.check(
            try TestFiles.bytes(path), authorities: authorities, publishedNumber: nil, now: Int64(now)
        ).get()
    }

    func admit(_ floors: CRLFloors, _ crl: CRLAcceptance.Accepted, url: String = "http://ca/a.crl")
        -> CRLFloors.Admission
    {
        floors.admit(crl.lineage, number: crl.number, thisUpdate: crl.thisUpdate, sourceURL: url, now: now)
    }

    @Test func anOlderCRLIsARollbackFromAnyURLTheSameOneIsNot() throws {
        let path = directory + "/crl-floors.json"
        let (floors, outcome) = CRLFloors.load(path: path)
        #expect(outcome == .missing)
        let newer = try accepted(pki.crl4097)
        let older = try accepted(pki.crl4096)
        #expect(admit(floors, newer) == .accepted(saveError: nil))
        guard case .rollback(let floor) = admit(floors, older, url: "http://elsewhere/x.crl") else {
            Issue.record("an older CRL was admitted")
            return
        }
        #expect(floor.crlNumber == "4097" && floor.sourceURL == "http://ca/a.crl")
        #expect(floor.issuer == "O=Gatehouse,CN=Fetcher Test CA" && floor.scope == "all")
        // The same CRL again (after the cache was lost): accepted.
        #expect(admit(floors, newer, url: "http://elsewhere/x.crl") == .accepted(saveError: nil))
        #expect(floors.floor(of: newer.lineage)?.sourceURL == "http://ca/a.crl")
    }

    @Test func theFloorsOutliveTheProcess() throws {
        let path = directory + "/crl-floors.json"
        let newer = try accepted(pki.crl4097)
        #expect(admit(CRLFloors.load(path: path).0, newer) == .accepted(saveError: nil))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        #expect(TestFiles.names(in: directory) == ["crl-floors.json"])

        let (again, outcome) = CRLFloors.load(path: path)
        #expect(outcome == .loaded(count: 1))
        #expect(again.floor(of: newer.lineage)?.crlNumber == "4097")
        guard case .rollback = admit(again, try accepted(pki.crl4096)) else {
            Issue.record("a reloaded floor admitted an older CRL")
            return
        }
    }

    /// A corrupt file is set aside (kept for whoever investigates) and the floors start again from the CRLs the
    /// cache holds.
    @Test func aCorruptFileIsSetAsideAndTheFloorsAreSeededFromTheCache() throws {
        let path = directory + "/crl-floors.json"
        try TestFiles.write(Array("{\"version\": 1, \"floors\": {\"x\": 12}".utf8), to: path)
        let (floors, outcome) = CRLFloors.load(path: path)
        guard case .corrupt(_, let keptAs) = outcome else {
            Issue.record("expected corrupt, got \(outcome)")
            return
        }
        #expect(keptAs == path + ".corrupt")
        #expect(FileManager.default.fileExists(atPath: path + ".corrupt"))
        #expect(floors.count == 0)

        let seeded = floors.seed(
            crlFiles: [pki.crl4096, pki.crl4097DER, pki.foreignCRL, directory + "/missing.der"],
            authorities: authorities, maximumSize: 1 << 20, maximumEntries: 10, now: now)
        #expect(seeded == 2)
        #expect(floors.count == 1)
        guard case .rollback(let floor) = admit(floors, try accepted(pki.crl4096)) else {
            Issue.record("the seeded floor admitted an older CRL")
            return
        }
        #expect(floor.crlNumber == "4097")
        #expect(CRLFloors.load(path: path).1 == .loaded(count: 1))
    }

    @Test func aFloorThatCannotBeSavedStillHoldsInMemory() throws {
        let floors = CRLFloors.load(path: directory + "/no-such-directory/crl-floors.json").0
        guard case .accepted(let error?) = admit(floors, try accepted(pki.crl4097)) else {
            Issue.record("saving into a missing directory did not fail")
            return
        }
        #expect(error.contains("no-such-directory"), "\(error)")
        guard case .rollback = admit(floors, try accepted(pki.crl4096)) else {
            Issue.record("the unsaved floor did not hold")
            return
        }
    }

    @Test func withoutCRLNumbersThisUpdateOrders() throws {
        let path = directory + "/crl-floors.json"
        let floors = CRLFloors.load(path: path).0
        let unnumbered = try accepted(pki.unnumberedCRL)
        let thisUpdate = try #require(unnumbered.thisUpdate)
        #expect(floors.admit(unnumbered.lineage, number: nil, thisUpdate: thisUpdate, sourceURL: "u", now: now)
            == .accepted(saveError: nil))
        guard case .rollback = floors.admit(
            unnumbered.lineage, number: nil, thisUpdate: thisUpdate - 60, sourceURL: "u", now: now)
        else {
            Issue.record("an older thisUpdate was admitted")
            return
        }
    }
}
