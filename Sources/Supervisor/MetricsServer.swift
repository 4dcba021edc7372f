import BrokerConfiguration
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ProcessSupport

/// `node.metrics_listener`: an HTTP/1 server (NIOHTTP1) on a one-thread event loop group of its own, so that no
/// scraper, however slow or hostile, can delay the supervisor's poll loop. Each connection gets one request and
/// is closed; a connection is closed at its deadline whatever it does, requests are bounded in size, and
/// connections beyond `maximumConnections` are closed at accept.
///
/// Owned by `SupervisorService`, which publishes a new `MetricsSnapshot` whenever the process table or the
/// children's statistics change; the endpoint renders from the latest one (a lock-protected value).
final class MetricsServer: Sendable {
    /// The bounds on what a scraper can hold.
    struct Limits: Sendable {
        /// A connection is closed this long after it was accepted, answered or not.
        var connectionDeadline: TimeAmount = .seconds(3)
        var maximumConnections = 16
        /// Bytes a request may have (request line and headers; `GET` has no body).
        var maximumRequestBytes = 8192
    }

    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let snapshot: NIOLockedValueBox<MetricsSnapshot>

    /// Binds `address` and starts serving `initial` until the first `publish`.
    init(address: ListenAddress, initial: MetricsSnapshot, limits: Limits = Limits(), logger: Logger) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let snapshot = NIOLockedValueBox(initial)
        let open = NIOLockedValueBox(0)
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 16)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let admitted = open.withLockedValue { count in
                            guard count < limits.maximumConnections else { return false }
                            count += 1
                            return true
                        }
                        guard admitted else {
                            logger.debug("metrics connection refused: too many open")
                            channel.close(promise: nil)
                            return
                        }
                        let deadline = channel.eventLoop.scheduleTask(in: limits.connectionDeadline) {
                            channel.close(promise: nil)
                        }
                        channel.closeFuture.whenComplete { _ in
                            deadline.cancel()
                            open.withLockedValue { $0 -= 1 }
                        }
                        let operations = channel.pipeline.syncOperations
                        try operations.addHandler(RequestSizeLimitHandler(limit: limits.maximumRequestBytes))
                        try operations.configureHTTPServerPipeline(
                            withPipeliningAssistance: false, withErrorHandling: true)
                        try operations.addHandler(
                            MetricsHTTPHandler {
                                MetricsEndpoint.render(snapshot.withLockedValue { $0 }, now: WallClock.seconds)
                            })
                    }
                }
                .bind(host: address.host, port: address.port)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.group = group
        self.snapshot = snapshot
    }

    /// What the next scrapes render.
    func publish(_ snapshot: MetricsSnapshot) {
        self.snapshot.withLockedValue { $0 = snapshot }
    }

    /// Closes the listener and every connection, and stops the thread.
    func shutdown() {
        channel.close(promise: nil)
        try? group.syncShutdownGracefully()
    }
}
