#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import Dispatch
import Logging
import MQTTBroker
import MQTTCodec
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OpenSSLTLS
import ProcessSupport
import BrokerStore
import RevocationCache
import WorkerCluster

/// A worker process: binds every listener with SO_REUSEPORT (the kernel spreads connections over the workers),
/// serves clients, and quits gracefully when the supervisor says so, when its channel closes, or on SIGTERM.
///
/// `run()` blocks the main thread; the network work runs on one NIO event loop (one worker = one core, as nginx).
public final class WorkerService: Sendable {

    private let configuration: GatehouseConfiguration
    private let slot: Int
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let loop: any EventLoop
    private let connections = ConnectionRegistry()
    private let state = NIOLockedValueBox(State())
    private let finished: EventLoopPromise<Int32>

    private struct State {
        var servers: [any Channel] = []
        var link: (any Channel)?
        var broker: NIOLoopBound<Broker>?
        var cluster: NIOLoopBound<ClusterNode>?
        var isQuitting = false
    }

    public init(configuration: GatehouseConfiguration, slot: Int, logger: Logger) {
        self.configuration = configuration
        self.slot = slot
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = group.next()
        self.finished = loop.makePromise(of: Int32.self)
    }

    /// Serves until told to quit; returns the exit code.
    public func run(supervisorChannel: Int32) -> Int32 {
        let signalSource = installSignalHandlers()
        defer { signalSource.cancel() }

        let access: AccessPolicy
        do {
            access = try AccessPolicy.load(configuration)
        } catch {
            logger.critical("cannot load the access files", metadata: ["error": "\(error)"])
            return 78
        }
        let broker: NIOLoopBound<Broker>
        do {
            broker = try makeBroker(access: access)
        } catch {
            logger.critical("cannot start the broker", metadata: ["error": "\(error)"])
            return 1
        }
        state.withLockedValue { $0.broker = broker }

        // Retained messages and this worker's persistent sessions come back from the store before anything else.
        let persistence: SQLitePersistence
        do {
            let store = try BrokerStore(path: SQLitePersistence.databasePath(dataDirectory: configuration.node.dataDirectory))
            persistence = SQLitePersistence(store: store, slot: slot, logger: logger)
            let (retained, sessions) = try persistence.load(workerCount: configuration.node.workerProcesses)
            try loop.submit { [persistence] in
                broker.value.persistence = persistence
                broker.value.restore(retained: retained, sessions: sessions)
            }.wait()
        } catch {
            logger.critical("cannot open the message store", metadata: ["error": "\(error)"])
            return 78
        }
        defer {
            try? persistence.store.flush()
            persistence.store.close()
        }

        // Join the node's other workers (routes, retained messages, session claims) before accepting clients.
        let cluster: NIOLoopBound<ClusterNode>
        do {
            let directory = ClusterNode.socketDirectory(runDirectory: configuration.node.runDirectory)
            let loop = self.loop
            let slot = self.slot
            let logger = self.logger
            cluster = try loop.submit {
                let node = ClusterNode(broker: broker.value, loop: loop, directory: directory, slot: slot, logger: logger)
                node.maxBufferedBytes = self.configuration.storage.maxPeerBufferedBytes
                broker.value.cluster = node
                return NIOLoopBound(node, eventLoop: loop)
            }.wait()
            try loop.flatSubmit { cluster.value.start() }.wait()
            state.withLockedValue { $0.cluster = cluster }
        } catch {
            logger.critical("cannot join the other workers", metadata: ["error": "\(error)"])
            return 1
        }
        var clusterStopped = false
        defer {
            if !clusterStopped { try? loop.submit { cluster.value.stop() }.wait() }
        }


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

        // TLS contexts are built, with every CRL the cache holds, before any listener accepts.
        var tlsListeners: [String: TLSListener] = [:]
        for listener in configuration.listeners {
            guard let settings = listener.tls else { continue }
            do {
                tlsListeners[listener.identifier] = try TLSListener(
                    listener: listener, settings: settings,
                    cacheLayout: CacheLayout(root: configuration.node.cacheDirectory),
                    maximumCRLEntries: configuration.crlCache.maxEntries, logger: logger)
            } catch {
                let reason = "cannot set up TLS for \(listener.identifier): \(error)"
                logger.critical("cannot set up TLS", metadata: ["listener": "\(listener.identifier)", "error": "\(error)"])
                _ = try? link.writeAndFlush(ByteBuffer(bytes: ChildMessage.fatal(reason: reason).encoded())).wait()
                return 3
            }
        }
        let watcher = startWatching(Array(tlsListeners.values))
        defer { watcher?.stop() }
        // A file published between the first load and the first inotify watch: load it now, before accepting.
        for listener in tlsListeners.values {
            listener.reload(reason: "changed while the worker started")
        }

        var servers: [any Channel] = []
        var admissions: [ConnectionAdmission] = []
        for listener in configuration.listeners {
            do {
                let admission = try ConnectionAdmission(
                    listener: listener, runDirectory: configuration.node.runDirectory)
                admissions.append(admission)
                let server = try bind(
                    listener, broker: broker, tls: tlsListeners[listener.identifier], admission: admission)
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
        reportStatistics(
            every: .seconds(1), link: link, broker: broker, cluster: cluster, store: persistence.store,
            tls: Array(tlsListeners.values), admissions: admissions)
        if alreadyQuitting {
            for server in servers { server.close(promise: nil) }
        } else {
            link.writeAndFlush(ByteBuffer(bytes: ChildMessage.ready.encoded()), promise: nil)
        }

        let code = (try? finished.futureResult.wait()) ?? 1
        try? loop.submit {
            broker.value.persistNow()
            cluster.value.stop()
        }.wait()
        clusterStopped = true
        try? group.syncShutdownGracefully()
        return code
    }

    /// Sends the supervisor this worker's counters now and then every `interval` (for `status` and the metrics).
    private func reportStatistics(
        every interval: TimeAmount, link: any Channel, broker: NIOLoopBound<Broker>, cluster: NIOLoopBound<ClusterNode>,
        store: BrokerStore, tls: [TLSListener], admissions: [ConnectionAdmission]
    ) {
        let connections = self.connections
        loop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in
            var statistics = ChildStatistics()
            let counters = broker.value.statistics
            statistics.connections = connections.count
            statistics.messagesReceived = counters.messagesReceived
            statistics.messagesSent = counters.messagesSent
            statistics.messagesDropped = counters.messagesDropped
            statistics.limitHits = Self.limitHits(broker: broker.value, cluster: cluster.value)
            statistics.storage = Self.storage(broker: broker.value, cluster: cluster.value, store: store)
            for admission in admissions {
                let refused = admission.refusalCounts
                if !refused.isEmpty { statistics.connectionsRefused[admission.listener] = refused }
            }
            statistics.listeners = tls.sorted { $0.listener.identifier < $1.listener.identifier }.map { listener in
                let context = listener.currentContext
                var figures = ChildStatistics.Listener(
                    listener: listener.listener.identifier, revocationGeneration: listener.generation,
                    crls: context.crls.count, revokedEntries: context.crls.reduce(0) { $0 + $1.revokedCount },
                    refusals: listener.refusals.snapshot,
                    revokedDisconnected: listener.gate.revokedCount,
                    liveCertificates: listener.gate.admittedCount)
                let completed = listener.refusals.completed
                figures.handshakes = completed.total
                figures.acceptedOnStaleCRL = completed.onStaleCRL
                figures.resumptionsRefused = listener.refusals.resumptionsRefused
                listener.reportInForce(into: &figures, now: Int64(time(nil)))
                return figures
            }
            for listener in tls {
                listener.logSuppressedRefusals()
            }
            link.writeAndFlush(ByteBuffer(bytes: ChildMessage.statistics(json: statistics.encodedJSON()).encoded()), promise: nil)
        }
    }

    /// The broker's limit counters, with the cluster's under `node.max_peer_buffered_bytes`.
    private static func limitHits(broker: Broker, cluster: ClusterNode) -> [String: Int] {
        var hits = broker.statistics.limitHits
        if cluster.droppedPublishes > 0 {
            hits[StorageLimits.Key.maxPeerBufferedBytes.rawValue, default: 0] += cluster.droppedPublishes
        }
        return hits
    }

    private static func storage(broker: Broker, cluster: ClusterNode, store: BrokerStore) -> ChildStatistics.Storage {
        var storage = ChildStatistics.Storage()
        let queued = broker.queuedTotals
        storage.queuedMessages = queued.messages
        storage.queuedBytes = queued.bytes
        storage.retainedMessages = broker.retainedCount
        storage.retainedBytes = broker.retainedBytes
        storage.subscriptions = broker.subscriptionCount
        storage.peerBufferedBytes = cluster.bufferedBytes
        let files = store.fileSizes
        storage.databaseBytes = files.database
        storage.walBytes = files.wal
        return storage
    }

    private func makeBroker(access: AccessPolicy) throws -> NIOLoopBound<Broker> {
        let loop = self.loop
        let settings = BrokerSettings(configuration)
        let logger = self.logger
        return try loop.submit {
            let broker = Broker(
                settings: settings, access: access, scheduler: EventLoopBrokerScheduler(loop: loop), logger: logger)
            return NIOLoopBound(broker, eventLoop: loop)
        }.wait()
    }

    /// One inotify watcher for every TLS listener's revocation files; a change rebuilds the affected contexts.
    private func startWatching(_ listeners: [TLSListener]) -> CacheWatcher? {
        let targets = listeners.flatMap(\.watchTargets)
        guard !targets.isEmpty else { return nil }
        do {
            let watcher = try CacheWatcher(targets: targets)
            let logger = self.logger
            watcher.start { changed in
                logger.debug("revocation files changed", metadata: ["files": "\(changed.joined(separator: ","))"])
                for listener in listeners {
                    let relevant = changed.contains { path in
                        listener.watchTargets.contains { target in
                            path.hasPrefix(target.directory + "/")
                                && (target.names?.contains(String(path.dropFirst(target.directory.count + 1))) ?? true)
                        }
                    }
                    if relevant { listener.reload(reason: "files changed: \(changed.joined(separator: ","))") }
                }
            }
            return watcher
        } catch {
            logger.error("cannot watch the cache directory; revocation data will not reload", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private func bind(
        _ listener: ListenerConfiguration, broker: NIOLoopBound<Broker>, tls: TLSListener?,
        admission: ConnectionAdmission
    ) throws -> any Channel {
        let connections = self.connections
        let logger = self.logger
        let identifier = listener.identifier
        let allowsAnonymous = listener.allowAnonymous
        let accept = listener.accept
        let backPressure = listener.backPressure
        let handshakeTimeout = TimeAmount.nanoseconds(
            Int64((listener.tls?.handshakeTimeout ?? .seconds(15)).millisecondsRoundedUp) * 1_000_000)
        let proxyTimeout = TimeAmount.nanoseconds(Int64(accept.proxyProtocolTimeout.millisecondsRoundedUp) * 1_000_000)

        /// Decides about the client at `peer` and, if it is served, adds TLS and MQTT to the pipeline.
        @Sendable func serve(_ channel: any Channel, peer: SocketAddress?) throws -> Bool {
            switch admission.admit(peer) {
            case .refused(let refusal):
                logger.debug(
                    "connection refused",
                    metadata: [
                        "listener": "\(identifier)", "tls.peer": "\(peer.map(MQTTServerHandler.describe) ?? "unknown")",
                        "reason": "\(refusal.rawValue)",
                    ])
                return false
            case .admitted(let reservation):
                if reservation.holdsPlace {
                    channel.closeFuture.whenComplete { _ in admission.release(reservation) }
                }
            }
            let peerDescription = peer.map(MQTTServerHandler.describe)
            if let tls {
                try channel.pipeline.syncOperations.addHandler(
                    TLSServerHandler(
                        gate: tls.gate, listener: identifier, logger: logger,
                        refusals: tls.refusals, handshakeTimeout: handshakeTimeout,
                        onMissingCRL: tls.settings.enableCRLCheck ? tls.distributionPoints.report : nil,
                        onRevoked: tls.onRevoked, peerAddress: peerDescription))
            }
            try channel.pipeline.syncOperations.addHandler(
                MQTTServerHandler(
                    broker: broker.value, listener: identifier, allowsAnonymous: allowsAnonymous,
                    tls: tls?.settings, backPressure: backPressure, peerAddress: peerDescription, logger: logger))
            return true
        }

        return try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Int32(clamping: accept.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: accept.reuseAddress ? 1 : 0)
            // NIO 2.101 has no name for SO_REUSEPORT; every worker binds the same address and the kernel balances.
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            // A failing accept (EMFILE: descriptors exhausted) is retried after a second, not at once forever.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptBackoffOnErrorHandler(listener: identifier, logger: logger))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: accept.noDelay ? 1 : 0)
            // Not writable over high_watermark: the MQTT handler stops reading and the broker stops sending.
            .childChannelOption(.writeBufferWaterMark, value: MQTTServerHandler.writeBufferWaterMark(backPressure))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    connections.add(channel)
                    if accept.proxyProtocol {
                        // Access and limits wait for the address the header names.
                        try channel.pipeline.syncOperations.addHandler(
                            ProxyProtocolHandler(
                                timeout: proxyTimeout, admission: admission, logger: logger, onHeader: serve))
                    } else if try !serve(channel, peer: channel.remoteAddress) {
                        // Refused at accept: closed before any TLS or MQTT work.
                        channel.close(promise: nil)
                    }
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
        case .reload(let snapshot):
            reload(snapshot: snapshot)
        case .ready, .fatal, .refresh, .statistics:
            break
        }
    }

    /// Applies a reloaded configuration: MQTT limits and the access files take effect for new operations.
    private func reload(snapshot: String) {
        let loaded: GatehouseConfiguration
        do {
            loaded = try ConfigurationLoader.parseSnapshot(
                String(decoding: FileDescriptor.readFile(snapshot) ?? [], as: UTF8.self),
                originalPath: configuration.sourcePath)
        } catch {
            logger.error("configuration snapshot rejected", metadata: ["error": "\(error)"])
            return
        }
        let access: AccessPolicy
        do {
            access = try AccessPolicy.load(loaded)
        } catch {
            logger.error("access files rejected, keeping the previous ones", metadata: ["error": "\(error)"])
            return
        }
        let settings = BrokerSettings(loaded)
        guard let broker = state.withLockedValue({ $0.broker }) else { return }
        let cluster = state.withLockedValue { $0.cluster }
        loop.execute {
            broker.value.update(settings: settings, access: access)
            cluster?.value.maxBufferedBytes = loaded.storage.maxPeerBufferedBytes
        }
        logger.info("configuration reloaded")
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
        let loop = self.loop
        let closedServers = servers.map { $0.close() }
        let closedClients = open.map { channel in
            channel.eventLoop.submit {
                // MQTT 5 clients are told why (0x8B server shutting down); no will is published for them.
                if let handler = try? channel.pipeline.syncOperations.handler(type: MQTTServerHandler.self) {
                    handler.disconnect(reason: .serverShuttingDown)
                } else {
                    channel.close(promise: nil)
                }
            }.flatMap { channel.closeFuture }.recover { _ in }
        }
        let everything = EventLoopFuture.whenAllComplete(closedServers + closedClients, on: loop)
        let finished = self.finished
        loop.scheduleTask(in: TimeAmount.nanoseconds(Int64(deadline.millisecondsRoundedUp) * 1_000_000)) {
            finished.succeed(0)
        }
        let (cluster, broker) = state.withLockedValue { ($0.cluster, $0.broker) }
        everything.whenComplete { _ in
            // What the sessions changed in the last persist interval goes to the store before anything else.
            broker?.value.persistNow()
            // Clients are gone: their persistent sessions go to the other workers before this one exits.
            guard let cluster else {
                finished.succeed(0)
                return
            }
            cluster.value.depart().whenComplete { _ in finished.succeed(0) }
        }
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
