import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import ProcessSupport
import Testing

/// A connection that records what the broker sends.
final class RecordingConnection: MQTTClientConnection {
    var sent: [MQTTPacket] = []
    var isClosed = false
    var flushes = 0
    let peerDescription = "test 127.0.0.1:1"

    /// Set by a test to play a connection over its high watermark.
    var isBusy = false
    var inputResumptions = 0

    func send(_ packet: MQTTPacket) { sent.append(packet) }
    func flush() { flushes += 1 }
    func close() { isClosed = true }
    func resumeInput() { inputResumptions += 1 }

    var publishes: [PublishPacket] {
        sent.compactMap { if case .publish(let p) = $0 { p } else { nil } }
    }

    func takeAll() -> [MQTTPacket] {
        defer { sent.removeAll() }
        return sent
    }
}

/// Timers run when the test advances the clock.
final class ManualScheduler: BrokerScheduler {
    final class Work: ScheduledWork {
        let due: MonotonicInstant
        var body: (() -> Void)?
        init(due: MonotonicInstant, body: @escaping () -> Void) {
            self.due = due
            self.body = body
        }
        func cancel() { body = nil }
    }

    var now = MonotonicInstant(nanoseconds: 1_000_000_000_000)
    var pending: [Work] = []

    func schedule(after delay: Duration, _ work: @escaping () -> Void) -> any ScheduledWork {
        let item = Work(due: now + delay, body: work)
        pending.append(item)
        return item
    }

    /// Deferred flushes run when the test says so (`Broker.flushPending` in the harness).
    var deferred: [() -> Void] = []

    func executeAfterCurrentEvents(_ work: @escaping () -> Void) {
        deferred.append(work)
    }

    func advance(by duration: Duration) {
        let target = now + duration
        while let next = pending.filter({ $0.body != nil && $0.due <= target }).min(by: { $0.due < $1.due }) {
            now = next.due
            let body = next.body
            next.body = nil
            body?()
        }
        now = target
        pending.removeAll { $0.body == nil }
    }
}

/// The broker driven through controllers and recording connections, no sockets.
@MainActor
final class Harness {
    let scheduler = ManualScheduler()
    let broker: Broker

    init(settings: BrokerSettings = BrokerSettings(), access: AccessPolicy = AccessPolicy(allowAnonymous: true)) {
        broker = Broker(settings: settings, access: access, scheduler: scheduler, logger: Logger(label: "test"))
    }

    struct Client {
        let connection: RecordingConnection
        let controller: ConnectionController
    }

    func connect(
        _ id: String, version: MQTTProtocolVersion = .v5, cleanStart: Bool = true, keepAlive: UInt16 = 0,
        will: ConnectPacket.Will? = nil, properties: MQTTProperties = MQTTProperties(), username: String? = nil,
        password: String? = nil
    ) -> Client {
        let connection = RecordingConnection()
        let controller = ConnectionController(
            broker: broker, connection: connection, listenerAllowsAnonymous: nil, logger: Logger(label: "test"))
        controller.start()
        controller.received(
            .connect(
                ConnectPacket(
                    protocolVersion: version, clientIdentifier: id, cleanStart: cleanStart, keepAlive: keepAlive,
                    username: username, password: password.map { ByteBuffer(string: $0) }, will: will,
                    properties: properties)))
        broker.flushPending()
        return Client(connection: connection, controller: controller)
    }

    func send(_ client: Client, _ packet: MQTTPacket) {
        client.controller.received(packet)
        broker.flushPending()
    }

    func subscribe(_ client: Client, _ filter: String, qos: QoS = .atLeastOnce, options: SubscriptionOptions? = nil, id: UInt32? = nil) {
        var properties = MQTTProperties()
        if let id { properties.subscriptionIdentifiers = [id] }
        send(
            client,
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 1,
                    subscriptions: [.init(topicFilter: filter, options: options ?? SubscriptionOptions(qos: qos))],
                    properties: properties)))
    }

    func publish(_ client: Client, _ topic: String, _ text: String, qos: QoS = .atMostOnce, retain: Bool = false, id: UInt16? = nil, properties: MQTTProperties = MQTTProperties()) {
        send(
            client,
            .publish(
                PublishPacket(
                    topic: topic, payload: ByteBuffer(string: text), qos: qos, retain: retain,
                    packetIdentifier: qos == .atMostOnce ? nil : (id ?? 7), properties: properties)))
    }
}

@MainActor
@Suite struct BrokerTests {
    func connack(_ client: Harness.Client) -> ConnAckPacket? {
        client.connection.sent.compactMap { if case .connack(let c) = $0 { c } else { nil } }.first
    }

    @Test func routesToMatchingSubscribersOnce() {
        let h = Harness()
        let sub = h.connect("sub")
        h.subscribe(sub, "a/+", qos: .atMostOnce)
        h.subscribe(sub, "a/#", qos: .atLeastOnce)
        let pub = h.connect("pub")
        h.publish(pub, "a/b", "hello", qos: .exactlyOnce)
        let received = sub.connection.publishes
        #expect(received.count == 1, "overlapping subscriptions deliver one copy")
        #expect(received.first?.qos == .atLeastOnce, "at the highest granted QoS, capped by the message QoS")
        #expect(received.first.map { String(buffer: $0.payload) } == "hello")
        #expect(pub.connection.sent.contains(.pubrec(PubRecPacket(packetIdentifier: 7))))
    }

    @Test func dollarTopicsAreNotMatchedByWildcards() {
        let h = Harness()
        let sub = h.connect("sub")
        h.subscribe(sub, "#")
        let pub = h.connect("pub")
        h.publish(pub, "$SYS/x", "no")
        h.publish(pub, "x", "yes")
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["yes"])
    }

    @Test func retainedMessagesAreStoredReplacedDeletedAndFlagged() {
        let h = Harness()
        let pub = h.connect("pub")
        h.publish(pub, "r/1", "first", retain: true)
        h.publish(pub, "r/1", "second", retain: true)
        h.publish(pub, "r/2", "gone", retain: true)
        h.publish(pub, "r/2", "", retain: true)
        let sub = h.connect("sub")
        h.subscribe(sub, "r/#")
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["second"])
        #expect(sub.connection.publishes.first?.retain == true)
        // Live messages are not flagged retained unless Retain As Published.
        h.publish(pub, "r/1", "live", retain: true)
        #expect(sub.connection.publishes.last?.retain == false)
    }

    @Test func willIsPublishedOnAbnormalCloseNotOnDisconnect() {
        let h = Harness()
        let watcher = h.connect("watcher")
        h.subscribe(watcher, "wills/#")
        let will = ConnectPacket.Will(topic: "wills/a", payload: ByteBuffer(string: "a died"))
        let a = h.connect("a", will: will)
        a.controller.connectionClosed()
        let b = h.connect("b", will: ConnectPacket.Will(topic: "wills/b", payload: ByteBuffer(string: "b died")))
        h.send(b, .disconnect(DisconnectPacket()))
        #expect(watcher.connection.publishes.map { String(buffer: $0.payload) } == ["a died"])
    }

    @Test func keepAliveTimeoutPublishesTheWill() {
        let h = Harness()
        let watcher = h.connect("watcher")
        h.subscribe(watcher, "w")
        let client = h.connect("k", keepAlive: 2, will: .init(topic: "w", payload: ByteBuffer(string: "gone")))
        h.scheduler.advance(by: .seconds(2))
        h.send(client, .pingreq)
        h.scheduler.advance(by: .milliseconds(2900))
        #expect(!client.connection.isClosed, "activity resets the keep-alive")
        h.scheduler.advance(by: .milliseconds(200))
        #expect(client.connection.isClosed)
        #expect(client.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .keepAliveTimeout)))
        #expect(watcher.connection.publishes.map { String(buffer: $0.payload) } == ["gone"])
    }

    @Test func willDelayIsCancelledByAReconnect() {
        let h = Harness()
        let watcher = h.connect("watcher")
        h.subscribe(watcher, "w")
        var willProperties = MQTTProperties()
        willProperties.willDelayInterval = 5
        var session = MQTTProperties()
        session.sessionExpiryInterval = 60
        let will = ConnectPacket.Will(topic: "w", payload: ByteBuffer(string: "late"), properties: willProperties)
        let first = h.connect("d", will: will, properties: session)
        first.controller.connectionClosed()
        h.scheduler.advance(by: .seconds(3))
        _ = h.connect("d", cleanStart: false, properties: session)
        h.scheduler.advance(by: .seconds(10))
        #expect(watcher.connection.publishes.isEmpty)
        // Without a reconnect the will goes out after the delay.
        let other = h.connect("e", will: ConnectPacket.Will(topic: "w", payload: ByteBuffer(string: "after 5s"), properties: willProperties), properties: session)
        other.controller.connectionClosed()
        h.scheduler.advance(by: .seconds(4))
        #expect(watcher.connection.publishes.isEmpty)
        h.scheduler.advance(by: .seconds(2))
        #expect(watcher.connection.publishes.map { String(buffer: $0.payload) } == ["after 5s"])
    }

    @Test func takeoverClosesTheFirstConnectionWithReason0x8E() {
        let h = Harness()
        let first = h.connect("same")
        let second = h.connect("same")
        #expect(first.connection.isClosed)
        #expect(first.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .sessionTakenOver)))
        #expect(!second.connection.isClosed)
        #expect(h.broker.sessionCount == 1)
    }

    @Test func persistentSessionQueuesWhileOfflineAndRedeliversWithDup() {
        let h = Harness()
        var properties = MQTTProperties()
        properties.sessionExpiryInterval = 300
        let sub = h.connect("p", cleanStart: false, properties: properties)
        h.subscribe(sub, "q")
        let pub = h.connect("pub")
        h.publish(pub, "q", "while online", qos: .atLeastOnce)
        sub.controller.connectionClosed()  // never acked
        h.publish(pub, "q", "while offline", qos: .atLeastOnce)
        let back = h.connect("p", cleanStart: false, properties: properties)
        #expect(connack(back)?.sessionPresent == true)
        let received = back.connection.publishes
        #expect(received.map { String(buffer: $0.payload) } == ["while online", "while offline"])
        #expect(received.map(\.dup) == [true, false])
    }

    @Test func v311PersistentSessionAndCleanSession() {
        let h = Harness()
        let sub = h.connect("c", version: .v3_1_1, cleanStart: false)
        h.subscribe(sub, "q")
        sub.controller.connectionClosed()
        let pub = h.connect("pub", version: .v3_1_1)
        h.publish(pub, "q", "queued", qos: .atLeastOnce)
        let back = h.connect("c", version: .v3_1_1, cleanStart: false)
        #expect(connack(back)?.sessionPresent == true)
        #expect(back.connection.publishes.map { String(buffer: $0.payload) } == ["queued"])
        let clean = h.connect("c", version: .v3_1_1, cleanStart: true)
        #expect(connack(clean)?.sessionPresent == false)
    }

    @Test func sessionExpiresAfterItsInterval() {
        let h = Harness()
        var properties = MQTTProperties()
        properties.sessionExpiryInterval = 10
        let client = h.connect("x", properties: properties)
        h.subscribe(client, "t")
        client.controller.connectionClosed()
        h.scheduler.advance(by: .seconds(11))
        #expect(h.broker.sessionCount == 0)
        #expect(h.broker.subscriptionCount == 0)
    }

    @Test func emptyClientIdentifiers() {
        let h = Harness()
        let v5 = h.connect("")
        #expect(connack(v5)?.properties.assignedClientIdentifier?.isEmpty == false)
        let v3clean = h.connect("", version: .v3_1_1, cleanStart: true)
        #expect(connack(v3clean)?.reasonCode == .success)
        let v3persistent = h.connect("", version: .v3_1_1, cleanStart: false)
        #expect(connack(v3persistent)?.reasonCode == .clientIdentifierNotValid)
        #expect(v3persistent.connection.isClosed)
    }

    @Test func noLocalAndRetainAsPublished() {
        let h = Harness()
        let client = h.connect("self")
        h.subscribe(client, "n", options: SubscriptionOptions(qos: .atMostOnce, noLocal: true))
        h.subscribe(client, "r", options: SubscriptionOptions(qos: .atMostOnce, retainAsPublished: true))
        h.publish(client, "n", "own")
        h.publish(client, "r", "kept flag", retain: true)
        #expect(client.connection.publishes.map { String(buffer: $0.payload) } == ["kept flag"])
        #expect(client.connection.publishes.first?.retain == true)
    }

    @Test func subscriptionIdentifiersAreDelivered() {
        let h = Harness()
        let client = h.connect("s")
        h.subscribe(client, "a/#", id: 7)
        let pub = h.connect("p")
        h.publish(pub, "a/b", "x")
        #expect(client.connection.publishes.first?.properties.subscriptionIdentifiers == [7])
    }

    @Test func sharedSubscriptionsSpreadOverMembers() {
        let h = Harness()
        let one = h.connect("one")
        let two = h.connect("two")
        h.subscribe(one, "$share/g/jobs")
        h.subscribe(two, "$share/g/jobs")
        let pub = h.connect("p")
        for index in 0..<10 { h.publish(pub, "jobs", "\(index)") }
        let first = one.connection.publishes.count
        let second = two.connection.publishes.count
        #expect(first + second == 10)
        #expect(first == 5 && second == 5)
    }

    @Test func inboundTopicAliases() {
        let h = Harness()
        let sub = h.connect("s")
        h.subscribe(sub, "long/topic/name")
        let pub = h.connect("p")
        var set = MQTTProperties()
        set.topicAlias = 3
        h.publish(pub, "long/topic/name", "one", properties: set)
        h.publish(pub, "", "two", properties: set)
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["one", "two"])
        var unknown = MQTTProperties()
        unknown.topicAlias = 4
        h.publish(pub, "", "three", properties: unknown)
        #expect(pub.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .protocolError)))
        #expect(pub.connection.isClosed)
    }

    @Test func outboundTopicAliasesWithinTheClientMaximum() {
        let h = Harness()
        var properties = MQTTProperties()
        properties.topicAliasMaximum = 1
        let sub = h.connect("s", properties: properties)
        h.subscribe(sub, "#")
        let pub = h.connect("p")
        h.publish(pub, "a", "1")
        h.publish(pub, "a", "2")
        h.publish(pub, "b", "3")
        let received = sub.connection.publishes
        #expect(received.map(\.topic) == ["a", "", "b"])
        #expect(received.map(\.properties.topicAlias) == [1, 1, nil])
    }

    @Test func clientMaximumPacketSizeIsRespected() {
        let h = Harness()
        var properties = MQTTProperties()
        properties.maximumPacketSize = 64
        let sub = h.connect("s", properties: properties)
        h.subscribe(sub, "t")
        let pub = h.connect("p")
        h.publish(pub, "t", String(repeating: "x", count: 100), qos: .atLeastOnce)
        h.publish(pub, "t", "small", qos: .atLeastOnce)
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["small"])
    }

    @Test func receiveMaximumLimitsUnackedMessages() {
        let h = Harness()
        var properties = MQTTProperties()
        properties.receiveMaximum = 1
        let sub = h.connect("s", properties: properties)
        h.subscribe(sub, "t")
        let pub = h.connect("p")
        h.publish(pub, "t", "1", qos: .atLeastOnce)
        h.publish(pub, "t", "2", qos: .atLeastOnce)
        #expect(sub.connection.publishes.count == 1)
        let id = sub.connection.publishes[0].packetIdentifier ?? 0
        h.send(sub, .puback(PubAckPacket(packetIdentifier: id)))
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["1", "2"])
    }

    @Test func qos2InboundIsRoutedOnceEvenWhenRepeated() {
        let h = Harness()
        let sub = h.connect("s")
        h.subscribe(sub, "t")
        let pub = h.connect("p")
        h.publish(pub, "t", "once", qos: .exactlyOnce, id: 9)
        h.publish(pub, "t", "once", qos: .exactlyOnce, id: 9)
        h.send(pub, .pubrel(PubRelPacket(packetIdentifier: 9)))
        #expect(sub.connection.publishes.count == 1)
        #expect(pub.connection.sent.filter { if case .pubrec = $0 { true } else { false } }.count == 2)
        #expect(pub.connection.sent.last == .pubcomp(PubCompPacket(packetIdentifier: 9)))
    }

    @Test func messageExpiryDropsOfflineMessagesAndCountsDown() {
        let h = Harness()
        var session = MQTTProperties()
        session.sessionExpiryInterval = 100
        let sub = h.connect("s", cleanStart: false, properties: session)
        h.subscribe(sub, "t")
        sub.controller.connectionClosed()
        let pub = h.connect("p")
        var short = MQTTProperties()
        short.messageExpiryInterval = 2
        var long = MQTTProperties()
        long.messageExpiryInterval = 60
        h.publish(pub, "t", "short", qos: .atLeastOnce, properties: short)
        h.publish(pub, "t", "long", qos: .atLeastOnce, properties: long)
        h.scheduler.advance(by: .seconds(10))
        let back = h.connect("s", cleanStart: false, properties: session)
        let received = back.connection.publishes
        #expect(received.map { String(buffer: $0.payload) } == ["long"])
        #expect(received.first?.properties.messageExpiryInterval == 50)
    }

    @Test func secondConnectIsAProtocolError() {
        let h = Harness()
        let client = h.connect("c")
        h.send(client, .connect(ConnectPacket(clientIdentifier: "c")))
        #expect(client.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .protocolError)))
        #expect(client.connection.isClosed)
    }

    @Test func connectTimeoutClosesSilentConnections() {
        let h = Harness()
        let connection = RecordingConnection()
        let controller = ConnectionController(
            broker: h.broker, connection: connection, listenerAllowsAnonymous: nil, logger: Logger(label: "t"))
        controller.start()
        h.scheduler.advance(by: .seconds(11))
        #expect(connection.isClosed)
        #expect(connection.sent.isEmpty)
    }

    @Test func anonymousRefusedWhenNotAllowed() {
        let h = Harness(access: AccessPolicy(allowAnonymous: false))
        let v5 = h.connect("a")
        #expect(connack(v5)?.reasonCode == .notAuthorized)
        let v3 = h.connect("b", version: .v3_1_1)
        #expect(connack(v3)?.reasonCode == .notAuthorized)
        #expect(v3.connection.isClosed)
    }

    @Test func flushesOncePerBatch() {
        let h = Harness()
        let sub = h.connect("s")
        h.subscribe(sub, "t")
        let pub = h.connect("p")
        let before = sub.connection.flushes
        for index in 0..<10 {
            pub.controller.received(.publish(PublishPacket(topic: "t", payload: ByteBuffer(string: "\(index)"))))
        }
        h.broker.flushPending()
        #expect(sub.connection.flushes == before + 1)
        #expect(sub.connection.publishes.count == 10)
    }
}
