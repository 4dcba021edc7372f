import MQTTCodec
import ProcessSupport

/// The QoS 1/2 state of messages going to one client session, as a plain value (one per session, surviving
/// reconnects of persistent sessions).
///
/// At most `window` QoS>0 messages are in flight (the client's Receive Maximum capped by `mqtt.max_inflight`);
/// the rest wait in a bounded queue that drops its oldest entry when full, and counts the drop. Each event
/// returns the packets to send. QoS 0 messages are never queued while offline.
public struct OutboundFlow: Sendable {
    /// A QoS>0 message sent and not yet fully acknowledged.
    public struct Inflight: Sendable, Equatable {
        public enum Stage: Sendable, Equatable {
            /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
            case published
            /// PUBREL sent; waiting for PUBCOMP.
            case released
        }
        public var packetIdentifier: UInt16
        public var delivery: Delivery
        public var stage: Stage

        public init(packetIdentifier: UInt16, delivery: Delivery, stage: Stage) {
            self.packetIdentifier = packetIdentifier
            self.delivery = delivery
            self.stage = stage
        }
    }

    /// A message prepared for one subscriber: effective QoS, retain flag, subscription identifiers.
    public struct Delivery: Sendable, Equatable {
        public var message: ApplicationMessage
        public var qos: QoS
        public var retain: Bool
        public var subscriptionIdentifiers: [Int]

        public init(message: ApplicationMessage, qos: QoS, retain: Bool, subscriptionIdentifiers: [Int] = []) {
            self.message = message
            self.qos = qos
            self.retain = retain
            self.subscriptionIdentifiers = subscriptionIdentifiers
        }
    }

    /// What to put on the wire.
    public enum Output: Sendable, Equatable {
        case publish(Delivery, packetIdentifier: UInt16?, dup: Bool)
        case pubrel(packetIdentifier: UInt16)
    }

    public private(set) var inflight: [Inflight] = []
    public private(set) var queue: [Delivery] = []
    private var queueHead = 0
    public private(set) var droppedCount = 0
    public var window: Int
    public var queueLimit: Int
    private var lastPacketIdentifier: UInt16 = 0

    public init(window: Int, queueLimit: Int) {
        self.window = max(1, window)
        self.queueLimit = queueLimit
    }

    /// A flow moved from another broker process (session takeover): in flight and queued exactly as there, and
    /// new packet identifiers continue after `lastPacketIdentifier`.
    public init(
        window: Int, queueLimit: Int, inflight: [Inflight], queued: [Delivery], lastPacketIdentifier: UInt16
    ) {
        self.init(window: window, queueLimit: queueLimit)
        self.inflight = inflight
        self.queue = queued
        self.lastPacketIdentifier = lastPacketIdentifier
    }

    public var queuedCount: Int { queue.count - queueHead }

    /// The messages waiting, oldest first.
    public var queuedDeliveries: ArraySlice<Delivery> { queue[queueHead...] }

    /// The last packet identifier handed out (to carry the sequence over to another process).
    public var lastIssuedPacketIdentifier: UInt16 { lastPacketIdentifier }

    /// A message for this session. Online: sent now if the window allows (QoS 0 always), else queued.
    /// Offline: QoS>0 queued, QoS 0 dropped.
    public mutating func enqueue(_ delivery: Delivery, isOnline: Bool, now: MonotonicInstant) -> [Output] {
        if delivery.qos == .atMostOnce {
            return isOnline ? [.publish(delivery, packetIdentifier: nil, dup: false)] : []
        }
        if isOnline && queuedCount == 0 && inflight.count < window {
            return [send(delivery)]
        }
        appendToQueue(delivery)
        return isOnline ? drain(now: now) : []
    }

    /// PUBACK (QoS 1) received. Unknown identifiers are ignored (the spec allows the client to be wrong only
    /// in ways we cannot fix).
    public mutating func acknowledged(_ packetIdentifier: UInt16, now: MonotonicInstant) -> [Output] {
        guard let index = inflight.firstIndex(where: { $0.packetIdentifier == packetIdentifier && $0.stage == .published && $0.delivery.qos == .atLeastOnce }) else {
            return []
        }
        inflight.remove(at: index)
        return drain(now: now)
    }

    /// PUBREC received: answer with PUBREL (also for a PUBREC we already answered, as the spec asks).
    /// A PUBREC with a failure reason (v5) ends the flow.
    public mutating func received(_ packetIdentifier: UInt16, failed: Bool, now: MonotonicInstant) -> [Output] {
        guard let index = inflight.firstIndex(where: { $0.packetIdentifier == packetIdentifier && $0.delivery.qos == .exactlyOnce }) else {
            return failed ? [] : [.pubrel(packetIdentifier: packetIdentifier)]
        }
        if failed {
            inflight.remove(at: index)
            return drain(now: now)
        }
        inflight[index].stage = .released
        return [.pubrel(packetIdentifier: packetIdentifier)]
    }

    /// PUBCOMP received: the QoS 2 flow is over.
    public mutating func completed(_ packetIdentifier: UInt16, now: MonotonicInstant) -> [Output] {
        guard let index = inflight.firstIndex(where: { $0.packetIdentifier == packetIdentifier && $0.stage == .released }) else {
            return []
        }
        inflight.remove(at: index)
        return drain(now: now)
    }

    /// A persistent session's client is back: resend every unacknowledged PUBLISH with DUP, every PUBREL,
    /// in their original order, then what the window allows from the queue (§4.4).
    public mutating func resume(now: MonotonicInstant) -> [Output] {
        var outputs: [Output] = inflight.map { entry in
            switch entry.stage {
            case .published:
                return .publish(entry.delivery, packetIdentifier: entry.packetIdentifier, dup: true)
            case .released:
                return .pubrel(packetIdentifier: entry.packetIdentifier)
            }
        }
        outputs += drain(now: now)
        return outputs
    }

    /// Sends what the window allows from the queue: the connection was busy (over its high watermark) while
    /// messages arrived, so they were queued rather than sent.
    public mutating func release(now: MonotonicInstant) -> [Output] {
        drain(now: now)
    }

    /// Drops everything (clean start, or session end).
    public mutating func reset() {
        inflight.removeAll()
        queue.removeAll()
        queueHead = 0
    }

    /// Expired messages leave the queue unsent (MQTT 5 message expiry); returns how many.
    public mutating func dropExpired(now: MonotonicInstant) -> Int {
        let before = queuedCount
        queue = Array(queue[queueHead...].filter { !$0.message.isExpired(at: now) })
        queueHead = 0
        return before - queuedCount
    }

    // MARK: Internals

    private mutating func drain(now: MonotonicInstant) -> [Output] {
        var outputs: [Output] = []
        while inflight.count < window, queueHead < queue.count {
            let next = queue[queueHead]
            queueHead += 1
            if next.message.isExpired(at: now) { continue }
            outputs.append(send(next))
        }
        compactQueue()
        return outputs
    }

    private mutating func send(_ delivery: Delivery) -> Output {
        let identifier = nextPacketIdentifier()
        inflight.append(Inflight(packetIdentifier: identifier, delivery: delivery, stage: .published))
        return .publish(delivery, packetIdentifier: identifier, dup: false)
    }

    private mutating func appendToQueue(_ delivery: Delivery) {
        if queueLimit <= 0 {
            droppedCount += 1
            return
        }
        if queuedCount >= queueLimit {
            queueHead += 1
            droppedCount += 1
        }
        queue.append(delivery)
        compactQueue()
    }

    private mutating func compactQueue() {
        if queueHead > 64 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        } else if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        }
    }

    /// 1…65535, skipping identifiers still in flight.
    private mutating func nextPacketIdentifier() -> UInt16 {
        while true {
            lastPacketIdentifier = lastPacketIdentifier == UInt16.max ? 1 : lastPacketIdentifier + 1
            let candidate = lastPacketIdentifier
            if !inflight.contains(where: { $0.packetIdentifier == candidate }) { return candidate }
        }
    }
}
