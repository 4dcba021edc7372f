import NIOCore

/// What PUBACK, PUBREC, PUBREL and PUBCOMP share: a packet identifier, and in MQTT 5 a reason code and properties,
/// both omitted on the wire when they are success and empty.
protocol PublishAcknowledgement {
    static var packetType: MQTTPacketType { get }
    var packetIdentifier: UInt16 { get }
    var reasonCode: ReasonCode { get }
    var properties: MQTTProperties { get }
    init(packetIdentifier: UInt16, reasonCode: ReasonCode, properties: MQTTProperties)
}

extension PublishAcknowledgement {
    static func decode(from body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> Self {
        let packetIdentifier = try body.readMQTTPacketIdentifier()
        var reasonCode = ReasonCode.success
        var properties = MQTTProperties()
        if version == .v5 && body.readableBytes > 0 {
            reasonCode = ReasonCode(rawValue: try body.readMQTTByte())
            guard reasonCode.isValid(for: packetType) else {
                throw .malformed("reason code \(reasonCode) is not valid in \(packetType)")
            }
            if body.readableBytes > 0 {
                properties = try MQTTProperties.decode(from: &body, allowed: .acknowledgement, in: packetType)
            }
        }
        try body.expectMQTTEnd(packetType)
        return Self(packetIdentifier: packetIdentifier, reasonCode: reasonCode, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        guard version == .v5 else { return 2 }
        let propertiesLength = properties.encodedLength
        if propertiesLength > 0 {
            return 3 + mqttVariableByteIntegerSize(propertiesLength) + propertiesLength
        }
        return reasonCode == .success ? 2 : 3
    }

    func write(version: MQTTProtocolVersion, remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(
            Self.packetType, flags: Self.packetType.requiredFlags, remainingLength: remainingLength)
        buffer.writeInteger(packetIdentifier, endianness: .big)
        if remainingLength > 2 {
            buffer.writeInteger(reasonCode.rawValue)
        }
        if remainingLength > 3 {
            properties.write(into: &buffer)
        }
    }
}
