import NIOCore
import Testing

@testable import MQTTCodec

/// `MQTTEncoder.checkedEncodedSize`: the size of a PUBLISH, or nil where `encode` would trap (remaining length
/// above 268,435,455, over-long strings, subscription identifiers out of range).
@Suite struct CheckedEncodedSizeTests {
    static let maximum = 268_435_455

    @Test func remainingLengthAtAndAboveTheProtocolLimit() throws {
        // One allocation; slices share it.
        let storage = ByteBuffer(repeating: 0x61, count: Self.maximum)
        func publish(payload: Int, version: MQTTProtocolVersion, subscriptionIdentifier: UInt32? = nil) throws
            -> PublishPacket
        {
            var properties = MQTTProperties()
            if let subscriptionIdentifier { properties.subscriptionIdentifiers = [subscriptionIdentifier] }
            return PublishPacket(
                topic: "t", payload: try #require(storage.getSlice(at: 0, length: payload)), qos: .atLeastOnce,
                packetIdentifier: 1, properties: properties)
        }
        // 3.1.1: topic 3 + packet identifier 2 + payload.
        let fits = try publish(payload: Self.maximum - 5, version: .v3_1_1)
        #expect(MQTTEncoder.checkedEncodedSize(fits, version: .v3_1_1) == 1 + 4 + Self.maximum)
        #expect(MQTTEncoder.checkedEncodedSize(try publish(payload: Self.maximum - 4, version: .v3_1_1), version: .v3_1_1) == nil)
        // MQTT 5: the same packet plus a property length byte and a 5-byte subscription identifier no longer fits.
        #expect(MQTTEncoder.checkedEncodedSize(fits, version: .v5) == nil)
        let withIdentifier = try publish(payload: Self.maximum - 5 - 1 - 5, version: .v5, subscriptionIdentifier: 268_435_455)
        #expect(MQTTEncoder.checkedEncodedSize(withIdentifier, version: .v5) == 1 + 4 + Self.maximum)
        var header = ByteBuffer()
        MQTTEncoder.encodeHeader(of: withIdentifier, version: .v5, into: &header)
        #expect(header.readableBytes + withIdentifier.payload.readableBytes == 1 + 4 + Self.maximum)
    }

    @Test func unencodableFields() {
        let longTopic = PublishPacket(topic: String(repeating: "x", count: 65_536), payload: ByteBuffer())
        #expect(MQTTEncoder.checkedEncodedSize(longTopic, version: .v3_1_1) == nil)
        var properties = MQTTProperties()
        properties.subscriptionIdentifiers = [268_435_456]
        #expect(MQTTEncoder.checkedEncodedSize(PublishPacket(topic: "t", payload: ByteBuffer(), properties: properties), version: .v5) == nil)
        // 3.x drops properties, so they cannot make it unencodable there.
        #expect(MQTTEncoder.checkedEncodedSize(PublishPacket(topic: "t", payload: ByteBuffer(), properties: properties), version: .v3_1_1) == 5)
        properties.subscriptionIdentifiers = [0]
        #expect(MQTTEncoder.checkedEncodedSize(PublishPacket(topic: "t", payload: ByteBuffer(), properties: properties), version: .v5) == nil)
        var user = MQTTProperties()
        user.userProperties = [.init(name: String(repeating: "n", count: 65_536), value: "v")]
        #expect(MQTTEncoder.checkedEncodedSize(PublishPacket(topic: "t", payload: ByteBuffer(), properties: user), version: .v5) == nil)
    }

    @Test func agreesWithEncodedSizeForOrdinaryPackets() {
        var properties = MQTTProperties()
        properties.contentType = "text/plain"
        properties.subscriptionIdentifiers = [1, 127, 128, 16_384]
        properties.topicAlias = 3
        let packet = PublishPacket(topic: "a/b", payload: ByteBuffer(string: "hello"), qos: .exactlyOnce, packetIdentifier: 5, properties: properties)
        for version in [MQTTProtocolVersion.v3_1, .v3_1_1, .v5] {
            #expect(MQTTEncoder.checkedEncodedSize(packet, version: version) == MQTTEncoder.encodedSize(packet, version: version))
        }
    }
}
