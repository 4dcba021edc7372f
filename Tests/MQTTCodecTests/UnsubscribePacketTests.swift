import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct UnsubscribePacketTests {
    @Test func v311() {
        let packet = MQTTPacket.unsubscribe(UnsubscribePacket(packetIdentifier: 2, topicFilters: ["a", "b/c"]))
        let bytes: [UInt8] = [0xA2, 0x0A, 0x00, 0x02, 0x00, 0x01, 0x61, 0x00, 0x03, 0x62, 0x2F, 0x63]
        expectWire(packet, .v3_1_1, bytes)
        expectWire(packet, .v3_1, bytes)
    }

    @Test func v5WithUserProperty() {
        let packet = MQTTPacket.unsubscribe(
            UnsubscribePacket(
                packetIdentifier: 2,
                topicFilters: ["a"],
                properties: MQTTProperties(userProperties: [UserProperty("x", "y")])
            )
        )
        expectWire(
            packet,
            .v5,
            [0xA2, 0x0D, 0x00, 0x02, 0x07, 0x26, 0x00, 0x01, 0x78, 0x00, 0x01, 0x79, 0x00, 0x01, 0x61]
        )
    }

    @Test func validation() {
        // Empty payload.
        expectDecodingError([0xA2, 0x02, 0x00, 0x01], .v3_1_1, .protocolError)
        expectDecodingError([0xA2, 0x03, 0x00, 0x01, 0x00], .v5, .protocolError)
        // Reserved flags, packet identifier 0.
        expectDecodingError([0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, 0x61], .v3_1_1, .malformedPacket)
        expectDecodingError([0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, 0x61], .v3_1_1, .protocolError)
        // Invalid UTF-8, truncated filter.
        expectDecodingError([0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, 0xFF], .v3_1_1, .malformedPacket)
        expectDecodingError([0xA2, 0x05, 0x00, 0x01, 0x00, 0x02, 0x61], .v3_1_1, .malformedPacket)
        // Subscription identifier is not an UNSUBSCRIBE property.
        expectDecodingError([0xA2, 0x07, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x00], .v5, .malformedPacket)
    }
}
