import BrokerConfiguration
import MQTTCodec

/// The limits and switches of one broker, from the `mqtt.*` keys. A value; a reload hands a new one.
public struct BrokerSettings: Sendable, Equatable {
    public var maximumPacketSize: Int
    /// Our Receive Maximum, and the cap on unacknowledged QoS 1/2 messages we send to one client.
    public var maximumInflight: Int
    public var maximumQueuedMessages: Int
    public var retainAvailable: Bool
    public var maximumSessionExpiryInterval: UInt32
    public var maximumTopicAlias: UInt16
    public var sharedSubscriptionAvailable: Bool
    /// How long a new connection may take to send CONNECT.
    public var connectTimeout: Duration
    /// Queue, retained, subscription and topic-depth bounds (`mqtt.max_queued_bytes`, …).
    public var storage = StorageLimits()
    /// This worker's share of `mqtt.max_node_queued_bytes`: what all its sessions may queue together.
    public var workerQueuedBytes = StorageLimits.defaultMaxNodeQueuedBytes
    /// The topic bytes the aliases of one connection may hold, in each direction (`mqtt.max_topic_alias_bytes`).
    public var maximumTopicAliasBytes: Int
    /// The largest packet accepted before the CONNECT is (`mqtt.max_connect_packet_size`): the CONNECT itself.
    public var maximumConnectPacketSize: Int

    public init(
        maximumPacketSize: Int = 1 << 20, maximumInflight: Int = 32, maximumQueuedMessages: Int = 1000,
        retainAvailable: Bool = true, maximumSessionExpiryInterval: UInt32 = 7200, maximumTopicAlias: UInt16 = 10,
        sharedSubscriptionAvailable: Bool = true, connectTimeout: Duration = .seconds(10),
        maximumTopicAliasBytes: Int = MQTTSettings.defaultMaxTopicAliasBytes,
        maximumConnectPacketSize: Int = MQTTSettings.defaultMaxConnectPacketSize
    ) {
        self.maximumTopicAliasBytes = maximumTopicAliasBytes
        self.maximumConnectPacketSize = maximumConnectPacketSize
        self.maximumPacketSize = maximumPacketSize
        self.maximumInflight = maximumInflight
        self.maximumQueuedMessages = maximumQueuedMessages
        self.retainAvailable = retainAvailable
        self.maximumSessionExpiryInterval = maximumSessionExpiryInterval
        self.maximumTopicAlias = maximumTopicAlias
        self.sharedSubscriptionAvailable = sharedSubscriptionAvailable
        self.connectTimeout = connectTimeout
    }

    public init(_ settings: MQTTSettings) {
        self.init(
            maximumPacketSize: settings.maxPacketSize,
            maximumInflight: settings.maxInflight,
            maximumQueuedMessages: settings.maxQueuedMessages,
            retainAvailable: settings.retainAvailable,
            maximumSessionExpiryInterval: UInt32(clamping: settings.maxSessionExpiryInterval.components.seconds),
            maximumTopicAlias: UInt16(clamping: settings.maxTopicAlias),
            sharedSubscriptionAvailable: settings.sharedSubscription,
            maximumTopicAliasBytes: settings.maxTopicAliasBytes,
            maximumConnectPacketSize: settings.maxConnectPacketSize)
    }

    /// The `mqtt.*` settings with the storage bounds; the node's queue budget is split evenly over its workers.
    public init(_ configuration: GatehouseConfiguration) {
        self.init(configuration.mqtt)
        storage = configuration.storage
        workerQueuedBytes = max(1, configuration.storage.maxNodeQueuedBytes / max(1, configuration.node.workerProcesses))
    }
}
