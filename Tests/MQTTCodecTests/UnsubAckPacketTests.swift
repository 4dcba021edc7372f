import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct UnsubAckPacketTests {
    @Test func v311() {
        expectWire(.unsuback(UnsubAckPacket(packetIdentifier: 2)), .v3_1_1, [0xB0, 0x02, 0x00, 0x02])
        // Reason codes and properties do not exist in 3.x.
        let v5Only = UnsubAckPacket(
            packetIdentifier: 2,
            reasonCodes: [.noSubscriptionExisted],
            properties: MQTTProperties(reasonString: "r")
        )
        #expect(encode(.unsuback(v5Only), .v3_1_1) == [0xB0, 0x02, 0x00, 0x02])
        expectDecodingError([0xB0, 0x03, 0x00, 0x02, 0x00], .v3_1_1, .malformedPacket)
    }

    @Test func v5() {
        expectWire(
            .unsuback(UnsubAckPacket(packetIdentifier: 2, reasonCodes: [.success, .noSubscriptionExisted])),
            .v5,
            [0xB0, 0x05, 0x00, 0x02, 0x00, 0x00, 0x11]
        )
        expectWire(
            .unsuback(
                UnsubAckPacket(
                    packetIdentifier: 3,
                    reasonCodes: [.notAuthorized],
                    properties: MQTTProperties(userProperties: [UserProperty("a", "b")])
                )
            ),
            .v5,
            [0xB0, 0x0B, 0x00, 0x03, 0x07, 0x26, 0x00, 0x01, 0x61, 0x00, 0x01, 0x62, 0x87]
        )
    }

    @Test func validation() {
        expectDecodingError([0xB0, 0x03, 0x00, 0x02, 0x00], .v5, .protocolError)
        expectDecodingError([0xB0, 0x04, 0x00, 0x02, 0x00, 0x01], .v5, .malformedPacket)
        expectDecodingError([0xB0, 0x02, 0x00, 0x00], .v3_1_1, .protocolError)
    }
}
