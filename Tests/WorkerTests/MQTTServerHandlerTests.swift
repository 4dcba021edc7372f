import BrokerConfiguration
import Logging
import MQTTBroker
import NIOCore
import NIOEmbedded
import Testing

@testable import Worker

/// `MQTTServerHandler` on an `EmbeddedChannel`, with a real `Broker` on the channel's loop.
@Suite struct MQTTServerHandlerTests {
    /// MQTT 3.1.1 CONNECT, clean session, keep alive 0, client id "abc".
    private static let connect: [UInt8] =
        [0x10, 0x0F, 0x00, 0x04] + Array("MQTT".utf8) + [0x04, 0x02, 0x00, 0x00, 0x00, 0x03] + Array("abc".utf8)

    private func makeBroker(on channel: EmbeddedChannel) -> Broker {
        Broker(
            settings: BrokerSettings(), access: AccessPolicy(allowAnonymous: true),
            scheduler: EventLoopBrokerScheduler(loop: channel.embeddedEventLoop), logger: Logger(label: "test"))
    }

    /// The handler and its `ConnectionController` refer to each other; once the channel is closed both must be
    /// freed. They were not: every connection a worker ever accepted stayed in memory (about 1.5 KiB each).
    @Test(arguments: [true, false])
    func closedConnectionFreesItsHandler(sendsConnect: Bool) throws {
        let channel = EmbeddedChannel()
        let broker = makeBroker(on: channel)
        weak var weakHandler: MQTTServerHandler?
        do {
            let handler = MQTTServerHandler(
                broker: broker, listener: "tcp:test", allowsAnonymous: true, logger: Logger(label: "test"))
            weakHandler = handler
            try channel.pipeline.syncOperations.addHandler(handler)
        }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1883)).wait()
        if sendsConnect {
            try channel.writeInbound(ByteBuffer(bytes: Self.connect))
            channel.embeddedEventLoop.run()
            let connack = try channel.readOutbound(as: ByteBuffer.self)
            #expect(connack.map { Array($0.readableBytesView) } == [0x20, 0x02, 0x00, 0x00])
        }
        _ = try channel.finish(acceptAlreadyClosed: true)
        channel.embeddedEventLoop.run()
        #expect(weakHandler == nil, "the handler outlived its closed channel")
        #expect(broker.statistics.connections == 0)
    }
}

/// What `peer_cert_as_username` / `peer_cert_as_clientid` make of a handshake without a client certificate.
@Suite struct CertificateIdentityFromHandshakeTests {
    private func settings(username: TLSSettings.PeerCertField?, clientID: TLSSettings.PeerCertField?) -> TLSSettings {
        TLSSettings(
            keyFile: "k", certFile: "c", caCertFile: "ca", verify: .verifyPeer, failIfNoPeerCert: false,
            tlsVersions: [.tlsv1_3], ciphers: [], handshakeTimeout: .seconds(15), peerCertAsUsername: username,
            peerCertAsClientID: clientID, enableCRLCheck: false, crlCacheURLs: [], crlFiles: [], crlCheckDepth: .leaf,
            crlFailPolicy: .closed, crlStaleGrace: .seconds(3600), disconnectRevoked: true, enableOCSPStapling: false,
            ocspResponderURL: nil, ocspIssuerPEM: nil, ocspRefreshInterval: .seconds(300),
            ocspRefreshHTTPTimeout: .seconds(15))
    }

    @Test func noCertificateMakesEveryConfiguredFieldMissing() {
        let identity = MQTTServerHandler.certificateIdentity(of: nil, settings: settings(username: .cn, clientID: .dn))
        #expect(identity == .init(username: nil, clientID: nil, missing: [
            "peer_cert_as_username = cn (no client certificate)", "peer_cert_as_clientid = dn (no client certificate)",
        ]))
    }

    @Test func nothingConfiguredMeansNoIdentity() {
        #expect(MQTTServerHandler.certificateIdentity(of: nil, settings: settings(username: nil, clientID: nil)) == nil)
    }
}
