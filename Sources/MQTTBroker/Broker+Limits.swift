import BrokerConfiguration
import BrokerCore
import MQTTCodec
import NIOCore

/// The storage bounds of a worker (issue 15): one shared copy per queued message, the worker's share of the
/// node's queue budget, the retained limits, and the counters of what each limit dropped or refused.
/// On the broker's event loop.
extension Broker {
    /// Counts `count` hits of a limit, for `status` (`limit_hits`) and the metrics.
    func countLimit(_ key: StorageLimits.Key, _ count: Int = 1) {
        guard count > 0 else { return }
        statistics.limitHits[key.rawValue, default: 0] += count
    }

    /// What all sessions of this worker queue now (messages, message bytes), for `status` and the metrics.
    public var queuedTotals: (messages: Int, bytes: Int) {
        (queueLedger.queuedCount, queueLedger.queuedBytes)
    }

    public var retainedBytes: Int { retained.totalByteCount }

    // MARK: One copy per message

    /// The copy of `message` that sessions hold: its own bytes instead of a slice of the read buffer it was
    /// decoded from (which would keep the whole buffer alive), and a number for the store. Made once per routing
    /// (`cache`) and shared by every session the message goes to, so forty offline sessions hold one payload.
    func held(_ message: ApplicationMessage, cache: inout ApplicationMessage?) -> ApplicationMessage {
        if message.id != nil { return message }
        if let cache { return cache }
        var copy = message
        copy.payload = ByteBuffer(bytes: message.payload.readableBytesView)
        if let correlation = message.properties.correlationData {
            copy.properties.correlationData = ByteBuffer(bytes: correlation.readableBytesView)
        }
        copy.id = nextMessageID()
        cache = copy
        return copy
    }

    /// A number no other message in the node's store has: from a block the store reserved for this worker, or
    /// counting from 1 without a store.
    func nextMessageID() -> UInt64 {
        if messageIDs.isEmpty {
            messageIDs = persistence?.reserveMessageIDs() ?? 1..<UInt64.max
        }
        let id = messageIDs.lowerBound
        messageIDs = (id + 1)..<messageIDs.upperBound
        return id
    }

    // MARK: The worker's queue budget (mqtt.max_node_queued_bytes)

    /// A message was queued for `session` under `ticket`: it joins the worker's arrival order, and the oldest
    /// queued messages go while the worker holds more than its share of the node's budget.
    func queued(_ session: Session, ticket: UInt64) {
        queueLedger.order.append((session, ticket))
        enforceQueueBudget()
    }

    /// Sessions adopted from another worker or the store: their queued messages join the arrival order.
    func queuedOnAdoption(_ session: Session) {
        guard let oldest = session.outbound.oldestQueuedTicket else { return }
        for ticket in oldest..<session.outbound.nextTicket {
            queueLedger.order.append((session, ticket))
        }
        enforceQueueBudget()
    }

    /// Drops the oldest queued messages of all sessions, in the order they were queued, until the worker is
    /// within `settings.workerQueuedBytes`.
    func enforceQueueBudget() {
        var dropped = 0
        while queueLedger.queuedBytes > settings.workerQueuedBytes, let entry = queueLedger.order.popFirst() {
            // Skipped: a message already sent or dropped, or a session that ended.
            let session = entry.session
            guard sessions[session.clientID] === session, session.outbound.oldestQueuedTicket == entry.ticket else {
                continue
            }
            _ = session.outbound.dropOldestQueued()
            dropped += 1
            sessionChanged(session)
        }
        if dropped > 0 {
            statistics.messagesDropped += dropped
            countLimit(.maxNodeQueuedBytes, dropped)
            logger.debug(
                "the worker's queue budget is full, dropped the oldest queued messages",
                metadata: ["mqtt.dropped": "\(dropped)", "mqtt.worker_queued_bytes": "\(settings.workerQueuedBytes)"])
        }
        sweepQueueOrder()
    }

    /// Entries of messages that left their queue are skipped when reached; once they outnumber the live ones
    /// they are swept out, so the order costs memory in proportion to what is queued.
    private func sweepQueueOrder() {
        guard queueLedger.order.count > 2 * queueLedger.queuedCount + 1024 else { return }
        var kept = CircularBuffer<(session: Session, ticket: UInt64)>(initialCapacity: queueLedger.queuedCount)
        for entry in queueLedger.order where sessions[entry.session.clientID] === entry.session {
            if let oldest = entry.session.outbound.oldestQueuedTicket, entry.ticket >= oldest {
                kept.append(entry)
            }
        }
        queueLedger.order = kept
    }

    // MARK: Retained messages (mqtt.max_retained_messages, mqtt.max_retained_bytes)

    /// Whether a retained message published by a client of this worker may be retained. Clearing and replacing
    /// always fit the count; a new topic beyond either limit, or a replacement beyond the byte limit, is not
    /// retained (the message is still delivered) and counted. Changes from other workers are applied as they
    /// come, so that every worker holds the same set.
    func retainedFits(_ message: ApplicationMessage, topic: TopicName) -> Bool {
        guard message.payload.readableBytes > 0 else { return true }
        let current = retained.message(for: topic)
        let count = retained.count + (current == nil ? 1 : 0)
        let bytes = retained.totalByteCount - (current?.retainedByteCount ?? 0) + message.byteCount
        let refused: StorageLimits.Key
        if count > settings.storage.maxRetainedMessages {
            refused = .maxRetainedMessages
        } else if bytes > settings.storage.maxRetainedBytes {
            refused = .maxRetainedBytes
        } else {
            return true
        }
        countLimit(refused)
        logger.debug(
            "retained message not retained: the limit is reached",
            metadata: ["mqtt.topic": "\(message.topic)", "mqtt.limit": "\(refused.rawValue)"])
        return false
    }
}
