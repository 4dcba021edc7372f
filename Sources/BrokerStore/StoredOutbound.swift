/// One message on its way to a stored session's client, in one of the stages of the outbound QoS flows.
public struct StoredOutbound: Sendable, Equatable {
    /// Where the delivery stands. The raw values are what the database stores: never renumber them.
    public enum Stage: UInt8, Sendable, Equatable {
        /// Not sent yet (or sent at QoS 0 and not yet written out).
        case queued = 0
        /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
        case published = 1
        /// PUBREL sent, waiting for PUBCOMP.
        case released = 2
    }

    public var stage: Stage
    /// The packet identifier once one is assigned; nil while queued at QoS 0 or before assignment.
    public var packetIdentifier: UInt16?
    /// The QoS of this delivery (the minimum of the message's and the subscription's).
    public var qos: UInt8
    /// The RETAIN flag of this delivery (after retain-as-published).
    public var retain: Bool
    /// The subscription identifiers the delivery carries, in order.
    public var subscriptionIdentifiers: [Int]
    public var message: StoredMessage

    public init(
        stage: Stage, packetIdentifier: UInt16?, qos: UInt8, retain: Bool, subscriptionIdentifiers: [Int] = [],
        message: StoredMessage
    ) {
        self.stage = stage
        self.packetIdentifier = packetIdentifier
        self.qos = qos
        self.retain = retain
        self.subscriptionIdentifiers = subscriptionIdentifiers
        self.message = message
    }
}
