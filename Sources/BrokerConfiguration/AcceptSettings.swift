/// What a listener does with a connection before TLS or MQTT see it (EMQX 4.x listener keys): the socket options
/// it binds with, the PROXY protocol header it expects, and the access rules and limits that refuse a
/// connection at once.
///
/// A plain value inside `ListenerConfiguration`; the defaults are Gatehouse's behaviour without the keys.
public struct AcceptSettings: Sendable, Equatable {
    /// `access.<N>`, in `N` order; empty allows every address.
    public var access: AccessRules
    /// `max_connections`: open connections of this listener on the whole node (every worker); `nil`: no limit.
    public var maxConnections: Int?
    /// `max_conn_rate`: new connections per second on the whole node; `nil`: no limit.
    public var maxConnectionRate: Int?
    /// `max_connections_per_address` (new key): open connections of this listener from one client address (an
    /// IPv6 /64) on the whole node; `nil`: no limit.
    public var maxConnectionsPerAddress: Int?
    /// `backlog`: the listen backlog; default 1024.
    public var backlog: Int
    /// `nodelay`: TCP_NODELAY on client sockets; default true.
    public var noDelay: Bool
    /// `reuseaddr`: SO_REUSEADDR on the listening socket; default true.
    public var reuseAddress: Bool
    /// `proxy_protocol`: every connection starts with a PROXY protocol v1 or v2 header (HAProxy) naming the
    /// client; default false.
    public var proxyProtocol: Bool
    /// `proxy_protocol_timeout`: how long the header may take; default 3s (EMQX's).
    public var proxyProtocolTimeout: Duration

    public init(
        access: AccessRules = AccessRules([]), maxConnections: Int? = nil, maxConnectionRate: Int? = nil,
        backlog: Int = 1024, noDelay: Bool = true, reuseAddress: Bool = true, proxyProtocol: Bool = false,
        proxyProtocolTimeout: Duration = .seconds(3), maxConnectionsPerAddress: Int? = nil
    ) {
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.access = access
        self.maxConnections = maxConnections
        self.maxConnectionRate = maxConnectionRate
        self.backlog = backlog
        self.noDelay = noDelay
        self.reuseAddress = reuseAddress
        self.proxyProtocol = proxyProtocol
        self.proxyProtocolTimeout = proxyProtocolTimeout
    }
}
