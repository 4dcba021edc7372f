import MQTTCodec
import NIOCore
import ProcessSupport

/// One published message as the broker routes it: topic, payload, QoS, the retain flag as published, the
/// MQTT 5 properties that travel with it, and when it expires.
///
/// A value; the payload is a ByteBuffer slice shared by every copy, so fan-out never copies it. A message that
/// waits in sessions (QoS 1/2) is copied out of the read buffer once per routing and numbered (`id`): every
/// session holds that one copy, and the store keeps one row per number.
public struct ApplicationMessage: Sendable, Equatable {
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    /// Only the properties that are forwarded to subscribers (§3.3.2.3): payload format, content type,
    /// response topic, correlation data, user properties. The expiry is kept as `expiresAt`.
    public var properties: MQTTProperties
    /// From the Message Expiry Interval; nil means never.
    public var expiresAt: MonotonicInstant?
    /// The client id of the publisher, for No Local; nil for broker-made messages.
    public var publisher: String?
    /// The number under which sessions and the store share this message (see `Broker.held(_:)`); nil for a
    /// message that no session holds yet. Unique in the node's store: a worker numbers from blocks the store
    /// reserves for it.
    public var id: UInt64?

    public init(
        topic: String, payload: ByteBuffer, qos: QoS, retain: Bool, properties: MQTTProperties = MQTTProperties(),
        expiresAt: MonotonicInstant? = nil, publisher: String? = nil
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expiresAt = expiresAt
        self.publisher = publisher
    }

    /// Builds the routed message from a received PUBLISH (its topic already resolved from any alias).
    public init(publish: PublishPacket, topic: String, publisher: String?, now: MonotonicInstant) {
        var forwarded = MQTTProperties()
        let received = publish.properties
        if !received.isEmpty {
            forwarded.payloadFormatIndicator = received.payloadFormatIndicator
            forwarded.contentType = received.contentType
            forwarded.responseTopic = received.responseTopic
            forwarded.correlationData = received.correlationData
            forwarded.userProperties = received.userProperties
        }
        self.init(
            topic: topic, payload: publish.payload, qos: publish.qos, retain: publish.retain, properties: forwarded,
            expiresAt: received.messageExpiryInterval.map { now + .seconds(Int64($0)) }, publisher: publisher)
    }

    /// Equality is about what the message says: two copies of it held under different numbers are equal.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.topic == rhs.topic && lhs.payload == rhs.payload && lhs.qos == rhs.qos && lhs.retain == rhs.retain
            && lhs.properties == rhs.properties && lhs.expiresAt == rhs.expiresAt && lhs.publisher == rhs.publisher
    }

    /// The bytes the message holds, as the queue and retained limits count them: topic, payload, properties.
    public var byteCount: Int {
        topic.utf8.count + payload.readableBytes + properties.encodedByteCount
    }

    public func isExpired(at now: MonotonicInstant) -> Bool {
        guard let expiresAt else { return false }
        return expiresAt <= now
    }

    /// The Message Expiry Interval to send now: what is left of the original, in whole seconds (§3.3.2.3.3).
    public func remainingExpiry(at now: MonotonicInstant) -> UInt32? {
        guard let expiresAt else { return nil }
        let left = expiresAt.duration(since: now)
        let seconds = left.components.seconds + (left.components.attoseconds > 0 ? 1 : 0)
        return UInt32(clamping: max(1, seconds))
    }
}
