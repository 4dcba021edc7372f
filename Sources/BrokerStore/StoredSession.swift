/// The whole persistent state of one client id: what `BrokerStore.saveSession(_:)` replaces and
/// `BrokerStore.loadSession(clientID:)` returns.
public struct StoredSession: Sendable, Equatable {
    public var clientID: String
    /// The worker slot that owns the session now.
    public var owner: Int
    /// The MQTT protocol level of the connection that created the session (4 or 5).
    public var protocolVersion: UInt8
    public var username: String?
    /// Session expiry interval in seconds (0xFFFFFFFF = never).
    public var expiryInterval: UInt32
    /// When the client disconnected, in seconds since the Unix epoch; nil while it is online.
    public var disconnectedAt: Double?
    /// In the order the client subscribed.
    public var subscriptions: [StoredSubscription]
    /// In delivery order.
    public var outbound: [StoredOutbound]
    /// Packet identifiers of inbound QoS 2 messages received (PUBREC sent) and not yet released by PUBREL.
    public var inboundQoS2: [UInt16]

    public init(
        clientID: String, owner: Int, protocolVersion: UInt8, username: String? = nil, expiryInterval: UInt32,
        disconnectedAt: Double? = nil, subscriptions: [StoredSubscription] = [], outbound: [StoredOutbound] = [],
        inboundQoS2: [UInt16] = []
    ) {
        self.clientID = clientID
        self.owner = owner
        self.protocolVersion = protocolVersion
        self.username = username
        self.expiryInterval = expiryInterval
        self.disconnectedAt = disconnectedAt
        self.subscriptions = subscriptions
        self.outbound = outbound
        self.inboundQoS2 = inboundQoS2
    }
}
