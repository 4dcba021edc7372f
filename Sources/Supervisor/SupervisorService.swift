#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import Foundation
import Logging
import ProcessSupport
import RevocationCache

/// The supervisor process: one poll loop that turns events (signals, child exits, child messages, control
/// commands, deadlines) into `SupervisorStateMachine` events and carries out the actions it returns.
///
/// Single-threaded by design (the nginx master model): signals arrive through a signalfd, so no code runs in a
/// signal handler. Create it on the main thread before any other thread exists (the signal mask it sets is
/// inherited by the one thread it starts later: `MetricsServer`'s event loop, which serves scrapers from
/// snapshots the loop publishes and never touches the loop's state, so no scraper can delay it).
public final class SupervisorService {
    private var loaded: LoadedConfiguration
    private var machine: SupervisorStateMachine
    private let logger: Logger
    private let executable: String
    private let paths: RunPaths
    private let signals: SignalDescriptor
    private var controlListener: Int32 = -1
    private var pidFile: PidFile?
    private var links: [pid_t: ChildLink] = [:]
    /// `node.metrics_listener` on its own thread; `nil` when off (or its address could not be bound: logged, not
    /// fatal).
    private var metricsServer: MetricsServer?
    /// The process table or the children's statistics changed since the endpoint's last snapshot.
    private var metricsSnapshotIsStale = true
    /// The last statistics each running child reported.
    private var childStatistics: [pid_t: ChildStatistics] = [:]
    private var controlClients: [Int32: ControlClient] = [:]
    private let startedAt = MonotonicInstant.now()
    private var exitCode: Int32?

    public init(loaded: LoadedConfiguration, logger: Logger, executable: String) throws(SystemError) {
        self.loaded = loaded
        self.logger = logger
        self.executable = executable
        self.paths = RunPaths(loaded.configuration)
        self.machine = SupervisorStateMachine(
            policy: .init(shutdownTimeout: loaded.configuration.node.shutdownTimeout))
        self.signals = try SignalDescriptor(signals: [SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT])
        signal(SIGPIPE, SIG_IGN)
    }

    /// Runs until shutdown; returns the process exit code.
    public func run() -> Int32 {
        let configuration = loaded.configuration
        do {
            try Preflight.prepareDirectories(configuration)
            do {
                pidFile = try PidFile(path: paths.pidFile)
            } catch .alreadyRunning(let pid) {
                throw Preflight.Failure(
                    "Gatehouse is already running" + (pid.map { " (pid \($0))" } ?? "")
                        + " with run directory \(configuration.node.runDirectory)")
            } catch .system(let error) {
                throw Preflight.Failure("cannot create pid file: \(error)")
            }
            try Preflight.checkAccessFiles(configuration)
            try Preflight.checkTLSListeners(configuration)
            try Preflight.checkStore(configuration)
            try Preflight.checkListeners(configuration.listeners, in: configuration)
            try writeSnapshot()
            controlListener = try UnixSocket.listen(at: paths.controlSocket)
        } catch let failure as Preflight.Failure {
            logger.critical("cannot start", metadata: ["error": "\(failure)"])
            printToStandardError(failure.description)
            pidFile?.remove()
            return 1
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            printToStandardError("gatehouse: cannot start: \(error)")
            pidFile?.remove()
            return 1
        }

        let openFiles = ResourceLimits.raiseOpenFiles()
        logger.info(
            "supervisor started",
            metadata: [
                "config": "\(loaded.path)", "workers": "\(configuration.node.workerProcesses)",
                "open_files_limit": "\(openFiles)",
                "listeners": "\(configuration.listeners.map { "\($0.identifier)@\($0.address)" }.joined(separator: ","))",
                "control_socket": "\(paths.controlSocket)",
            ])
        if let address = configuration.node.metricsListener {
            do {
                metricsServer = try MetricsServer(
                    address: address, initial: metricsSnapshot(now: .now()), logger: logger)
                logger.info("metrics endpoint listening", metadata: ["address": "\(address)", "path": "/metrics"])
            } catch {
                logger.error("cannot open the metrics endpoint; running without it", metadata: [
                    "address": "\(address)", "error": "\(error)",
                ])
            }
        }
        perform(machine.start(workers: configuration.node.workerProcesses, now: .now()))

        while exitCode == nil {
            pollOnce()
        }
        if controlListener >= 0 { close(controlListener) }
        metricsServer?.shutdown()
        unlink(paths.controlSocket)
        pidFile?.remove()
        logger.info("supervisor exiting", metadata: ["code": "\(exitCode ?? 0)"])
        return exitCode ?? 0
    }

    // MARK: The loop

    private func pollOnce() {
        var descriptors: [pollfd] = [
            pollfd(fd: signals.fileDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: controlListener, events: Int16(POLLIN), revents: 0),
        ]
        let linkList = Array(links.values)
        descriptors += linkList.map { pollfd(fd: $0.fileDescriptor, events: Int16(POLLIN), revents: 0) }
        let clientList = Array(controlClients.values)
        descriptors += clientList.map { pollfd(fd: $0.fileDescriptor, events: Int16(POLLIN), revents: 0) }

        var timeout: Int32 = 1000
        if let deadline = machine.nextDeadline {
            let wait = deadline.duration(since: .now()).millisecondsRoundedUp
            timeout = Int32(clamping: min(wait, 1000))
        }
        let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
        if ready < 0 && errno != EINTR {
            logger.error("poll failed", metadata: ["errno": "\(errno)"])
        }

        if descriptors[0].revents != 0 { handleSignals() }
        // A link or client closed meanwhile (a child reaped above) is skipped: its descriptor number may already
        // belong to something else. New control clients are accepted last, so that none of them can get a
        // number this iteration still knows under another owner.
        for (index, link) in linkList.enumerated() where descriptors[2 + index].revents != 0 && !link.isClosed {
            handleLink(link)
        }
        let clientBase = 2 + linkList.count
        for (index, client) in clientList.enumerated()
        where descriptors[clientBase + index].revents != 0 && controlClients[client.fileDescriptor] === client {
            handleControlClient(client)
        }
        if descriptors[1].revents != 0 { acceptControlClients() }
        expireControlClients()
        perform(machine.tick(now: .now()))
        if metricsSnapshotIsStale, let metricsServer {
            metricsSnapshotIsStale = false
            metricsServer.publish(metricsSnapshot(now: .now()))
        }
    }

    private func handleSignals() {
        let received = signals.drain()
        // Termination first, so children that exit in the same batch are not respawned.
        if received.contains(SIGTERM) || received.contains(SIGINT) || received.contains(SIGQUIT) {
            let name = received.first { [SIGTERM, SIGINT, SIGQUIT].contains($0) }.map(SignalName.name(of:)) ?? "?"
            logger.info("graceful shutdown", metadata: ["signal": "\(name)"])
            perform(machine.shutdown(now: .now()))
        }
        if received.contains(SIGCHLD) {
            reapChildren()
        }
        if received.contains(SIGHUP) {
            logger.info("reload requested", metadata: ["signal": "SIGHUP"])
            _ = reload()
        }
    }

    private func reapChildren() {
        metricsSnapshotIsStale = true
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            let exit = ExitStatus(waitStatus: status)
            let owner = machine.owner(of: pid)
            links.removeValue(forKey: pid)?.close()
            childStatistics.removeValue(forKey: pid)
            let now = MonotonicInstant.now()
            let wasRunning = machine.phase == .running
            let actions = machine.childExited(pid: pid, status: exit, now: now)
            if let owner {
                var metadata: Logger.Metadata = [
                    "child.role": "\(owner.slot.role.rawValue)", "child.slot": "\(owner.slot.index)",
                    "child.pid": "\(pid)", "child.exit": "\(exit)",
                ]
                if owner.isRetiring || !wasRunning {
                    logger.info("child exited", metadata: metadata)
                } else if let entry = machine.slots[owner.slot], let due = entry.respawnAt {
                    metadata["respawn.delay_ms"] = "\(due.duration(since: now).millisecondsRoundedUp)"
                    metadata["child.restarts"] = "\(entry.restarts)"
                    logger.warning("child exited unexpectedly, respawning", metadata: metadata)
                } else {
                    logger.warning("child exited unexpectedly", metadata: metadata)
                }
            }
            perform(actions)
        }
    }

    private func handleLink(_ link: ChildLink) {
        metricsSnapshotIsStale = true
        let received = link.receive()
        if link.isClosed {
            // EOF (the child exited): the link goes now, even with messages read before the EOF, so that its
            // closed descriptor is never polled again (the number is soon reused, e.g. by a control client).
            links.removeValue(forKey: link.pid)
        }
        guard let messages = received else { return }
        for message in messages {
            switch message {
            case .ready:
                machine.childReady(pid: link.pid)
                if let owner = machine.owner(of: link.pid) {
                    logger.info(
                        "child ready",
                        metadata: [
                            "child.role": "\(owner.slot.role.rawValue)", "child.slot": "\(owner.slot.index)",
                            "child.pid": "\(link.pid)",
                        ])
                }
            case .fatal(let reason):
                logger.error("child reported a fatal error", metadata: ["child.pid": "\(link.pid)", "error": "\(reason)"])
            case .statistics(let json):
                if let statistics = ChildStatistics.decode(json: json) {
                    childStatistics[link.pid] = statistics
                }
            case .quit, .reload, .refresh:
                logger.warning("unexpected message from child", metadata: ["child.pid": "\(link.pid)"])
            }
        }
    }

    // MARK: Actions

    private func perform(_ actions: [SupervisorStateMachine.Action]) {
        if !actions.isEmpty { metricsSnapshotIsStale = true }
        for action in actions {
            switch action {
            case .spawn(let slot):
                spawn(slot)
            case .send(let pid, let message):
                if links[pid]?.send(message) != true {
                    // No channel: fall back to a signal so the child still gets the message.
                    if case .quit = message { kill(pid, SIGTERM) }
                }
            case .kill(let pid, let signal):
                logger.warning(
                    "child did not exit in time, killing",
                    metadata: ["child.pid": "\(pid)", "signal": "\(SignalName.name(of: signal))"])
                kill(pid, signal)
            case .exit(let code):
                exitCode = code
            }
        }
    }

    private func spawn(_ slot: ChildSlot) {
        let now = MonotonicInstant.now()
        do {
            var (parentEnd, childEnd) = try FileDescriptor.socketPair()
            if childEnd == 3 {
                // dup2(3, 3) would leave close-on-exec set in the child.
                let moved = fcntl(childEnd, F_DUPFD_CLOEXEC, 10)
                close(childEnd)
                childEnd = moved
            }
            defer { close(childEnd) }
            try FileDescriptor.setNonBlocking(parentEnd)
            let arguments = [
                executable, slot.role.rawValue,
                "--slot", "\(slot.index)",
                "--config", loaded.path,
                "--snapshot", paths.configurationSnapshot,
                "--supervisor-pid", "\(getpid())",
            ]
            let descriptors: [(source: Int32, target: Int32)] = [(source: childEnd, target: 3)]
            let options = ProcessSpawner.Options(executable: executable, arguments: arguments, descriptors: descriptors)
            let pid: pid_t
            do throws(SystemError) {
                pid = try ProcessSpawner.spawn(options)
            } catch {
                close(parentEnd)
                throw error
            }
            links[pid] = ChildLink(pid: pid, fileDescriptor: parentEnd)
            machine.spawned(slot, pid: pid, now: now)
            logger.info(
                "child spawned",
                metadata: ["child.role": "\(slot.role.rawValue)", "child.slot": "\(slot.index)", "child.pid": "\(pid)"])
        } catch {
            logger.error(
                "cannot spawn child",
                metadata: ["child.role": "\(slot.role.rawValue)", "child.slot": "\(slot.index)", "error": "\(error)"])
            machine.spawnFailed(slot, reason: "\(error)", now: now)
        }
    }

    private func writeSnapshot() throws(SystemError) {
        try FileDescriptor.writeAtomically(Array(loaded.text.utf8), to: paths.configurationSnapshot, mode: 0o600)
    }

    // MARK: Reload

    /// Re-reads the configuration file. Returns nil on success, or the errors (the running config stays).
    private func reload() -> String? {
        metricsSnapshotIsStale = true
        let fresh: LoadedConfiguration
        do {
            fresh = try LoadedConfiguration.load(path: loaded.path)
        } catch {
            logger.error("reload refused: invalid configuration", metadata: ["errors": "\(error)"])
            return error.description
        }
        let old = loaded.configuration
        let new = fresh.configuration
        do {
            try Preflight.checkAccessFiles(new)
            try Preflight.checkTLSListeners(new)
        } catch {
            logger.error("reload refused", metadata: ["error": "\(error)"])
            return error.description
        }
        var fixed: [String] = []
        if new.node.dataDirectory != old.node.dataDirectory { fixed.append("node.data_dir") }
        if new.node.runDirectory != old.node.runDirectory { fixed.append("node.run_dir") }
        if new.node.cacheDirectory != old.node.cacheDirectory { fixed.append("node.cache_dir") }
        if !fixed.isEmpty {
            let message = "\(loaded.path): \(fixed.joined(separator: ", ")) cannot change on reload; restart Gatehouse"
            logger.error("reload refused", metadata: ["error": "\(message)"])
            return message
        }
        let listenersChanged = new.listeners.map(\.address) != old.listeners.map(\.address)
            || new.listeners != old.listeners
        if listenersChanged {
            let oldAddresses = Set(old.listeners.map(\.address))
            do {
                try Preflight.checkListeners(new.listeners.filter { !oldAddresses.contains($0.address) }, in: new)
            } catch {
                logger.error("reload refused", metadata: ["error": "\(error)"])
                return error.description
            }
        }
        loaded = fresh
        do {
            try writeSnapshot()
        } catch {
            logger.error("cannot write configuration snapshot", metadata: ["error": "\(error)"])
        }
        machine.policy.shutdownTimeout = new.node.shutdownTimeout
        let now = MonotonicInstant.now()
        var actions = machine.scale(workers: new.node.workerProcesses, now: now)
        if listenersChanged {
            logger.info("listeners changed: replacing workers")
            actions += machine.restartWorkers(now: now)
        }
        // Children still running get the new snapshot (newly spawned ones read it at start).
        let spawnedNow = Set(actions.compactMap { if case .spawn(let slot) = $0 { slot } else { nil } })
        for (slot, entry) in machine.slots where !spawnedNow.contains(slot) {
            if let pid = entry.current?.pid {
                actions.append(.send(pid, .reload(configurationSnapshot: paths.configurationSnapshot)))
            }
        }
        perform(actions)
        logger.info("configuration reloaded", metadata: ["workers": "\(new.node.workerProcesses)"])
        return nil
    }

    // MARK: Control socket

    private func acceptControlClients() {
        while true {
            guard let fd = UnixSocket.accept(controlListener) else { return }
            if let uid = UnixSocket.peerUID(fd), uid != 0, uid != getuid() {
                close(fd)
                continue
            }
            controlClients[fd] = ControlClient(fileDescriptor: fd, acceptedAt: .now())
        }
    }

    private func handleControlClient(_ client: ControlClient) {
        let bytes: [UInt8]
        do {
            bytes = try FileDescriptor.readAvailable(client.fileDescriptor, limit: 4096)
        } catch {
            if error.errno != EAGAIN { controlClients.removeValue(forKey: client.fileDescriptor) }
            return
        }
        if bytes.isEmpty {
            controlClients.removeValue(forKey: client.fileDescriptor)
            return
        }
        client.buffer += bytes
        guard let newline = client.buffer.firstIndex(of: UInt8(ascii: "\n")) else {
            if client.buffer.count > 4096 { controlClients.removeValue(forKey: client.fileDescriptor) }
            return
        }
        let line = Array(client.buffer[..<newline])
        let response: ControlResponse
        var afterResponse: (() -> Void)?
        if let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) {
            (response, afterResponse) = handle(request)
        } else {
            response = ControlResponse(ok: false, message: "malformed request")
        }
        if let encoded = try? response.encodedLine() {
            // The socket is non-blocking; a response is small, so one short blocking window is acceptable.
            var flags = fcntl(client.fileDescriptor, F_GETFL)
            flags &= ~O_NONBLOCK
            _ = fcntl(client.fileDescriptor, F_SETFL, flags)
            var interval = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(client.fileDescriptor, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            try? FileDescriptor.writeAll(client.fileDescriptor, encoded)
        }
        controlClients.removeValue(forKey: client.fileDescriptor)
        afterResponse?()
    }

    private func expireControlClients() {
        let now = MonotonicInstant.now()
        for (fd, client) in controlClients where now.duration(since: client.acceptedAt) > .seconds(5) {
            controlClients.removeValue(forKey: fd)
        }
    }

    private func handle(_ request: ControlRequest) -> (ControlResponse, (() -> Void)?) {
        let now = MonotonicInstant.now()
        switch request.command {
        case .status:
            return (ControlResponse(ok: true, status: statusReport(now: now)), nil)
        case .stop:
            logger.info("graceful shutdown", metadata: ["requested_by": "control socket"])
            return (
                ControlResponse(ok: true, message: "stopping (supervisor pid \(getpid()))"),
                { [self] in perform(machine.shutdown(now: .now())) }
            )
        case .reload:
            logger.info("reload requested", metadata: ["requested_by": "control socket"])
            if let errors = reload() {
                return (ControlResponse(ok: false, message: errors), nil)
            }
            return (ControlResponse(ok: true, message: "configuration reloaded"), nil)
        case .restartFetcher:
            logger.info("fetcher restart requested")
            perform(machine.restartFetcher(now: now))
            return (ControlResponse(ok: true, message: "fetcher restarting"), nil)
        case .restartWorkers:
            logger.info("worker restart requested")
            perform(machine.restartWorkers(now: now))
            return (ControlResponse(ok: true, message: "workers restarting"), nil)
        case .refresh:
            let fetchers = machine.slots.filter { $0.key.role == .fetcher }.compactMap { $0.value.current?.pid }
            guard !fetchers.isEmpty else {
                return (ControlResponse(ok: false, message: "no fetcher is running"), nil)
            }
            logger.info("refresh requested", metadata: ["requested_by": "control socket"])
            perform(fetchers.map { .send($0, .refresh) })
            return (ControlResponse(ok: true, message: "the fetcher is fetching every CRL and OCSP response now"), nil)
        }
    }

    private func statusReport(now: MonotonicInstant) -> StatusReport {
        var report = processReport(now: now)
        let layout = CacheLayout(root: loaded.configuration.node.cacheDirectory)
        report.cache = RevocationStatus.cacheItems(layout: layout)
        report.stapling = RevocationStatus.stapling(configuration: loaded.configuration, layout: layout)
        return report
    }

    /// What the metrics endpoint renders from, without touching the disk (it reads the cache itself).
    private func metricsSnapshot(now: MonotonicInstant) -> MetricsSnapshot {
        MetricsSnapshot(report: processReport(now: now), configuration: loaded.configuration)
    }

    /// The status report without the cache directory's part: processes, their state and statistics.
    private func processReport(now: MonotonicInstant) -> StatusReport {
        var processes: [StatusReport.Process] = [
            .init(
                role: ProcessRole.supervisor.rawValue, slot: 0, pid: getpid(), state: "running",
                uptimeSeconds: now.duration(since: startedAt).seconds, restarts: 0, lastExit: nil)
        ]
        for key in machine.slots.keys.sorted() {
            guard let entry = machine.slots[key] else { continue }
            let state: String
            if let running = entry.current {
                if running.isReady {
                    state = key.role == .worker ? "ready" : "running"
                } else {
                    state = "starting"
                }
            } else {
                state = "respawning"
            }
            processes.append(
                .init(
                    role: key.role.rawValue, slot: key.index, pid: entry.current?.pid ?? 0, state: state,
                    uptimeSeconds: entry.current.map { now.duration(since: $0.startedAt).seconds } ?? 0,
                    restarts: entry.restarts, lastExit: entry.lastExit))
        }
        for retiring in machine.retiring {
            processes.append(
                .init(
                    role: retiring.slot.role.rawValue, slot: retiring.slot.index, pid: retiring.pid, state: "draining",
                    uptimeSeconds: now.duration(since: retiring.startedAt).seconds,
                    restarts: machine.slots[retiring.slot]?.restarts ?? 0, lastExit: nil))
        }
        for index in processes.indices where processes[index].pid != 0 {
            processes[index].statistics = childStatistics[processes[index].pid]
        }
        return StatusReport(
            supervisorPid: getpid(), config: loaded.path, workerProcesses: machine.workerCount, processes: processes,
            cache: [], stapling: [])
    }

    private func printToStandardError(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
