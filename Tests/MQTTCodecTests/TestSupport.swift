import NIOCore
import Testing

@testable import MQTTCodec

/// Helpers shared by the codec tests.
enum Wire {
    /// ASCII/UTF-8 bytes of `text`, no length prefix.
    static func utf8(_ text: String) -> [UInt8] {
        Array(text.utf8)
    }

    /// `text` as an MQTT string: two-byte big-endian length, then the bytes.
    static func string(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        return [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
    }
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    ByteBuffer(bytes: bytes)
}

func buffer(_ text: String) -> ByteBuffer {
    ByteBuffer(string: text)
}

/// Encodes `packet`, checking that `encodedSize` agrees with the bytes written.
func encode(
    _ packet: MQTTPacket,
    _ version: MQTTProtocolVersion,
    sourceLocation: SourceLocation = #_sourceLocation
) -> [UInt8] {
    var out = ByteBuffer()
    MQTTEncoder.encode(packet, version: version, into: &out)
    #expect(
        MQTTEncoder.encodedSize(packet, version: version) == out.readableBytes,
        "encodedSize disagrees with the encoding",
        sourceLocation: sourceLocation
    )
    return Array(out.readableBytesView)
}

/// Decodes exactly one packet that must fill `bytes`; nil (and a recorded issue) on failure.
func decodeOne(
    _ bytes: [UInt8],
    _ version: MQTTProtocolVersion?,
    maximumPacketSize: Int = MQTTDecoder.protocolMaximumPacketSize,
    sourceLocation: SourceLocation = #_sourceLocation
) -> MQTTPacket? {
    var decoder = MQTTDecoder(maximumPacketSize: maximumPacketSize, protocolVersion: version)
    var input = buffer(bytes)
    do {
        let packet = try decoder.decode(from: &input)
        #expect(packet != nil, "decoder wanted more bytes", sourceLocation: sourceLocation)
        #expect(input.readableBytes == 0, "decoder left \(input.readableBytes) bytes", sourceLocation: sourceLocation)
        return packet
    } catch {
        Issue.record("unexpected decoding error: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The error decoding `bytes` throws, or nil when it returns a packet or asks for more bytes.
func decodingError(
    _ bytes: [UInt8],
    _ version: MQTTProtocolVersion?,
    maximumPacketSize: Int = MQTTDecoder.protocolMaximumPacketSize
) -> MQTTDecodingError? {
    var decoder = MQTTDecoder(maximumPacketSize: maximumPacketSize, protocolVersion: version)
    var input = buffer(bytes)
    do {
        _ = try decoder.decode(from: &input)
        return nil
    } catch {
        return error
    }
}

/// Expects decoding `bytes` to fail with `reasonCode`; returns the error for further checks.
@discardableResult
func expectDecodingError(
    _ bytes: [UInt8],
    _ version: MQTTProtocolVersion?,
    _ reasonCode: ReasonCode,
    maximumPacketSize: Int = MQTTDecoder.protocolMaximumPacketSize,
    sourceLocation: SourceLocation = #_sourceLocation
) -> MQTTDecodingError? {
    let error = decodingError(bytes, version, maximumPacketSize: maximumPacketSize)
    #expect(error != nil, "expected \(reasonCode), but decoding did not fail", sourceLocation: sourceLocation)
    if let error {
        #expect(error.reasonCode == reasonCode, "wrong reason code: \(error)", sourceLocation: sourceLocation)
    }
    return error
}

/// Checks both directions: `packet` encodes to exactly `bytes`, and `bytes` decode to `packet`.
func expectWire(
    _ packet: MQTTPacket,
    _ version: MQTTProtocolVersion,
    _ bytes: [UInt8],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let encoded = encode(packet, version, sourceLocation: sourceLocation)
    #expect(encoded == bytes, "encoding: \(hex(encoded)) expected: \(hex(bytes))", sourceLocation: sourceLocation)
    let decoded = decodeOne(bytes, version, sourceLocation: sourceLocation)
    #expect(decoded == packet, sourceLocation: sourceLocation)
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 0x10 ? "0" : "") + String($0, radix: 16, uppercase: true) }.joined(separator: " ")
}

/// Decodes every complete packet in `chunks`, fed one after another; throws the first error.
func decodeStream(
    _ chunks: [ArraySlice<UInt8>],
    protocolVersion: MQTTProtocolVersion? = nil
) throws(MQTTDecodingError) -> (packets: [MQTTPacket], leftover: Int) {
    var decoder = MQTTDecoder(protocolVersion: protocolVersion)
    var input = ByteBuffer()
    var packets: [MQTTPacket] = []
    for chunk in chunks {
        input.writeBytes(chunk)
        while let packet = try decoder.decode(from: &input) {
            packets.append(packet)
        }
    }
    return (packets, input.readableBytes)
}
