import Foundation
import NIOCore
import NIOPosix
import OpenSSLTLS
import Synchronization
import Testing

/// Real handshakes: `TLSServerHandler` in an in-process NIO server, driven by `openssl s_client`.
@Suite("TLSServerHandler with openssl s_client")
struct TLSServerHandlerTests {
    let pki: TestPKI

    init() throws {
        pki = try TestPKI.shared()
    }

    private func withServer(
        _ context: TLSContext,
        handshakeTimeout: TimeAmount = .seconds(15),
        _ body: (TestServer) throws -> Void
    ) throws {
        let server = try TestServer(context: context, handshakeTimeout: handshakeTimeout)
        defer { server.shutdown() }
        try body(server)
    }

    private func standardCRLs() -> [String] {
        [pki.rootRevokedCRL, pki.intermediateCRL]
    }

    @Test("a good client certificate is accepted and the echo works", arguments: TLSVersion.allCases)
    func goodClient(version: TLSVersion) throws {
        try withServer(try TestHelpers.context(pki, crls: standardCRLs())) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.goodClient,
                                             key: pki.goodClientKey, caFile: pki.root)
            #expect(result.echoed, "\(result.output)")
            #expect(result.output.contains("New, \(version.protocolName)"))
            // The server closed with close_notify, not a bare TCP close.
            #expect(result.output.contains("\nclosed\n"), "\(result.output)")
            #expect(!result.output.contains("unexpected eof"), "\(result.output)")
            #expect(TestHelpers.eventually { server.events.completions.count == 1 })
            let completed = try #require(server.events.completions.first)
            #expect(completed.protocolVersion == version.protocolName)
            #expect(completed.peer?.commonName == "good-client")
            #expect(completed.peer?.subjectDN == "OU=Devices,O=Gatehouse,CN=good-client")
            #expect(completed.peer?.issuerDN == pki.rootSubjectDN)
            #expect(completed.isSessionResumed == false)
            #expect(server.refusals.total == 0)
        }
    }

    @Test("a revoked client gets alert 44, one warning with serial and reason, one count", arguments: TLSVersion.allCases)
    func revokedClient(version: TLSVersion) throws {
        let revoked = try TestHelpers.certificate(pki.revokedClient)
        try withServer(try TestHelpers.context(pki, crls: standardCRLs())) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.revokedClient,
                                             key: pki.revokedClientKey, caFile: pki.root)
            #expect(result.sawRevokedAlert, "\(result.output)")
            #expect(!result.echoed)
            #expect(TestHelpers.eventually { server.refusals.count(for: "certificate revoked") == 1 })
            #expect(server.refusals.total == 1)
            let warnings = server.logs.warnings
            try #require(warnings.count == 1)
            let line = warnings[0].metadata
            #expect(line["tls.listener"] == "test-listener")
            #expect(line["tls.peer"]?.contains("127.0.0.1") == true)
            #expect(line["tls.reason"] == "certificate revoked")
            #expect(line["tls.serial"] == revoked.serialHex)
            #expect(line["tls.subject"] == "O=Gatehouse,CN=revoked-client")
            #expect(line["tls.issuer"] == pki.rootSubjectDN)
            let failure = try #require(server.events.failures.first)
            #expect(failure.kind == .verificationFailed)
            #expect(failure.verifyResult == 23)
            #expect(failure.errorDepth == 0)
            #expect(failure.peer?.serialHex == revoked.serialHex)
        }
    }

    @Test("a DER CRL revokes just like the PEM one", arguments: TLSVersion.allCases)
    func derCRL(version: TLSVersion) throws {
        let context = try TestHelpers.context(pki, crls: [pki.rootRevokedCRLDER, pki.intermediateCRL])
        try withServer(context) { server in
            let revoked = try SClient.connect(port: server.port, version: version, certificate: pki.revokedClient,
                                              key: pki.revokedClientKey, caFile: pki.root)
            #expect(revoked.sawRevokedAlert, "\(revoked.output)")
            let good = try SClient.connect(port: server.port, version: version, certificate: pki.goodClient,
                                           key: pki.goodClientKey, caFile: pki.root)
            #expect(good.echoed, "\(good.output)")
        }
    }

    @Test("a client without a certificate is refused", arguments: TLSVersion.allCases)
    func noClientCertificate(version: TLSVersion) throws {
        try withServer(try TestHelpers.context(pki, crls: standardCRLs())) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: nil, key: nil,
                                             caFile: pki.root)
            #expect(!result.echoed, "\(result.output)")
            #expect(TestHelpers.eventually { server.refusals.count(for: "peer did not return a certificate") == 1 })
            let failure = try #require(server.events.failures.first)
            #expect(failure.kind == .protocolError)
            #expect(failure.peer == nil)
        }
    }

    @Test("a certificate from another CA is refused", arguments: TLSVersion.allCases)
    func otherCA(version: TLSVersion) throws {
        try withServer(try TestHelpers.context(pki, crls: standardCRLs())) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.otherClient,
                                             key: pki.otherClientKey, caFile: pki.root)
            #expect(!result.echoed, "\(result.output)")
            #expect(TestHelpers.eventually { server.refusals.count(for: "unable to get local issuer certificate") == 1 })
            let failure = try #require(server.events.failures.first)
            #expect(failure.peer?.commonName == "other-client")
        }
    }

    @Test("an expired CRL refuses every client, naming the issuer", arguments: TLSVersion.allCases)
    func expiredCRL(version: TLSVersion) throws {
        try withServer(try TestHelpers.context(pki, crls: [pki.rootExpiredCRL, pki.intermediateCRL])) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.goodClient,
                                             key: pki.goodClientKey, caFile: pki.root)
            #expect(!result.echoed, "\(result.output)")
            #expect(TestHelpers.eventually { server.refusals.count(for: "CRL has expired") == 1 })
            let line = try #require(server.logs.warnings.first).metadata
            #expect(line["tls.reason"] == "CRL has expired")
            #expect(line["tls.crl_issuer"] == pki.rootSubjectDN)
        }
    }

    @Test("no CRL for the issuer fails closed", arguments: TLSVersion.allCases)
    func missingCRL(version: TLSVersion) throws {
        try withServer(try TestHelpers.context(pki, crls: [pki.intermediateCRL])) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.goodClient,
                                             key: pki.goodClientKey, caFile: pki.root)
            #expect(!result.echoed, "\(result.output)")
            #expect(TestHelpers.eventually { server.refusals.count(for: "unable to get certificate CRL") == 1 })
            let line = try #require(server.logs.warnings.first).metadata
            #expect(line["tls.crl_issuer"] == pki.rootSubjectDN)
        }
    }

    @Test("sessions resume within a context but not past a new context whose CRL revokes the client",
          arguments: TLSVersion.allCases)
    func sessionResumption(version: TLSVersion) throws {
        let before = try TestHelpers.context(pki, crls: [pki.rootEmptyCRL, pki.intermediateCRL])
        let after = try TestHelpers.context(pki, crls: [pki.rootRevokedCRL, pki.intermediateCRL])
        let session = pki.directory + "/session-\(version.protocolName)-\(UUID().uuidString.prefix(6)).pem"
        try withServer(before) { server in
            let first = try SClient.connect(port: server.port, version: version, certificate: pki.revokedClient,
                                            key: pki.revokedClientKey, caFile: pki.root, extra: ["-sess_out", session])
            #expect(first.echoed, "\(first.output)")
            #expect(!first.isResumed)

            let resumed = try SClient.connect(port: server.port, version: version, certificate: pki.revokedClient,
                                              key: pki.revokedClientKey, caFile: pki.root, extra: ["-sess_in", session])
            #expect(resumed.echoed, "\(resumed.output)")
            #expect(resumed.isResumed, "\(resumed.output)")
            #expect(TestHelpers.eventually { server.events.completions.count == 2 })
            #expect(server.events.completions.last?.isSessionResumed == true)
            #expect(server.events.completions.last?.peer?.commonName == "revoked-client")

            server.swap(to: after)
            let refused = try SClient.connect(port: server.port, version: version, certificate: pki.revokedClient,
                                              key: pki.revokedClientKey, caFile: pki.root, extra: ["-sess_in", session])
            #expect(!refused.isResumed, "\(refused.output)")
            #expect(refused.sawRevokedAlert, "\(refused.output)")
            #expect(!refused.echoed)
        }
    }

    @Test("chain depth checks the intermediate against the root's CRL; leaf depth does not",
          arguments: TLSVersion.allCases)
    func chainDepth(version: TLSVersion) throws {
        let crls = [pki.rootRevokesIntermediateCRL, pki.intermediateCRL]
        try withServer(try TestHelpers.context(pki, crls: crls, depth: .chain)) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.intermediateClient,
                                             key: pki.intermediateClientKey, chain: pki.intermediate,
                                             caFile: pki.root)
            #expect(result.sawRevokedAlert, "\(result.output)")
            #expect(TestHelpers.eventually { server.events.failures.count == 1 })
            let failure = try #require(server.events.failures.first)
            #expect(failure.reason == "certificate revoked")
            #expect(failure.errorDepth == 1)
            #expect(failure.errorCertificate?.commonName == "Gatehouse Test Intermediate")
            #expect(failure.peer?.commonName == "chain-client")
        }
        try withServer(try TestHelpers.context(pki, crls: crls, depth: .leaf)) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.intermediateClient,
                                             key: pki.intermediateClientKey, chain: pki.intermediate,
                                             caFile: pki.root)
            #expect(result.echoed, "\(result.output)")
        }
        let current = [pki.rootEmptyCRL, pki.intermediateCRL]
        try withServer(try TestHelpers.context(pki, crls: current, depth: .chain)) { server in
            let result = try SClient.connect(port: server.port, version: version, certificate: pki.intermediateClient,
                                             key: pki.intermediateClientKey, chain: pki.intermediate,
                                             caFile: pki.root)
            #expect(result.echoed, "\(result.output)")
        }
    }

    @Test("the OCSP response is stapled only when the client asks", arguments: TLSVersion.allCases)
    func stapling(version: TLSVersion) throws {
        try withServer(try TestHelpers.context(pki, crls: standardCRLs(), ocspResponse: true)) { server in
            let asked = try SClient.connect(port: server.port, version: version, certificate: pki.goodClient,
                                            key: pki.goodClientKey, caFile: pki.root, extra: ["-status"])
            #expect(asked.output.contains("OCSP Response Status: successful"), "\(asked.output)")
            #expect(asked.echoed)
            let notAsked = try SClient.connect(port: server.port, version: version, certificate: pki.goodClient,
                                               key: pki.goodClientKey, caFile: pki.root)
            #expect(!notAsked.output.contains("OCSP Response Status"), "\(notAsked.output)")
            #expect(notAsked.echoed)
        }
    }

    @Test("a connection that never completes the handshake is closed at the timeout")
    func handshakeTimeout() throws {
        let context = try TestHelpers.context(pki, crls: standardCRLs())
        try withServer(context, handshakeTimeout: .milliseconds(300)) { server in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            let channel = try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).wait()
            let closed = TestHelpers.eventually(timeout: 5) { !channel.isActive }
            #expect(closed)
            #expect(TestHelpers.eventually { server.refusals.count(for: "handshake timeout") == 1 })
            #expect(server.events.failures.first?.kind == .timedOut)
            try? channel.close().wait()
        }
    }

    @Test("a malformed ClientHello gets an alert record, then the connection closes")
    func garbage() throws {
        let context = try TestHelpers.context(pki, crls: standardCRLs())
        try withServer(context) { server in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            let received = ReceivedBytes()
            let channel = try ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteCollector(received: received))
                    }
                }
                .connect(host: "127.0.0.1", port: server.port).wait()
            // A handshake record holding a ClientHello that claims one body byte (OpenSSL answers decode_error;
            // for plain HTTP it would send no alert at all).
            let malformed: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]
            try channel.writeAndFlush(ByteBuffer(bytes: malformed)).wait()
            #expect(TestHelpers.eventually(timeout: 5) { !channel.isActive })
            #expect(received.bytes.first == 21, "a TLS alert record: \(received.bytes)")
            #expect(TestHelpers.eventually { server.refusals.total == 1 })
            #expect(server.logs.warnings.first?.metadata["tls.peer"]?.hasPrefix("127.0.0.1:") == true)
            try? channel.close().wait()
        }
    }

    @Test("a TLS 1.2-only listener refuses TLS 1.3 clients")
    func versionRestriction() throws {
        let context = try TestHelpers.context(pki, crls: standardCRLs(), versions: [.tls1_2])
        try withServer(context) { server in
            let refused = try SClient.connect(port: server.port, version: .tls13, certificate: pki.goodClient,
                                              key: pki.goodClientKey, caFile: pki.root)
            #expect(!refused.echoed, "\(refused.output)")
            let accepted = try SClient.connect(port: server.port, version: .tls12, certificate: pki.goodClient,
                                               key: pki.goodClientKey, caFile: pki.root)
            #expect(accepted.echoed, "\(accepted.output)")
        }
    }
}

/// Bytes a test client received. Sendable, lock-protected.
final class ReceivedBytes: Sendable {
    private let storage = Mutex<[UInt8]>([])

    func append(_ bytes: [UInt8]) {
        storage.withLock { $0 += bytes }
    }

    var bytes: [UInt8] {
        storage.withLock { $0 }
    }
}

/// Collects everything a raw TCP test client receives.
final class ByteCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let received: ReceivedBytes

    init(received: ReceivedBytes) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
    }
}
