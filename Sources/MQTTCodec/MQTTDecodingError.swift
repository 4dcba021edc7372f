/// Why `MQTTDecoder` rejected the bytes it was given.
///
/// A plain value thrown by the decoder. `reasonCode` is what an MQTT 5 peer should be told; the other fields tell the
/// broker which packet (if any) it may still send before closing. `suggestedResponse` applies the spec's rules.
public struct MQTTDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The MQTT 5 reason code for this failure: 0x81 malformed, 0x82 protocol error, 0x84 unsupported protocol
    /// version, 0x90 topic name invalid, 0x94 topic alias invalid, 0x95 packet too large.
    public var reasonCode: ReasonCode
    /// A human-readable explanation, for logs.
    public var message: String
    /// The type of the offending packet, when its first byte named a known type.
    public var packetType: MQTTPacketType?
    /// The protocol version the peer speaks, if known: the decoder's version, or the level of the CONNECT being
    /// decoded once that was read.
    public var protocolVersion: MQTTProtocolVersion?
    /// True when no CONNECT had been decoded yet (the failing packet is the first one): the answer, if any, is a
    /// CONNACK, not a DISCONNECT.
    public var isBeforeConnect: Bool
    /// The raw protocol level of a CONNECT rejected with 0x84, for logs.
    public var requestedProtocolLevel: UInt8?

    public init(
        reasonCode: ReasonCode,
        message: String,
        packetType: MQTTPacketType? = nil,
        protocolVersion: MQTTProtocolVersion? = nil,
        isBeforeConnect: Bool = false,
        requestedProtocolLevel: UInt8? = nil
    ) {
        self.reasonCode = reasonCode
        self.message = message
        self.packetType = packetType
        self.protocolVersion = protocolVersion
        self.isBeforeConnect = isBeforeConnect
        self.requestedProtocolLevel = requestedProtocolLevel
    }

    static func malformed(_ message: String) -> MQTTDecodingError {
        MQTTDecodingError(reasonCode: .malformedPacket, message: message)
    }

    static func protocolError(_ message: String) -> MQTTDecodingError {
        MQTTDecodingError(reasonCode: .protocolError, message: message)
    }

    /// The packet the broker should send before closing the connection, and the version to encode it with, or nil
    /// when it should just close.
    ///
    /// - Before CONNECT, MQTT 5 peer: CONNACK with `reasonCode`.
    /// - Before CONNECT, unsupported or unknown level: CONNACK 0x84, encoded as 3.1.1 (return code 0x01) unless the
    ///   peer is known to speak MQTT 5.
    /// - After CONNECT, MQTT 5 peer: DISCONNECT with `reasonCode`.
    /// - MQTT 3.x otherwise: nothing, the connection is closed.
    public var suggestedResponse: (packet: MQTTPacket, version: MQTTProtocolVersion)? {
        if isBeforeConnect {
            if protocolVersion == .v5 {
                return (.connack(ConnAckPacket(sessionPresent: false, reasonCode: reasonCode)), .v5)
            }
            if reasonCode == .unsupportedProtocolVersion {
                let version = protocolVersion ?? .v3_1_1
                return (.connack(ConnAckPacket(sessionPresent: false, reasonCode: reasonCode)), version)
            }
            return nil
        }
        guard protocolVersion == .v5 else { return nil }
        return (.disconnect(DisconnectPacket(reasonCode: reasonCode)), .v5)
    }

    public var description: String {
        var text = "MQTT decoding error \(reasonCode)"
        if let packetType { text += " in \(packetType)" }
        text += ": \(message)"
        return text
    }
}
