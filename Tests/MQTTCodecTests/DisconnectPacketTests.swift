import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct DisconnectPacketTests {
    @Test func v3() {
        expectWire(.disconnect(DisconnectPacket()), .v3_1_1, [0xE0, 0x00])
        expectWire(.disconnect(DisconnectPacket()), .v3_1, [0xE0, 0x00])
        #expect(encode(.disconnect(DisconnectPacket(reasonCode: .serverShuttingDown)), .v3_1_1) == [0xE0, 0x00])
        expectDecodingError([0xE0, 0x01, 0x00], .v3_1_1, .malformedPacket)
    }

    @Test func v5ShortForms() {
        expectWire(.disconnect(DisconnectPacket()), .v5, [0xE0, 0x00])
        expectWire(.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)), .v5, [0xE0, 0x01, 0x04])
        #expect(decodeOne([0xE0, 0x01, 0x00], .v5) == .disconnect(DisconnectPacket()))
        #expect(decodeOne([0xE0, 0x02, 0x00, 0x00], .v5) == .disconnect(DisconnectPacket()))
    }

    @Test func v5WithProperties() {
        let packet = MQTTPacket.disconnect(
            DisconnectPacket(
                reasonCode: .sessionTakenOver,
                properties: MQTTProperties(sessionExpiryInterval: 10, serverReference: "s2", reasonString: "bye")
            )
        )
        let bytes: [UInt8] = [
            0xE0, 0x12, 0x8E, 0x10, 0x11, 0x00, 0x00, 0x00, 0x0A, 0x1C, 0x00, 0x02, 0x73, 0x32,
            0x1F, 0x00, 0x03, 0x62, 0x79, 0x65,
        ]
        expectWire(packet, .v5, bytes)
    }

    @Test func validation() {
        // 0x84 is not a DISCONNECT reason code; topic alias is not a DISCONNECT property.
        expectDecodingError([0xE0, 0x01, 0x84], .v5, .malformedPacket)
        expectDecodingError([0xE0, 0x05, 0x00, 0x03, 0x23, 0x00, 0x01], .v5, .malformedPacket)
        expectDecodingError([0xE1, 0x00], .v5, .malformedPacket)
        // Trailing byte after the properties.
        expectDecodingError([0xE0, 0x03, 0x00, 0x00, 0x00], .v5, .malformedPacket)
    }
}
