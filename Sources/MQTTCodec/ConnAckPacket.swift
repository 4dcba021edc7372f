import NIOCore

/// CONNACK: the server's answer to CONNECT. A plain value.
///
/// In 3.x the reason code travels as a return code (`ReasonCode.v3ConnectReturnCode`); properties are dropped.
public struct ConnAckPacket: Sendable, Equatable {
    public var sessionPresent: Bool
    public var reasonCode: ReasonCode
    /// CONNACK properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(
        sessionPresent: Bool = false, reasonCode: ReasonCode = .success, properties: MQTTProperties = MQTTProperties()
    ) {
        self.sessionPresent = sessionPresent
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

extension ConnAckPacket {
    static func decode(from body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError)
        -> ConnAckPacket
    {
        let acknowledgeFlags = try body.readMQTTByte()
        // MQTT 3.1 has no session present flag: the whole byte is reserved.
        let reservedMask: UInt8 = version == .v3_1 ? 0xFF : 0xFE
        guard acknowledgeFlags & reservedMask == 0 else {
            throw .malformed("CONNACK reserved acknowledge flags are set")
        }
        let code = try body.readMQTTByte()
        let reasonCode: ReasonCode
        var properties = MQTTProperties()
        if version == .v5 {
            reasonCode = ReasonCode(rawValue: code)
            guard reasonCode.isValid(for: .connack) else {
                throw .malformed("reason code \(reasonCode) is not valid in CONNACK")
            }
            properties = try MQTTProperties.decode(from: &body, allowed: .connack, in: .connack)
        } else {
            guard let mapped = ReasonCode(v3ConnectReturnCode: code) else {
                throw .malformed("CONNACK return code \(code) is not defined")
            }
            reasonCode = mapped
        }
        try body.expectMQTTEnd(.connack)
        return ConnAckPacket(sessionPresent: acknowledgeFlags & 1 != 0, reasonCode: reasonCode, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        version == .v5 ? 2 + properties.encodedLengthWithPrefix : 2
    }

    func write(version: MQTTProtocolVersion, remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.connack, remainingLength: remainingLength)
        buffer.writeInteger(sessionPresent && version != .v3_1 ? 1 : 0 as UInt8)
        if version == .v5 {
            buffer.writeInteger(reasonCode.rawValue)
            properties.write(into: &buffer)
        } else {
            buffer.writeInteger(reasonCode.v3ConnectReturnCode)
        }
    }
}
