import BrokerConfiguration
import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import OpenSSLTLS
import ProcessSupport

/// The end of every client pipeline: decodes MQTT packets from the (plaintext) byte stream, hands them to the
/// connection's `ConnectionController`, and encodes what the broker sends back.
///
/// Lives on the worker's event loop with the broker. What the broker writes is collected into one buffer and
/// written and flushed once per read batch (`Broker.flushPending`), so one publisher's burst costs each subscriber
/// one write, not one per message (and a few bytes per small packet, not a buffer each).
///
/// Back-pressure: input is decoded, and more is read, only while the controller takes packets (not while the
/// client id is claimed or a SUBACK waits for the other workers) and while the connection is not busy. Busy means
/// more than the listener's `high_watermark` waits to be written: the channel is not writable (its watermarks are
/// set from `high_watermark`), or this handler collected that much since its last flush. While busy the broker
/// drops QoS 0 messages for it and leaves QoS 1/2 ones in the session queue; once writable again, the queue and
/// the input go on. A connection that stays unwritable for `send_timeout` is closed (`send_timeout_close`).
final class MQTTServerHandler: ChannelDuplexHandler, MQTTClientConnection {
    typealias InboundIn = ByteBuffer
    /// Nothing after this handler writes; it is an outbound handler to hold back `read`.
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let broker: Broker
    private let listener: String
    private let allowsAnonymous: Bool?
    private let tls: TLSSettings?
    private let backPressure: BackPressureSettings
    /// The client address when it is not the socket's peer (a PROXY protocol header named it).
    private let proxiedPeerAddress: String?
    private let logger: Logger
    private var decoder: MQTTDecoder
    private var cumulation: ByteBuffer?
    private var controller: ConnectionController?
    private var context: ChannelHandlerContext?
    private var isClosed = false
    private(set) var peerDescription = "unknown peer"
    /// Small packets encoded since the last write to the channel.
    private var output: ByteBuffer?
    /// Bytes sent since the last flush (collected in `output` or written to the channel unflushed).
    private var unflushedBytes = 0
    /// A `read` held back while input is paused.
    private var isReadPending = false
    private var isDecoding = false
    private var isFlushing = false
    /// Runs while the channel is not writable: `send_timeout`.
    private var sendTimer: Scheduled<Void>?

    /// Payloads above this size are written as their own buffer (shared by every subscriber) instead of copied.
    private static let separatePayloadThreshold = 2048
    /// `output` is written to the channel once it holds this much, flush or not.
    private static let outputChunk = 64 * 1024

    /// The peer certificate of a TLS connection, once the handshake is done.
    private(set) var peerCertificate: PeerCertificate?

    /// - Parameter tls: set on TLS listeners: MQTT starts once the handshake completed, with the certificate's
    ///   identity when `peer_cert_as_username` / `peer_cert_as_clientid` ask for it.
    /// - Parameter backPressure: the listener's `high_watermark`, `send_timeout`, `send_timeout_close`; the
    ///   channel's write buffer watermarks are expected to be set from `high_watermark` (`WorkerService.bind`).
    /// - Parameter peerAddress: the client address for logs when it is not the socket's peer (PROXY protocol).
    init(
        broker: Broker, listener: String, allowsAnonymous: Bool?, tls: TLSSettings? = nil,
        backPressure: BackPressureSettings = BackPressureSettings(), peerAddress: String? = nil, logger: Logger
    ) {
        self.broker = broker
        self.listener = listener
        self.allowsAnonymous = allowsAnonymous
        self.tls = tls
        self.backPressure = backPressure
        self.proxiedPeerAddress = peerAddress
        self.logger = logger
        self.decoder = MQTTDecoder(maximumPacketSize: broker.settings.maximumPacketSize)
    }

    /// The write buffer watermarks for a listener's connections: writable again at half of `high_watermark`.
    static func writeBufferWaterMark(_ settings: BackPressureSettings) -> ChannelOptions.Types.WriteBufferWaterMark {
        ChannelOptions.Types.WriteBufferWaterMark(low: settings.highWatermark / 2, high: settings.highWatermark)
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
        sendTimer?.cancel()
        sendTimer = nil
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
        guard !isClosed, controller != nil else { return }
        if cumulation == nil {
            cumulation = incoming
        } else {
            cumulation?.writeBuffer(&incoming)
        }
        decodeInput()
    }

    /// Hands the controller every whole packet in `cumulation`, until input pauses (what is left waits there).
    private func decodeInput() {
        guard !isDecoding, var buffer = cumulation, let controller else { return }
        isDecoding = true
        cumulation = nil
        defer { isDecoding = false }
        while !isClosed {
            if let reason = pauseReason {
                if reason == .routeBarrierReadsPaused && buffer.readableBytes > 0 { broker.count(reason) }
                break
            }
            // A small limit until the CONNECT is accepted, then mqtt.max_packet_size.
            decoder.maximumPacketSize = controller.maximumInboundPacketSize
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
        if buffer.readableBytes > 0 && !isClosed {
            buffer.discardReadBytes()
            cumulation = buffer
        }
    }

    /// Why input waits, if it does: the controller does not take packets now, or the connection is busy.
    private var pauseReason: LimitEvent? {
        if controller?.acceptsInput == false { return .routeBarrierReadsPaused }
        if isBusy { return .highWatermarkReadsPaused }
        return nil
    }

    func read(context: ChannelHandlerContext) {
        guard let reason = pauseReason else {
            context.read()
            return
        }
        if !isReadPending {
            isReadPending = true
            if reason == .highWatermarkReadsPaused { broker.count(reason) }
        }
    }

    /// Decodes what waited and reads on, once nothing pauses input any more.
    private func resumeInputIfPossible() {
        guard !isClosed, !isDecoding, !isFlushing, pauseReason == nil, let context else { return }
        decodeInput()
        if isReadPending && pauseReason == nil && !isClosed {
            isReadPending = false
            context.read()
        }
    }

    func resumeInput() {
        resumeInputIfPossible()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            sendTimer?.cancel()
            sendTimer = nil
            controller?.outboundWritable()
            resumeInputIfPossible()
        } else if sendTimer == nil && !isClosed {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let timeout = backPressure.sendTimeout
            sendTimer = context.eventLoop.scheduleTask(
                in: .nanoseconds(Int64(timeout.millisecondsRoundedUp) * 1_000_000)
            ) {
                handler.value.sendTimedOut()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    /// The channel stayed unwritable for `send_timeout`.
    private func sendTimedOut() {
        guard let context, !isClosed, !context.channel.isWritable, let controller else { return }
        let waiting = (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        controller.sendTimedOut(
            after: backPressure.sendTimeout, closing: backPressure.sendTimeoutClose, bytesWaiting: waiting + unflushedBytes)
        broker.flushPending()
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

    var isBusy: Bool {
        guard let context else { return false }
        return unflushedBytes >= backPressure.highWatermark || !context.channel.isWritable
    }

    func send(_ packet: MQTTPacket) {
        guard let context, !isClosed else { return }
        let version = controller?.protocolVersion ?? .v3_1_1
        if case .publish(let publish) = packet, publish.payload.readableBytes > Self.separatePayloadThreshold {
            var header = context.channel.allocator.buffer(capacity: 64 + publish.topic.utf8.count)
            MQTTEncoder.encodeHeader(of: publish, version: version, into: &header)
            unflushedBytes += header.readableBytes + publish.payload.readableBytes
            writeOutput(context)
            context.write(wrapOutboundOut(header), promise: nil)
            context.write(wrapOutboundOut(publish.payload), promise: nil)
            return
        }
        let size = MQTTEncoder.encodedSize(packet, version: version)
        // Taken out while it grows, so that the encoder writes into a buffer nothing else refers to.
        var buffer = output ?? context.channel.allocator.buffer(capacity: max(size, 256))
        output = nil
        MQTTEncoder.encode(packet, version: version, into: &buffer)
        unflushedBytes += size
        output = buffer
        if buffer.readableBytes >= Self.outputChunk {
            writeOutput(context)
        }
    }

    /// Writes the collected packets to the channel (unflushed).
    private func writeOutput(_ context: ChannelHandlerContext) {
        guard let buffer = output else { return }
        output = nil
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    func flush() {
        guard let context else { return }
        writeOutput(context)
        unflushedBytes = 0
        isFlushing = true
        context.flush()
        isFlushing = false
        resumeInputIfPossible()
    }

    func close() {
        guard !isClosed, let context else { return }
        isClosed = true
        sendTimer?.cancel()
        sendTimer = nil
        writeOutput(context)
        context.flush()
        context.close(promise: nil)
    }
}
