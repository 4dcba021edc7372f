import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import Testing

/// A delivery that would exceed what MQTT can encode (remaining length above 268,435,455) is dropped and counted;
/// the connection and the worker stay. A publish accepted at the size limit grows on delivery: a topic alias
/// resolved to its topic, subscription identifiers, a new outbound alias. The encoder traps on such a packet
/// (the worker died with every connection on it).
@MainActor
@Suite struct OversizedDeliveryTests {
    /// The largest remaining length MQTT allows.
    static let protocolMaximum = 268_435_455
    static let topic = String(repeating: "t", count: 1000)

    /// Encodes what was sent the way the worker's handler does for large payloads (header, then the payload as
    /// its own buffer), so an unencodable packet fails here as it did on the wire.
    private func encodeHeaders(of connection: RecordingConnection) -> [Int] {
        connection.publishes.map { publish in
            var header = ByteBuffer()
            MQTTEncoder.encodeHeader(of: publish, version: .v5, into: &header)
            return header.readableBytes + publish.payload.readableBytes
        }
    }

    @Test func aPublishThatGrowsPastTheProtocolLimitIsDroppedNotEncoded() {
        var settings = BrokerSettings(maximumPacketSize: Self.protocolMaximum)
        // The message is retained too (mqtt.max_retained_bytes is 128MB by default).
        settings.storage.maxRetainedBytes = 1 << 30
        let h = Harness(settings: settings)
        let subscriber = h.connect("sub")
        h.subscribe(subscriber, Self.topic, qos: .atLeastOnce, id: 268_435_455)
        let publisher = h.connect("pub")
        // Alias 1 names the long topic; the big publish then uses the alias with an empty topic: on the way in
        // it is exactly at the limit (remaining length 268,435,450, 268,435,455 bytes in all).
        var alias = MQTTProperties()
        alias.topicAlias = 1
        h.send(publisher, .publish(PublishPacket(topic: Self.topic, payload: ByteBuffer(string: "small"), properties: alias)))
        let payloadSize = Self.protocolMaximum - 5 - (2 + 1 + 3 + 2)
        let big = ByteBuffer(repeating: 0x61, count: payloadSize)
        h.send(
            publisher,
            .publish(PublishPacket(topic: "", payload: big, qos: .atLeastOnce, retain: true, packetIdentifier: 9, properties: alias)))

        // Out: the topic (1002 bytes), the subscription identifier (5) and the packet identifier come on top.
        let sizes = encodeHeaders(of: subscriber.connection)
        #expect(sizes.count == 1, "only the small message is delivered")
        #expect(!subscriber.connection.isClosed)
        #expect(h.broker.statistics.messagesDropped == 1)
        // The publisher's QoS 1 flow completed, and the subscriber's window was not taken by the dropped message.
        #expect(publisher.connection.sent.contains(.puback(PubAckPacket(packetIdentifier: 9))))
        h.publish(publisher, Self.topic, "after", qos: .atLeastOnce)
        #expect(subscriber.connection.publishes.last.map { String(buffer: $0.payload) } == "after")
        #expect(encodeHeaders(of: subscriber.connection).count == 2)

        // The same message retained: a new subscriber gets it with a subscription identifier and a new topic
        // alias; dropped too, and counted.
        let late = h.connect("late", properties: { var p = MQTTProperties(); p.topicAliasMaximum = 10; return p }())
        h.subscribe(late, Self.topic, qos: .atLeastOnce, id: 2_097_152)
        #expect(encodeHeaders(of: late.connection).isEmpty)
        #expect(h.broker.statistics.messagesDropped == 2)
        #expect(!late.connection.isClosed)
        // The dropped delivery must not have established an alias the client never saw: the next message to
        // that topic carries the topic name with the alias.
        h.publish(publisher, Self.topic, "named", qos: .atMostOnce)
        let next = late.connection.publishes.last
        #expect(next?.topic == Self.topic)
    }

    @Test func aThreeOneOneSubscriberGetsTheResolvedTopic() {
        // 3.1.1 has no aliases: the topic an MQTT 5 publisher sent as an alias is written out in full.
        let h = Harness(settings: BrokerSettings(maximumPacketSize: Self.protocolMaximum))
        let subscriber = h.connect("sub311", version: .v3_1_1)
        h.subscribe(subscriber, Self.topic, qos: .atMostOnce)
        let publisher = h.connect("pub")
        var alias = MQTTProperties()
        alias.topicAlias = 1
        h.send(publisher, .publish(PublishPacket(topic: Self.topic, payload: ByteBuffer(string: "small"), properties: alias)))
        let big = ByteBuffer(repeating: 0x62, count: Self.protocolMaximum - 5 - (2 + 1 + 3))
        h.send(publisher, .publish(PublishPacket(topic: "", payload: big, properties: alias)))
        let sizes = subscriber.connection.publishes.map { publish in
            var header = ByteBuffer()
            MQTTEncoder.encodeHeader(of: publish, version: .v3_1_1, into: &header)
            return header.readableBytes
        }
        #expect(sizes.count == 1)
        #expect(h.broker.statistics.messagesDropped == 1)
        #expect(!subscriber.connection.isClosed)
    }
}
