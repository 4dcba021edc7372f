import NIOCore

/// SUBSCRIBE: a client's request for one or more subscriptions. A plain value.
///
/// Topic filters are only checked to be valid UTF-8 here; wildcard placement and shared-subscription syntax are
/// the broker's to check (in MQTT 5 a bad filter gets SUBACK 0x8F, not a closed connection).
public struct SubscribePacket: Sendable, Equatable {
    /// One topic filter and its options.
    public struct Subscription: Sendable, Hashable {
        public var topicFilter: String
        public var options: SubscriptionOptions

        public init(topicFilter: String, options: SubscriptionOptions = SubscriptionOptions()) {
            self.topicFilter = topicFilter
            self.options = options
        }

        public init(topicFilter: String, qos: QoS) {
            self.init(topicFilter: topicFilter, options: SubscriptionOptions(qos: qos))
        }
    }

    public var packetIdentifier: UInt16
    /// At least one.
    public var subscriptions: [Subscription]
    /// Subscription identifier (at most one) and user properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, subscriptions: [Subscription], properties: MQTTProperties = MQTTProperties())
    {
        self.packetIdentifier = packetIdentifier
        self.subscriptions = subscriptions
        self.properties = properties
    }
}

extension SubscribePacket {
    static func decode(from body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError)
        -> SubscribePacket
    {
        let packetIdentifier = try body.readMQTTPacketIdentifier()
        let properties =
            version == .v5
            ? try MQTTProperties.decode(from: &body, allowed: .subscribe, in: .subscribe) : MQTTProperties()
        guard body.readableBytes > 0 else {
            throw .protocolError("SUBSCRIBE carries no topic filter")
        }
        var subscriptions: [Subscription] = []
        while body.readableBytes > 0 {
            let topicFilter = try body.readMQTTString()
            let options = try SubscriptionOptions(decoding: try body.readMQTTByte(), version: version)
            subscriptions.append(Subscription(topicFilter: topicFilter, options: options))
        }
        return SubscribePacket(packetIdentifier: packetIdentifier, subscriptions: subscriptions, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        var length = 2
        if version == .v5 { length += properties.encodedLengthWithPrefix }
        for subscription in subscriptions {
            length += mqttStringSize(subscription.topicFilter) + 1
        }
        return length
    }

    func write(version: MQTTProtocolVersion, remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.subscribe, flags: 0b0010, remainingLength: remainingLength)
        buffer.writeInteger(packetIdentifier, endianness: .big)
        if version == .v5 { properties.write(into: &buffer) }
        for subscription in subscriptions {
            buffer.writeMQTTString(subscription.topicFilter)
            buffer.writeInteger(subscription.options.encodedByte(version: version))
        }
    }
}
