/// PUBACK: the acknowledgement of a QoS 1 PUBLISH. A plain value.
///
/// In 3.x only the packet identifier is sent. In MQTT 5 a success with no properties is sent in the short form
/// (remaining length 2); both forms decode.
public struct PubAckPacket: Sendable, Equatable, PublishAcknowledgement {
    static var packetType: MQTTPacketType { .puback }

    public var packetIdentifier: UInt16
    public var reasonCode: ReasonCode
    /// Reason string and user properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(
        packetIdentifier: UInt16, reasonCode: ReasonCode = .success, properties: MQTTProperties = MQTTProperties()
    ) {
        self.packetIdentifier = packetIdentifier
        self.reasonCode = reasonCode
        self.properties = properties
    }
}
