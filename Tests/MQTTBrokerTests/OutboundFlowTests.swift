import MQTTBroker
import MQTTCodec
import NIOCore
import ProcessSupport
import Testing

/// The outbound QoS state machine as plain values.
@Suite struct OutboundFlowTests {
    let now = MonotonicInstant(nanoseconds: 1_000_000_000)

    func delivery(_ text: String, qos: QoS = .atLeastOnce, expiresAt: MonotonicInstant? = nil) -> OutboundFlow.Delivery {
        let message = ApplicationMessage(
            topic: "t", payload: ByteBuffer(string: text), qos: qos, retain: false, expiresAt: expiresAt)
        return OutboundFlow.Delivery(message: message, qos: qos, retain: false)
    }

    func payloads(_ outputs: [OutboundFlow.Output]) -> [String] {
        outputs.compactMap {
            if case .publish(let delivery, _, _) = $0 { String(buffer: delivery.message.payload) } else { nil }
        }
    }

    func identifiers(_ outputs: [OutboundFlow.Output]) -> [UInt16] {
        outputs.compactMap { if case .publish(_, let id, _) = $0 { id } else { nil } }
    }

    @Test func windowLimitsInflightAndAcksReleaseTheQueue() {
        var flow = OutboundFlow(window: 2, queueLimit: 10)
        #expect(identifiers(flow.enqueue(delivery("a"), isOnline: true, now: now)) == [1])
        #expect(identifiers(flow.enqueue(delivery("b"), isOnline: true, now: now)) == [2])
        #expect(flow.enqueue(delivery("c"), isOnline: true, now: now).isEmpty)
        #expect(flow.queuedCount == 1)
        let released = flow.acknowledged(1, now: now)
        #expect(payloads(released) == ["c"])
        #expect(identifiers(released) == [3])
        #expect(flow.acknowledged(1, now: now).isEmpty, "a second PUBACK for the same id is ignored")
    }

    @Test func qos0IsNeverQueuedAndNeverCountsAgainstTheWindow() {
        var flow = OutboundFlow(window: 1, queueLimit: 10)
        _ = flow.enqueue(delivery("a"), isOnline: true, now: now)
        let qos0 = flow.enqueue(delivery("zero", qos: .atMostOnce), isOnline: true, now: now)
        #expect(qos0 == [.publish(delivery("zero", qos: .atMostOnce), packetIdentifier: nil, dup: false)])
        #expect(flow.enqueue(delivery("offline", qos: .atMostOnce), isOnline: false, now: now).isEmpty)
        #expect(flow.queuedCount == 0)
    }

    @Test func fullQueueDropsTheOldestAndCountsIt() {
        var flow = OutboundFlow(window: 1, queueLimit: 3)
        for text in ["1", "2", "3", "4", "5"] {
            _ = flow.enqueue(delivery(text), isOnline: false, now: now)
        }
        #expect(flow.droppedCount == 2)
        #expect(payloads(flow.resume(now: now)) == ["3"])
        #expect(payloads(flow.acknowledged(1, now: now)) == ["4"])
        #expect(payloads(flow.acknowledged(2, now: now)) == ["5"])
    }

    @Test func resumeResendsUnackedWithDupThenPubrels() {
        var flow = OutboundFlow(window: 5, queueLimit: 10)
        _ = flow.enqueue(delivery("one"), isOnline: true, now: now)
        _ = flow.enqueue(delivery("two", qos: .exactlyOnce), isOnline: true, now: now)
        #expect(flow.received(2, failed: false, now: now) == [.pubrel(packetIdentifier: 2)])
        _ = flow.enqueue(delivery("three"), isOnline: false, now: now)
        let resumed = flow.resume(now: now)
        #expect(resumed.count == 3)
        #expect(resumed[0] == .publish(delivery("one"), packetIdentifier: 1, dup: true))
        #expect(resumed[1] == .pubrel(packetIdentifier: 2))
        #expect(resumed[2] == .publish(delivery("three"), packetIdentifier: 3, dup: false), "then the queue")
        #expect(flow.completed(2, now: now).isEmpty)
        #expect(flow.inflight.map(\.packetIdentifier) == [1, 3])
    }

    @Test func qos2FlowEndsAtPubcompAndAFailedPubrecEndsIt() {
        var flow = OutboundFlow(window: 1, queueLimit: 10)
        _ = flow.enqueue(delivery("a", qos: .exactlyOnce), isOnline: true, now: now)
        _ = flow.enqueue(delivery("b", qos: .exactlyOnce), isOnline: true, now: now)
        #expect(flow.completed(1, now: now).isEmpty, "PUBCOMP before PUBREC is ignored")
        #expect(flow.received(1, failed: false, now: now) == [.pubrel(packetIdentifier: 1)])
        #expect(payloads(flow.completed(1, now: now)) == ["b"])
        #expect(payloads(flow.received(2, failed: true, now: now)) == [])
        #expect(flow.inflight.isEmpty)
    }

    @Test func expiredMessagesAreNotSent() {
        var flow = OutboundFlow(window: 1, queueLimit: 10)
        let soon = now + .seconds(5)
        _ = flow.enqueue(delivery("old", expiresAt: soon), isOnline: false, now: now)
        _ = flow.enqueue(delivery("fresh"), isOnline: false, now: now)
        #expect(payloads(flow.resume(now: now + .seconds(6))) == ["fresh"])
    }

    @Test func packetIdentifiersWrapAndSkipThoseInUse() {
        var flow = OutboundFlow(window: 3, queueLimit: 10)
        var last: UInt16 = 0
        // Cycle through the whole identifier space with one message stuck in flight.
        _ = flow.enqueue(delivery("stuck"), isOnline: true, now: now)
        for _ in 0..<70000 {
            let outputs = flow.enqueue(delivery("x"), isOnline: true, now: now)
            guard let id = identifiers(outputs).first else { Issue.record("nothing sent"); return }
            #expect(id != 1 && id != 0)
            last = id
            _ = flow.acknowledged(id, now: now)
        }
        #expect(last > 0)
    }
}

/// The queue's byte bound (`mqtt.max_queued_bytes`) and the tickets the broker orders its budget by.
@Suite struct OutboundFlowByteLimitTests {
    let now = MonotonicInstant(nanoseconds: 1_000_000_000)

    /// A delivery of `size` message bytes (topic "t" plus payload).
    func delivery(_ size: Int, tag: UInt8) -> OutboundFlow.Delivery {
        let message = ApplicationMessage(
            topic: "t", payload: ByteBuffer(repeating: tag, count: size - 1), qos: .atLeastOnce, retain: false)
        return OutboundFlow.Delivery(message: message, qos: .atLeastOnce, retain: false)
    }

    func tags(_ outputs: [OutboundFlow.Output]) -> [UInt8] {
        outputs.compactMap {
            if case .publish(let delivery, _, _) = $0 { delivery.message.payload.getInteger(at: delivery.message.payload.readerIndex) } else { nil }
        }
    }

    @Test func theByteLimitDropsTheOldestAndCountsItApart() {
        var flow = OutboundFlow(window: 1, queueLimit: 100, queueByteLimit: 300)
        for tag in UInt8(1)...5 {
            _ = flow.enqueue(delivery(100, tag: tag), isOnline: false, now: now)
        }
        #expect(flow.queuedCount == 3)
        #expect(flow.queuedBytes == 300)
        #expect(flow.droppedCount == 2)
        #expect(flow.droppedForBytesCount == 2)
        #expect(tags(flow.resume(now: now)) == [3])
        #expect(flow.queuedBytes == 200, "a message that leaves for the wire leaves the count")
    }

    @Test func aMessageLargerThanTheLimitStillWaitsAlone() {
        var flow = OutboundFlow(window: 1, queueLimit: 100, queueByteLimit: 300)
        _ = flow.enqueue(delivery(100, tag: 1), isOnline: false, now: now)
        _ = flow.enqueue(delivery(1000, tag: 2), isOnline: false, now: now)
        #expect(flow.queuedCount == 1)
        #expect(flow.queuedBytes == 1000)
        _ = flow.enqueue(delivery(100, tag: 3), isOnline: false, now: now)
        #expect(flow.queuedCount == 1, "the large one goes to make room")
        #expect(tags(flow.resume(now: now)) == [3])
    }

    @Test func ticketsNumberQueuedMessagesInOrder() {
        var flow = OutboundFlow(window: 1, queueLimit: 100)
        #expect(flow.oldestQueuedTicket == nil)
        for tag in UInt8(1)...3 {
            _ = flow.enqueue(delivery(10, tag: tag), isOnline: false, now: now)
        }
        #expect(flow.oldestQueuedTicket == 0)
        #expect(flow.nextTicket == 3)
        let dropped = flow.dropOldestQueued()
        #expect(dropped.map { tags([.publish($0, packetIdentifier: nil, dup: false)]) } == [1])
        #expect(flow.oldestQueuedTicket == 1)
        #expect(flow.droppedCount == 1)
        #expect(flow.queuedBytes == 20)
        flow.reset()
        #expect(flow.queuedBytes == 0 && flow.oldestQueuedTicket == nil)
    }
}
