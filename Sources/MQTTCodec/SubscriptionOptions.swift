/// The options byte that follows each topic filter in SUBSCRIBE.
///
/// In MQTT 3.x only `qos` is carried; the other fields are ignored when encoding and default when decoding.
public struct SubscriptionOptions: Sendable, Hashable {
    /// MQTT 5 retain handling (bits 4-5 of the options byte).
    public enum RetainHandling: UInt8, Sendable, Hashable, CaseIterable {
        /// Send retained messages at the time of the subscribe.
        case sendOnSubscribe = 0
        /// Send retained messages only if the subscription did not already exist.
        case sendOnSubscribeIfNew = 1
        /// Do not send retained messages at the time of the subscribe.
        case doNotSend = 2
    }

    public var qos: QoS
    public var noLocal: Bool
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling

    public init(
        qos: QoS = .atMostOnce,
        noLocal: Bool = false,
        retainAsPublished: Bool = false,
        retainHandling: RetainHandling = .sendOnSubscribe
    ) {
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }

    /// The options byte as sent on the wire for `version`.
    func encodedByte(version: MQTTProtocolVersion) -> UInt8 {
        guard version == .v5 else { return qos.rawValue }
        var byte = qos.rawValue
        if noLocal { byte |= 0b0000_0100 }
        if retainAsPublished { byte |= 0b0000_1000 }
        byte |= retainHandling.rawValue << 4
        return byte
    }

    /// Parses and validates an options byte.
    init(decoding byte: UInt8, version: MQTTProtocolVersion) throws(MQTTDecodingError) {
        guard let qos = QoS(rawValue: byte & 0b11) else {
            throw .malformed("subscription options carry QoS 3")
        }
        guard version == .v5 else {
            guard byte & 0b1111_1100 == 0 else {
                throw .malformed("reserved bits set in the requested QoS byte")
            }
            self.init(qos: qos)
            return
        }
        guard byte & 0b1100_0000 == 0 else {
            throw .malformed("reserved bits set in subscription options")
        }
        guard let retainHandling = RetainHandling(rawValue: (byte >> 4) & 0b11) else {
            throw .protocolError("subscription options carry retain handling 3")
        }
        self.init(
            qos: qos,
            noLocal: byte & 0b0000_0100 != 0,
            retainAsPublished: byte & 0b0000_1000 != 0,
            retainHandling: retainHandling
        )
    }
}
