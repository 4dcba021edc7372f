/// An application message as the store keeps it: a retained message, or the message inside a queued or in-flight
/// delivery. A plain value; the broker maps its own packet types onto it.
public struct StoredMessage: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: UInt8
    public var retain: Bool
    /// The message's MQTT 5 properties, encoded by the broker; opaque to the store.
    public var properties: [UInt8]
    /// When the message expires, in seconds since the Unix epoch; nil for never.
    public var expiresAt: Double?

    public init(
        topic: String, payload: [UInt8], qos: UInt8, retain: Bool, properties: [UInt8] = [], expiresAt: Double? = nil
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expiresAt = expiresAt
    }
}
