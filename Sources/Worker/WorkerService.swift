#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ProcessSupport

/// A worker process: binds every listener with SO_REUSEPORT (the kernel spreads connections over the workers),
/// serves clients, and quits gracefully when the supervisor says so, when its channel closes, or on SIGTERM.
///
/// `run()` blocks the main thread; the network work runs on one NIO event loop (one worker = one core, as nginx).
public final class WorkerService: Sendable {
    private let configuration: GatehouseConfiguration
    private let slot: Int
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let connections = ConnectionRegistry()
    private let state = NIOLockedValueBox(State())
    private let finished: EventLoopPromise<Int32>

    private struct State {
        var servers: [any Channel] = []
        var link: (any Channel)?
        var isQuitting = false
    }

    public init(configuration: GatehouseConfiguration, slot: Int, logger: Logger) {
        self.configuration = configuration
        self.slot = slot
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.finished = group.next().makePromise(of: Int32.self)
    }

    /// Serves until told to quit; returns the exit code.
    public func run(supervisorChannel: Int32) -> Int32 {
        let signalSource = installSignalHandlers()
        defer { signalSource.cancel() }

        let link: any Channel
        do {
            link = try NIOPipeBootstrap(group: group)
                .channelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            SupervisorLinkHandler(
                                onMessage: { [self] message in handle(message) },
                                onClose: { [self] in quit(deadline: .seconds(1), reason: "supervisor channel closed") }
                            ))
                    }
                }
                .takingOwnershipOfDescriptor(inputOutput: supervisorChannel)
                .wait()
            state.withLockedValue { $0.link = link }
        } catch {
            logger.critical("cannot open the supervisor channel", metadata: ["error": "\(error)"])
            return 1
        }

        var servers: [any Channel] = []
        for listener in configuration.listeners {
            do {
                let server = try bind(listener)
                servers.append(server)
                logger.info(
                    "listening",
                    metadata: ["listener": "\(listener.identifier)", "address": "\(listener.address)"])
            } catch {
                let reason = "cannot listen on \(listener.address) (\(listener.identifier)): \(error)"
                logger.critical("cannot listen", metadata: ["listener": "\(listener.identifier)", "error": "\(error)"])
                _ = try? link.writeAndFlush(ByteBuffer(bytes: ChildMessage.fatal(reason: reason).encoded())).wait()
                for server in servers { server.close(promise: nil) }
                return 3
            }
        }
        let alreadyQuitting = state.withLockedValue { state in
            state.servers = servers
            return state.isQuitting
        }
        if alreadyQuitting {
            for server in servers { server.close(promise: nil) }
        } else {
            link.writeAndFlush(ByteBuffer(bytes: ChildMessage.ready.encoded()), promise: nil)
        }

        let code = (try? finished.futureResult.wait()) ?? 1
        try? group.syncShutdownGracefully()
        return code
    }

    private func bind(_ listener: ListenerConfiguration) throws -> any Channel {
        let connections = self.connections
        return try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // NIO 2.101 has no name for SO_REUSEPORT; every worker binds the same address and the kernel balances.
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    connections.add(channel)
                    try channel.pipeline.syncOperations.addHandler(HoldConnectionHandler())
                }
            }
            .bind(host: listener.address.host, port: listener.address.port)
            .wait()
    }

    private func handle(_ message: ChildMessage) {
        switch message {
        case .quit(let deadlineSeconds):
            // Leave a margin before the supervisor's SIGKILL.
            let budget = max(Duration.milliseconds(500), .seconds(deadlineSeconds) - .seconds(1))
            quit(deadline: budget, reason: "asked by the supervisor")
        case .reload:
            logger.info("configuration reload received")
        case .ready, .fatal:
            break
        }
    }

    /// Graceful quit: stop accepting, close every client, exit once all are closed or at the deadline.
    func quit(deadline: Duration, reason: String) {
        let (servers, proceed) = state.withLockedValue { state -> ([any Channel], Bool) in
            if state.isQuitting { return ([], false) }
            state.isQuitting = true
            return (state.servers, true)
        }
        guard proceed else { return }
        let open = connections.all
        logger.info("worker quitting", metadata: ["reason": "\(reason)", "connections": "\(open.count)"])
        let loop = group.next()
        let closedServers = servers.map { $0.close() }
        let closedClients = open.map { channel in channel.close().recover { _ in } }
        let everything = EventLoopFuture.whenAllComplete(closedServers + closedClients, on: loop)
        let finished = self.finished
        loop.scheduleTask(in: TimeAmount.nanoseconds(Int64(deadline.millisecondsRoundedUp) * 1_000_000)) {
            finished.succeed(0)
        }
        everything.whenComplete { _ in finished.succeed(0) }
    }

    private func installSignalHandlers() -> any DispatchSourceSignal {
        signal(SIGPIPE, SIG_IGN)
        // Ctrl-C in a terminal reaches the whole process group: the supervisor decides, children wait to be told.
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        source.setEventHandler { [self] in quit(deadline: .seconds(1), reason: "SIGTERM") }
        source.resume()
        return source
    }
}
