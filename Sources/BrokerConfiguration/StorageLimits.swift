/// What a worker may hold on behalf of clients and peers (issue 15, items 8, 9 and 13): session queues, retained
/// messages, subscriptions and topic depth, and what it buffers for another worker. Each bound has a key, a
/// default that protects a worker, and a counter of what was dropped or refused at it (named by the key).
///
/// A value, part of `GatehouseConfiguration`; a reload hands the workers a new one.
public struct StorageLimits: Sendable, Equatable {
    /// `mqtt.max_queued_bytes` (Mosquitto's name); default 16MB. Message bytes (topic, payload, properties) one
    /// session may queue beyond those in flight; the oldest go first.
    public var maxQueuedBytes: Int
    /// `mqtt.max_node_queued_bytes`; default 512MB. Message bytes all the sessions of the node may queue, split
    /// evenly over the workers (each worker enforces its share); the oldest queued messages of a worker go first.
    public var maxNodeQueuedBytes: Int
    /// `mqtt.max_retained_messages` (EMQX's `retainer.max_retained_messages`); default 1000000. Beyond it a new
    /// topic is not retained (its message is still delivered).
    public var maxRetainedMessages: Int
    /// `mqtt.max_retained_bytes`; default 128MB. Retained message bytes every worker holds (each holds all).
    public var maxRetainedBytes: Int
    /// `mqtt.max_subscriptions` (EMQX's); default 1000. Subscriptions of one session.
    public var maxSubscriptions: Int
    /// `mqtt.max_topic_levels` (EMQX's); default 128. Levels of a topic name or filter.
    public var maxTopicLevels: Int
    /// `node.max_peer_buffered_bytes`; default 64MB. Bytes of forwarded publishes a worker keeps for one other
    /// worker (sent and not yet acknowledged, or kept for a killed worker's successor).
    public var maxPeerBufferedBytes: Int

    public static let defaultMaxQueuedBytes = 16 << 20
    public static let defaultMaxNodeQueuedBytes = 512 << 20
    public static let defaultMaxRetainedMessages = 1_000_000
    public static let defaultMaxRetainedBytes = 128 << 20
    public static let defaultMaxSubscriptions = 1000
    public static let defaultMaxTopicLevels = 128
    public static let defaultMaxPeerBufferedBytes = 64 << 20

    public init(
        maxQueuedBytes: Int = defaultMaxQueuedBytes, maxNodeQueuedBytes: Int = defaultMaxNodeQueuedBytes,
        maxRetainedMessages: Int = defaultMaxRetainedMessages, maxRetainedBytes: Int = defaultMaxRetainedBytes,
        maxSubscriptions: Int = defaultMaxSubscriptions, maxTopicLevels: Int = defaultMaxTopicLevels,
        maxPeerBufferedBytes: Int = defaultMaxPeerBufferedBytes
    ) {
        self.maxQueuedBytes = maxQueuedBytes
        self.maxNodeQueuedBytes = maxNodeQueuedBytes
        self.maxRetainedMessages = maxRetainedMessages
        self.maxRetainedBytes = maxRetainedBytes
        self.maxSubscriptions = maxSubscriptions
        self.maxTopicLevels = maxTopicLevels
        self.maxPeerBufferedBytes = maxPeerBufferedBytes
    }

    /// The configuration keys, as the workers name them in their counters (`limit_hits` in `status`).
    public enum Key: String, Sendable, CaseIterable {
        case maxQueuedMessages = "mqtt.max_queued_messages"
        case maxQueuedBytes = "mqtt.max_queued_bytes"
        case maxNodeQueuedBytes = "mqtt.max_node_queued_bytes"
        case maxRetainedMessages = "mqtt.max_retained_messages"
        case maxRetainedBytes = "mqtt.max_retained_bytes"
        case maxSubscriptions = "mqtt.max_subscriptions"
        case maxTopicLevels = "mqtt.max_topic_levels"
        case maxPeerBufferedBytes = "node.max_peer_buffered_bytes"
    }
}
