import NIOCore

/// UNSUBSCRIBE: a client's request to remove one or more subscriptions. A plain value.
public struct UnsubscribePacket: Sendable, Equatable {
    public var packetIdentifier: UInt16
    /// At least one; only checked to be valid UTF-8.
    public var topicFilters: [String]
    /// User properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, topicFilters: [String], properties: MQTTProperties = MQTTProperties()) {
        self.packetIdentifier = packetIdentifier
        self.topicFilters = topicFilters
        self.properties = properties
    }
}

extension UnsubscribePacket {
    static func decode(from body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError)
        -> UnsubscribePacket
    {
        let packetIdentifier = try body.readMQTTPacketIdentifier()
        let properties =
            version == .v5
            ? try MQTTProperties.decode(from: &body, allowed: .unsubscribe, in: .unsubscribe) : MQTTProperties()
        guard body.readableBytes > 0 else {
            throw .protocolError("UNSUBSCRIBE carries no topic filter")
        }
        var topicFilters: [String] = []
        while body.readableBytes > 0 {
            topicFilters.append(try body.readMQTTString())
        }
        return UnsubscribePacket(packetIdentifier: packetIdentifier, topicFilters: topicFilters, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        var length = 2
        if version == .v5 { length += properties.encodedLengthWithPrefix }
        for filter in topicFilters { length += mqttStringSize(filter) }
        return length
    }

    func write(version: MQTTProtocolVersion, remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.unsubscribe, flags: 0b0010, remainingLength: remainingLength)
        buffer.writeInteger(packetIdentifier, endianness: .big)
        if version == .v5 { properties.write(into: &buffer) }
        for filter in topicFilters { buffer.writeMQTTString(filter) }
    }
}
