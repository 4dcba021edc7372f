import BrokerCore
import MQTTCodec
import NIOCore
import ProcessSupport

/// The broker-side state of one client id: its subscriptions (kept in the broker's tree under `clientID`), its
/// QoS flows, its will, and the connection currently attached to it, if any. Survives reconnects while it has not
/// expired. Owned by `Broker`, used on its event loop only.
public final class Session {
    public let clientID: String
    public internal(set) var protocolVersion: MQTTProtocolVersion
    public internal(set) var username: String?
    /// Seconds the session outlives its connection; `UInt32.max` means never.
    public internal(set) var expiryInterval: UInt32
    /// Every change of what is queued reaches the broker's totals (`QueueLedger`). The observer does not read
    /// the old value, so the flow is still modified in place.
    public internal(set) var outbound: OutboundFlow {
        didSet { reportQueue() }
    }
    /// The broker's totals of queued messages and bytes, and what this session last added to them.
    let ledger: QueueLedger
    private var reportedQueuedCount = 0
    private var reportedQueuedBytes = 0
    /// QoS 2 packet identifiers received and answered with PUBREC, waiting for PUBREL.
    var inboundQoS2: Set<UInt16> = []
    weak var controller: ConnectionController?
    var will: PendingWill?
    var willTimer: (any ScheduledWork)?
    var expiryTimer: (any ScheduledWork)?
    /// The session's subscriptions by filter text (the tree holds them too, for matching): for counting, for
    /// dropping the worker's routes when the session ends, and for moving the session to another worker.
    var subscriptionsByFilter: [String: (filter: TopicFilter, entry: SubscriptionEntry)] = [:]
    var subscriptionCount: Int { subscriptionsByFilter.count }
    /// When the store last got this session's state (see `Broker.sessionChanged`).
    var lastPersisted: MonotonicInstant?

    struct PendingWill {
        var message: ApplicationMessage
        var delay: UInt32
    }

    init(
        clientID: String, protocolVersion: MQTTProtocolVersion, window: Int, queueLimit: Int, queueByteLimit: Int,
        ledger: QueueLedger
    ) {
        self.clientID = clientID
        self.protocolVersion = protocolVersion
        self.expiryInterval = 0
        self.outbound = OutboundFlow(window: window, queueLimit: queueLimit, queueByteLimit: queueByteLimit)
        self.ledger = ledger
    }

    deinit {
        ledger.queuedCount -= reportedQueuedCount
        ledger.queuedBytes -= reportedQueuedBytes
    }

    public var isOnline: Bool { controller != nil }

    private func reportQueue() {
        let count = outbound.queuedCount
        let bytes = outbound.queuedBytes
        ledger.queuedCount += count - reportedQueuedCount
        ledger.queuedBytes += bytes - reportedQueuedBytes
        reportedQueuedCount = count
        reportedQueuedBytes = bytes
    }
}

/// What all the sessions of one broker queue together, kept current by each session as its queue changes, and
/// the order in which their messages were queued (for `mqtt.max_node_queued_bytes`: the oldest go first).
/// Owned by `Broker`, on its event loop.
final class QueueLedger {
    var queuedCount = 0
    var queuedBytes = 0
    /// (session, ticket) of every message queued, oldest first; entries whose message has left its queue are
    /// skipped when reached, and swept out when they outnumber the live ones.
    var order = CircularBuffer<(session: Session, ticket: UInt64)>()
}

/// What the broker keeps per subscription: the SUBSCRIBE options and the subscription identifier.
public struct SubscriptionEntry: Sendable, Equatable, SubscriptionDeliveryOptions {
    public var options: SubscriptionOptions
    public var identifier: Int?

    public init(options: SubscriptionOptions, identifier: Int?) {
        self.options = options
        self.identifier = identifier
    }

    public var maximumQoS: UInt8 { options.qos.rawValue }
    public var subscriptionIdentifier: Int? { identifier }
}
