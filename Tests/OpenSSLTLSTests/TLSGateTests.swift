import Foundation
import OpenSSLTLS
import Synchronization
import Testing

/// `TLSGate`: the context in force and the admitted certificates under one lock, so that a reload either sees a
/// completed handshake (and revokes it) or the handshake sees the reload (and is checked against it).
@Suite("TLSGate")
struct TLSGateTests {
    let pki: TestPKI

    init() throws {
        pki = try TestPKI.shared()
    }

    private func subject(_ path: String) throws -> RevocationSubject {
        let certificate = try TestHelpers.certificate(path)
        return RevocationSubject(
            subjectDN: certificate.subjectDN, issuerDN: certificate.issuerDN, serialHex: certificate.serialHex)
    }

    /// The serials `onRevoked` was called with.
    final class Recorded: Sendable {
        private let serials = Mutex<[String]>([])
        func append(_ serial: String) { serials.withLock { $0.append(serial) } }
        var all: [String] { serials.withLock { $0 } }
    }

    private func admission(_ path: String, revoked: Recorded) throws -> TLSGate.Admission {
        let certificate = try TestHelpers.certificate(path)
        return TLSGate.Admission(peer: certificate.peerCertificate, subjects: [try subject(path)]) { revocation in
            revoked.append(revocation.subject.serialHex)
        }
    }

    @Test("an admission reads the context in force; an install takes the admitted connections")
    func admissionAndInstallAreOrdered() throws {
        let before = try TestHelpers.context(pki, crls: [pki.rootEmptyCRL, pki.intermediateCRL])
        let after = try TestHelpers.context(pki, crls: [pki.rootRevokedCRL, pki.intermediateCRL])
        let gate = TLSGate(context: before)
        let revoked = Recorded()

        let (seen, ticket) = gate.admit(try admission(pki.revokedClient, revoked: revoked))
        #expect(seen === before)
        let (_, goodTicket) = gate.admit(try admission(pki.goodClient, revoked: revoked))
        #expect(gate.admittedCount == 2)

        let (generation, revocations) = gate.install(after)
        #expect(generation == 2)
        #expect(revocations.map(\.subject.serialHex) == [try TestHelpers.certificate(pki.revokedClient).serialHex])
        #expect(revoked.all == [try TestHelpers.certificate(pki.revokedClient).serialHex])
        #expect(gate.revokedCount == 1)
        // Whoever completes from now on sees the new context.
        #expect(gate.admit(nil).context === after)

        // A released admission is not looked at again.
        if let ticket { gate.release(ticket) }
        if let goodTicket { gate.release(goodTicket) }
        #expect(gate.admittedCount == 0)
        _ = gate.install(after)
        #expect(revoked.all.count == 1)
    }

    @Test("a chain subject revoked by the new context revokes the connection (crl_check_depth = chain)")
    func chainSubjects() throws {
        let before = try TestHelpers.context(
            pki, crls: [pki.rootEmptyCRL, pki.intermediateCRL], depth: .chain)
        let after = try TestHelpers.context(
            pki, crls: [pki.rootRevokesIntermediateCRL, pki.intermediateCRL], depth: .chain)
        let gate = TLSGate(context: before)
        let revoked = Recorded()
        let client = try TestHelpers.certificate(pki.intermediateClient)
        _ = gate.admit(TLSGate.Admission(
            peer: client.peerCertificate, subjects: [try subject(pki.intermediateClient), try subject(pki.intermediate)]
        ) { revocation in revoked.append(revocation.subject.serialHex) })
        let (_, revocations) = gate.install(after)
        #expect(revocations.count == 1)
        #expect(revocations.first?.peer.serialHex == client.serialHex)
        #expect(revoked.all == [try TestHelpers.certificate(pki.intermediate).serialHex])
    }

    @Test("of several CRLs of one lineage only the newest is in force, whatever the order")
    func newestPerLineage() throws {
        let cas = try X509Certificate.load(file: pki.caBundle)
        func verified(_ path: String) throws -> CertificateRevocationList {
            try CRLSet.validate(try #require(try CertificateRevocationList.load(file: path).first), cas: cas).get()
        }
        let older = try verified(pki.rootEmptyCRL)
        let newer = try verified(pki.rootRevokedCRL)
        let other = try verified(pki.intermediateCRL)
        #expect(newer.isNewer(than: older))
        #expect(older.lineage == newer.lineage)
        #expect(older.lineage != other.lineage)
        for input in [[older, newer, other], [newer, other, older], [other, older, newer]] {
            let (inForce, superseded) = CRLSelection.newestPerLineage(input)
            #expect(Set(inForce.map(ObjectIdentifier.init)) == Set([newer, other].map(ObjectIdentifier.init)))
            #expect(superseded.map(ObjectIdentifier.init) == [ObjectIdentifier(older)])
        }
        // The context puts only the newest into its store.
        var configuration = try TLSContextConfiguration.loading(
            certificateChainPath: pki.server, privateKeyPath: pki.serverKey, caBundlePath: pki.caBundle,
            isCRLCheckEnabled: true, crls: [newer, older, other])
        configuration.crlCheckDepth = .leaf
        let context = try TLSContext(configuration: configuration)
        #expect(context.crls.count == 2)
        #expect(!context.crls.contains { $0 === older })
    }

    @Test("CRL order: cRLNumber when both have one, else thisUpdate", arguments: [
        ("1001", 10, "1000", 20, 1), ("1000", 20, "1001", 10, -1), ("1000", 10, "1000", 20, -1),
        ("99999999999999999999", 1, "100000000000000000000", 1, -1),
    ] as [(String, Int64, String, Int64, Int)])
    func order(left: String, leftTime: Int64, right: String, rightTime: Int64, expected: Int) {
        #expect(CRLOrder.compare(number: left, thisUpdate: leftTime, to: right, otherThisUpdate: rightTime) == expected)
        #expect(CRLOrder.compare(number: nil, thisUpdate: leftTime, to: right, otherThisUpdate: rightTime)
                == (leftTime < rightTime ? -1 : leftTime > rightTime ? 1 : 0))
    }
}
