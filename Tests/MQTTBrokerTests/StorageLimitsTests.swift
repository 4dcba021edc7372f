import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import Testing

/// The storage bounds of issue 15 in one broker: one payload per message however many sessions queue it, the
/// worker's queue budget dropping the oldest across sessions, the retained limits, `mqtt.max_subscriptions` and
/// `mqtt.max_topic_levels`, each counted under its key.
@MainActor
@Suite struct StorageLimitsTests {
    static let persistent: MQTTProperties = {
        var properties = MQTTProperties()
        properties.sessionExpiryInterval = 300
        return properties
    }()

    /// Where a packet's payload bytes live: equal addresses mean one buffer, shared.
    func address(_ packet: PublishPacket) -> UInt {
        packet.payload.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
    }

    func offlineSubscribers(_ h: Harness, _ count: Int, filter: String) {
        for index in 0..<count {
            let client = h.connect("s\(index)", cleanStart: false, properties: Self.persistent)
            h.subscribe(client, filter)
            client.controller.connectionClosed()
        }
    }

    @Test func sessionsQueueingOneMessageShareItsPayload() {
        let h = Harness()
        offlineSubscribers(h, 3, filter: "fan")
        let publisher = h.connect("pub")
        h.publish(publisher, "fan", String(repeating: "x", count: 4096), qos: .atLeastOnce)
        #expect(h.broker.queuedTotals.messages == 3)
        let addresses = (0..<3).map { index in
            let back = h.connect("s\(index)", cleanStart: false, properties: Self.persistent)
            return back.connection.publishes.map(address)
        }
        #expect(addresses.allSatisfy { $0.count == 1 })
        #expect(Set(addresses.flatMap { $0 }).count == 1, "one copy of the payload for all three sessions")
    }

    @Test func theWorkerBudgetDropsTheOldestQueuedMessagesOfAllSessions() {
        var settings = BrokerSettings()
        settings.workerQueuedBytes = 1000
        let h = Harness(settings: settings)
        offlineSubscribers(h, 2, filter: "b")
        let publisher = h.connect("pub")
        // Each message is 100 bytes (topic "b", 99 bytes of payload) in each of the two sessions.
        for index in 0..<10 {
            h.publish(publisher, "b", "\(index)" + String(repeating: "x", count: 98), qos: .atLeastOnce)
        }
        #expect(h.broker.queuedTotals.bytes == 1000)
        #expect(h.broker.statistics.limitHits["mqtt.max_node_queued_bytes"] == 10)
        for index in 0..<2 {
            let back = h.connect("s\(index)", cleanStart: false, properties: Self.persistent)
            let first = back.connection.publishes.map { String(buffer: $0.payload).prefix(1) }
            #expect(first == ["5", "6", "7", "8", "9"], "the newest five are kept, in each session")
        }
    }

    @Test func theSessionByteLimitIsCountedUnderItsKey() {
        var settings = BrokerSettings()
        settings.storage.maxQueuedBytes = 250
        let h = Harness(settings: settings)
        offlineSubscribers(h, 1, filter: "q")
        let publisher = h.connect("pub")
        for index in 0..<5 {
            h.publish(publisher, "q", "\(index)" + String(repeating: "x", count: 98), qos: .atLeastOnce)
        }
        #expect(h.broker.queuedTotals == (messages: 2, bytes: 200))
        #expect(h.broker.statistics.limitHits["mqtt.max_queued_bytes"] == 3)
        #expect(h.broker.statistics.messagesDropped == 3)
    }

    @Test func retainedLimitsRefuseNewTopicsButReplaceAndClear() {
        var settings = BrokerSettings()
        settings.storage.maxRetainedMessages = 2
        settings.storage.maxRetainedBytes = 100
        let h = Harness(settings: settings)
        let live = h.connect("live")
        h.subscribe(live, "#", qos: .atMostOnce)
        let publisher = h.connect("pub")
        h.publish(publisher, "a", "1", retain: true)
        h.publish(publisher, "b", "2", retain: true)
        h.publish(publisher, "c", "3", retain: true)
        #expect(h.broker.retainedCount == 2)
        #expect(live.connection.publishes.count == 3, "a message not retained is still delivered")
        #expect(h.broker.statistics.limitHits["mqtt.max_retained_messages"] == 1)
        h.publish(publisher, "a", String(repeating: "y", count: 99), retain: true)
        #expect(h.broker.statistics.limitHits["mqtt.max_retained_bytes"] == 1, "a replacement beyond the bytes")
        h.publish(publisher, "a", "new", retain: true)
        h.publish(publisher, "b", "", retain: true)
        h.publish(publisher, "c", "3", retain: true)
        let late = h.connect("late")
        h.subscribe(late, "#", qos: .atMostOnce)
        let retained = late.connection.publishes.map { "\($0.topic)=\(String(buffer: $0.payload))" }.sorted()
        #expect(retained == ["a=new", "c=3"])
    }

    func suback(_ client: Harness.Client) -> [ReasonCode] {
        client.connection.sent.compactMap { if case .suback(let s) = $0 { s.reasonCodes } else { nil } }.last ?? []
    }

    @Test func subscriptionsBeyondTheLimitAreQuotaExceeded() {
        var settings = BrokerSettings()
        settings.storage.maxSubscriptions = 2
        let h = Harness(settings: settings)
        let client = h.connect("c")
        h.send(
            client,
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 1,
                    subscriptions: ["a", "b", "c"].map { .init(topicFilter: $0, options: SubscriptionOptions(qos: .atMostOnce)) })))
        #expect(suback(client) == [.granted(.atMostOnce), .granted(.atMostOnce), .quotaExceeded])
        h.subscribe(client, "a", qos: .atLeastOnce)
        #expect(suback(client) == [.granted(.atLeastOnce)], "replacing a subscription is not a new one")
        #expect(h.broker.statistics.limitHits["mqtt.max_subscriptions"] == 1)
    }

    @Test func topicsDeeperThanTheLimitAreRefused() {
        var settings = BrokerSettings()
        settings.storage.maxTopicLevels = 3
        let h = Harness(settings: settings)
        let watcher = h.connect("w")
        h.subscribe(watcher, "#", qos: .atMostOnce)
        let client = h.connect("c")
        h.subscribe(client, "a/b/c")
        #expect(suback(client) == [.granted(.atLeastOnce)])
        h.subscribe(client, "a/b/c/d")
        #expect(suback(client) == [.topicFilterInvalid])
        h.subscribe(client, "$share/g/a/b/+/#")
        #expect(suback(client) == [.topicFilterInvalid], "the levels after the share name count")
        h.publish(client, "a/b/c/d", "deep", qos: .atLeastOnce)
        #expect(watcher.connection.publishes.isEmpty)
        #expect(client.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .topicNameInvalid)))
        #expect(client.connection.isClosed)
        #expect(h.broker.statistics.limitHits["mqtt.max_topic_levels"] == 3)
    }

    @Test func aWillToATopicDeeperThanTheLimitIsNotPublished() {
        var settings = BrokerSettings()
        settings.storage.maxTopicLevels = 2
        let h = Harness(settings: settings)
        let watcher = h.connect("w")
        h.subscribe(watcher, "#", qos: .atMostOnce)
        let client = h.connect(
            "c", will: ConnectPacket.Will(topic: "a/b/c", payload: ByteBuffer(string: "will"), qos: .atMostOnce, retain: true))
        client.controller.connectionClosed()
        #expect(watcher.connection.publishes.isEmpty)
        #expect(h.broker.retainedCount == 0)
        #expect(h.broker.statistics.limitHits["mqtt.max_topic_levels"] == 1)
    }
}
