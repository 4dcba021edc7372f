import Logging
import NIOCore
import NIOPosix
import OpenSSLTLS
import Synchronization

/// Log lines captured by `CapturingLogHandler`. Sendable, lock-protected.
final class LogCapture: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let lines = Mutex<[Line]>([])

    func append(_ line: Line) {
        lines.withLock { $0.append(line) }
    }

    var all: [Line] {
        lines.withLock { $0 }
    }

    var warnings: [Line] {
        all.filter { $0.level == .warning }
    }
}

/// A swift-log handler that records every line into a `LogCapture`.
struct CapturingLogHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        capture.append(LogCapture.Line(
            level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }
        ))
    }
}

/// Handshake events seen by the echo handlers of one server. Sendable, lock-protected.
final class EventCapture: Sendable {
    private let completed = Mutex<[TLSHandshakeCompleted]>([])
    private let failed = Mutex<[TLSHandshakeFailure]>([])

    func record(_ event: TLSHandshakeCompleted) {
        completed.withLock { $0.append(event) }
    }

    func record(_ event: TLSHandshakeFailure) {
        failed.withLock { $0.append(event) }
    }

    var completions: [TLSHandshakeCompleted] {
        completed.withLock { $0 }
    }

    var failures: [TLSHandshakeFailure] {
        failed.withLock { $0 }
    }
}

/// Echoes the first plaintext it receives, then closes (so `s_client -ign_eof` ends), and records handshake events.
/// One per connection, on its event loop.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let events: EventCapture

    init(events: EventCapture) {
        self.events = events
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted {
            events.record(completed)
        } else if let failure = event as? TLSHandshakeFailure {
            events.record(failure)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// An in-process TLS echo server on 127.0.0.1 (ephemeral port) with one event loop. New connections take the
/// current context; `swap` installs a new one for later connections only, as a worker does after a CRL reload.
final class TestServer: Sendable {
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    let refusals = TLSRefusalCounter()
    let logs = LogCapture()
    let events = EventCapture()
    private let holder: ContextHolder

    var port: Int {
        channel.localAddress?.port ?? 0
    }

    init(context: TLSContext, handshakeTimeout: TimeAmount = .seconds(15)) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let holder = ContextHolder(context)
        self.holder = holder
        let logs = logs
        let refusals = refusals
        let events = events
        let logger = Logger(label: "test.tls") { _ in CapturingLogHandler(capture: logs) }
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    do {
                        let handler = TLSServerHandler(
                            context: holder.context, listener: "test-listener", logger: logger, refusals: refusals,
                            handshakeTimeout: handshakeTimeout
                        )
                        try channel.pipeline.syncOperations.addHandler(handler)
                        try channel.pipeline.syncOperations.addHandler(EchoHandler(events: events))
                        return channel.eventLoop.makeSucceededVoidFuture()
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    func swap(to context: TLSContext) {
        holder.context = context
    }

    func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// The listener's current context, read once per accepted connection. Sendable, lock-protected.
final class ContextHolder: Sendable {
    private let current: Mutex<TLSContext>

    init(_ context: TLSContext) {
        current = Mutex(context)
    }

    var context: TLSContext {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}
