import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct AuthPacketTests {
    @Test func successShortForm() {
        expectWire(.auth(AuthPacket()), .v5, [0xF0, 0x00])
    }

    @Test func continueAuthentication() {
        let packet = MQTTPacket.auth(
            AuthPacket(
                reasonCode: .continueAuthentication,
                properties: MQTTProperties(authenticationMethod: "m", authenticationData: buffer([0x01, 0x02]))
            )
        )
        expectWire(packet, .v5, [0xF0, 0x0B, 0x18, 0x09, 0x15, 0x00, 0x01, 0x6D, 0x16, 0x00, 0x02, 0x01, 0x02])
        // Reason code without properties still carries the property length.
        expectWire(.auth(AuthPacket(reasonCode: .reAuthenticate)), .v5, [0xF0, 0x02, 0x19, 0x00])
    }

    @Test func validation() {
        // AUTH does not exist before MQTT 5.
        expectDecodingError([0xF0, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0xF0, 0x00], .v3_1, .malformedPacket)
        // 0x00, 0x18 and 0x19 only.
        expectDecodingError([0xF0, 0x02, 0x87, 0x00], .v5, .malformedPacket)
        // No one-byte form.
        expectDecodingError([0xF0, 0x01, 0x18], .v5, .malformedPacket)
        // Reserved flags; session expiry is not an AUTH property; data without method.
        expectDecodingError([0xF1, 0x00], .v5, .malformedPacket)
        expectDecodingError([0xF0, 0x07, 0x18, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01], .v5, .malformedPacket)
        expectDecodingError([0xF0, 0x06, 0x18, 0x04, 0x16, 0x00, 0x01, 0x01], .v5, .protocolError)
    }
}
