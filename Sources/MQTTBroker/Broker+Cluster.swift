import BrokerCore
import MQTTCodec
import NIOCore

/// What the other workers of the node ask of this broker (see `BrokerCluster`). On the broker's event loop.
extension Broker {
    /// Peers appear in the subscription tree as subscribers named with a NUL byte, which no MQTT client id can
    /// contain (§1.5.4), so matching finds local sessions and interested workers in one pass.
    static let peerPrefix = "\u{0}peer:"

    /// `member` numbers a peer's members of a shared group ("\0peer:<id>#<n>"); ordinary routes have none.
    static func peerSubscriber(_ peer: String, member: Int? = nil) -> String {
        member.map { peerPrefix + peer + "#\($0)" } ?? peerPrefix + peer
    }

    static func peerID(of subscriber: String) -> String? {
        guard subscriber.hasPrefix(peerPrefix) else { return nil }
        let rest = subscriber.dropFirst(peerPrefix.count)
        return String(rest.prefix { $0 != "#" })
    }

    /// What a worker's route stands for in this tree: it wants every QoS, and its own subscribers apply their
    /// options (No Local, Retain As Published, identifiers) when it delivers.
    private static let peerEntry = SubscriptionEntry(
        options: SubscriptionOptions(qos: .exactlyOnce, noLocal: false, retainAsPublished: true), identifier: nil)

    /// `peer` has subscribers on `filter`.
    public func addRoute(_ filter: String, peer: String) {
        guard let parsed = try? TopicFilter(filter, sharedSubscriptions: true) else {
            logger.warning("ignored an invalid route from a peer", metadata: ["cluster.peer": "\(peer)", "mqtt.filter": "\(filter)"])
            return
        }
        guard parsed.isShared else {
            _ = subscriptions.subscribe(parsed, subscriber: Self.peerSubscriber(peer), options: Self.peerEntry)
            return
        }
        // One member entry per member the peer has in the group.
        let members = remoteSharedMembers[peer, default: [:]][filter, default: 0]
        remoteSharedMembers[peer, default: [:]][filter] = members + 1
        _ = subscriptions.subscribe(
            parsed, subscriber: Self.peerSubscriber(peer, member: members), options: Self.peerEntry)
    }

    /// `peer` no longer has subscribers on `filter` (for a shared group: one member fewer).
    public func removeRoute(_ filter: String, peer: String) {
        guard let parsed = try? TopicFilter(filter, sharedSubscriptions: true) else { return }
        guard parsed.isShared else {
            _ = subscriptions.unsubscribe(parsed, subscriber: Self.peerSubscriber(peer))
            return
        }
        guard let members = remoteSharedMembers[peer]?[filter], members > 0 else { return }
        remoteSharedMembers[peer]?[filter] = members > 1 ? members - 1 : nil
        _ = subscriptions.unsubscribe(parsed, subscriber: Self.peerSubscriber(peer, member: members - 1))
    }

    /// `peer` is gone (exited or disconnected): its routes go.
    public func removePeer(_ peer: String) {
        subscriptions.removeAll(subscriber: Self.peerSubscriber(peer))
        let shared = remoteSharedMembers.removeValue(forKey: peer) ?? [:]
        for members in Set(shared.values) {
            for member in 0..<members {
                subscriptions.removeAll(subscriber: Self.peerSubscriber(peer, member: member))
            }
        }
    }

    /// Every filter this worker's clients subscribe to, for a peer that just connected: shared filters once per
    /// local member.
    public var localRoutes: [String] {
        localRouteCounts.flatMap { text, count in
            Array(repeating: text, count: Self.isSharedFilterText(text) ? count : 1)
        }
    }

    /// The retained store with its stamps, for a peer that just connected (it keeps whichever is newer).
    public var retainedSnapshot: [ForwardedPublish] {
        var result: [ForwardedPublish] = []
        retained.forEach { _, stored in
            result.append(ForwardedPublish(message: stored.message, deliver: false, sharedGroups: [], retainStamp: stored.stamp))
        }
        return result
    }

    /// Another worker's client connected with `clientID`: a session held here goes to it. An online client is
    /// disconnected (MQTT 5: 0x8E) and its will published if its session ends now; a persistent session is
    /// handed over whole, a clean start or an expiring one is ended here.
    public func release(clientID: String, cleanStart: Bool) -> SessionHandoff? {
        guard let session = sessions[clientID] else { return nil }
        takeOver(session, cleanStart: cleanStart, by: "another worker")
        session.willTimer?.cancel()
        session.willTimer = nil
        session.will = nil
        let handsOver = !cleanStart && session.expiryInterval > 0
        let state = handsOver ? snapshot(of: session) : nil
        end(session, forget: !handsOver)
        flushPending()
        return state
    }

    /// A worker leaving gracefully handed over one of its offline persistent sessions.
    public func adoptDeparted(_ handoff: SessionHandoff, clientID: String) {
        guard sessions[clientID] == nil else { return }
        adopt(handoff, clientID: clientID)
        if let session = sessions[clientID] { scheduleExpiry(of: session) }
    }

    /// This worker is leaving: every persistent session it holds (all offline by now), to hand to the others.
    public func departingSessions() -> [(clientID: String, state: SessionHandoff)] {
        sessions.values
            .filter { $0.expiryInterval > 0 && !$0.isOnline }
            .map { ($0.clientID, snapshot(of: $0)) }
    }

    /// Installs a session handed over by another worker, offline, ready for `attach` to resume it.
    func adopt(_ handoff: SessionHandoff, clientID: String) {
        if let existing = sessions[clientID] {
            // A session here as well (should not happen: claims are answered before anyone attaches): ours goes.
            end(existing, forget: false)
        }
        let session = Session(
            clientID: clientID, protocolVersion: handoff.protocolVersion, window: settings.maximumInflight,
            queueLimit: settings.maximumQueuedMessages, queueByteLimit: settings.storage.maxQueuedBytes,
            ledger: queueLedger)
        session.username = handoff.username
        session.expiryInterval = handoff.expiryInterval
        // Messages from another worker come without numbers (those from the store keep theirs).
        func numbered(_ delivery: OutboundFlow.Delivery) -> OutboundFlow.Delivery {
            var delivery = delivery
            if delivery.message.id == nil { delivery.message.id = nextMessageID() }
            return delivery
        }
        session.outbound = OutboundFlow(
            window: settings.maximumInflight, queueLimit: settings.maximumQueuedMessages,
            queueByteLimit: settings.storage.maxQueuedBytes,
            inflight: handoff.inflight.map { entry in
                var entry = entry
                entry.delivery = numbered(entry.delivery)
                return entry
            },
            queued: handoff.queued.map(numbered), lastPacketIdentifier: handoff.lastPacketIdentifier)
        session.inboundQoS2 = Set(handoff.inboundQoS2)
        sessions[clientID] = session
        for subscription in handoff.subscriptions {
            guard let filter = try? TopicFilter(subscription.filter, sharedSubscriptions: true) else { continue }
            _ = subscribe(session, filter: filter, entry: subscription.entry)
        }
        sessionChanged(session)
        queuedOnAdoption(session)
    }

    /// Before attaching `clientID`: with other workers, ask them to give up the session first (and adopt what
    /// they hand over); `proceed` runs on this loop when they all answered (at once when there are none).
    func claimSession(clientID: String, cleanStart: Bool, proceed: @escaping () -> Void) {
        guard let cluster, !cluster.peerIDs.isEmpty else {
            proceed()
            return
        }
        cluster.claim(clientID: clientID, cleanStart: cleanStart) { [weak self] handoff in
            guard let self else { return }
            if let handoff, !cleanStart {
                self.adopt(handoff, clientID: clientID)
            }
            // The adopted subscriptions' routes reach every worker before the client hears CONNACK.
            self.afterRoutesPropagate(proceed)
        }
    }

    /// Runs `work` once every peer has applied the routes this worker announced so far (at once when none
    /// was announced since the last time, or when alone).
    func afterRoutesPropagate(_ work: @escaping () -> Void) {
        guard routesAnnounced, let cluster, !cluster.peerIDs.isEmpty else {
            work()
            return
        }
        routesAnnounced = false
        cluster.barrier(completion: work)
    }
}
