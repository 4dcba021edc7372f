import BrokerCore
import MQTTCodec

/// The broker's view of the other worker processes of the same node, so that clients never see that there are
/// several: routes (which filters each worker's clients subscribed to), forwarded publishes, retained-store
/// changes, and session claims for client-id takeover. `WorkerCluster` implements it over Unix sockets; a
/// different transport (another machine, a message bus) can implement it without touching the broker.
///
/// Called on the broker's event loop only; completions come back on it.
public protocol BrokerCluster: AnyObject {
    /// The peers currently connected, by id.
    var peerIDs: [String] { get }
    /// This worker's clients now hold at least one subscription on `filter` (its text, `$share/…` included).
    func routeAdded(_ filter: String)
    /// … and now none.
    func routeRemoved(_ filter: String)
    /// Sends a publish (or a retained-store change) to one peer.
    func send(_ publish: ForwardedPublish, to peer: String)
    /// Asks every peer to give up the session of `clientID` (disconnecting its client there); `completion` gets
    /// the session state a peer handed over, if one did.
    func claim(clientID: String, cleanStart: Bool, completion: @escaping (SessionHandoff?) -> Void)
    /// `completion` runs once every peer has applied everything sent to it before this call (route changes
    /// above all): a SUBACK or CONNACK after it means any worker's next publish reaches the new subscription.
    func barrier(completion: @escaping () -> Void)
}

/// The order of retained-store changes across workers (a Lamport clock and the writer's node id): every worker
/// applies a change only if it is newer than what it holds, so all converge on the same message per topic.
public struct RetainStamp: Sendable, Hashable, Comparable {
    public var clock: UInt64
    public var node: UInt64

    public init(clock: UInt64, node: UInt64) {
        self.clock = clock
        self.node = node
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.clock, lhs.node) < (rhs.clock, rhs.node)
    }
}

/// A publish on its way to another worker.
public struct ForwardedPublish: Sendable, Equatable {
    /// A shared group the receiving worker serves with one of its own members.
    public struct SharedGroup: Sendable, Hashable {
        public var shareName: String
        /// The group's full filter text (`$share/<name>/<filter>`).
        public var filter: String

        public init(shareName: String, filter: String) {
            self.shareName = shareName
            self.filter = filter
        }
    }

    public var message: ApplicationMessage
    /// Deliver to the receiver's ordinary subscriptions (false: only a retained-store change).
    public var deliver: Bool
    public var sharedGroups: [SharedGroup]
    /// Set when the message changes the retained store (payload empty: removes it).
    public var retainStamp: RetainStamp?

    public init(message: ApplicationMessage, deliver: Bool, sharedGroups: [SharedGroup], retainStamp: RetainStamp?) {
        self.message = message
        self.deliver = deliver
        self.sharedGroups = sharedGroups
        self.retainStamp = retainStamp
    }
}

/// A persistent session moving from one worker to another (client-id takeover across workers): subscriptions,
/// the QoS 1/2 messages in flight and queued, and the QoS 2 identifiers received and not yet released.
public struct SessionHandoff: Sendable, Equatable {
    public var protocolVersion: MQTTProtocolVersion
    public var username: String?
    public var expiryInterval: UInt32
    public var subscriptions: [Subscription]
    public var inflight: [OutboundFlow.Inflight]
    public var queued: [OutboundFlow.Delivery]
    public var lastPacketIdentifier: UInt16
    public var inboundQoS2: [UInt16]

    public struct Subscription: Sendable, Equatable {
        public var filter: String
        public var entry: SubscriptionEntry

        public init(filter: String, entry: SubscriptionEntry) {
            self.filter = filter
            self.entry = entry
        }
    }

    public init(
        protocolVersion: MQTTProtocolVersion, username: String?, expiryInterval: UInt32, subscriptions: [Subscription],
        inflight: [OutboundFlow.Inflight], queued: [OutboundFlow.Delivery], lastPacketIdentifier: UInt16,
        inboundQoS2: [UInt16]
    ) {
        self.protocolVersion = protocolVersion
        self.username = username
        self.expiryInterval = expiryInterval
        self.subscriptions = subscriptions
        self.inflight = inflight
        self.queued = queued
        self.lastPacketIdentifier = lastPacketIdentifier
        self.inboundQoS2 = inboundQoS2
    }
}
