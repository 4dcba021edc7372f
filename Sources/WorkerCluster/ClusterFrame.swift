import MQTTBroker
import MQTTCodec
import NIOCore
import ProcessSupport

/// One message between two workers of a node. On the wire: a 4-byte big-endian length, a 1-byte kind, then the
/// fields (strings and byte strings with a 4-byte length, integers big-endian).
enum ClusterFrame: Equatable {
    /// First frame on every connection, both ways: who is speaking.
    case hello(peerID: String)
    case routeAdded(filter: String)
    case routeRemoved(filter: String)
    /// `sequence` numbers the publishes on one connection, for `acknowledged`.
    case publish(ForwardedPublish, sequence: UInt64)
    /// Every publish up to `sequence` is applied and durable at the receiver: the sender may forget them.
    case acknowledged(sequence: UInt64)
    /// The snapshot (routes and retained messages) sent after hello is complete.
    case syncDone
    /// Give up the session of `clientID` (a client connected to the sender with it).
    case claim(requestID: UInt32, clientID: String, cleanStart: Bool)
    /// The answer to a claim, with the session if it was persistent.
    case release(requestID: UInt32, handoff: SessionHandoff?)
    /// A worker leaving gracefully gives its offline persistent sessions to the others.
    case adopt(clientID: String, handoff: SessionHandoff)
    /// A worker leaving gracefully: drop its routes now (no successor to wait for).
    case goodbye
    /// Answer `pong` once everything before this frame is applied.
    case ping(requestID: UInt32)
    case pong(requestID: UInt32)

    enum Kind: UInt8 {
        case hello = 1, routeAdded, routeRemoved, publish, syncDone, claim, release, adopt, goodbye, ping, pong
        case acknowledged
    }

    /// A frame larger than this is a broken peer (a message is at most 256 MB; a handoff may hold many).
    static let maximumLength = 1 << 30
}

/// Why a frame could not be read.
struct ClusterFrameError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

// MARK: Encoding

extension ByteBuffer {
    mutating func writeClusterFrame(_ frame: ClusterFrame) {
        let lengthIndex = writerIndex
        writeInteger(UInt32(0))
        let start = writerIndex
        switch frame {
        case .hello(let peerID):
            writeInteger(ClusterFrame.Kind.hello.rawValue)
            writeClusterString(peerID)
        case .routeAdded(let filter):
            writeInteger(ClusterFrame.Kind.routeAdded.rawValue)
            writeClusterString(filter)
        case .routeRemoved(let filter):
            writeInteger(ClusterFrame.Kind.routeRemoved.rawValue)
            writeClusterString(filter)
        case .publish(let publish, let sequence):
            writeClusterPublishHead(publish, sequence: sequence)
            writeImmutableBuffer(publish.message.payload)
            writeClusterMessageTail(publish.message)
        case .syncDone:
            writeInteger(ClusterFrame.Kind.syncDone.rawValue)
        case .claim(let requestID, let clientID, let cleanStart):
            writeInteger(ClusterFrame.Kind.claim.rawValue)
            writeInteger(requestID)
            writeClusterString(clientID)
            writeInteger(UInt8(cleanStart ? 1 : 0))
        case .release(let requestID, let handoff):
            writeInteger(ClusterFrame.Kind.release.rawValue)
            writeInteger(requestID)
            if let handoff {
                writeInteger(UInt8(1))
                writeClusterHandoff(handoff)
            } else {
                writeInteger(UInt8(0))
            }
        case .adopt(let clientID, let handoff):
            writeInteger(ClusterFrame.Kind.adopt.rawValue)
            writeClusterString(clientID)
            writeClusterHandoff(handoff)
        case .goodbye:
            writeInteger(ClusterFrame.Kind.goodbye.rawValue)
        case .ping(let requestID):
            writeInteger(ClusterFrame.Kind.ping.rawValue)
            writeInteger(requestID)
        case .pong(let requestID):
            writeInteger(ClusterFrame.Kind.pong.rawValue)
            writeInteger(requestID)
        case .acknowledged(let sequence):
            writeInteger(ClusterFrame.Kind.acknowledged.rawValue)
            writeInteger(sequence)
        }
        setInteger(UInt32(writerIndex - start), at: lengthIndex)
    }

    mutating func writeClusterString(_ string: String) {
        let bytes = string.utf8
        writeInteger(UInt32(bytes.count))
        writeBytes(bytes)
    }

    /// A publish frame's body up to its payload (kind, sequence, flags, stamp, groups, topic, payload length).
    mutating func writeClusterPublishHead(_ publish: ForwardedPublish, sequence: UInt64) {
        writeInteger(ClusterFrame.Kind.publish.rawValue)
        writeInteger(sequence)
        writeInteger(UInt8((publish.deliver ? 1 : 0) | (publish.retainStamp != nil ? 2 : 0)))
        if let stamp = publish.retainStamp {
            writeInteger(stamp.clock)
            writeInteger(stamp.node)
        }
        writeInteger(UInt16(clamping: publish.sharedGroups.count))
        for group in publish.sharedGroups.prefix(Int(UInt16.max)) {
            writeClusterString(group.shareName)
            writeClusterString(group.filter)
        }
        writeClusterString(publish.message.topic)
        writeInteger(UInt32(publish.message.payload.readableBytes))
    }

    mutating func writeClusterMessage(_ message: ApplicationMessage) {
        writeClusterString(message.topic)
        writeInteger(UInt32(message.payload.readableBytes))
        writeImmutableBuffer(message.payload)
        writeClusterMessageTail(message)
    }

    /// What follows a message's payload: QoS, retain, properties, expiry, publisher.
    mutating func writeClusterMessageTail(_ message: ApplicationMessage) {
        writeInteger(message.qos.rawValue)
        writeInteger(UInt8(message.retain ? 1 : 0))
        message.properties.encodeForwarded(into: &self)
        if let expiresAt = message.expiresAt {
            writeInteger(UInt8(1))
            writeInteger(expiresAt.nanoseconds)
        } else {
            writeInteger(UInt8(0))
        }
        if let publisher = message.publisher {
            writeInteger(UInt8(1))
            writeClusterString(publisher)
        } else {
            writeInteger(UInt8(0))
        }
    }

    mutating func writeClusterDelivery(_ delivery: OutboundFlow.Delivery) {
        writeInteger(delivery.qos.rawValue)
        writeInteger(UInt8(delivery.retain ? 1 : 0))
        writeInteger(UInt16(clamping: delivery.subscriptionIdentifiers.count))
        for identifier in delivery.subscriptionIdentifiers.prefix(Int(UInt16.max)) {
            writeInteger(UInt32(clamping: identifier))
        }
        writeClusterMessage(delivery.message)
    }

    mutating func writeClusterHandoff(_ handoff: SessionHandoff) {
        writeInteger(handoff.protocolVersion.rawValue)
        if let username = handoff.username {
            writeInteger(UInt8(1))
            writeClusterString(username)
        } else {
            writeInteger(UInt8(0))
        }
        writeInteger(handoff.expiryInterval)
        writeInteger(UInt32(handoff.subscriptions.count))
        for subscription in handoff.subscriptions {
            writeClusterString(subscription.filter)
            let options = subscription.entry.options
            writeInteger(options.qos.rawValue)
            writeInteger(UInt8((options.noLocal ? 1 : 0) | (options.retainAsPublished ? 2 : 0)))
            writeInteger(options.retainHandling.rawValue)
            if let identifier = subscription.entry.identifier {
                writeInteger(UInt8(1))
                writeInteger(UInt32(clamping: identifier))
            } else {
                writeInteger(UInt8(0))
            }
        }
        writeInteger(UInt32(handoff.inflight.count))
        for entry in handoff.inflight {
            writeInteger(entry.packetIdentifier)
            writeInteger(UInt8(entry.stage == .published ? 0 : 1))
            writeClusterDelivery(entry.delivery)
        }
        writeInteger(UInt32(handoff.queued.count))
        for delivery in handoff.queued {
            writeClusterDelivery(delivery)
        }
        writeInteger(handoff.lastPacketIdentifier)
        writeInteger(UInt32(handoff.inboundQoS2.count))
        for identifier in handoff.inboundQoS2 {
            writeInteger(identifier)
        }
    }
}

// MARK: Decoding

extension ByteBuffer {
    /// Reads one frame's body (after the length prefix) into a frame.
    mutating func readClusterFrame() throws -> ClusterFrame {
        guard let raw = readInteger(as: UInt8.self), let kind = ClusterFrame.Kind(rawValue: raw) else {
            throw ClusterFrameError(message: "unknown frame kind")
        }
        switch kind {
        case .hello:
            return .hello(peerID: try readClusterString())
        case .routeAdded:
            return .routeAdded(filter: try readClusterString())
        case .routeRemoved:
            return .routeRemoved(filter: try readClusterString())
        case .publish:
            let sequence = try readClusterInteger(UInt64.self)
            let flags = try readClusterInteger(UInt8.self)
            var stamp: RetainStamp?
            if flags & 2 != 0 {
                stamp = RetainStamp(clock: try readClusterInteger(UInt64.self), node: try readClusterInteger(UInt64.self))
            }
            let groupCount = try readClusterInteger(UInt16.self)
            var groups: [ForwardedPublish.SharedGroup] = []
            for _ in 0..<groupCount {
                groups.append(.init(shareName: try readClusterString(), filter: try readClusterString()))
            }
            let message = try readClusterMessage()
            return .publish(
                ForwardedPublish(message: message, deliver: flags & 1 != 0, sharedGroups: groups, retainStamp: stamp),
                sequence: sequence)
        case .syncDone:
            return .syncDone
        case .claim:
            let requestID = try readClusterInteger(UInt32.self)
            let clientID = try readClusterString()
            return .claim(requestID: requestID, clientID: clientID, cleanStart: try readClusterInteger(UInt8.self) != 0)
        case .release:
            let requestID = try readClusterInteger(UInt32.self)
            let hasHandoff = try readClusterInteger(UInt8.self) != 0
            return .release(requestID: requestID, handoff: hasHandoff ? try readClusterHandoff() : nil)
        case .adopt:
            let clientID = try readClusterString()
            return .adopt(clientID: clientID, handoff: try readClusterHandoff())
        case .goodbye:
            return .goodbye
        case .ping:
            return .ping(requestID: try readClusterInteger(UInt32.self))
        case .pong:
            return .pong(requestID: try readClusterInteger(UInt32.self))
        case .acknowledged:
            return .acknowledged(sequence: try readClusterInteger(UInt64.self))
        }
    }

    mutating func readClusterInteger<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let value = readInteger(as: T.self) else {
            throw ClusterFrameError(message: "frame ends early")
        }
        return value
    }

    mutating func readClusterString() throws -> String {
        let length = Int(try readClusterInteger(UInt32.self))
        guard let string = readString(length: length) else {
            throw ClusterFrameError(message: "string runs past the frame")
        }
        return string
    }

    mutating func readClusterMessage() throws -> ApplicationMessage {
        let topic = try readClusterString()
        let length = Int(try readClusterInteger(UInt32.self))
        guard let payload = readSlice(length: length) else {
            throw ClusterFrameError(message: "payload runs past the frame")
        }
        guard let qos = QoS(rawValue: try readClusterInteger(UInt8.self)) else {
            throw ClusterFrameError(message: "bad QoS")
        }
        let retain = try readClusterInteger(UInt8.self) != 0
        let properties: MQTTProperties
        do {
            properties = try MQTTProperties.decodeForwarded(from: &self)
        } catch {
            throw ClusterFrameError(message: "bad properties: \(error)")
        }
        var expiresAt: MonotonicInstant?
        if try readClusterInteger(UInt8.self) != 0 {
            expiresAt = MonotonicInstant(nanoseconds: try readClusterInteger(UInt64.self))
        }
        var publisher: String?
        if try readClusterInteger(UInt8.self) != 0 {
            publisher = try readClusterString()
        }
        return ApplicationMessage(
            topic: topic, payload: payload, qos: qos, retain: retain, properties: properties, expiresAt: expiresAt,
            publisher: publisher)
    }

    mutating func readClusterDelivery() throws -> OutboundFlow.Delivery {
        guard let qos = QoS(rawValue: try readClusterInteger(UInt8.self)) else {
            throw ClusterFrameError(message: "bad QoS")
        }
        let retain = try readClusterInteger(UInt8.self) != 0
        let count = try readClusterInteger(UInt16.self)
        var identifiers: [Int] = []
        for _ in 0..<count {
            identifiers.append(Int(try readClusterInteger(UInt32.self)))
        }
        let message = try readClusterMessage()
        return OutboundFlow.Delivery(message: message, qos: qos, retain: retain, subscriptionIdentifiers: identifiers)
    }

    mutating func readClusterHandoff() throws -> SessionHandoff {
        guard let version = MQTTProtocolVersion(rawValue: try readClusterInteger(UInt8.self)) else {
            throw ClusterFrameError(message: "bad protocol version")
        }
        var username: String?
        if try readClusterInteger(UInt8.self) != 0 {
            username = try readClusterString()
        }
        let expiry = try readClusterInteger(UInt32.self)
        var subscriptions: [SessionHandoff.Subscription] = []
        for _ in 0..<(try readClusterInteger(UInt32.self)) {
            let filter = try readClusterString()
            guard let qos = QoS(rawValue: try readClusterInteger(UInt8.self)) else {
                throw ClusterFrameError(message: "bad QoS")
            }
            let flags = try readClusterInteger(UInt8.self)
            guard let handling = SubscriptionOptions.RetainHandling(rawValue: try readClusterInteger(UInt8.self)) else {
                throw ClusterFrameError(message: "bad retain handling")
            }
            var identifier: Int?
            if try readClusterInteger(UInt8.self) != 0 {
                identifier = Int(try readClusterInteger(UInt32.self))
            }
            let options = SubscriptionOptions(
                qos: qos, noLocal: flags & 1 != 0, retainAsPublished: flags & 2 != 0, retainHandling: handling)
            subscriptions.append(.init(filter: filter, entry: SubscriptionEntry(options: options, identifier: identifier)))
        }
        var inflight: [OutboundFlow.Inflight] = []
        for _ in 0..<(try readClusterInteger(UInt32.self)) {
            let identifier = try readClusterInteger(UInt16.self)
            let stage: OutboundFlow.Inflight.Stage = try readClusterInteger(UInt8.self) == 0 ? .published : .released
            inflight.append(.init(packetIdentifier: identifier, delivery: try readClusterDelivery(), stage: stage))
        }
        var queued: [OutboundFlow.Delivery] = []
        for _ in 0..<(try readClusterInteger(UInt32.self)) {
            queued.append(try readClusterDelivery())
        }
        let last = try readClusterInteger(UInt16.self)
        var inbound: [UInt16] = []
        for _ in 0..<(try readClusterInteger(UInt32.self)) {
            inbound.append(try readClusterInteger(UInt16.self))
        }
        return SessionHandoff(
            protocolVersion: version, username: username, expiryInterval: expiry, subscriptions: subscriptions,
            inflight: inflight, queued: queued, lastPacketIdentifier: last, inboundQoS2: inbound)
    }
}

/// Splits the byte stream of a peer connection into frames.
struct ClusterFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ClusterFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else {
            return .needMoreData
        }
        guard Int(length) <= ClusterFrame.maximumLength else {
            throw ClusterFrameError(message: "frame of \(length) bytes is too large")
        }
        guard buffer.readableBytes >= 4 + Int(length) else {
            return .needMoreData
        }
        buffer.moveReaderIndex(forwardBy: 4)
        guard var body = buffer.readSlice(length: Int(length)) else {
            return .needMoreData
        }
        let frame = try body.readClusterFrame()
        guard body.readableBytes == 0 else {
            throw ClusterFrameError(message: "\(body.readableBytes) bytes left after a frame")
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
}
