/// A connection limit that held, counted per worker (`Broker.Statistics.limitHits`, by raw value) for
/// `gatehouse status` and the metrics (`gatehouse_limit_hits_total{limit}`). The raw value names the configuration key and what happened at
/// it.
public enum LimitEvent: String, Sendable, CaseIterable, Codable {
    /// A connection over `high_watermark` (its outbound side not writable): the worker stopped reading from it.
    case highWatermarkReadsPaused = "high_watermark_reads_paused"
    /// A QoS 0 delivery dropped because its connection was over `high_watermark`.
    case highWatermarkQoS0Dropped = "high_watermark_qos0_dropped"
    /// A QoS 1/2 delivery left in the session queue because its connection was over `high_watermark`.
    case highWatermarkQoS12Held = "high_watermark_qos12_held"
    /// A connection over `high_watermark` for longer than `send_timeout`, closed (`send_timeout_close = on`).
    case sendTimeoutClosed = "send_timeout_closed"
    /// The same, kept open (`send_timeout_close = off`).
    case sendTimeoutKept = "send_timeout_kept"
    /// A client whose topic aliases would have held more than `mqtt.max_topic_alias_bytes`, disconnected (0x97).
    case topicAliasBytesClosed = "max_topic_alias_bytes_closed"
    /// An outbound topic alias not assigned because the connection's aliases hold `mqtt.max_topic_alias_bytes`.
    case topicAliasBytesUnaliased = "max_topic_alias_bytes_unaliased"
    /// A CONNECT larger than `mqtt.max_connect_packet_size`, refused at its fixed header.
    case connectPacketSizeRefused = "max_connect_packet_size_refused"
    /// The worker stopped reading from a connection while a SUBSCRIBE or a client-id claim waited for the other
    /// workers, with input behind it.
    case routeBarrierReadsPaused = "route_barrier_reads_paused"
}
