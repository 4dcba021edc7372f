/// The MQTT protocol level carried in CONNECT.
///
/// A plain value; the decoder learns it from the first CONNECT and the encoder is told it per call.
public enum MQTTProtocolVersion: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// MQTT 3.1, protocol name "MQIsdp".
    case v3_1 = 3
    /// MQTT 3.1.1, protocol name "MQTT".
    case v3_1_1 = 4
    /// MQTT 5.0, protocol name "MQTT".
    case v5 = 5

    /// The protocol name that a CONNECT of this level must carry.
    public var protocolName: String {
        self == .v3_1 ? "MQIsdp" : "MQTT"
    }

    /// Whether packets of this level carry properties and reason codes.
    @inlinable
    public var hasProperties: Bool { self == .v5 }

    public var description: String {
        switch self {
        case .v3_1: "3.1"
        case .v3_1_1: "3.1.1"
        case .v5: "5.0"
        }
    }
}
