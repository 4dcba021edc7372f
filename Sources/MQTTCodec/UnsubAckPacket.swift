import NIOCore

/// UNSUBACK: the server's answer to UNSUBSCRIBE. A plain value.
///
/// In 3.x it carries only the packet identifier: `reasonCodes` and `properties` are dropped when encoding and
/// empty when decoding. In MQTT 5 there is one reason code per topic filter, in order.
public struct UnsubAckPacket: Sendable, Equatable {
    public var packetIdentifier: UInt16
    public var reasonCodes: [ReasonCode]
    /// Reason string and user properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode] = [], properties: MQTTProperties = MQTTProperties())
    {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }
}

extension UnsubAckPacket {
    static func decode(from body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError)
        -> UnsubAckPacket
    {
        let packetIdentifier = try body.readMQTTPacketIdentifier()
        guard version == .v5 else {
            try body.expectMQTTEnd(.unsuback)
            return UnsubAckPacket(packetIdentifier: packetIdentifier)
        }
        let properties = try MQTTProperties.decode(from: &body, allowed: .acknowledgement, in: .unsuback)
        guard body.readableBytes > 0 else {
            throw .protocolError("UNSUBACK carries no reason code")
        }
        var reasonCodes: [ReasonCode] = []
        reasonCodes.reserveCapacity(body.readableBytes)
        while let code = body.readInteger(as: UInt8.self) {
            let reasonCode = ReasonCode(rawValue: code)
            guard reasonCode.isValid(for: .unsuback) else {
                throw .malformed("reason code \(reasonCode) is not valid in UNSUBACK")
            }
            reasonCodes.append(reasonCode)
        }
        return UnsubAckPacket(packetIdentifier: packetIdentifier, reasonCodes: reasonCodes, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        version == .v5 ? 2 + properties.encodedLengthWithPrefix + reasonCodes.count : 2
    }

    func write(version: MQTTProtocolVersion, remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.unsuback, remainingLength: remainingLength)
        buffer.writeInteger(packetIdentifier, endianness: .big)
        guard version == .v5 else { return }
        properties.write(into: &buffer)
        for code in reasonCodes { buffer.writeInteger(code.rawValue) }
    }
}
