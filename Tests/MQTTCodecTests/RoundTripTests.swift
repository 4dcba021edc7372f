import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct RoundTripTests {
    @Test(arguments: MQTTProtocolVersion.allCases)
    func generatedPacketsSurviveEncodeAndDecode(_ version: MQTTProtocolVersion) throws {
        var generator = PacketGenerator(seed: 0xC0DE_0000 + UInt64(version.rawValue))
        var seen = Set<MQTTPacketType>()
        for _ in 0..<3000 {
            let packet = generator.packet(version)
            seen.insert(packet.packetType)
            let bytes = encode(packet, version)
            let decoded = decodeOne(bytes, version)
            #expect(decoded == packet, "\(packet)")
        }
        let expectedTypes = version == .v5 ? MQTTPacketType.allCases.count : MQTTPacketType.allCases.count - 1
        #expect(seen.count == expectedTypes)
    }

    @Test(arguments: MQTTProtocolVersion.allCases)
    func generatedStreamDecodesInRandomChunks(_ version: MQTTProtocolVersion) throws {
        var generator = PacketGenerator(seed: 0x5EED + UInt64(version.rawValue))
        var packets: [MQTTPacket] = [.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "c"))]
        for _ in 0..<300 { packets.append(generator.packet(version)) }
        var out = ByteBuffer()
        for packet in packets { MQTTEncoder.encode(packet, version: version, into: &out) }
        let bytes = Array(out.readableBytesView)
        var chunks: [ArraySlice<UInt8>] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + generator.int(1...700))
            chunks.append(bytes[offset..<end])
            offset = end
        }
        let result = try decodeStream(chunks)
        #expect(result.packets == packets)
        #expect(result.leftover == 0)
    }
}
