import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct PublishPacketTests {
    @Test func v311QoS0() {
        let packet = MQTTPacket.publish(PublishPacket(topic: "a/b", payload: buffer("hi")))
        let bytes: [UInt8] = [0x30, 0x07, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x68, 0x69]
        expectWire(packet, .v3_1_1, bytes)
        expectWire(packet, .v3_1, bytes)
    }

    @Test func v311QoS1RetainDup() {
        let packet = MQTTPacket.publish(
            PublishPacket(
                topic: "t",
                payload: buffer([1, 2, 3]),
                qos: .atLeastOnce,
                retain: true,
                dup: true,
                packetIdentifier: 10
            )
        )
        expectWire(packet, .v3_1_1, [0x3B, 0x08, 0x00, 0x01, 0x74, 0x00, 0x0A, 0x01, 0x02, 0x03])
    }

    @Test func v311QoS2EmptyPayload() {
        let packet = MQTTPacket.publish(
            PublishPacket(topic: "t", payload: ByteBuffer(), qos: .exactlyOnce, packetIdentifier: 0xFFFF)
        )
        expectWire(packet, .v3_1_1, [0x34, 0x05, 0x00, 0x01, 0x74, 0xFF, 0xFF])
    }

    @Test func v5WithoutProperties() {
        let packet = MQTTPacket.publish(PublishPacket(topic: "a/b", payload: buffer("hi")))
        expectWire(packet, .v5, [0x30, 0x08, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x00, 0x68, 0x69])
    }

    @Test func v5WithAllPublishProperties() {
        let properties = MQTTProperties(
            payloadFormatIndicator: .utf8,
            messageExpiryInterval: 60,
            contentType: "c",
            responseTopic: "r",
            correlationData: buffer([0xAB]),
            subscriptionIdentifiers: [1, 300],
            topicAlias: 3,
            userProperties: [UserProperty("a", "1"), UserProperty("a", "2")]
        )
        let packet = MQTTPacket.publish(
            PublishPacket(
                topic: "t",
                payload: buffer("x"),
                qos: .atLeastOnce,
                packetIdentifier: 0x1234,
                properties: properties
            )
        )
        var bytes: [UInt8] = [0x32, 0x30, 0x00, 0x01, 0x74, 0x12, 0x34, 0x29]
        bytes += [0x01, 0x01]
        bytes += [0x02, 0x00, 0x00, 0x00, 0x3C]
        bytes += [0x03, 0x00, 0x01, 0x63]
        bytes += [0x08, 0x00, 0x01, 0x72]
        bytes += [0x09, 0x00, 0x01, 0xAB]
        bytes += [0x0B, 0x01, 0x0B, 0xAC, 0x02]
        bytes += [0x23, 0x00, 0x03]
        bytes += [0x26, 0x00, 0x01, 0x61, 0x00, 0x01, 0x31]
        bytes += [0x26, 0x00, 0x01, 0x61, 0x00, 0x01, 0x32]
        bytes += [0x78]
        expectWire(packet, .v5, bytes)
        // 3.1.1 drops the properties.
        #expect(encode(packet, .v3_1_1) == [0x32, 0x06, 0x00, 0x01, 0x74, 0x12, 0x34, 0x78])
    }

    @Test func v5EmptyTopicWithTopicAlias() {
        let packet = MQTTPacket.publish(
            PublishPacket(topic: "", payload: buffer("p"), properties: MQTTProperties(topicAlias: 5))
        )
        expectWire(packet, .v5, [0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, 0x70])
    }

    @Test func userPropertyOrderIsKept() throws {
        let pairs = [UserProperty("z", "1"), UserProperty("a", "2"), UserProperty("z", "0"), UserProperty("m", "")]
        let packet = PublishPacket(topic: "t", payload: ByteBuffer(), properties: MQTTProperties(userProperties: pairs))
        let decoded = try #require(decodeOne(encode(.publish(packet), .v5), .v5))
        guard case .publish(let publish) = decoded else {
            Issue.record("not a PUBLISH")
            return
        }
        #expect(publish.properties.userProperties == pairs)
    }

    @Test func payloadIsASliceOfTheInput() throws {
        var decoder = MQTTDecoder(protocolVersion: .v3_1_1)
        var input = buffer([0x30, 0x07, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x68, 0x69, 0xC0, 0x00])
        let packet = try decoder.decode(from: &input)
        guard case .publish(let publish) = packet else {
            Issue.record("not a PUBLISH")
            return
        }
        #expect(publish.payload == buffer("hi"))
        #expect(publish.payload.storageCapacity == input.storageCapacity)
        #expect(input.readableBytes == 2)
    }

    @Test func encodeHeaderPlusPayloadIsThePacket() {
        let publish = PublishPacket(
            topic: "sensors/1",
            payload: buffer("some payload"),
            qos: .exactlyOnce,
            packetIdentifier: 7,
            properties: MQTTProperties(messageExpiryInterval: 9, subscriptionIdentifiers: [3])
        )
        for version in MQTTProtocolVersion.allCases {
            var header = ByteBuffer()
            MQTTEncoder.encodeHeader(of: publish, version: version, into: &header)
            #expect(Array(header.readableBytesView) + Wire.utf8("some payload") == encode(.publish(publish), version))
            #expect(MQTTEncoder.encodedSize(publish, version: version) == encode(.publish(publish), version).count)
        }
    }

    // MARK: Validation

    @Test func qos3IsMalformed() {
        expectDecodingError([0x36, 0x05, 0x00, 0x01, 0x74, 0x00, 0x01], .v3_1_1, .malformedPacket)
        expectDecodingError([0x36, 0x05, 0x00, 0x01, 0x74, 0x00, 0x01], .v5, .malformedPacket)
        // Rejected from the first byte, before the rest arrives.
        expectDecodingError([0x36], .v5, .malformedPacket)
    }

    @Test func dupOnQoS0IsMalformed() {
        expectDecodingError([0x38, 0x03, 0x00, 0x01, 0x74], .v3_1_1, .malformedPacket)
        expectDecodingError([0x38, 0x04, 0x00, 0x01, 0x74, 0x00], .v5, .malformedPacket)
    }

    @Test func packetIdentifierZero() {
        expectDecodingError([0x32, 0x05, 0x00, 0x01, 0x74, 0x00, 0x00], .v3_1_1, .protocolError)
        expectDecodingError([0x34, 0x06, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00], .v5, .protocolError)
    }

    @Test func topicNameWildcardsAreInvalid() {
        expectDecodingError([0x30, 0x05, 0x00, 0x03, 0x61, 0x2F, 0x2B], .v3_1_1, .topicNameInvalid)
        expectDecodingError([0x30, 0x06, 0x00, 0x03, 0x61, 0x2F, 0x23, 0x00], .v5, .topicNameInvalid)
        expectDecodingError([0x30, 0x04, 0x00, 0x02, 0x23, 0x23], .v3_1, .topicNameInvalid)
    }

    @Test func emptyTopicName() {
        expectDecodingError([0x30, 0x02, 0x00, 0x00], .v3_1_1, .topicNameInvalid)
        expectDecodingError([0x30, 0x03, 0x00, 0x00, 0x00], .v5, .protocolError)
    }

    @Test func topicNameMustBeValidUTF8() {
        // Ill-formed, U+0000, a surrogate, overlong NUL, above U+10FFFF, truncated sequence.
        let badTopics: [[UInt8]] = [
            [0xC3, 0x28], [0x61, 0x00], [0xED, 0xA0, 0x80], [0xC0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x61, 0xE2, 0x82],
        ]
        for topic in badTopics {
            expectDecodingError(
                [0x30, UInt8(2 + topic.count), 0x00, UInt8(topic.count)] + topic, .v3_1_1, .malformedPacket)
        }
        let good = Wire.string("ü/€/𝄞")
        let packet = decodeOne([0x30, UInt8(good.count)] + good, .v3_1_1)
        #expect(packet == .publish(PublishPacket(topic: "ü/€/𝄞", payload: ByteBuffer())))
    }

    @Test func v5PropertyValidation() {
        func v5(_ properties: [UInt8]) -> [UInt8] {
            let body = Wire.string("t") + [UInt8(properties.count)] + properties
            return [0x30, UInt8(body.count)] + body
        }
        // Topic alias 0.
        expectDecodingError(v5([0x23, 0x00, 0x00]), .v5, .topicAliasInvalid)
        // Subscription identifier 0, topic alias twice, session expiry (not a PUBLISH property).
        expectDecodingError(v5([0x0B, 0x00]), .v5, .protocolError)
        expectDecodingError(v5([0x23, 0x00, 0x01, 0x23, 0x00, 0x02]), .v5, .protocolError)
        expectDecodingError(v5([0x11, 0, 0, 0, 1]), .v5, .malformedPacket)
        // Unknown property identifier; subscription identifier longer than four bytes.
        expectDecodingError(v5([0x7F, 0x00]), .v5, .malformedPacket)
        expectDecodingError(v5([0x0B, 0x80, 0x80, 0x80, 0x80, 0x01]), .v5, .malformedPacket)
        // Payload format indicator 2; response topic with a wildcard; correlation data beyond the properties.
        expectDecodingError(v5([0x01, 0x02]), .v5, .protocolError)
        expectDecodingError(v5([0x08] + Wire.string("r/#")), .v5, .protocolError)
        expectDecodingError(v5([0x09, 0x00, 0x05, 0x01]), .v5, .malformedPacket)
        // Subscription identifiers repeat on PUBLISH.
        #expect(decodingError(v5([0x0B, 0x01, 0x0B, 0x02]), .v5) == nil)
    }
}
