import NIOCore

/// An application message as the store keeps it: a retained message, or the message inside a queued or in-flight
/// delivery. A plain value; the broker maps its own packet types onto it.
///
/// The payload is the broker's own buffer, not a copy: a session snapshot holding a thousand messages copies
/// none of them, and the writer reads the bytes only when the message is not in the database yet.
public struct StoredMessage: Sendable, Equatable {
    public var topic: String
    public var payload: ByteBuffer
    public var qos: UInt8
    public var retain: Bool
    /// The message's MQTT 5 properties, encoded by the broker; opaque to the store.
    public var properties: [UInt8]
    /// When the message expires, in seconds since the Unix epoch; nil for never.
    public var expiresAt: Double?
    /// The number under which sessions share the message (one row in the database however many sessions hold
    /// it). Numbers come from `BrokerStore.reserveMessageIDs()`; a delivery without one gets a fresh number when
    /// it is written. Unused for retained messages.
    public var id: Int64?

    public init(
        topic: String, payload: ByteBuffer, qos: UInt8, retain: Bool, properties: [UInt8] = [],
        expiresAt: Double? = nil, id: Int64? = nil
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expiresAt = expiresAt
        self.id = id
    }

    public init(
        topic: String, payload: [UInt8], qos: UInt8, retain: Bool, properties: [UInt8] = [], expiresAt: Double? = nil,
        id: Int64? = nil
    ) {
        self.init(
            topic: topic, payload: ByteBuffer(bytes: payload), qos: qos, retain: retain, properties: properties,
            expiresAt: expiresAt, id: id)
    }

    /// Equal when they say the same; the number is where the store keeps it, not part of the message.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.topic == rhs.topic && lhs.payload == rhs.payload && lhs.qos == rhs.qos && lhs.retain == rhs.retain
            && lhs.properties == rhs.properties && lhs.expiresAt == rhs.expiresAt
    }
}
