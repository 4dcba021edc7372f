import NIOCore

/// PUBLISH: an application message in either direction. A plain value.
///
/// When decoded, `payload` is a slice of the receive buffer (no copy). In MQTT 5 `topic` may be empty when
/// `properties.topicAlias` is set; resolving aliases is the broker's job.
public struct PublishPacket: Sendable, Equatable {
    /// A topic name: valid UTF-8, no '+' or '#'.
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    public var dup: Bool
    /// Present exactly when `qos` is above 0.
    public var packetIdentifier: UInt16?
    /// PUBLISH properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        dup: Bool = false,
        packetIdentifier: UInt16? = nil,
        properties: MQTTProperties = MQTTProperties()
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packetIdentifier = packetIdentifier
        self.properties = properties
    }
}

extension PublishPacket {
    /// Checks the PUBLISH fixed-header flags (done before the body arrives).
    static func validateFlags(_ flags: UInt8) throws(MQTTDecodingError) {
        let qosBits = (flags >> 1) & 0b11
        guard qosBits != 3 else {
            throw .malformed("PUBLISH QoS is 3")
        }
        guard !(qosBits == 0 && flags & 0b1000 != 0) else {
            throw .malformed("PUBLISH DUP flag set on a QoS 0 message")
        }
    }

    static func decode(
        flags: UInt8,
        from body: inout ByteBuffer,
        version: MQTTProtocolVersion
    ) throws(MQTTDecodingError) -> PublishPacket {
        let qos = QoS(rawValue: (flags >> 1) & 0b11) ?? .atMostOnce
        let topic = try body.readMQTTTopicName()
        let packetIdentifier = qos == .atMostOnce ? nil : try body.readMQTTPacketIdentifier()
        var properties = MQTTProperties()
        if version == .v5 {
            properties = try MQTTProperties.decode(from: &body, allowed: .publish, in: .publish)
            if topic.isEmpty && properties.topicAlias == nil {
                throw .protocolError("PUBLISH has an empty topic name and no topic alias")
            }
        } else if topic.isEmpty {
            throw MQTTDecodingError(reasonCode: .topicNameInvalid, message: "PUBLISH has an empty topic name")
        }
        return PublishPacket(
            topic: topic,
            payload: body,
            qos: qos,
            retain: flags & 0b0001 != 0,
            dup: flags & 0b1000 != 0,
            packetIdentifier: packetIdentifier,
            properties: properties
        )
    }

    var fixedHeaderFlags: UInt8 {
        var flags = qos.rawValue << 1
        if retain { flags |= 0b0001 }
        if dup { flags |= 0b1000 }
        return flags
    }

    /// Remaining length of everything but the payload.
    func remainingLengthWithoutPayload(version: MQTTProtocolVersion, propertiesLength: Int) -> Int {
        var length = mqttStringSize(topic)
        if qos != .atMostOnce { length += 2 }
        if version == .v5 { length += mqttVariableByteIntegerSize(propertiesLength) + propertiesLength }
        return length
    }

    /// Writes the fixed header and variable header; the payload follows.
    func writeHeader(
        version: MQTTProtocolVersion,
        remainingLength: Int,
        propertiesLength: Int,
        into buffer: inout ByteBuffer
    ) {
        buffer.writeMQTTFixedHeader(.publish, flags: fixedHeaderFlags, remainingLength: remainingLength)
        buffer.writeMQTTString(topic)
        if qos != .atMostOnce {
            guard let packetIdentifier else {
                preconditionFailure("PUBLISH with QoS \(qos.rawValue) needs a packet identifier")
            }
            buffer.writeInteger(packetIdentifier, endianness: .big)
        }
        if version == .v5 { properties.write(into: &buffer, encodedLength: propertiesLength) }
    }
}
