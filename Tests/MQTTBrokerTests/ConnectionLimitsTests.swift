import AccessControl
import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import Testing

/// Other workers that answer a claim or a route barrier only when the test says so.
final class DeferredCluster: BrokerCluster {
    var peerIDs: [String] = ["w1"]
    var claims: [(SessionHandoff?) -> Void] = []
    var barriers: [() -> Void] = []

    func routeAdded(_ filter: String) {}
    func routeRemoved(_ filter: String) {}
    func send(_ publish: ForwardedPublish, to peer: String) {}
    func claim(clientID: String, cleanStart: Bool, completion: @escaping (SessionHandoff?) -> Void) {
        claims.append(completion)
    }
    func barrier(completion: @escaping () -> Void) { barriers.append(completion) }

    func answerAll() {
        while !claims.isEmpty || !barriers.isEmpty {
            let (claims, barriers) = (self.claims, self.barriers)
            self.claims = []
            self.barriers = []
            for claim in claims { claim(nil) }
            for barrier in barriers { barrier() }
        }
    }
}

/// The connection-level bounds of issue 15 in the controller: a busy connection (over its listener's
/// high_watermark), the route barrier, topic alias budgets, the CONNECT size limit and the send timeout.
@MainActor
@Suite struct ConnectionLimitsTests {
    private func connack(_ client: Harness.Client) -> ConnAckPacket? {
        client.connection.sent.compactMap { if case .connack(let c) = $0 { c } else { nil } }.first
    }

    // MARK: 6 back-pressure

    @Test func qos0ForABusyClientIsDroppedAndCounted() {
        let h = Harness()
        let sub = h.connect("sub")
        h.subscribe(sub, "t", qos: .atMostOnce)
        let pub = h.connect("pub")
        sub.connection.isBusy = true
        for index in 0..<3 { h.publish(pub, "t", "\(index)") }
        #expect(sub.connection.publishes.isEmpty)
        #expect(h.broker.statistics.limitHits[LimitEvent.highWatermarkQoS0Dropped.rawValue] == 3)
        #expect(h.broker.statistics.messagesDropped == 3)
        sub.connection.isBusy = false
        h.publish(pub, "t", "after")
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["after"])
    }

    @Test func qos1ForABusyClientWaitsInTheQueueAndFollowsInOrder() {
        let h = Harness()
        let sub = h.connect("sub")
        h.subscribe(sub, "t", qos: .atLeastOnce)
        let pub = h.connect("pub")
        h.publish(pub, "t", "0", qos: .atLeastOnce, id: 1)
        sub.connection.isBusy = true
        for index in 1...5 { h.publish(pub, "t", "\(index)", qos: .atLeastOnce, id: UInt16(index + 1)) }
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["0"])
        #expect(h.broker.statistics.limitHits[LimitEvent.highWatermarkQoS12Held.rawValue] == 5)
        #expect(h.broker.statistics.messagesDropped == 0)
        // Still busy: nothing is released.
        sub.controller.outboundWritable()
        #expect(sub.connection.publishes.count == 6 - 5)
        sub.connection.isBusy = false
        sub.controller.outboundWritable()
        h.broker.flushPending()
        #expect(sub.connection.publishes.map { String(buffer: $0.payload) } == ["0", "1", "2", "3", "4", "5"])
        #expect(Set(sub.connection.publishes.compactMap(\.packetIdentifier)).count == 6)
    }

    @Test func sendTimeoutClosesWithAReasonOrKeeps() {
        let h = Harness()
        let kept = h.connect("kept")
        kept.controller.sendTimedOut(after: .seconds(15), closing: false, bytesWaiting: 1 << 20)
        #expect(!kept.connection.isClosed)
        #expect(h.broker.statistics.limitHits[LimitEvent.sendTimeoutKept.rawValue] == 1)
        let watcher = h.connect("watcher")
        h.subscribe(watcher, "will/stalled", qos: .atMostOnce)
        let stalled = h.connect(
            "stalled", will: ConnectPacket.Will(topic: "will/stalled", payload: ByteBuffer(string: "gone"), qos: .atMostOnce))
        stalled.controller.sendTimedOut(after: .seconds(15), closing: true, bytesWaiting: 1 << 20)
        #expect(stalled.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .quotaExceeded)))
        #expect(stalled.connection.isClosed)
        #expect(h.broker.statistics.limitHits[LimitEvent.sendTimeoutClosed.rawValue] == 1)
        #expect(watcher.connection.publishes.map(\.topic) == ["will/stalled"])
    }

    // MARK: 11 route barrier

    @Test func inputPausesWhileTheClientIDIsClaimedAndResumesAfter() {
        let h = Harness()
        let cluster = DeferredCluster()
        h.broker.cluster = cluster
        let client = h.connect("claimed")
        #expect(connack(client) == nil)
        #expect(!client.controller.acceptsInput)
        for _ in 0..<10 { h.send(client, .pingreq) }
        cluster.answerAll()
        #expect(connack(client)?.reasonCode == .success)
        #expect(client.connection.sent.filter { $0 == .pingresp }.count == 10)
        #expect(client.controller.acceptsInput)
        #expect(client.connection.inputResumptions == 1)
    }

    @Test func aConnectionThatKeepsSendingWhileClaimedGets0x97NotASilentClose() {
        let h = Harness()
        let cluster = DeferredCluster()
        h.broker.cluster = cluster
        let client = h.connect("flooding")
        for _ in 0...1000 { client.controller.received(.pingreq) }
        #expect(client.connection.isClosed)
        #expect(connack(client)?.reasonCode == .quotaExceeded)
        cluster.answerAll()
        #expect(client.connection.sent.filter { $0 == .pingresp }.isEmpty)
    }

    @Test func inputPausesWhileASubackWaitsForTheRoutes() {
        let h = Harness()
        let cluster = DeferredCluster()
        h.broker.cluster = cluster
        let client = h.connect("subscriber")
        cluster.answerAll()
        let resumedAfterConnect = client.connection.inputResumptions
        h.subscribe(client, "routes/#")
        #expect(!client.controller.acceptsInput)
        h.send(client, .pingreq)
        #expect(!client.connection.sent.contains(.pingresp))
        cluster.answerAll()
        #expect(client.controller.acceptsInput)
        #expect(client.connection.inputResumptions == resumedAfterConnect + 1)
        let kinds = client.connection.sent.compactMap { packet -> String? in
            switch packet {
            case .suback: "suback"
            case .pingresp: "pingresp"
            default: nil
            }
        }
        #expect(kinds == ["suback", "pingresp"])
        // Past the limit (a connection that does not pause): DISCONNECT 0x97, never a silent close.
        h.subscribe(client, "more/#")
        for _ in 0...1000 { client.controller.received(.pingreq) }
        #expect(client.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .quotaExceeded)))
        #expect(client.connection.isClosed)
    }

    // MARK: 7 topic aliases

    @Test func topicAliasMaximumIs10ByDefault() {
        let h = Harness()
        let client = h.connect("c")
        #expect(connack(client)?.properties.topicAliasMaximum == 10)
    }

    @Test func aDeniedPublishSetsNoAlias() throws {
        let acl = try ACLFile(parsing: "user alice\ntopic readwrite alice/#\n", path: "acl")
        let h = Harness(access: AccessPolicy(allowAnonymous: true, acl: acl))
        let client = h.connect("alice", username: "alice")
        var alias = MQTTProperties()
        alias.topicAlias = 1
        h.publish(client, "secret/x", "no", qos: .atLeastOnce, id: 1, properties: alias)
        #expect(client.connection.sent.last == .puback(PubAckPacket(packetIdentifier: 1, reasonCode: .notAuthorized)))
        h.publish(client, "", "again", qos: .atLeastOnce, id: 2, properties: alias)
        #expect(client.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .protocolError)))
        #expect(client.connection.isClosed)
    }

    @Test func inboundAliasTopicsStayWithinTheirBudget() {
        let h = Harness(settings: BrokerSettings(maximumTopicAlias: 100, maximumTopicAliasBytes: 100))
        let client = h.connect("c")
        var alias = MQTTProperties()
        alias.topicAlias = 1
        h.publish(client, String(repeating: "a", count: 60), "1", properties: alias)
        // Replacing alias 1 frees its old topic's bytes.
        h.publish(client, String(repeating: "b", count: 90), "2", properties: alias)
        #expect(!client.connection.isClosed)
        alias.topicAlias = 2
        h.publish(client, String(repeating: "c", count: 20), "3", properties: alias)
        #expect(client.connection.sent.last == .disconnect(DisconnectPacket(reasonCode: .quotaExceeded)))
        #expect(client.connection.isClosed)
        #expect(h.broker.statistics.limitHits[LimitEvent.topicAliasBytesClosed.rawValue] == 1)
    }

    @Test func outboundAliasesStayWithinTheirBudget() {
        let h = Harness(settings: BrokerSettings(maximumTopicAliasBytes: 10))
        var properties = MQTTProperties()
        properties.topicAliasMaximum = 5
        let sub = h.connect("s", properties: properties)
        h.subscribe(sub, "#", qos: .atMostOnce)
        let pub = h.connect("p")
        h.publish(pub, "abcdef", "1")
        h.publish(pub, "ghijkl", "2")
        h.publish(pub, "abcdef", "3")
        #expect(sub.connection.publishes.map(\.properties.topicAlias) == [1, nil, 1])
        #expect(sub.connection.publishes.map(\.topic) == ["abcdef", "ghijkl", ""])
        #expect(h.broker.statistics.limitHits[LimitEvent.topicAliasBytesUnaliased.rawValue] == 1)
    }

    // MARK: 10 before CONNECT

    @Test func theConnectPacketLimitHoldsUntilTheConnectIsAccepted() {
        let h = Harness(settings: BrokerSettings(maximumPacketSize: 1 << 20, maximumConnectPacketSize: 4096))
        let connection = RecordingConnection()
        let controller = ConnectionController(
            broker: h.broker, connection: connection, listenerAllowsAnonymous: nil, logger: Logger(label: "test"))
        controller.start()
        #expect(controller.maximumInboundPacketSize == 4096)
        var decoder = MQTTDecoder(maximumPacketSize: controller.maximumInboundPacketSize)
        var bytes = ByteBuffer(bytes: [0x10, 0x80, 0x80, 0x01])  // CONNECT of 16384 bytes
        do {
            _ = try decoder.decode(from: &bytes)
            Issue.record("a CONNECT over the limit was decoded")
        } catch {
            controller.decodingFailed(error)
        }
        #expect(connection.isClosed)
        #expect(h.broker.statistics.limitHits[LimitEvent.connectPacketSizeRefused.rawValue] == 1)
        let client = h.connect("c")
        #expect(client.controller.maximumInboundPacketSize == 1 << 20)
    }
}
