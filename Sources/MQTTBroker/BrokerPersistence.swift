import BrokerCore
import MQTTCodec

/// Where a worker keeps what must survive a crash or a restart: retained messages and persistent sessions.
/// `Worker` implements it on SQLite (`BrokerStore`); the broker only reports changes, coalesced per event-loop
/// turn, and the store batches them into transactions. Called on the broker's event loop; must not block.
public protocol BrokerPersistence: AnyObject {
    /// A retained message set (`message` non-nil) or removed on `topic` by a client of this worker.
    func retainedChanged(topic: String, message: ApplicationMessage?)
    /// The whole state of a persistent session after a change (subscriptions, messages in flight and queued).
    func sessionChanged(clientID: String, state: SessionHandoff)
    /// The session ended here (clean start, expiry, a non-persistent reconnect): forget it.
    func sessionEnded(clientID: String)
    /// Calls `callback` (on any thread) once everything reported so far is durable.
    func whenDurable(_ callback: @escaping @Sendable () -> Void)
    /// Numbers for messages (`ApplicationMessage.id`) that no other process using the store, now or before,
    /// hands out: the store keeps one copy of a message however many sessions hold it, by number.
    func reserveMessageIDs() -> Range<UInt64>
}

extension Broker {
    /// How often the state of a changing persistent session is written: a busy session's whole state (up to
    /// its queue limit) is snapshotted at most this often, not once per message.
    static let sessionPersistInterval = Duration.milliseconds(50)

    /// A session holding many messages is snapshotted less often (its snapshot costs in proportion): 50 ms per
    /// 100 messages held, at most this long.
    static let maximumSessionPersistInterval = Duration.seconds(1)

    /// How long `session` waits between snapshots while it keeps changing.
    static func persistInterval(of session: Session) -> Duration {
        let held = session.outbound.inflight.count + session.outbound.queuedCount
        return min(maximumSessionPersistInterval, sessionPersistInterval * max(1, held / 100))
    }

    /// Records that a session's durable state changed; written within `persistInterval(of:)`.
    func sessionChanged(_ session: Session) {
        guard persistence != nil, session.expiryInterval > 0, sessions[session.clientID] === session else { return }
        dirtySessions[session.clientID] = session
        schedulePersist()
    }

    private func schedulePersist() {
        guard !isPersistScheduled else { return }
        isPersistScheduled = true
        _ = scheduler.schedule(after: Self.sessionPersistInterval) { [weak self] in
            guard let self else { return }
            self.isPersistScheduled = false
            self.persistDirtySessions(force: false)
            if !self.dirtySessions.isEmpty { self.schedulePersist() }
        }
    }

    /// Calls `callback` (on any thread) once every change made so far is durable: at once without a store.
    public func whenDurable(_ callback: @escaping @Sendable () -> Void) {
        guard let persistence else {
            callback()
            return
        }
        persistDirtySessions(force: true)
        persistence.whenDurable(callback)
    }

    /// Hands every pending session change to the store now (a worker about to exit).
    public func persistNow() {
        persistDirtySessions(force: true)
    }

    /// Snapshots the dirty sessions; without `force`, one snapshotted within its interval waits for a later pass.
    func persistDirtySessions(force: Bool) {
        guard let persistence, !dirtySessions.isEmpty else { return }
        let dirty = dirtySessions
        dirtySessions.removeAll(keepingCapacity: true)
        let now = scheduler.now
        for (clientID, session) in dirty where sessions[clientID] === session && session.expiryInterval > 0 {
            if !force, let last = session.lastPersisted, now.duration(since: last) < Self.persistInterval(of: session) {
                dirtySessions[clientID] = session
                continue
            }
            session.lastPersisted = now
            persistence.sessionChanged(clientID: clientID, state: snapshot(of: session))
        }
    }

    /// A session's durable state as a value (also what moves to another worker on takeover).
    func snapshot(of session: Session) -> SessionHandoff {
        SessionHandoff(
            protocolVersion: session.protocolVersion, username: session.username,
            expiryInterval: session.expiryInterval,
            subscriptions: session.subscriptionsByFilter.values
                .map { SessionHandoff.Subscription(filter: $0.filter.string, entry: $0.entry) }
                .sorted { $0.filter < $1.filter },
            inflight: session.outbound.inflight, queued: Array(session.outbound.queuedDeliveries),
            lastPacketIdentifier: session.outbound.lastIssuedPacketIdentifier,
            inboundQoS2: session.inboundQoS2.sorted())
    }

    /// At start, before accepting: the retained messages and this worker's persistent sessions from the store.
    /// Sessions come back offline, expiring `expiryInterval` from now.
    public func restore(retained: [ApplicationMessage], sessions restored: [(clientID: String, state: SessionHandoff)]) {
        var skipped = 0
        for var message in retained {
            guard let topic = try? TopicName(message.topic), message.payload.readableBytes > 0 else { continue }
            // Within the limits as they are now (every worker restores the same list, so they agree).
            guard retainedFits(message, topic: topic) else {
                skipped += 1
                continue
            }
            if message.id == nil { message.id = nextMessageID() }
            // Stamp zero: any change a running peer holds is newer.
            _ = self.retained.set(topic: topic, message: RetainedMessage(message, stamp: RetainStamp(clock: 0, node: 0)))
        }
        if skipped > 0 {
            logger.warning(
                "retained messages in the store beyond mqtt.max_retained_messages or mqtt.max_retained_bytes not restored",
                metadata: ["store.skipped": "\(skipped)"])
        }
        for (clientID, state) in restored where sessions[clientID] == nil {
            adopt(state, clientID: clientID)
            if let session = sessions[clientID] {
                scheduleExpiry(of: session)
            }
        }
        if !restored.isEmpty || !retained.isEmpty {
            logger.info(
                "restored from the store",
                metadata: ["store.retained": "\(retained.count)", "store.sessions": "\(restored.count)"])
        }
    }
}
