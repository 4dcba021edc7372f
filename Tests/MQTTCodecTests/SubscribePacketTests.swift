import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct SubscribePacketTests {
    @Test func v311TwoFilters() {
        let packet = MQTTPacket.subscribe(
            SubscribePacket(
                packetIdentifier: 10,
                subscriptions: [
                    .init(topicFilter: "a/b", qos: .atLeastOnce),
                    .init(topicFilter: "c/#", qos: .exactlyOnce),
                ]
            )
        )
        let bytes: [UInt8] = [
            0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x01, 0x00, 0x03, 0x63, 0x2F, 0x23, 0x02,
        ]
        expectWire(packet, .v3_1_1, bytes)
        expectWire(packet, .v3_1, bytes)
    }

    @Test func v5WithOptionsAndSubscriptionIdentifier() {
        let packet = MQTTPacket.subscribe(
            SubscribePacket(
                packetIdentifier: 1,
                subscriptions: [
                    .init(
                        topicFilter: "a",
                        options: SubscriptionOptions(
                            qos: .atLeastOnce,
                            noLocal: true,
                            retainAsPublished: true,
                            retainHandling: .doNotSend
                        )
                    ),
                    .init(
                        topicFilter: "$share/g/b",
                        options: SubscriptionOptions(qos: .atMostOnce, retainHandling: .sendOnSubscribeIfNew)
                    ),
                ],
                properties: MQTTProperties(subscriptionIdentifiers: [5], userProperties: [UserProperty("k", "v")])
            )
        )
        var bytes: [UInt8] = [0x82, 0x1D, 0x00, 0x01, 0x09, 0x0B, 0x05, 0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76]
        bytes += [0x00, 0x01, 0x61, 0x2D]
        bytes += Wire.string("$share/g/b") + [0x10]
        expectWire(packet, .v5, bytes)
        // 3.1.1 keeps only the QoS of each option.
        let v311: [UInt8] = [0x82, 0x13, 0x00, 0x01, 0x00, 0x01, 0x61, 0x01] + Wire.string("$share/g/b") + [0x00]
        #expect(encode(packet, .v3_1_1) == v311)
    }

    @Test func topicFiltersAreNotCheckedForWildcardPlacement() {
        // "a/#/b" and "" are invalid filters, but that is the broker's call (SUBACK 0x8F in MQTT 5).
        let body: [UInt8] = [0x00, 0x01] + Wire.string("a/#/b") + [0x00] + Wire.string("") + [0x01]
        let packet = decodeOne([0x82, UInt8(body.count)] + body, .v3_1_1)
        #expect(
            packet
                == .subscribe(
                    SubscribePacket(
                        packetIdentifier: 1,
                        subscriptions: [
                            .init(topicFilter: "a/#/b", qos: .atMostOnce), .init(topicFilter: "", qos: .atLeastOnce),
                        ]
                    )
                )
        )
    }

    @Test func emptyPayloadIsAProtocolError() {
        expectDecodingError([0x82, 0x02, 0x00, 0x01], .v3_1_1, .protocolError)
        expectDecodingError([0x82, 0x03, 0x00, 0x01, 0x00], .v5, .protocolError)
    }

    @Test func reservedFlags() {
        expectDecodingError([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0x83, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00], .v3_1_1, .malformedPacket)
    }

    @Test func packetIdentifierZero() {
        expectDecodingError([0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 0x61, 0x00], .v3_1_1, .protocolError)
    }

    @Test func optionsValidation() {
        func v3(_ options: UInt8) -> [UInt8] { [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, options] }
        func v5(_ options: UInt8) -> [UInt8] { [0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, options] }
        // 3.x: everything above the QoS bits is reserved; QoS 3 is malformed.
        expectDecodingError(v3(0x04), .v3_1_1, .malformedPacket)
        expectDecodingError(v3(0x03), .v3_1_1, .malformedPacket)
        // 5: bits 6-7 reserved, QoS 3 malformed, retain handling 3 a protocol error.
        expectDecodingError(v5(0x40), .v5, .malformedPacket)
        expectDecodingError(v5(0x80), .v5, .malformedPacket)
        expectDecodingError(v5(0x03), .v5, .malformedPacket)
        expectDecodingError(v5(0x30), .v5, .protocolError)
        #expect(decodingError(v5(0x2E), .v5) == nil)
    }

    @Test func missingOptionsByteIsMalformed() {
        expectDecodingError([0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 0x61], .v3_1_1, .malformedPacket)
    }

    @Test func topicFilterMustBeValidUTF8() {
        expectDecodingError([0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 0xC0, 0xAF, 0x00], .v3_1_1, .malformedPacket)
    }

    @Test func v5Properties() {
        func v5(_ properties: [UInt8]) -> [UInt8] {
            let body = [0x00, 0x01, UInt8(properties.count)] + properties + Wire.string("a") + [0x00]
            return [0x82, UInt8(body.count)] + body
        }
        // Only one subscription identifier; never 0; reason string is not a SUBSCRIBE property.
        expectDecodingError(v5([0x0B, 0x01, 0x0B, 0x02]), .v5, .protocolError)
        expectDecodingError(v5([0x0B, 0x00]), .v5, .protocolError)
        expectDecodingError(v5([0x1F, 0x00, 0x00]), .v5, .malformedPacket)
        // Largest subscription identifier.
        #expect(decodingError(v5([0x0B, 0xFF, 0xFF, 0xFF, 0x7F]), .v5) == nil)
    }
}
