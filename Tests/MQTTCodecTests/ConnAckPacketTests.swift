import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct ConnAckPacketTests {
    @Test func v311() {
        expectWire(.connack(ConnAckPacket(sessionPresent: true)), .v3_1_1, [0x20, 0x02, 0x01, 0x00])
        expectWire(.connack(ConnAckPacket(reasonCode: .notAuthorized)), .v3_1_1, [0x20, 0x02, 0x00, 0x05])
        // MQTT 5 reason codes map onto 3.x return codes.
        #expect(
            encode(.connack(ConnAckPacket(reasonCode: .badUserNameOrPassword)), .v3_1_1) == [0x20, 0x02, 0x00, 0x04])
        #expect(
            encode(.connack(ConnAckPacket(reasonCode: .unsupportedProtocolVersion)), .v3_1_1) == [
                0x20, 0x02, 0x00, 0x01,
            ])
        #expect(
            encode(.connack(ConnAckPacket(reasonCode: .clientIdentifierNotValid)), .v3_1_1) == [0x20, 0x02, 0x00, 0x02])
        #expect(encode(.connack(ConnAckPacket(reasonCode: .serverBusy)), .v3_1_1) == [0x20, 0x02, 0x00, 0x03])
        #expect(encode(.connack(ConnAckPacket(reasonCode: .banned)), .v3_1_1) == [0x20, 0x02, 0x00, 0x05])
        // Properties are dropped.
        let withProperties = ConnAckPacket(properties: MQTTProperties(receiveMaximum: 5))
        #expect(encode(.connack(withProperties), .v3_1_1) == [0x20, 0x02, 0x00, 0x00])
    }

    @Test func v31HasNoSessionPresentFlag() {
        expectWire(.connack(ConnAckPacket(reasonCode: .serverUnavailable)), .v3_1, [0x20, 0x02, 0x00, 0x03])
        #expect(encode(.connack(ConnAckPacket(sessionPresent: true)), .v3_1) == [0x20, 0x02, 0x00, 0x00])
        expectDecodingError([0x20, 0x02, 0x01, 0x00], .v3_1, .malformedPacket)
    }

    @Test func v5Minimal() {
        expectWire(.connack(ConnAckPacket()), .v5, [0x20, 0x03, 0x00, 0x00, 0x00])
        expectWire(.connack(ConnAckPacket(reasonCode: .badUserNameOrPassword)), .v5, [0x20, 0x03, 0x00, 0x86, 0x00])
        expectWire(.connack(ConnAckPacket(sessionPresent: true)), .v5, [0x20, 0x03, 0x01, 0x00, 0x00])
    }

    @Test func v5WithAllServerProperties() {
        let properties = MQTTProperties(
            sessionExpiryInterval: 0,
            assignedClientIdentifier: "x",
            serverKeepAlive: 120,
            responseInformation: "r",
            serverReference: "s",
            reasonString: "ok",
            receiveMaximum: 10,
            topicAliasMaximum: 16,
            maximumQoS: .atLeastOnce,
            retainAvailable: false,
            maximumPacketSize: 65536,
            wildcardSubscriptionAvailable: true,
            subscriptionIdentifierAvailable: false,
            sharedSubscriptionAvailable: true
        )
        var bytes: [UInt8] = [0x20, 0x31, 0x00, 0x00, 0x2E]
        bytes += [0x11, 0x00, 0x00, 0x00, 0x00]
        bytes += [0x12, 0x00, 0x01, 0x78]
        bytes += [0x13, 0x00, 0x78]
        bytes += [0x1A, 0x00, 0x01, 0x72]
        bytes += [0x1C, 0x00, 0x01, 0x73]
        bytes += [0x1F, 0x00, 0x02, 0x6F, 0x6B]
        bytes += [0x21, 0x00, 0x0A]
        bytes += [0x22, 0x00, 0x10]
        bytes += [0x24, 0x01]
        bytes += [0x25, 0x00]
        bytes += [0x27, 0x00, 0x01, 0x00, 0x00]
        bytes += [0x28, 0x01]
        bytes += [0x29, 0x00]
        bytes += [0x2A, 0x01]
        expectWire(.connack(ConnAckPacket(properties: properties)), .v5, bytes)
    }

    @Test func validation() {
        // Reserved acknowledge flags.
        expectDecodingError([0x20, 0x02, 0x02, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0x20, 0x03, 0x80, 0x00, 0x00], .v5, .malformedPacket)
        // Return code 6 does not exist in 3.x; 0x10 is not a CONNACK reason code in 5.
        expectDecodingError([0x20, 0x02, 0x00, 0x06], .v3_1_1, .malformedPacket)
        expectDecodingError([0x20, 0x03, 0x00, 0x10, 0x00], .v5, .malformedPacket)
        // Missing property length in 5; trailing byte in 3.1.1.
        expectDecodingError([0x20, 0x02, 0x00, 0x00], .v5, .malformedPacket)
        expectDecodingError([0x20, 0x03, 0x00, 0x00, 0x00], .v3_1_1, .malformedPacket)
        // Maximum QoS 2, retain available 2, topic alias (a PUBLISH property).
        expectDecodingError([0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02], .v5, .protocolError)
        expectDecodingError([0x20, 0x05, 0x00, 0x00, 0x02, 0x25, 0x02], .v5, .protocolError)
        expectDecodingError([0x20, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01], .v5, .malformedPacket)
    }
}
