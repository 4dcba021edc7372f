/// What a listener lets a client that does not read cost (EMQX listener keys): how many bytes may wait to be sent
/// to one connection before it counts as busy, and how long it may stay busy.
///
/// A plain value inside `ListenerConfiguration`; the defaults are EMQX's.
public struct BackPressureSettings: Sendable, Equatable {
    /// `high_watermark`: bytes waiting to be sent on one connection above which it is busy: the worker stops
    /// reading from it, QoS 0 messages for it are dropped (and counted) and QoS 1/2 messages wait in its session
    /// queue, until it is down to half. Default 1MB.
    public var highWatermark: Int
    /// `send_timeout`: how long a connection may stay busy; default 15s.
    public var sendTimeout: Duration
    /// `send_timeout_close`: whether a connection busy for longer than `sendTimeout` is closed; default true.
    public var sendTimeoutClose: Bool

    public init(highWatermark: Int = 1 << 20, sendTimeout: Duration = .seconds(15), sendTimeoutClose: Bool = true) {
        self.highWatermark = highWatermark
        self.sendTimeout = sendTimeout
        self.sendTimeoutClose = sendTimeoutClose
    }
}
