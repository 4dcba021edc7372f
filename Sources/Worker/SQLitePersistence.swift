#if canImport(Glibc)
import Glibc
#endif
import BrokerStore
import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import ProcessSupport

/// The broker's `BrokerPersistence` on the node's SQLite file (`<node.data_dir>/gatehouse.db`, shared by all
/// workers): retained messages, and the persistent sessions this worker owns (by slot). Maps broker values to
/// the store's plain ones; the store batches the writes on its own thread, so nothing here blocks the loop.
///
/// `@unchecked Sendable`: made and loaded on the main thread, then handed to the event loop once and used only
/// there (`store` itself is Sendable).
final class SQLitePersistence: BrokerPersistence, @unchecked Sendable {
    let store: BrokerStore
    let slot: Int
    private let logger: Logger
    private var reportedError = false

    init(store: BrokerStore, slot: Int, logger: Logger) {
        self.store = store
        self.slot = slot
        self.logger = logger
    }

    static func databasePath(dataDirectory: String) -> String {
        dataDirectory + "/gatehouse.db"
    }

    // MARK: BrokerPersistence

    func retainedChanged(topic: String, message: ApplicationMessage?) {
        if let message {
            store.setRetained(Self.stored(message))
        } else {
            store.removeRetained(topic: topic)
        }
        reportWriteError()
    }

    func sessionChanged(clientID: String, state: SessionHandoff) {
        store.saveSession(Self.stored(clientID: clientID, owner: slot, state: state))
        reportWriteError()
    }

    func sessionEnded(clientID: String) {
        store.deleteSession(clientID: clientID)
        reportWriteError()
    }

    func whenDurable(_ callback: @escaping @Sendable () -> Void) {
        store.whenCommitted(callback)
    }

    func reserveMessageIDs() -> Range<UInt64> {
        do {
            let range = try store.reserveMessageIDs()
            return UInt64(range.lowerBound)..<UInt64(range.upperBound)
        } catch {
            // Without a block from the store, numbers from a random one far above any the store hands out
            // (blocks count from 1): a clash would need 2^22 reservations and the same draw.
            logger.error("cannot reserve message numbers in the store", metadata: ["error": "\(error)"])
            let block = UInt64.random(in: (1 << 21)..<(1 << 22))
            return (block << 40)..<((block + 1) << 40)
        }
    }

    /// A failing store is logged once per episode (the store retries, nothing is dropped).
    private func reportWriteError() {
        if let error = store.lastWriteError {
            if !reportedError {
                reportedError = true
                logger.error("cannot write to the store; retrying", metadata: ["error": "\(error)"])
            }
        } else if reportedError {
            reportedError = false
            logger.info("the store is writable again")
        }
    }

    // MARK: Loading

    /// The retained messages, and the sessions this worker restores: those it owns, and (slot 0) those of slots
    /// that no longer exist after the node was scaled down.
    func load(workerCount: Int) throws(BrokerStoreError) -> (
        retained: [ApplicationMessage], sessions: [(clientID: String, state: SessionHandoff)]
    ) {
        let retained = try store.loadRetained().map(Self.message)
        let sessions = try store.loadSessions()
            .filter { $0.owner == slot || (slot == 0 && ($0.owner >= workerCount || $0.owner < 0)) }
            .compactMap { stored -> (clientID: String, state: SessionHandoff)? in
                guard let state = Self.handoff(stored) else { return nil }
                return (stored.clientID, state)
            }
        return (retained, sessions)
    }

    // MARK: Mapping

    static func stored(_ message: ApplicationMessage) -> StoredMessage {
        var properties = ByteBuffer()
        message.properties.encodeForwarded(into: &properties)
        return StoredMessage(
            topic: message.topic, payload: message.payload, qos: message.qos.rawValue,
            retain: message.retain, properties: Array(properties.readableBytesView),
            expiresAt: message.expiresAt.map(wallClock(of:)), id: message.id.map { Int64(bitPattern: $0) })
    }

    static func message(_ stored: StoredMessage) -> ApplicationMessage {
        var buffer = ByteBuffer(bytes: stored.properties)
        let properties = (try? MQTTProperties.decodeForwarded(from: &buffer)) ?? MQTTProperties()
        var message = ApplicationMessage(
            topic: stored.topic, payload: stored.payload, qos: QoS(rawValue: stored.qos) ?? .atMostOnce,
            retain: stored.retain, properties: properties, expiresAt: stored.expiresAt.map(monotonic(of:)))
        message.id = stored.id.map { UInt64(bitPattern: $0) }
        return message
    }

    static func stored(clientID: String, owner: Int, state: SessionHandoff) -> StoredSession {
        func outbound(_ delivery: OutboundFlow.Delivery, stage: StoredOutbound.Stage, identifier: UInt16?) -> StoredOutbound {
            StoredOutbound(
                stage: stage, packetIdentifier: identifier, qos: delivery.qos.rawValue, retain: delivery.retain,
                subscriptionIdentifiers: delivery.subscriptionIdentifiers, message: stored(delivery.message))
        }
        let inflight = state.inflight.map {
            outbound($0.delivery, stage: $0.stage == .published ? .published : .released, identifier: $0.packetIdentifier)
        }
        let queued = state.queued.map { outbound($0, stage: .queued, identifier: nil) }
        return StoredSession(
            clientID: clientID, owner: owner, protocolVersion: state.protocolVersion.rawValue, username: state.username,
            expiryInterval: state.expiryInterval, disconnectedAt: nil,
            subscriptions: state.subscriptions.map {
                StoredSubscription(filter: $0.filter, options: optionsByte($0.entry.options), identifier: $0.entry.identifier)
            },
            outbound: inflight + queued, inboundQoS2: state.inboundQoS2)
    }

    static func handoff(_ stored: StoredSession) -> SessionHandoff? {
        guard let version = MQTTProtocolVersion(rawValue: stored.protocolVersion) else { return nil }
        var inflight: [OutboundFlow.Inflight] = []
        var queued: [OutboundFlow.Delivery] = []
        for entry in stored.outbound {
            let delivery = OutboundFlow.Delivery(
                message: message(entry.message), qos: QoS(rawValue: entry.qos) ?? .atLeastOnce, retain: entry.retain,
                subscriptionIdentifiers: entry.subscriptionIdentifiers)
            switch entry.stage {
            case .queued:
                queued.append(delivery)
            case .published, .released:
                guard let identifier = entry.packetIdentifier else {
                    queued.append(delivery)
                    continue
                }
                inflight.append(.init(
                    packetIdentifier: identifier, delivery: delivery, stage: entry.stage == .published ? .published : .released))
            }
        }
        return SessionHandoff(
            protocolVersion: version, username: stored.username, expiryInterval: stored.expiryInterval,
            subscriptions: stored.subscriptions.map {
                SessionHandoff.Subscription(filter: $0.filter, entry: SubscriptionEntry(options: options($0.options), identifier: $0.identifier))
            },
            inflight: inflight, queued: queued, lastPacketIdentifier: inflight.map(\.packetIdentifier).max() ?? 0,
            inboundQoS2: stored.inboundQoS2)
    }

    /// The MQTT 5 subscription options byte (§3.8.3.1).
    static func optionsByte(_ options: SubscriptionOptions) -> UInt8 {
        options.qos.rawValue | (options.noLocal ? 0x04 : 0) | (options.retainAsPublished ? 0x08 : 0)
            | (options.retainHandling.rawValue << 4)
    }

    static func options(_ byte: UInt8) -> SubscriptionOptions {
        SubscriptionOptions(
            qos: QoS(rawValue: byte & 0x03) ?? .atMostOnce, noLocal: byte & 0x04 != 0, retainAsPublished: byte & 0x08 != 0,
            retainHandling: SubscriptionOptions.RetainHandling(rawValue: (byte >> 4) & 0x03) ?? .sendOnSubscribe)
    }

    /// Message expiry is kept on the monotonic clock in memory and as wall-clock time on disk.
    static func wallClock(of instant: MonotonicInstant) -> Double {
        let now = MonotonicInstant.now()
        let offset = instant >= now ? instant.duration(since: now).seconds : -now.duration(since: instant).seconds
        return WallClock.seconds + offset
    }

    static func monotonic(of wall: Double) -> MonotonicInstant {
        let remaining = max(0, wall - WallClock.seconds)
        return MonotonicInstant.now() + .milliseconds(Int64(remaining * 1000))
    }
}
