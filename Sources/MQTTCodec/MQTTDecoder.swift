import NIOCore

/// Turns bytes into MQTT packets, one complete packet per call. Owned by one connection; not thread-safe.
///
/// The decoder tracks the protocol version: until it has one it accepts only CONNECT, and the first CONNECT it
/// decodes sets it. A client (or a test) sets the version up front. Size limits are checked as soon as the fixed
/// header is readable, before the body is buffered. After a thrown error the connection must be closed; the
/// decoder's state is unspecified.
public struct MQTTDecoder {
    /// Largest packet accepted, fixed header included. Larger ones fail with 0x95 (packet too large).
    public var maximumPacketSize: Int
    /// The version packets are decoded with; nil until a CONNECT has been decoded (or it is set by the owner).
    public var protocolVersion: MQTTProtocolVersion?

    /// The largest packet MQTT can express: 1 + 4 + 268,435,455 bytes.
    public static let protocolMaximumPacketSize = 1 + 4 + mqttMaximumVariableByteInteger

    public init(
        maximumPacketSize: Int = MQTTDecoder.protocolMaximumPacketSize, protocolVersion: MQTTProtocolVersion? = nil
    ) {
        self.maximumPacketSize = maximumPacketSize
        self.protocolVersion = protocolVersion
    }

    /// Decodes the next packet from the front of `buffer`.
    ///
    /// Returns nil, consuming nothing, when `buffer` does not yet hold a whole packet. Otherwise consumes exactly one
    /// packet. A decoded PUBLISH payload (and any binary field) is a slice of `buffer`'s storage.
    public mutating func decode(from buffer: inout ByteBuffer) throws(MQTTDecodingError) -> MQTTPacket? {
        let start = buffer.readerIndex
        guard let firstByte = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
        let flags = firstByte & 0x0F
        let packetType: MQTTPacketType
        do {
            packetType = try checkFirstByte(firstByte)
        } catch {
            throw withContext(error, packetType: MQTTPacketType(rawValue: firstByte >> 4))
        }

        // Remaining length: at most four bytes, minimal form.
        var remainingLength = 0
        var headerLength = 0
        for position in 0..<4 {
            guard let byte = buffer.getInteger(at: start + 1 + position, as: UInt8.self) else { return nil }
            remainingLength |= Int(byte & 0x7F) << (7 * position)
            if byte & 0x80 == 0 {
                if byte == 0 && position > 0 {
                    throw withContext(
                        .malformed("remaining length not in its shortest form"),
                        packetType: packetType
                    )
                }
                headerLength = 2 + position
                break
            }
        }
        guard headerLength > 0 else {
            throw withContext(.malformed("remaining length longer than four bytes"), packetType: packetType)
        }
        let packetLength = headerLength + remainingLength
        guard packetLength <= maximumPacketSize else {
            var error = withContext(
                MQTTDecodingError(
                    reasonCode: .packetTooLarge,
                    message: "packet of \(packetLength) bytes exceeds the maximum of \(maximumPacketSize)"
                ),
                packetType: packetType
            )
            if packetType == .connect && error.protocolVersion == nil {
                error.protocolVersion = Self.peekConnectVersion(in: buffer, bodyStart: start + headerLength)
            }
            throw error
        }
        guard var body = buffer.getSlice(at: start + headerLength, length: remainingLength) else { return nil }

        let packet: MQTTPacket
        do {
            packet = try decodeBody(packetType, flags: flags, body: &body)
        } catch {
            throw withContext(error, packetType: packetType)
        }
        buffer.moveReaderIndex(forwardBy: packetLength)
        if case .connect(let connect) = packet, protocolVersion == nil {
            protocolVersion = connect.protocolVersion
        }
        return packet
    }

    /// Validates what the first byte alone tells: a known type, allowed in this state, with the required flags.
    private func checkFirstByte(_ firstByte: UInt8) throws(MQTTDecodingError) -> MQTTPacketType {
        let typeValue = firstByte >> 4
        let flags = firstByte & 0x0F
        guard protocolVersion != nil || typeValue == MQTTPacketType.connect.rawValue else {
            throw .protocolError("the first packet must be CONNECT")
        }
        guard let packetType = MQTTPacketType(rawValue: typeValue) else {
            throw .malformed("packet type 0 is reserved")
        }
        if packetType == .auth && protocolVersion != .v5 {
            throw .malformed("packet type 15 is reserved before MQTT 5")
        }
        if packetType == .publish {
            try PublishPacket.validateFlags(flags)
        } else if flags != packetType.requiredFlags {
            throw .malformed("invalid fixed header flags for \(packetType)")
        }
        return packetType
    }

    private func decodeBody(
        _ packetType: MQTTPacketType,
        flags: UInt8,
        body: inout ByteBuffer
    ) throws(MQTTDecodingError) -> MQTTPacket {
        // checkFirstByte only lets other types through once a version is known.
        let version = protocolVersion ?? .v3_1_1
        switch packetType {
        case .connect:
            return .connect(try ConnectPacket.decode(from: &body))
        case .connack:
            return .connack(try ConnAckPacket.decode(from: &body, version: version))
        case .publish:
            return .publish(try PublishPacket.decode(flags: flags, from: &body, version: version))
        case .puback:
            return .puback(try PubAckPacket.decode(from: &body, version: version))
        case .pubrec:
            return .pubrec(try PubRecPacket.decode(from: &body, version: version))
        case .pubrel:
            return .pubrel(try PubRelPacket.decode(from: &body, version: version))
        case .pubcomp:
            return .pubcomp(try PubCompPacket.decode(from: &body, version: version))
        case .subscribe:
            return .subscribe(try SubscribePacket.decode(from: &body, version: version))
        case .suback:
            return .suback(try SubAckPacket.decode(from: &body, version: version))
        case .unsubscribe:
            return .unsubscribe(try UnsubscribePacket.decode(from: &body, version: version))
        case .unsuback:
            return .unsuback(try UnsubAckPacket.decode(from: &body, version: version))
        case .pingreq:
            try body.expectMQTTEnd(.pingreq)
            return .pingreq
        case .pingresp:
            try body.expectMQTTEnd(.pingresp)
            return .pingresp
        case .disconnect:
            return .disconnect(try DisconnectPacket.decode(from: &body, version: version))
        case .auth:
            return .auth(try AuthPacket.decode(from: &body))
        }
    }

    private func withContext(_ error: MQTTDecodingError, packetType: MQTTPacketType?) -> MQTTDecodingError {
        var error = error
        if error.packetType == nil { error.packetType = packetType }
        if error.protocolVersion == nil { error.protocolVersion = protocolVersion }
        error.isBeforeConnect = protocolVersion == nil
        return error
    }

    /// The level of a CONNECT whose body has not fully arrived, if its first bytes are there and well-formed.
    private static func peekConnectVersion(in buffer: ByteBuffer, bodyStart: Int) -> MQTTProtocolVersion? {
        guard let nameLength = buffer.getInteger(at: bodyStart, endianness: .big, as: UInt16.self),
            nameLength == 4 || nameLength == 6,
            let level = buffer.getInteger(at: bodyStart + 2 + Int(nameLength), as: UInt8.self),
            let version = MQTTProtocolVersion(rawValue: level),
            buffer.getString(at: bodyStart + 2, length: Int(nameLength)) == version.protocolName
        else { return nil }
        return version
    }
}
