import NIOCore

/// SUBACK: the server's answer to SUBSCRIBE, one reason code per topic filter, in order. A plain value.
///
/// In 3.x each code is sent as its `v3SubAckReturnCode` (0x00, 0x01, 0x02 or 0x80) and properties are dropped.
public struct SubAckPacket: Sendable, Equatable {
    public var packetIdentifier: UInt16
    public var reasonCodes: [ReasonCode]
    /// Reason string and user properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode], properties: MQTTProperties = MQTTProperties()) {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }
}

extension SubAckPacket {
    static func decode(from body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError)
        -> SubAckPacket
    {
        let packetIdentifier = try body.readMQTTPacketIdentifier()
        let properties =
            version == .v5
            ? try MQTTProperties.decode(from: &body, allowed: .acknowledgement, in: .suback) : MQTTProperties()
        guard body.readableBytes > 0 else {
            throw .protocolError("SUBACK carries no reason code")
        }
        var reasonCodes: [ReasonCode] = []
        reasonCodes.reserveCapacity(body.readableBytes)
        while let code = body.readInteger(as: UInt8.self) {
            let reasonCode = ReasonCode(rawValue: code)
            let isValid = version == .v5 ? reasonCode.isValid(for: .suback) : (code <= 2 || code == 0x80)
            guard isValid else {
                throw .malformed("reason code \(reasonCode) is not valid in SUBACK")
            }
            reasonCodes.append(reasonCode)
        }
        return SubAckPacket(packetIdentifier: packetIdentifier, reasonCodes: reasonCodes, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        var length = 2 + reasonCodes.count
        if version == .v5 { length += properties.encodedLengthWithPrefix }
        return length
    }

    func write(version: MQTTProtocolVersion, remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.suback, remainingLength: remainingLength)
        buffer.writeInteger(packetIdentifier, endianness: .big)
        if version == .v5 {
            properties.write(into: &buffer)
            for code in reasonCodes { buffer.writeInteger(code.rawValue) }
        } else {
            for code in reasonCodes { buffer.writeInteger(code.v3SubAckReturnCode) }
        }
    }
}
