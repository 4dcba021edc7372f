import BrokerCore
import Logging
import MQTTCodec
import NIOCore
import ProcessSupport

/// One worker's MQTT broker: sessions by client id, the subscription tree, retained messages, and routing.
///
/// Owns no sockets: connections reach it through `ConnectionController`s, time through a `BrokerScheduler`.
/// Confined to the worker's event loop (one thread), so it needs no locks.
public final class Broker {
    public internal(set) var settings: BrokerSettings
    public internal(set) var access: AccessPolicy
    let scheduler: any BrokerScheduler
    let logger: Logger

    var sessions: [String: Session] = [:]
    var subscriptions = SubscriptionTree<String, SubscriptionEntry>()
    var retained = RetainedStore<RetainedMessage>()
    /// Controllers with packets written since the last flush (see `flushPending`).
    var pendingFlush: [ObjectIdentifier: ConnectionController] = [:]
    private var isFlushScheduled = false
    private var matches = SubscriptionTree<String, SubscriptionEntry>.Matches()
    private var mergeBuffer: [MergedDelivery] = []
    private var assignedIdentifierCounter: UInt64 = 0
    public internal(set) var statistics = Statistics()

    /// The other workers of this node, when there are any (see `BrokerCluster`).
    public weak var cluster: (any BrokerCluster)?
    /// Where retained messages and persistent sessions are kept across crashes and restarts, if anywhere.
    public var persistence: (any BrokerPersistence)?
    /// Persistent sessions changed during this event-loop turn (see `sessionChanged`).
    var dirtySessions: [String: Session] = [:]
    var isPersistScheduled = false
    /// This process's id in retain stamps.
    let nodeID: UInt64 = UInt64.random(in: 1...UInt64.max)
    /// The Lamport clock of retained-store changes.
    var retainClock: UInt64 = 0
    /// How many local subscriptions each filter text has: a route is announced to peers on 0 → 1, withdrawn on
    /// 1 → 0.
    var localRouteCounts: [String: Int] = [:]
    /// How many members each peer has in each shared group it announced (peer → filter text → count).
    var remoteSharedMembers: [String: [String: Int]] = [:]
    /// A route was announced to peers since the last barrier (see `afterRoutesPropagate`).
    var routesAnnounced = false
    /// What all sessions queue, and in which order (see `Broker+Limits`).
    let queueLedger = QueueLedger()
    /// The message numbers this worker hands out next (`next..<end`, a block the store reserved).
    var messageIDs: Range<UInt64> = 0..<0

    /// Counters for status and metrics.
    public struct Statistics: Sendable, Equatable {
        public var messagesReceived = 0
        public var messagesSent = 0
        public var messagesDropped = 0
        public var connections = 0
        /// How often each limit held: messages dropped and requests refused at each storage limit, by the limit's
        /// key (`mqtt.max_queued_bytes`, …), and the connection limits' events (`LimitEvent`, by raw value).
        public var limitHits: [String: Int] = [:]
    }

    public init(settings: BrokerSettings, access: AccessPolicy, scheduler: any BrokerScheduler, logger: Logger) {
        self.settings = settings
        self.access = access
        self.scheduler = scheduler
        self.logger = logger
    }

    /// New limits and access rules (reload). Live sessions keep their negotiated limits.
    public func update(settings: BrokerSettings, access: AccessPolicy) {
        self.settings = settings
        self.access = access
    }

    public var sessionCount: Int { sessions.count }
    public var retainedCount: Int { retained.count }
    public var subscriptionCount: Int { subscriptions.count }

    /// Writes everything queued on every connection since the last call: one flush per connection per batch of
    /// input, however many messages were routed to it.
    public func flushPending() {
        guard !pendingFlush.isEmpty else { return }
        let controllers = pendingFlush.values
        pendingFlush.removeAll(keepingCapacity: true)
        for controller in controllers { controller.flushNow() }
    }

    func needsFlush(_ controller: ConnectionController) {
        if pendingFlush.isEmpty && !isFlushScheduled {
            // One flush per connection for everything routed while handling this batch of readiness events:
            // ten publishers ready at once cost their common subscriber one write, not ten.
            isFlushScheduled = true
            scheduler.executeAfterCurrentEvents { [weak self] in
                guard let self else { return }
                self.isFlushScheduled = false
                self.flushPending()
            }
        }
        pendingFlush[ObjectIdentifier(controller)] = controller
    }

    // MARK: Sessions

    /// A fresh client identifier for MQTT 5 clients (and 3.1.1 clean sessions) that sent none.
    func assignClientIdentifier() -> String {
        assignedIdentifierCounter += 1
        var random = SystemRandomNumberGenerator()
        let suffix = String(random.next() as UInt64, radix: 36)
        return "gatehouse-\(assignedIdentifierCounter)-\(suffix)"
    }

    /// Attaches a connection to the session of `clientID`: takes over a connected one, resumes or discards an
    /// existing one per `cleanStart`. Returns the session and whether it was present.
    func attach(
        _ controller: ConnectionController, clientID: String, cleanStart: Bool, version: MQTTProtocolVersion,
        expiryInterval: UInt32, username: String?
    ) -> (Session, sessionPresent: Bool) {
        var existing = sessions[clientID]
        if let session = existing {
            takeOver(session, cleanStart: cleanStart, by: "another connection")
        }
        if let session = existing {
            session.expiryTimer?.cancel()
            session.expiryTimer = nil
            if let pending = session.willTimer {
                // Reconnected within the will delay: the will is not sent (§3.1.3.2.2).
                pending.cancel()
                session.willTimer = nil
                session.will = nil
            }
            if cleanStart {
                discard(session)
                existing = nil
            }
        }
        let window = min(controller.clientReceiveMaximum, settings.maximumInflight)
        if let session = existing {
            session.protocolVersion = version
            session.username = username
            session.expiryInterval = expiryInterval
            session.outbound.window = max(1, window)
            session.outbound.queueLimit = settings.maximumQueuedMessages
            session.outbound.queueByteLimit = settings.storage.maxQueuedBytes
            session.controller = controller
            sessionChanged(session)
            return (session, true)
        }
        let session = Session(
            clientID: clientID, protocolVersion: version, window: window, queueLimit: settings.maximumQueuedMessages,
            queueByteLimit: settings.storage.maxQueuedBytes, ledger: queueLedger)
        session.username = username
        session.expiryInterval = expiryInterval
        session.controller = controller
        sessions[clientID] = session
        sessionChanged(session)
        return (session, false)
    }

    /// Takeover: the session's connection (if any) goes with DISCONNECT 0x8E (MQTT 5), its will only if the
    /// session ends now (as Mosquitto does).
    func takeOver(_ session: Session, cleanStart: Bool, by taker: String) {
        guard let previous = session.controller else { return }
        let sessionEnds = cleanStart || session.expiryInterval == 0
        previous.takenOver()
        session.controller = nil
        if sessionEnds, let will = session.will {
            session.will = nil
            publish(will.message)
        }
        session.will = nil
        logger.info(
            "client taken over",
            metadata: [
                "mqtt.client_id": "\(session.clientID)", "tls.peer": "\(previous.peerDescription)", "by": "\(taker)",
            ])
    }

    /// The connection of `session` is gone. `publishWill`: it ended without a normal DISCONNECT.
    func detach(_ session: Session, controller: ConnectionController, publishWill: Bool) {
        guard session.controller === controller else { return }
        session.controller = nil
        pendingFlush.removeValue(forKey: ObjectIdentifier(controller))
        if publishWill, let will = session.will {
            let delay = min(will.delay, session.expiryInterval)
            if delay == 0 {
                session.will = nil
                publish(will.message)
            } else {
                session.willTimer = scheduler.schedule(after: .seconds(Int64(delay))) { [weak self, weak session] in
                    guard let self, let session, let will = session.will else { return }
                    session.will = nil
                    session.willTimer = nil
                    self.publish(will.message)
                    self.flushPending()
                }
            }
        } else {
            session.will = nil
        }
        if session.expiryInterval == 0 {
            end(session)
        } else {
            scheduleExpiry(of: session)
            sessionChanged(session)
        }
    }

    /// An offline persistent session ends `expiryInterval` from now (never for UInt32.max).
    func scheduleExpiry(of session: Session) {
        guard session.expiryInterval != 0, session.expiryInterval != UInt32.max else { return }
        session.expiryTimer?.cancel()
        session.expiryTimer = scheduler.schedule(after: .seconds(Int64(session.expiryInterval))) {
            [weak self, weak session] in
            guard let self, let session, !session.isOnline else { return }
            self.logger.debug("session expired", metadata: ["mqtt.client_id": "\(session.clientID)"])
            self.end(session)
            self.flushPending()
        }
    }

    /// The session is over: a pending will goes out now, subscriptions and queued messages go away (and from the
    /// store, unless `forget` is false: a session handed to another worker is saved there under its new owner).
    func end(_ session: Session, forget: Bool = true) {
        if let will = session.will {
            session.willTimer?.cancel()
            session.willTimer = nil
            session.will = nil
            publish(will.message)
        }
        discard(session, forget: forget)
    }

    private func discard(_ session: Session, forget: Bool = true) {
        if forget, sessions[session.clientID] === session {
            dirtySessions.removeValue(forKey: session.clientID)
            persistence?.sessionEnded(clientID: session.clientID)
        }
        session.expiryTimer?.cancel()
        session.expiryTimer = nil
        subscriptions.removeAll(subscriber: session.clientID)
        for text in session.subscriptionsByFilter.keys {
            localRouteRemoved(text)
        }
        session.subscriptionsByFilter.removeAll()
        session.outbound.reset()
        session.inboundQoS2.removeAll()
        if sessions[session.clientID] === session {
            sessions.removeValue(forKey: session.clientID)
        }
    }

    // MARK: Publishing

    /// Routes a message published on this worker to every matching subscription here and on the other workers,
    /// and updates the retained store (everywhere) when it is retained.
    func publish(_ message: ApplicationMessage) {
        statistics.messagesReceived += 1
        guard let topic = try? TopicName(message.topic) else { return }
        guard topic.levelCount <= settings.storage.maxTopicLevels else {
            // A client's PUBLISH is refused before it gets here; this is a will set at CONNECT.
            countLimit(.maxTopicLevels)
            logger.info(
                "message to a topic deeper than mqtt.max_topic_levels not published",
                metadata: ["mqtt.client_id": "\(message.publisher ?? "")", "mqtt.topic_levels": "\(topic.levelCount)"])
            return
        }
        var retainStamp: RetainStamp?
        if message.retain && settings.retainAvailable && retainedFits(message, topic: topic) {
            retainClock += 1
            let stamp = RetainStamp(clock: retainClock, node: nodeID)
            retainStamp = stamp
            applyRetained(message, topic: topic, stamp: stamp)
            persistence?.retainedChanged(
                topic: message.topic, message: message.payload.readableBytes == 0 ? nil : message)
        }
        route(message, topic: topic, forwarded: nil, retainStamp: retainStamp)
    }

    /// A publish another worker forwarded: a retained-store change and/or delivery to this worker's own
    /// subscribers (ordinary ones, and the shared groups the sender picked this worker for). Never forwarded again.
    public func receive(_ forwarded: ForwardedPublish) {
        guard let topic = try? TopicName(forwarded.message.topic) else { return }
        if let stamp = forwarded.retainStamp, settings.retainAvailable {
            retainClock = max(retainClock, stamp.clock)
            if let current = retained.message(for: topic), current.stamp >= stamp {
                // Ours is newer: keep it.
            } else {
                applyRetained(forwarded.message, topic: topic, stamp: stamp)
                // Every worker writes what it applied: each one's last write of a topic is the newest it knows,
                // so whichever process commits last, the file ends with the newest message (or its removal).
                persistence?.retainedChanged(
                    topic: forwarded.message.topic,
                    message: forwarded.message.payload.readableBytes == 0 ? nil : forwarded.message)
            }
        }
        if forwarded.deliver || !forwarded.sharedGroups.isEmpty {
            route(forwarded.message, topic: topic, forwarded: forwarded, retainStamp: nil)
            flushPending()
        }
    }

    private func applyRetained(_ message: ApplicationMessage, topic: TopicName, stamp: RetainStamp) {
        if message.payload.readableBytes == 0 {
            _ = retained.remove(topic: topic)
        } else {
            // A decoded payload is a slice of the whole read buffer: keep only its own bytes, under a number of
            // its own (sessions it is sent to from the store share this copy).
            var cache: ApplicationMessage?
            var stored = message
            stored.id = nil
            stored = held(stored, cache: &cache)
            _ = retained.set(topic: topic, message: RetainedMessage(stored, stamp: stamp))
        }
    }

    /// Delivers to local subscribers; for a local publish (`forwarded == nil`) also forwards to the workers that
    /// have a matching route (and, for a retained-store change, to every worker).
    private func route(
        _ message: ApplicationMessage, topic: TopicName, forwarded: ForwardedPublish?, retainStamp: RetainStamp?
    ) {
        let isLocal = forwarded == nil
        var peerTargets: [String: [ForwardedPublish.SharedGroup]] = [:]
        defer {
            if isLocal, let cluster {
                let peers = cluster.peerIDs
                if !peers.isEmpty && (retainStamp != nil || !peerTargets.isEmpty) {
                    for peer in peers {
                        let groups = peerTargets[peer]
                        guard groups != nil || retainStamp != nil else { continue }
                        cluster.send(
                            ForwardedPublish(
                                message: message, deliver: groups != nil, sharedGroups: groups ?? [],
                                retainStamp: retainStamp),
                            to: peer)
                    }
                }
            }
        }
        // Reuse one match buffer; a publish nested in a delivery (a will) gets a fresh one.
        var matches = self.matches
        self.matches = .init()
        defer {
            matches.removeAll()
            self.matches = matches
        }
        subscriptions.match(topic: topic, into: &matches)
        if matches.isEmpty { return }
        let now = scheduler.now
        // The copy that QoS 1/2 deliveries hold, made on the first one (see `held`).
        var heldCopy: ApplicationMessage?
        let deliversOrdinary = forwarded?.deliver ?? true

        // Ordinary subscriptions: one delivery per subscriber, at the highest QoS of its matching subscriptions,
        // with every matching subscription identifier (§3.3.4). No Local subscriptions of the publisher don't count.
        // Most topics match a handful of subscriptions, so merging searches linearly in a reused buffer.
        var merged = mergeBuffer
        mergeBuffer = []
        defer {
            merged.removeAll(keepingCapacity: true)
            mergeBuffer = merged
        }
        for match in matches.subscriptions where deliversOrdinary {
            if let peer = Self.peerID(of: match.subscriber) {
                if isLocal && peerTargets[peer] == nil { peerTargets[peer] = [] }
                continue
            }
            let options = match.options.options
            if options.noLocal && match.subscriber == message.publisher { continue }
            if let position = merged.count > 1 ? merged.firstIndex(where: { $0.subscriber == match.subscriber })
                : (merged.first?.subscriber == match.subscriber ? 0 : nil)
            {
                merged[position].qos = max(merged[position].qos, options.qos)
                merged[position].retainAsPublished = merged[position].retainAsPublished || options.retainAsPublished
                if let identifier = match.options.identifier { merged[position].identifiers.append(identifier) }
            } else {
                merged.append(
                    MergedDelivery(
                        subscriber: match.subscriber, qos: options.qos, retainAsPublished: options.retainAsPublished,
                        identifiers: match.options.identifier.map { [$0] } ?? []))
            }
        }
        for entry in merged {
            guard let session = sessions[entry.subscriber] else { continue }
            deliver(
                message, to: session, maximumQoS: entry.qos,
                retain: entry.retainAsPublished && message.retain, identifiers: entry.identifiers, now: now,
                held: &heldCopy)
        }

        // Shared groups: one member each, round robin over this worker's members and the workers that have
        // members (each counts as one), preferring members that are online. A forwarded publish serves only the
        // groups the sender picked this worker for, with a local member.
        for group in matches.sharedGroups {
            if let forwarded, !forwarded.sharedGroups.contains(where: { $0.filter == group.filter.string }) {
                continue
            }
            let member =
                subscriptions.nextSharedMember(of: group) {
                    if Self.peerID(of: $0.subscriber) != nil { return isLocal }
                    return self.sessions[$0.subscriber]?.isOnline == true
                }
                ?? subscriptions.nextSharedMember(of: group) { self.sessions[$0.subscriber] != nil }
            guard let member else { continue }
            if let peer = Self.peerID(of: member.subscriber) {
                peerTargets[peer, default: []].append(
                    ForwardedPublish.SharedGroup(shareName: group.shareName, filter: group.filter.string))
                continue
            }
            guard let session = sessions[member.subscriber] else { continue }
            if member.options.options.noLocal && member.subscriber == message.publisher { continue }
            deliver(
                message, to: session, maximumQoS: member.options.options.qos,
                retain: member.options.options.retainAsPublished && message.retain,
                identifiers: member.options.identifier.map { [$0] } ?? [], now: now, held: &heldCopy)
        }
    }

    /// `held`: the copy QoS 1/2 deliveries of this message share (made by the first one that needs it).
    func deliver(
        _ message: ApplicationMessage, to session: Session, maximumQoS: QoS, retain: Bool, identifiers: [Int],
        now: MonotonicInstant, held heldCopy: inout ApplicationMessage?
    ) {
        guard access.canReceive(topic: message.topic, clientID: session.clientID, username: session.username) else {
            return
        }
        var delivery = OutboundFlow.Delivery(
            message: message, qos: min(message.qos, maximumQoS), retain: retain, subscriptionIdentifiers: identifiers)
        if delivery.qos == .atMostOnce {
            // QoS 0 never waits: straight to an online client (unless it is busy), nowhere for an offline one.
            session.controller?.writeImmediately(delivery, now: now)
            return
        }
        // A client over its listener's high_watermark gets nothing new: QoS 1/2 waits in the session queue.
        let canSend = session.controller.map { !$0.isBusy } ?? false
        if session.isOnline && !canSend { count(.highWatermarkQoS12Held) }
        // It may wait (in flight or queued): hold the shared copy, not the read buffer it is a slice of.
        delivery.message = held(message, cache: &heldCopy)
        let dropped = session.outbound.droppedCount
        let droppedForBytes = session.outbound.droppedForBytesCount
        let ticket = session.outbound.nextTicket
        let outputs = session.outbound.enqueue(delivery, isOnline: canSend, now: now)
        if session.outbound.droppedCount != dropped {
            let forBytes = session.outbound.droppedForBytesCount - droppedForBytes
            statistics.messagesDropped += session.outbound.droppedCount - dropped
            countLimit(.maxQueuedBytes, forBytes)
            countLimit(.maxQueuedMessages, session.outbound.droppedCount - dropped - forBytes)
            logger.debug(
                "queue full, dropped the oldest message",
                metadata: [
                    "mqtt.client_id": "\(session.clientID)", "mqtt.queue_limit": "\(session.outbound.queueLimit)",
                    "mqtt.queue_byte_limit": "\(session.outbound.queueByteLimit)",
                ])
        }
        if let controller = session.controller, !outputs.isEmpty {
            controller.write(outputs, now: now)
        }
        sessionChanged(session)
        if session.outbound.nextTicket != ticket {
            queued(session, ticket: ticket)
        }
    }

    // MARK: Subscriptions

    /// Adds or replaces one subscription; returns whether it is new (for Retain Handling 1).
    func subscribe(_ session: Session, filter: TopicFilter, entry: SubscriptionEntry) -> Bool {
        let isNew = subscriptions.subscribe(filter, subscriber: session.clientID, options: entry)
        session.subscriptionsByFilter[filter.string] = (filter, entry)
        if isNew { localRouteAdded(filter.string) }
        sessionChanged(session)
        return isNew
    }

    func unsubscribe(_ session: Session, filter: TopicFilter) -> Bool {
        let existed = subscriptions.unsubscribe(filter, subscriber: session.clientID)
        if existed {
            session.subscriptionsByFilter.removeValue(forKey: filter.string)
            localRouteRemoved(filter.string)
            sessionChanged(session)
        }
        return existed
    }

    /// An ordinary filter is announced once, however many local subscribers it has; a shared one once per
    /// member, so that a shared group balances over every member on every worker.
    private func localRouteAdded(_ text: String) {
        let count = localRouteCounts[text, default: 0] + 1
        localRouteCounts[text] = count
        if count == 1 || Self.isSharedFilterText(text), let cluster {
            cluster.routeAdded(text)
            routesAnnounced = true
        }
    }

    private func localRouteRemoved(_ text: String) {
        guard let count = localRouteCounts[text] else { return }
        if count <= 1 {
            localRouteCounts.removeValue(forKey: text)
        } else {
            localRouteCounts[text] = count - 1
        }
        if count <= 1 || Self.isSharedFilterText(text) {
            cluster?.routeRemoved(text)
        }
    }

    static func isSharedFilterText(_ text: String) -> Bool {
        text.hasPrefix("$share/")
    }

    /// Sends the retained messages matching a new subscription, flagged retained (§3.3.1.3).
    func sendRetained(to session: Session, filter: TopicFilter, maximumQoS: QoS, identifier: Int?) {
        let now = scheduler.now
        var expired: [TopicName] = []
        retained.forEachMatch(filter: filter) { topic, stored in
            if stored.message.isExpired(at: now) {
                expired.append(topic)
                return
            }
            // Retained messages are held copies already (numbered when stored).
            var heldCopy: ApplicationMessage?
            deliver(
                stored.message, to: session, maximumQoS: maximumQoS, retain: true,
                identifiers: identifier.map { [$0] } ?? [], now: now, held: &heldCopy)
        }
        for topic in expired { _ = retained.remove(topic: topic) }
    }

    func countSent(_ count: Int) {
        statistics.messagesSent += count
    }

    /// Deliveries dropped because they could not go to their client (too large for it, or for MQTT).
    func countDropped(_ count: Int) {
        statistics.messagesDropped += count
    }

    /// A connection limit held (for status and the metrics).
    public func count(_ event: LimitEvent, by count: Int = 1) {
        statistics.limitHits[event.rawValue, default: 0] += count
    }

    func connectionOpened() { statistics.connections += 1 }
    func connectionClosed() { statistics.connections -= 1 }
}

/// One subscriber's share of a publish after merging its overlapping subscriptions.
struct MergedDelivery {
    var subscriber: String
    var qos: QoS
    var retainAsPublished: Bool
    var identifiers: [Int]
}

/// A retained message with its size, for the store's byte count, and the stamp that orders it across workers.
struct RetainedMessage: RetainedMessageSizing {
    var message: ApplicationMessage
    var stamp: RetainStamp

    init(_ message: ApplicationMessage, stamp: RetainStamp) {
        self.message = message
        self.stamp = stamp
    }

    var retainedByteCount: Int { message.byteCount }
}
