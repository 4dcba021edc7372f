import Foundation
import NIOCore
import Testing

@testable import MQTTCodec

/// The fuzzer's seed corpus: one file per valid encoded packet (plus CONNECT-led streams).
///
/// With `GATEHOUSE_WRITE_SEED_CORPUS=<dir>` set, the files are written into that directory; otherwise the test only
/// checks that every seed decodes.
@Suite struct SeedCorpusTests {
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        let fixed: [(MQTTPacket, MQTTProtocolVersion)] =
            MQTTDecoderTests.v5Stream.map { ($0, .v5) } + MQTTDecoderTests.v311Stream.map { ($0, .v3_1_1) }
        for (index, (packet, version)) in fixed.enumerated() {
            seeds.append(("fixed-\(index)-\(packet.packetType)-v\(version.rawValue)", encode(packet, version)))
        }
        for version in MQTTProtocolVersion.allCases {
            var generator = PacketGenerator(seed: 0xF022 + UInt64(version.rawValue))
            var stream = encode(.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "seed")), version)
            for index in 0..<60 {
                var packet = generator.packet(version)
                if case .publish(var publish) = packet, publish.payload.readableBytes > 64 {
                    // Keep seeds small; the fuzzer grows inputs itself.
                    publish.payload =
                        publish.payload.getSlice(at: publish.payload.readerIndex, length: 64) ?? ByteBuffer()
                    packet = .publish(publish)
                }
                let bytes = encode(packet, version)
                seeds.append(("generated-\(index)-\(packet.packetType)-v\(version.rawValue)", bytes))
                if packet.packetType != .connect && index < 20 { stream += bytes }
            }
            seeds.append(("stream-v\(version.rawValue)", stream))
        }
        return seeds
    }

    @Test func seedsDecode() throws {
        for (name, bytes) in Self.seeds() {
            let version: MQTTProtocolVersion? =
                name.hasPrefix("stream") ? nil : MQTTProtocolVersion(rawValue: UInt8(String(name.last ?? "0")) ?? 0)
            let result = try decodeStream([bytes[...]], protocolVersion: version)
            #expect(result.leftover == 0, "\(name)")
            #expect(!result.packets.isEmpty, "\(name)")
        }
    }

    @Test func writeSeedCorpusWhenAsked() throws {
        guard let directory = ProcessInfo.processInfo.environment["GATEHOUSE_WRITE_SEED_CORPUS"], !directory.isEmpty
        else { return }
        let url = URL(fileURLWithPath: directory, isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        for (name, bytes) in Self.seeds() {
            try Data(bytes).write(to: url.appendingPathComponent(name + ".bin"))
        }
    }
}
