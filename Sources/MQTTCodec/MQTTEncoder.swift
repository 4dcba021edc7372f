import NIOCore

/// Writes MQTT packets to bytes. Stateless; every function is pure apart from appending to the buffer.
///
/// The caller chooses the version: 3.x encodings drop properties and MQTT 5-only reason codes (CONNACK and SUBACK
/// codes are mapped onto 3.x return codes). CONNECT is always encoded at its own `protocolVersion`. AUTH has no 3.x
/// form and is a programming error there, as are strings over 65,535 bytes and packets over 268,435,455 bytes of
/// remaining length: the encoder traps on them (`precondition`). A PUBLISH built from others' input is checked
/// with `checkedEncodedSize` first.
public enum MQTTEncoder {
    /// Appends `packet` encoded for `version` to `buffer`.
    public static func encode(_ packet: MQTTPacket, version: MQTTProtocolVersion, into buffer: inout ByteBuffer) {
        switch packet {
        case .connect(let connect):
            let length = connect.remainingLength()
            reserve(length, in: &buffer)
            connect.write(remainingLength: length, into: &buffer)
        case .connack(let connack):
            let length = connack.remainingLength(version: version)
            reserve(length, in: &buffer)
            connack.write(version: version, remainingLength: length, into: &buffer)
        case .publish(let publish):
            encode(publish, version: version, into: &buffer)
        case .puback(let ack):
            encodeAcknowledgement(ack, version: version, into: &buffer)
        case .pubrec(let ack):
            encodeAcknowledgement(ack, version: version, into: &buffer)
        case .pubrel(let ack):
            encodeAcknowledgement(ack, version: version, into: &buffer)
        case .pubcomp(let ack):
            encodeAcknowledgement(ack, version: version, into: &buffer)
        case .subscribe(let subscribe):
            let length = subscribe.remainingLength(version: version)
            reserve(length, in: &buffer)
            subscribe.write(version: version, remainingLength: length, into: &buffer)
        case .suback(let suback):
            let length = suback.remainingLength(version: version)
            reserve(length, in: &buffer)
            suback.write(version: version, remainingLength: length, into: &buffer)
        case .unsubscribe(let unsubscribe):
            let length = unsubscribe.remainingLength(version: version)
            reserve(length, in: &buffer)
            unsubscribe.write(version: version, remainingLength: length, into: &buffer)
        case .unsuback(let unsuback):
            let length = unsuback.remainingLength(version: version)
            reserve(length, in: &buffer)
            unsuback.write(version: version, remainingLength: length, into: &buffer)
        case .pingreq:
            buffer.writeInteger(UInt16(0xC000), endianness: .big)
        case .pingresp:
            buffer.writeInteger(UInt16(0xD000), endianness: .big)
        case .disconnect(let disconnect):
            let length = disconnect.remainingLength(version: version)
            reserve(length, in: &buffer)
            disconnect.write(version: version, remainingLength: length, into: &buffer)
        case .auth(let auth):
            precondition(version == .v5, "AUTH exists only in MQTT 5")
            let length = auth.remainingLength()
            reserve(length, in: &buffer)
            auth.write(remainingLength: length, into: &buffer)
        }
    }

    /// Appends a PUBLISH encoded for `version` to `buffer` (the payload is copied in).
    public static func encode(_ publish: PublishPacket, version: MQTTProtocolVersion, into buffer: inout ByteBuffer) {
        let propertiesLength = version == .v5 ? publish.properties.encodedLength : 0
        let headerLength = publish.remainingLengthWithoutPayload(version: version, propertiesLength: propertiesLength)
        let remainingLength = headerLength + publish.payload.readableBytes
        reserve(remainingLength, in: &buffer)
        publish.writeHeader(
            version: version,
            remainingLength: remainingLength,
            propertiesLength: propertiesLength,
            into: &buffer
        )
        buffer.writeImmutableBuffer(publish.payload)
    }

    /// Appends everything of a PUBLISH except its payload, so a caller can send `publish.payload` as a separate
    /// buffer (one copy of the payload shared by many subscribers). The bytes written plus the payload form the
    /// complete packet.
    public static func encodeHeader(
        of publish: PublishPacket,
        version: MQTTProtocolVersion,
        into buffer: inout ByteBuffer
    ) {
        let propertiesLength = version == .v5 ? publish.properties.encodedLength : 0
        let headerLength = publish.remainingLengthWithoutPayload(version: version, propertiesLength: propertiesLength)
        let remainingLength = headerLength + publish.payload.readableBytes
        publish.writeHeader(
            version: version,
            remainingLength: remainingLength,
            propertiesLength: propertiesLength,
            into: &buffer
        )
    }

    /// Bytes `encode(packet, version:into:)` appends, fixed header included: compare with a peer's maximum
    /// packet size before sending.
    public static func encodedSize(_ packet: MQTTPacket, version: MQTTProtocolVersion) -> Int {
        let remainingLength: Int
        switch packet {
        case .connect(let connect): remainingLength = connect.remainingLength()
        case .connack(let connack): remainingLength = connack.remainingLength(version: version)
        case .publish(let publish): return encodedSize(publish, version: version)
        case .puback(let ack): remainingLength = ack.remainingLength(version: version)
        case .pubrec(let ack): remainingLength = ack.remainingLength(version: version)
        case .pubrel(let ack): remainingLength = ack.remainingLength(version: version)
        case .pubcomp(let ack): remainingLength = ack.remainingLength(version: version)
        case .subscribe(let subscribe): remainingLength = subscribe.remainingLength(version: version)
        case .suback(let suback): remainingLength = suback.remainingLength(version: version)
        case .unsubscribe(let unsubscribe): remainingLength = unsubscribe.remainingLength(version: version)
        case .unsuback(let unsuback): remainingLength = unsuback.remainingLength(version: version)
        case .pingreq, .pingresp: remainingLength = 0
        case .disconnect(let disconnect): remainingLength = disconnect.remainingLength(version: version)
        case .auth(let auth): remainingLength = auth.remainingLength()
        }
        return 1 + mqttVariableByteIntegerSize(remainingLength) + remainingLength
    }

    /// Bytes of a PUBLISH encoded for `version`, fixed header and payload included, or `nil` when it cannot be
    /// encoded at all: a remaining length above 268,435,455, a topic or property string above 65,535 bytes, or
    /// a subscription identifier outside 1...268,435,455 (`encode` would trap on it). A broker checks this
    /// before sending a message that grew on its way (a resolved topic alias, subscription identifiers).
    public static func checkedEncodedSize(_ publish: PublishPacket, version: MQTTProtocolVersion) -> Int? {
        guard publish.topic.utf8.count <= Int(UInt16.max) else { return nil }
        let propertiesLength: Int
        if version == .v5 {
            guard publish.properties.isEncodable else { return nil }
            propertiesLength = publish.properties.encodedLength
            guard propertiesLength <= mqttMaximumVariableByteInteger else { return nil }
        } else {
            propertiesLength = 0
        }
        let (remainingLength, overflow) = publish.remainingLengthWithoutPayload(
            version: version, propertiesLength: propertiesLength
        ).addingReportingOverflow(publish.payload.readableBytes)
        guard !overflow, remainingLength <= mqttMaximumVariableByteInteger else { return nil }
        return 1 + mqttVariableByteIntegerSize(remainingLength) + remainingLength
    }

    /// Bytes of a PUBLISH encoded for `version`, fixed header and payload included.
    public static func encodedSize(_ publish: PublishPacket, version: MQTTProtocolVersion) -> Int {
        let propertiesLength = version == .v5 ? publish.properties.encodedLength : 0
        let remainingLength =
            publish.remainingLengthWithoutPayload(version: version, propertiesLength: propertiesLength)
            + publish.payload.readableBytes
        return 1 + mqttVariableByteIntegerSize(remainingLength) + remainingLength
    }

    @inline(__always)
    private static func encodeAcknowledgement<Packet: PublishAcknowledgement>(
        _ packet: Packet,
        version: MQTTProtocolVersion,
        into buffer: inout ByteBuffer
    ) {
        let length = packet.remainingLength(version: version)
        reserve(length, in: &buffer)
        packet.write(version: version, remainingLength: length, into: &buffer)
    }

    @inline(__always)
    private static func reserve(_ remainingLength: Int, in buffer: inout ByteBuffer) {
        precondition(
            remainingLength <= mqttMaximumVariableByteInteger,
            "MQTT packet larger than the protocol allows"
        )
        buffer.reserveCapacity(minimumWritableBytes: 5 + remainingLength)
    }
}

extension MQTTPacket {
    /// Same as `MQTTEncoder.encode(self, version:into:)`.
    public func encode(version: MQTTProtocolVersion, into buffer: inout ByteBuffer) {
        MQTTEncoder.encode(self, version: version, into: &buffer)
    }

    /// Same as `MQTTEncoder.encodedSize(self, version:)`.
    public func encodedSize(version: MQTTProtocolVersion) -> Int {
        MQTTEncoder.encodedSize(self, version: version)
    }
}
