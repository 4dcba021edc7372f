import NIOCore

/// AUTH: an MQTT 5 extended-authentication exchange step, in either direction. A plain value.
///
/// A success with no properties has remaining length 0; otherwise reason code and property length are both sent.
/// There is no AUTH in 3.x (the type value is reserved).
public struct AuthPacket: Sendable, Equatable {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    public var reasonCode: ReasonCode
    /// Authentication method and data, reason string, user properties.
    public var properties: MQTTProperties

    public init(reasonCode: ReasonCode = .success, properties: MQTTProperties = MQTTProperties()) {
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

extension AuthPacket {
    static func decode(from body: inout ByteBuffer) throws(MQTTDecodingError) -> AuthPacket {
        var packet = AuthPacket()
        if body.readableBytes > 0 {
            packet.reasonCode = ReasonCode(rawValue: try body.readMQTTByte())
            guard packet.reasonCode.isValid(for: .auth) else {
                throw .malformed("reason code \(packet.reasonCode) is not valid in AUTH")
            }
            // Unlike DISCONNECT and the PUBLISH acknowledgements, AUTH has no one-byte form.
            packet.properties = try MQTTProperties.decode(from: &body, allowed: .auth, in: .auth)
        }
        try body.expectMQTTEnd(.auth)
        return packet
    }

    func remainingLength() -> Int {
        let propertiesLength = properties.encodedLength
        if propertiesLength == 0 && reasonCode == .success { return 0 }
        return 1 + mqttVariableByteIntegerSize(propertiesLength) + propertiesLength
    }

    func write(remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.auth, remainingLength: remainingLength)
        guard remainingLength > 0 else { return }
        buffer.writeInteger(reasonCode.rawValue)
        properties.write(into: &buffer)
    }
}
