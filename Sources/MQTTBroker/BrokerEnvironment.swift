import MQTTCodec
import ProcessSupport

/// A network connection as the broker sees it. Implemented by the worker's NIO handler; tests use a recorder.
/// Used from the broker's event loop only.
public protocol MQTTClientConnection: AnyObject {
    /// `tcp:external 127.0.0.1:53211`, for logs.
    var peerDescription: String { get }
    /// Queues a packet for writing (encoded at the connection's protocol version).
    func send(_ packet: MQTTPacket)
    /// Writes what was queued.
    func flush()
    /// Flushes and closes the connection. Idempotent.
    func close()
    /// More than the listener's `high_watermark` waits to be written: QoS 0 deliveries are dropped, QoS 1/2 ones
    /// wait in the session queue, until `ConnectionController.outboundWritable()` says it is down again.
    var isBusy: Bool { get }
    /// The controller takes packets again (`ConnectionController.acceptsInput` is true again): read on.
    func resumeInput()
}

extension MQTTClientConnection {
    /// Connections that buffer nothing themselves are never busy.
    public var isBusy: Bool { false }
    public func resumeInput() {}
}

/// Timers, so the broker can be driven by a NIO event loop in the worker and by a manual clock in tests.
public protocol BrokerScheduler: AnyObject {
    var now: MonotonicInstant { get }
    /// Runs `work` on the broker's loop after `delay`.
    func schedule(after delay: Duration, _ work: @escaping () -> Void) -> any ScheduledWork

    /// Runs `work` on the broker's loop once the I/O events being handled now are done (NIO runs tasks after
    /// each batch of readiness events), so writes from one batch of input are flushed together.
    func executeAfterCurrentEvents(_ work: @escaping () -> Void)
}

/// A timer that can be cancelled.
public protocol ScheduledWork: AnyObject {
    func cancel()
}
