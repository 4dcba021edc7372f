import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct PingPacketTests {
    @Test(arguments: MQTTProtocolVersion.allCases)
    func pingRequestAndResponse(_ version: MQTTProtocolVersion) {
        expectWire(.pingreq, version, [0xC0, 0x00])
        expectWire(.pingresp, version, [0xD0, 0x00])
    }

    @Test func validation() {
        expectDecodingError([0xC0, 0x01, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0xD0, 0x01, 0x00], .v5, .malformedPacket)
        expectDecodingError([0xC1, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0xD8, 0x00], .v5, .malformedPacket)
    }
}
