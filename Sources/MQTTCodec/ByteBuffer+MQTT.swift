import NIOCore

/// The largest value a variable byte integer can carry (four bytes).
let mqttMaximumVariableByteInteger = 268_435_455

/// Number of bytes `value` takes as a variable byte integer.
@inline(__always)
func mqttVariableByteIntegerSize(_ value: Int) -> Int {
    if value < 128 { return 1 }
    if value < 16_384 { return 2 }
    if value < 2_097_152 { return 3 }
    return 4
}

/// Wire size of an MQTT UTF-8 string.
@inline(__always)
func mqttStringSize(_ string: String) -> Int {
    2 + string.utf8.count
}

// MARK: Reading (inside a packet body: running out of bytes means the packet is malformed)

extension ByteBuffer {
    @inline(__always)
    mutating func readMQTTByte() throws(MQTTDecodingError) -> UInt8 {
        guard let value = readInteger(as: UInt8.self) else {
            throw .malformed("packet ends inside a field")
        }
        return value
    }

    @inline(__always)
    mutating func readMQTTUInt16() throws(MQTTDecodingError) -> UInt16 {
        guard let value = readInteger(endianness: .big, as: UInt16.self) else {
            throw .malformed("packet ends inside a field")
        }
        return value
    }

    @inline(__always)
    mutating func readMQTTUInt32() throws(MQTTDecodingError) -> UInt32 {
        guard let value = readInteger(endianness: .big, as: UInt32.self) else {
            throw .malformed("packet ends inside a field")
        }
        return value
    }

    /// Reads a non-zero packet identifier (MQTT-2.3.1-1, MQTT-2.2.1-3).
    @inline(__always)
    mutating func readMQTTPacketIdentifier() throws(MQTTDecodingError) -> UInt16 {
        let identifier = try readMQTTUInt16()
        guard identifier != 0 else {
            throw .protocolError("packet identifier is 0")
        }
        return identifier
    }

    /// Reads a variable byte integer of at most four bytes, in its minimal encoding (MQTT-1.5.5-1).
    mutating func readMQTTVariableByteInteger() throws(MQTTDecodingError) -> Int {
        var value = 0
        var shift = 0
        for position in 0..<4 {
            let byte = try readMQTTByte()
            value |= Int(byte & 0x7F) << shift
            if byte & 0x80 == 0 {
                if byte == 0 && position > 0 {
                    throw .malformed("variable byte integer not in its shortest form")
                }
                return value
            }
            shift += 7
        }
        throw .malformed("variable byte integer longer than four bytes")
    }

    /// Reads a length-prefixed UTF-8 string and validates it.
    mutating func readMQTTString() throws(MQTTDecodingError) -> String {
        let length = Int(try readMQTTUInt16())
        guard length <= readableBytes else {
            throw .malformed("string length exceeds the packet")
        }
        let result: String? = withUnsafeReadableBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[..<length])
            guard case .valid = MQTTUTF8.validate(bytes) else { return nil }
            return String(decoding: bytes, as: UTF8.self)
        }
        guard let result else {
            throw .malformed("string is not well-formed UTF-8 or contains U+0000")
        }
        moveReaderIndex(forwardBy: length)
        return result
    }

    /// Reads a length-prefixed UTF-8 string that must be a valid topic name: well-formed, no '+' or '#'.
    /// Emptiness is left to the caller (MQTT 5 allows it together with a topic alias).
    mutating func readMQTTTopicName() throws(MQTTDecodingError) -> String {
        let length = Int(try readMQTTUInt16())
        guard length <= readableBytes else {
            throw .malformed("topic name length exceeds the packet")
        }
        let result: Result<String, MQTTDecodingError> = withUnsafeReadableBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[..<length])
            guard case .valid = MQTTUTF8.validate(bytes) else {
                return .failure(.malformed("topic name is not well-formed UTF-8 or contains U+0000"))
            }
            if MQTTUTF8.containsWildcard(bytes) {
                return .failure(
                    MQTTDecodingError(reasonCode: .topicNameInvalid, message: "topic name contains '+' or '#'")
                )
            }
            return .success(String(decoding: bytes, as: UTF8.self))
        }
        switch result {
        case .success(let topic):
            moveReaderIndex(forwardBy: length)
            return topic
        case .failure(let error):
            throw error
        }
    }

    /// Reads length-prefixed binary data as a slice of this buffer (no copy).
    mutating func readMQTTBinary() throws(MQTTDecodingError) -> ByteBuffer {
        let length = Int(try readMQTTUInt16())
        guard let data = readSlice(length: length) else {
            throw .malformed("binary data length exceeds the packet")
        }
        return data
    }

    /// Fails when bytes are left inside a packet's remaining length.
    @inline(__always)
    func expectMQTTEnd(_ packetType: MQTTPacketType) throws(MQTTDecodingError) {
        guard readableBytes == 0 else {
            throw .malformed("\(readableBytes) unexpected bytes at the end of \(packetType)")
        }
    }
}

// MARK: Writing (our own values: violating a wire limit is a programming error)

extension ByteBuffer {
    @inline(__always)
    mutating func writeMQTTVariableByteInteger(_ value: Int) {
        precondition(
            value >= 0 && value <= mqttMaximumVariableByteInteger,
            "MQTT variable byte integer out of range: \(value)"
        )
        var remaining = value
        repeat {
            var byte = UInt8(truncatingIfNeeded: remaining & 0x7F)
            remaining >>= 7
            if remaining > 0 { byte |= 0x80 }
            writeInteger(byte)
        } while remaining > 0
    }

    @inline(__always)
    mutating func writeMQTTString(_ string: String) {
        let length = string.utf8.count
        precondition(length <= Int(UInt16.max), "MQTT string longer than 65535 bytes")
        writeInteger(UInt16(truncatingIfNeeded: length), endianness: .big)
        writeString(string)
    }

    @inline(__always)
    mutating func writeMQTTBinary(_ data: ByteBuffer) {
        precondition(data.readableBytes <= Int(UInt16.max), "MQTT binary data longer than 65535 bytes")
        writeInteger(UInt16(truncatingIfNeeded: data.readableBytes), endianness: .big)
        writeImmutableBuffer(data)
    }

    /// Writes the fixed header: type, flags and remaining length.
    @inline(__always)
    mutating func writeMQTTFixedHeader(_ type: MQTTPacketType, flags: UInt8 = 0, remainingLength: Int) {
        writeInteger(type.rawValue << 4 | flags)
        writeMQTTVariableByteInteger(remainingLength)
    }
}
