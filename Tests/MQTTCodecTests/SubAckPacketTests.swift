import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct SubAckPacketTests {
    @Test func v311() {
        let packet = MQTTPacket.suback(
            SubAckPacket(packetIdentifier: 10, reasonCodes: [.grantedQoS1, .unspecifiedError]))
        expectWire(packet, .v3_1_1, [0x90, 0x04, 0x00, 0x0A, 0x01, 0x80])
        // MQTT 5 failure codes become 0x80; properties are dropped.
        let v5Only = MQTTPacket.suback(
            SubAckPacket(
                packetIdentifier: 10,
                reasonCodes: [.grantedQoS2, .notAuthorized, .grantedQoS0, .wildcardSubscriptionsNotSupported],
                properties: MQTTProperties(reasonString: "x")
            )
        )
        #expect(encode(v5Only, .v3_1_1) == [0x90, 0x06, 0x00, 0x0A, 0x02, 0x80, 0x00, 0x80])
    }

    @Test func v5() {
        let packet = MQTTPacket.suback(
            SubAckPacket(
                packetIdentifier: 10,
                reasonCodes: [.grantedQoS1, .wildcardSubscriptionsNotSupported],
                properties: MQTTProperties(reasonString: "n")
            )
        )
        expectWire(packet, .v5, [0x90, 0x09, 0x00, 0x0A, 0x04, 0x1F, 0x00, 0x01, 0x6E, 0x01, 0xA2])
        expectWire(
            .suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS0])),
            .v5,
            [0x90, 0x04, 0x00, 0x01, 0x00, 0x00]
        )
    }

    @Test func validation() {
        // No reason code.
        expectDecodingError([0x90, 0x02, 0x00, 0x01], .v3_1_1, .protocolError)
        expectDecodingError([0x90, 0x03, 0x00, 0x01, 0x00], .v5, .protocolError)
        // Return codes 3 and 0x87 are not 3.x SUBACK codes; 0x10 is not a v5 SUBACK code.
        expectDecodingError([0x90, 0x03, 0x00, 0x01, 0x03], .v3_1_1, .malformedPacket)
        expectDecodingError([0x90, 0x03, 0x00, 0x01, 0x87], .v3_1_1, .malformedPacket)
        expectDecodingError([0x90, 0x04, 0x00, 0x01, 0x00, 0x10], .v5, .malformedPacket)
        // Reserved flags.
        expectDecodingError([0x92, 0x03, 0x00, 0x01, 0x00], .v3_1_1, .malformedPacket)
    }
}
