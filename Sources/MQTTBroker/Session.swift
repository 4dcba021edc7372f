import BrokerCore
import MQTTCodec
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
    public internal(set) var outbound: OutboundFlow
    /// QoS 2 packet identifiers received and answered with PUBREC, waiting for PUBREL.
    var inboundQoS2: Set<UInt16> = []
    weak var controller: ConnectionController?
    var will: PendingWill?
    var willTimer: (any ScheduledWork)?
    var expiryTimer: (any ScheduledWork)?
    /// Subscription filters, to answer "is this subscription new" and to count.
    var subscriptionCount = 0

    struct PendingWill {
        var message: ApplicationMessage
        var delay: UInt32
    }

    init(clientID: String, protocolVersion: MQTTProtocolVersion, window: Int, queueLimit: Int) {
        self.clientID = clientID
        self.protocolVersion = protocolVersion
        self.expiryInterval = 0
        self.outbound = OutboundFlow(window: window, queueLimit: queueLimit)
    }

    public var isOnline: Bool { controller != nil }
}

/// What the broker keeps per subscription: the SUBSCRIBE options and the subscription identifier.
public struct SubscriptionEntry: Sendable, Equatable, SubscriptionDeliveryOptions {
    public var options: SubscriptionOptions
    public var identifier: Int?

    public var maximumQoS: UInt8 { options.qos.rawValue }
    public var subscriptionIdentifier: Int? { identifier }
}
