import BrokerConfiguration
import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import OpenSSLTLS

/// The end of every client pipeline: decodes MQTT packets from the (plaintext) byte stream, hands them to the
/// connection's `ConnectionController`, and encodes what the broker sends back.
///
/// Lives on the worker's event loop with the broker; the broker's writes are buffered and flushed once per read
/// batch (`Broker.flushPending`), so one publisher's burst costs each subscriber one flush, not one per message.
final class MQTTServerHandler: ChannelInboundHandler, MQTTClientConnection {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let broker: Broker
    private let listener: String
    private let allowsAnonymous: Bool?
    private let tls: TLSSettings?
    /// The client address when it is not the socket's peer (a PROXY protocol header named it).
    private let proxiedPeerAddress: String?
    private let logger: Logger
    private var decoder: MQTTDecoder
    private var cumulation: ByteBuffer?
    private var controller: ConnectionController?
    private var context: ChannelHandlerContext?
    private var isClosed = false
    private(set) var peerDescription = "unknown peer"

    /// Payloads above this size are written as their own buffer (shared by every subscriber) instead of copied.
    private static let separatePayloadThreshold = 2048

    /// The peer certificate of a TLS connection, once the handshake is done.
    private(set) var peerCertificate: PeerCertificate?

    /// - Parameter tls: set on TLS listeners: MQTT starts once the handshake completed, with the certificate's
    ///   identity when `peer_cert_as_username` / `peer_cert_as_clientid` ask for it.
    /// - Parameter peerAddress: the client address for logs when it is not the socket's peer (PROXY protocol).
    init(
        broker: Broker, listener: String, allowsAnonymous: Bool?, tls: TLSSettings? = nil,
        peerAddress: String? = nil, logger: Logger
    ) {
        self.broker = broker
        self.listener = listener
        self.allowsAnonymous = allowsAnonymous
        self.tls = tls
        self.proxiedPeerAddress = peerAddress
        self.logger = logger
        self.decoder = MQTTDecoder(maximumPacketSize: broker.settings.maximumPacketSize)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let address = proxiedPeerAddress ?? context.channel.remoteAddress.map(Self.describe) ?? "unknown"
        peerDescription = "\(listener) \(address)"
        var connectionLogger = logger
        connectionLogger[metadataKey: "tls.peer"] = "\(address)"
        connectionLogger[metadataKey: "listener"] = "\(listener)"
        let controller = ConnectionController(
            broker: broker, connection: self, listenerAllowsAnonymous: allowsAnonymous, logger: connectionLogger)
        self.controller = controller
        if context.channel.isActive && tls == nil { controller.start() }
    }

    func channelActive(context: ChannelHandlerContext) {
        if tls == nil { controller?.start() }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted, let tls, let controller {
            peerCertificate = completed.peer
            if let identity = Self.certificateIdentity(of: completed.peer, settings: tls) {
                controller.setCertificateIdentity(identity)
            }
            controller.start()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // The controller keeps this handler as its connection: let go of it, or the two keep each other alive
        // after the channel is gone (about 1.5 KiB per connection ever accepted).
        if !isClosed {
            isClosed = true
            controller?.connectionClosed()
        }
        controller = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        guard !isClosed, let controller else { return }
        if cumulation == nil {
            cumulation = incoming
        } else {
            cumulation?.writeBuffer(&incoming)
        }
        guard var buffer = cumulation else { return }
        cumulation = nil
        while !isClosed {
            let packet: MQTTPacket?
            do {
                packet = try decoder.decode(from: &buffer)
            } catch {
                controller.decodingFailed(error)
                return
            }
            guard let packet else { break }
            controller.received(packet)
        }
        if buffer.readableBytes > 0 {
            buffer.discardReadBytes()
            cumulation = buffer
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // The broker flushes once the whole batch of ready connections has been read (executeAfterCurrentEvents).
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        controller?.connectionClosed()
        broker.flushPending()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["tls.peer": "\(peerDescription)", "error": "\(error)"])
        close()
    }

    /// Sends DISCONNECT (MQTT 5) with `reason` and closes: worker shutdown, revoked certificate.
    func disconnect(reason: ReasonCode) {
        controller?.disconnect(reason: reason, publishWill: false)
        broker.flushPending()
    }

    /// The identity `peer_cert_as_username` / `peer_cert_as_clientid` take from the client certificate, with the
    /// configured fields it lacks (no certificate, or no CN) listed as missing; `nil` when neither is configured.
    static func certificateIdentity(
        of peer: PeerCertificate?, settings: TLSSettings
    ) -> ConnectionController.CertificateIdentity? {
        guard settings.peerCertAsUsername != nil || settings.peerCertAsClientID != nil else { return nil }
        var missing: [String] = []
        func field(_ choice: TLSSettings.PeerCertField?, key: String) -> String? {
            guard let choice else { return nil }
            let value: String?
            switch choice {
            case .cn: value = peer?.commonName
            case .dn: value = peer?.subjectDN
            }
            if let value, !value.isEmpty { return value }
            let why = peer == nil ? "no client certificate" : "the certificate has no \(choice.rawValue.uppercased())"
            missing.append("\(key) = \(choice.rawValue) (\(why))")
            return nil
        }
        let username = field(settings.peerCertAsUsername, key: "peer_cert_as_username")
        let clientID = field(settings.peerCertAsClientID, key: "peer_cert_as_clientid")
        return ConnectionController.CertificateIdentity(username: username, clientID: clientID, missing: missing)
    }

    /// `127.0.0.1:53211` / `[::1]:53211`.
    static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    // MARK: MQTTClientConnection

    func send(_ packet: MQTTPacket) {
        guard let context, !isClosed else { return }
        let version = controller?.protocolVersion ?? .v3_1_1
        if case .publish(let publish) = packet, publish.payload.readableBytes > Self.separatePayloadThreshold {
            var header = context.channel.allocator.buffer(capacity: 64 + publish.topic.utf8.count)
            MQTTEncoder.encodeHeader(of: publish, version: version, into: &header)
            context.write(wrapOutboundOut(header), promise: nil)
            context.write(wrapOutboundOut(publish.payload), promise: nil)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: MQTTEncoder.encodedSize(packet, version: version))
        MQTTEncoder.encode(packet, version: version, into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func close() {
        guard !isClosed, let context else { return }
        isClosed = true
        context.flush()
        context.close(promise: nil)
    }
}
