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

/// Back-pressure in `MQTTServerHandler`: no decoding and no `read` while the channel is not writable, what was
/// collected goes out as one buffer, `send_timeout`, and the CONNECT size limit.
@Suite struct MQTTServerHandlerBackPressureTests {
    /// Counts the `read`s that get past the MQTT handler towards the socket.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var reads = 0

        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    private static let connect: [UInt8] =
        [0x10, 0x0F, 0x00, 0x04] + Array("MQTT".utf8) + [0x04, 0x02, 0x00, 0x00, 0x00, 0x03] + Array("abc".utf8)
    private static let pingreq: [UInt8] = [0xC0, 0x00]

    private func connected(
        settings: BrokerSettings = BrokerSettings(), backPressure: BackPressureSettings = BackPressureSettings(),
        sendsConnect: Bool = true
    ) throws -> (EmbeddedChannel, Broker, ReadCounter) {
        let channel = EmbeddedChannel()
        let broker = Broker(
            settings: settings, access: AccessPolicy(allowAnonymous: true),
            scheduler: EventLoopBrokerScheduler(loop: channel.embeddedEventLoop), logger: Logger(label: "test"))
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(
            MQTTServerHandler(
                broker: broker, listener: "tcp:test", allowsAnonymous: true, backPressure: backPressure,
                logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1883)).wait()
        if sendsConnect {
            try channel.writeInbound(ByteBuffer(bytes: Self.connect))
            channel.embeddedEventLoop.run()
            let connack = try channel.readOutbound(as: ByteBuffer.self)
            #expect(connack.map { Array($0.readableBytesView) } == [0x20, 0x02, 0x00, 0x00])
        }
        return (channel, broker, counter)
    }

    private func setWritable(_ writable: Bool, _ channel: EmbeddedChannel) {
        channel.isWritable = writable
        channel.pipeline.fireChannelWritabilityChanged()
    }

    @Test func inputWaitsWhileTheChannelIsNotWritable() throws {
        let (channel, broker, counter) = try connected()
        setWritable(false, channel)
        try channel.writeInbound(ByteBuffer(bytes: Self.pingreq + Self.pingreq + Self.pingreq))
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "decoded while not writable")
        let reads = counter.reads
        channel.read()
        #expect(counter.reads == reads, "a read got past while not writable")
        #expect(broker.statistics.limitHits[LimitEvent.highWatermarkReadsPaused.rawValue] == 1)
        setWritable(true, channel)
        channel.embeddedEventLoop.run()
        // The three answers go out together, as one buffer.
        let answers = try channel.readOutbound(as: ByteBuffer.self)
        #expect(answers.map { Array($0.readableBytesView) } == [0xD0, 0x00, 0xD0, 0x00, 0xD0, 0x00])
        #expect(counter.reads == reads + 1, "the held read was not passed on")
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test(arguments: [true, false])
    func sendTimeout(closes: Bool) throws {
        let (channel, broker, _) = try connected(
            backPressure: BackPressureSettings(highWatermark: 1024, sendTimeout: .seconds(2), sendTimeoutClose: closes))
        setWritable(false, channel)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1900))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(channel.isActive == !closes)
        #expect(broker.statistics.limitHits[(closes ? LimitEvent.sendTimeoutClosed : .sendTimeoutKept).rawValue] == 1)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func writableAgainInTimeKeepsTheConnection() throws {
        let (channel, broker, _) = try connected(
            backPressure: BackPressureSettings(highWatermark: 1024, sendTimeout: .seconds(2), sendTimeoutClose: true))
        setWritable(false, channel)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        setWritable(true, channel)
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive)
        #expect(broker.statistics.limitHits[LimitEvent.sendTimeoutClosed.rawValue] == nil)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func aConnectOverTheLimitIsRefusedAtItsHeader() throws {
        let (channel, broker, _) = try connected(
            settings: BrokerSettings(maximumConnectPacketSize: 1024), sendsConnect: false)
        // A CONNECT announcing 2048 bytes: refused before its body arrives.
        try channel.writeInbound(ByteBuffer(bytes: [0x10, 0x80, 0x10, 0x00, 0x04] + Array("MQTT".utf8)))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
        #expect(broker.statistics.limitHits[LimitEvent.connectPacketSizeRefused.rawValue] == 1)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func afterTheConnectLargerPacketsPass() throws {
        let (channel, _, _) = try connected(settings: BrokerSettings(maximumConnectPacketSize: 1024))
        // PUBLISH QoS 0 of 3000 bytes to "t".
        var publish = ByteBuffer(bytes: [0x30, 0xB5, 0x17, 0x00, 0x01, 0x74])
        publish.writeBytes([UInt8](repeating: 0x78, count: 3000 - 6))
        try channel.writeInbound(publish)
        try channel.writeInbound(ByteBuffer(bytes: Self.pingreq))
        channel.embeddedEventLoop.run()
        #expect(channel.isActive)
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { Array($0.readableBytesView) } == [0xD0, 0x00])
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}
