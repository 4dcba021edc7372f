import NIOCore

/// DISCONNECT: the last packet before a clean close (sent by the client, or in MQTT 5 by either side).
/// A plain value.
///
/// In 3.x it has no body. In MQTT 5 a normal disconnection with no properties has remaining length 0 and a reason
/// code with no properties has remaining length 1; all forms decode.
public struct DisconnectPacket: Sendable, Equatable {
    public var reasonCode: ReasonCode
    /// Session expiry interval, reason string, user properties, server reference (MQTT 5 only).
    public var properties: MQTTProperties

    public init(reasonCode: ReasonCode = .normalDisconnection, properties: MQTTProperties = MQTTProperties()) {
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

extension DisconnectPacket {
    static func decode(from body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError)
        -> DisconnectPacket
    {
        var packet = DisconnectPacket()
        if version == .v5 && body.readableBytes > 0 {
            packet.reasonCode = ReasonCode(rawValue: try body.readMQTTByte())
            guard packet.reasonCode.isValid(for: .disconnect) else {
                throw .malformed("reason code \(packet.reasonCode) is not valid in DISCONNECT")
            }
            if body.readableBytes > 0 {
                packet.properties = try MQTTProperties.decode(from: &body, allowed: .disconnect, in: .disconnect)
            }
        }
        try body.expectMQTTEnd(.disconnect)
        return packet
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        guard version == .v5 else { return 0 }
        let propertiesLength = properties.encodedLength
        if propertiesLength > 0 {
            return 1 + mqttVariableByteIntegerSize(propertiesLength) + propertiesLength
        }
        return reasonCode == .normalDisconnection ? 0 : 1
    }

    func write(version: MQTTProtocolVersion, remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.disconnect, remainingLength: remainingLength)
        if remainingLength > 0 { buffer.writeInteger(reasonCode.rawValue) }
        if remainingLength > 1 { properties.write(into: &buffer) }
    }
}
