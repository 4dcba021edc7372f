import MQTTCodec
import NIOCore
import ProcessSupport

/// The QoS 1/2 state of messages going to one client session, as a plain value (one per session, surviving
/// reconnects of persistent sessions).
///
/// At most `window` QoS>0 messages are in flight (the client's Receive Maximum capped by `mqtt.max_inflight`);
/// the rest wait in a queue bounded in messages (`queueLimit`, `mqtt.max_queued_messages`) and in message bytes
/// (`queueByteLimit`, `mqtt.max_queued_bytes`) that drops its oldest entries to make room, and counts them. Each
/// event returns the packets to send. QoS 0 messages are never queued while offline.
///
/// Every queued message has a ticket (increasing per flow), so that the broker can drop the oldest queued
/// messages of all its sessions in arrival order (`mqtt.max_node_queued_bytes`).
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
    /// Waiting messages, oldest first, each with its ticket. A ring buffer: a dropped or sent message releases
    /// its payload at once.
    private var queue = CircularBuffer<(delivery: Delivery, ticket: UInt64)>()
    /// The ticket the next queued message gets.
    public private(set) var nextTicket: UInt64 = 0
    /// The message bytes (`ApplicationMessage.byteCount`) of the queued messages.
    public private(set) var queuedBytes = 0
    /// Queued messages dropped to make room (for either limit), and those of them dropped for the byte limit.
    public private(set) var droppedCount = 0
    public private(set) var droppedForBytesCount = 0
    public var window: Int
    public var queueLimit: Int
    public var queueByteLimit: Int
    private var lastPacketIdentifier: UInt16 = 0

    public init(window: Int, queueLimit: Int, queueByteLimit: Int = Int.max) {
        self.window = max(1, window)
        self.queueLimit = queueLimit
        self.queueByteLimit = queueByteLimit
    }

    /// A flow moved from another broker process (session takeover): in flight and queued exactly as there, and
    /// new packet identifiers continue after `lastPacketIdentifier`.
    public init(
        window: Int, queueLimit: Int, queueByteLimit: Int = Int.max, inflight: [Inflight], queued: [Delivery],
        lastPacketIdentifier: UInt16
    ) {
        self.init(window: window, queueLimit: queueLimit, queueByteLimit: queueByteLimit)
        self.inflight = inflight
        for delivery in queued {
            queue.append((delivery, nextTicket))
            nextTicket += 1
            queuedBytes += delivery.message.byteCount
        }
        self.lastPacketIdentifier = lastPacketIdentifier
    }

    public var queuedCount: Int { queue.count }

    /// The messages waiting, oldest first.
    public var queuedDeliveries: [Delivery] { queue.map(\.delivery) }

    /// The ticket of the oldest queued message, nil when none waits.
    public var oldestQueuedTicket: UInt64? { queue.first?.ticket }

    /// Drops the oldest queued message (the broker's budget for all sessions is exceeded) and counts it.
    public mutating func dropOldestQueued() -> Delivery? {
        guard let oldest = queue.popFirst() else { return nil }
        queuedBytes -= oldest.delivery.message.byteCount
        droppedCount += 1
        return oldest.delivery
    }

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
        queuedBytes = 0
    }

    /// Expired messages leave the queue unsent (MQTT 5 message expiry); returns how many.
    public mutating func dropExpired(now: MonotonicInstant) -> Int {
        let before = queuedCount
        var kept = CircularBuffer<(delivery: Delivery, ticket: UInt64)>(initialCapacity: queue.count)
        queuedBytes = 0
        for entry in queue where !entry.delivery.message.isExpired(at: now) {
            kept.append(entry)
            queuedBytes += entry.delivery.message.byteCount
        }
        queue = kept
        return before - queuedCount
    }

    // MARK: Internals

    private mutating func drain(now: MonotonicInstant) -> [Output] {
        var outputs: [Output] = []
        while inflight.count < window, let next = queue.popFirst() {
            queuedBytes -= next.delivery.message.byteCount
            if next.delivery.message.isExpired(at: now) { continue }
            outputs.append(send(next.delivery))
        }
        return outputs
    }

    private mutating func send(_ delivery: Delivery) -> Output {
        let identifier = nextPacketIdentifier()
        inflight.append(Inflight(packetIdentifier: identifier, delivery: delivery, stage: .published))
        return .publish(delivery, packetIdentifier: identifier, dup: false)
    }

    /// Makes room by dropping the oldest (a message larger than the byte limit still waits alone, as in
    /// Mosquitto), then appends.
    private mutating func appendToQueue(_ delivery: Delivery) {
        if queueLimit <= 0 {
            droppedCount += 1
            return
        }
        let size = delivery.message.byteCount
        while let oldest = queue.first {
            let full = queue.count >= queueLimit
            guard full || queuedBytes + size > queueByteLimit else { break }
            queue.removeFirst()
            queuedBytes -= oldest.delivery.message.byteCount
            droppedCount += 1
            if !full { droppedForBytesCount += 1 }
        }
        queue.append((delivery, nextTicket))
        nextTicket += 1
        queuedBytes += size
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
