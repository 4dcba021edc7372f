#if canImport(Glibc)
import Glibc
#endif
import ControlChannel
import ProcessSupport

/// The supervisor's process table and every decision about it, as a plain value.
///
/// Each event (`start`, `childExited`, `tick`, `scale`, …) updates the table and returns the actions to carry out;
/// `SupervisorService` performs them (spawn, send, kill) and reports back (`spawned`, `spawnFailed`). Nothing here
/// does I/O, so every policy (backoff, retirement, shutdown deadlines) is tested with made-up pids and times.
/// Lives on the supervisor's single thread.
public struct SupervisorStateMachine: Sendable {
    public struct Policy: Sendable, Equatable {
        /// First respawn delay after an unexpected exit; doubles per consecutive failure.
        public var initialBackoff: Duration = .milliseconds(100)
        public var maximumBackoff: Duration = .seconds(10)
        /// A child that ran this long before exiting starts again from `initialBackoff`.
        public var stableAfter: Duration = .seconds(60)
        /// How long a retiring child or a shutdown may take before SIGKILL (`node.shutdown_timeout`).
        public var shutdownTimeout: Duration = .seconds(15)

        public init(shutdownTimeout: Duration = .seconds(15)) {
            self.shutdownTimeout = shutdownTimeout
        }
    }

    public enum Action: Sendable, Equatable {
        case spawn(ChildSlot)
        case send(pid_t, ChildMessage)
        case kill(pid_t, signal: Int32)
        /// Every child is gone after a shutdown: the supervisor exits with this code.
        case exit(code: Int32)
    }

    /// A running process.
    public struct Running: Sendable, Equatable {
        public var pid: pid_t
        public var startedAt: MonotonicInstant
        public var isReady: Bool
    }

    /// A slot of the table: the process that serves it now, if any, and its history.
    public struct Slot: Sendable, Equatable {
        public var slot: ChildSlot
        public var current: Running?
        public var restarts = 0
        public var lastExit: String?
        public var consecutiveFailures = 0
        /// Set while waiting out a backoff.
        public var respawnAt: MonotonicInstant?
        /// Set while the previous process must exit before a new one may start (the fetcher is never doubled).
        public var awaitingPredecessor: pid_t?
    }

    /// A process asked to quit (scale-down, restart, shutdown), killed at `killAt` if still there.
    public struct Retiring: Sendable, Equatable {
        public var slot: ChildSlot
        public var pid: pid_t
        public var startedAt: MonotonicInstant
        public var killAt: MonotonicInstant
        public var killed = false
    }

    public enum Phase: Sendable, Equatable {
        case idle
        case running
        case shuttingDown(deadline: MonotonicInstant)
        case exited
    }

    public var policy: Policy
    public private(set) var phase: Phase = .idle
    public private(set) var slots: [ChildSlot: Slot] = [:]
    public private(set) var retiring: [Retiring] = []
    public private(set) var workerCount = 0

    public init(policy: Policy) {
        self.policy = policy
    }

    // MARK: Events

    /// Starts the fetcher and `workers` workers.
    public mutating func start(workers: Int, now: MonotonicInstant) -> [Action] {
        precondition(phase == .idle, "start called twice")
        phase = .running
        workerCount = workers
        var actions: [Action] = []
        for slot in [ChildSlot(.fetcher, 0)] + (0..<workers).map({ ChildSlot(.worker, $0) }) {
            slots[slot] = Slot(slot: slot)
            actions.append(.spawn(slot))
        }
        return actions
    }

    /// The service started the process for `slot`.
    public mutating func spawned(_ slot: ChildSlot, pid: pid_t, now: MonotonicInstant) {
        guard var entry = slots[slot] else { return }
        entry.current = Running(pid: pid, startedAt: now, isReady: false)
        entry.respawnAt = nil
        slots[slot] = entry
    }

    /// posix_spawn failed: retry after the backoff, as for a crash.
    public mutating func spawnFailed(_ slot: ChildSlot, reason: String, now: MonotonicInstant) {
        guard var entry = slots[slot] else { return }
        entry.lastExit = "spawn failed: \(reason)"
        scheduleRespawn(&entry, ranFor: .zero, now: now)
        slots[slot] = entry
    }

    /// The child reported `ready` on its channel.
    public mutating func childReady(pid: pid_t) {
        for (key, entry) in slots where entry.current?.pid == pid {
            slots[key]?.current?.isReady = true
        }
    }

    /// waitpid reaped `pid`.
    public mutating func childExited(pid: pid_t, status: ExitStatus, now: MonotonicInstant) -> [Action] {
        if let index = retiring.firstIndex(where: { $0.pid == pid }) {
            let gone = retiring.remove(at: index)
            var actions: [Action] = []
            if var entry = slots[gone.slot], entry.awaitingPredecessor == pid {
                entry.awaitingPredecessor = nil
                slots[gone.slot] = entry
                if phase == .running { actions.append(.spawn(gone.slot)) }
            }
            return actions + exitIfDone()
        }
        guard let key = slots.first(where: { $0.value.current?.pid == pid })?.key, var entry = slots[key],
            let running = entry.current
        else {
            return []
        }
        entry.current = nil
        entry.lastExit = status.description
        switch phase {
        case .running:
            scheduleRespawn(&entry, ranFor: now.duration(since: running.startedAt), now: now)
            slots[key] = entry
            return []
        case .shuttingDown, .exited, .idle:
            slots[key] = entry
            return exitIfDone()
        }
    }

    /// Time passed: respawns whose backoff is over, SIGKILL for processes past their deadline.
    public mutating func tick(now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        if case .running = phase {
            for key in slots.keys.sorted() {
                guard var entry = slots[key], let due = entry.respawnAt, due <= now else { continue }
                entry.respawnAt = nil
                slots[key] = entry
                actions.append(.spawn(key))
            }
        }
        for index in retiring.indices where !retiring[index].killed && retiring[index].killAt <= now {
            retiring[index].killed = true
            actions.append(.kill(retiring[index].pid, signal: SIGKILL))
        }
        if case .shuttingDown(let deadline) = phase, deadline <= now {
            for key in slots.keys.sorted() {
                if let pid = slots[key]?.current?.pid {
                    actions.append(.kill(pid, signal: SIGKILL))
                }
            }
        }
        return actions
    }

    /// Changes the number of workers: new slots are spawned, surplus ones retire gracefully, others are untouched.
    public mutating func scale(workers: Int, now: MonotonicInstant) -> [Action] {
        guard case .running = phase, workers != workerCount else { return [] }
        var actions: [Action] = []
        if workers > workerCount {
            for index in workerCount..<workers {
                let slot = ChildSlot(.worker, index)
                slots[slot] = Slot(slot: slot)
                actions.append(.spawn(slot))
            }
        } else {
            for index in workers..<workerCount {
                let slot = ChildSlot(.worker, index)
                if let entry = slots.removeValue(forKey: slot), let running = entry.current {
                    actions += retire(slot, running, now: now)
                }
            }
        }
        workerCount = workers
        return actions
    }

    /// Replaces the fetcher alone: the old one quits first, then a new one starts (never two at once).
    public mutating func restartFetcher(now: MonotonicInstant) -> [Action] {
        let slot = ChildSlot(.fetcher, 0)
        guard case .running = phase, var entry = slots[slot] else { return [] }
        guard let running = entry.current else {
            // Waiting out a backoff or a predecessor: start now if nothing is in the way.
            if entry.awaitingPredecessor == nil {
                entry.respawnAt = nil
                slots[slot] = entry
                return [.spawn(slot)]
            }
            return []
        }
        entry.current = nil
        entry.awaitingPredecessor = running.pid
        entry.consecutiveFailures = 0
        slots[slot] = entry
        return retire(slot, running, now: now)
    }

    /// Replaces every worker: each old worker drains while its successor already accepts (SO_REUSEPORT).
    public mutating func restartWorkers(now: MonotonicInstant) -> [Action] {
        guard case .running = phase else { return [] }
        var actions: [Action] = []
        for key in slots.keys.sorted() where key.role == .worker {
            guard var entry = slots[key] else { continue }
            if let running = entry.current {
                actions += retire(key, running, now: now)
            }
            entry.current = nil
            entry.respawnAt = nil
            entry.consecutiveFailures = 0
            slots[key] = entry
            actions.append(.spawn(key))
        }
        return actions
    }

    /// Graceful shutdown: every child is told to quit; SIGKILL after `shutdownTimeout`; `.exit(0)` once all are reaped.
    public mutating func shutdown(now: MonotonicInstant) -> [Action] {
        switch phase {
        case .shuttingDown, .exited:
            return []
        case .idle:
            phase = .exited
            return [.exit(code: 0)]
        case .running:
            break
        }
        let deadline = now + policy.shutdownTimeout
        phase = .shuttingDown(deadline: deadline)
        var actions: [Action] = []
        for key in slots.keys.sorted() {
            slots[key]?.respawnAt = nil
            slots[key]?.awaitingPredecessor = nil
            if let pid = slots[key]?.current?.pid {
                actions.append(.send(pid, .quit(deadlineSeconds: Self.wholeSeconds(policy.shutdownTimeout))))
            }
        }
        for index in retiring.indices {
            retiring[index].killAt = min(retiring[index].killAt, deadline)
        }
        return actions + exitIfDone()
    }

    // MARK: Queries

    /// The earliest time at which `tick` has something to do.
    public var nextDeadline: MonotonicInstant? {
        var candidates: [MonotonicInstant] = []
        if case .running = phase {
            candidates += slots.values.compactMap(\.respawnAt)
        }
        candidates += retiring.filter { !$0.killed }.map(\.killAt)
        if case .shuttingDown(let deadline) = phase {
            let anyAlive = slots.values.contains { $0.current != nil }
            if anyAlive { candidates.append(deadline) }
        }
        return candidates.min()
    }

    /// Which slot a live pid serves, and whether it is retiring.
    public func owner(of pid: pid_t) -> (slot: ChildSlot, isRetiring: Bool)? {
        if let entry = slots.values.first(where: { $0.current?.pid == pid }) {
            return (entry.slot, false)
        }
        if let entry = retiring.first(where: { $0.pid == pid }) {
            return (entry.slot, true)
        }
        return nil
    }

    /// Every pid the supervisor is responsible for.
    public var livePids: [pid_t] {
        slots.values.compactMap { $0.current?.pid } + retiring.map(\.pid)
    }

    /// True when every worker slot has a ready process (and no worker slot is waiting).
    public var allWorkersReady: Bool {
        slots.values.filter { $0.slot.role == .worker }.allSatisfy { $0.current?.isReady == true }
    }

    // MARK: Internals

    private mutating func retire(_ slot: ChildSlot, _ running: Running, now: MonotonicInstant) -> [Action] {
        retiring.append(
            Retiring(slot: slot, pid: running.pid, startedAt: running.startedAt, killAt: now + policy.shutdownTimeout)
        )
        return [.send(running.pid, .quit(deadlineSeconds: Self.wholeSeconds(policy.shutdownTimeout)))]
    }

    private mutating func scheduleRespawn(_ entry: inout Slot, ranFor: Duration, now: MonotonicInstant) {
        if ranFor >= policy.stableAfter { entry.consecutiveFailures = 0 }
        entry.restarts += 1
        entry.respawnAt = now + backoff(afterFailures: entry.consecutiveFailures)
        entry.consecutiveFailures += 1
    }

    /// 100 ms, 200 ms, 400 ms, … capped at `maximumBackoff`.
    public func backoff(afterFailures failures: Int) -> Duration {
        var delay = policy.initialBackoff
        for _ in 0..<min(failures, 32) {
            delay *= 2
            if delay >= policy.maximumBackoff { return policy.maximumBackoff }
        }
        return min(delay, policy.maximumBackoff)
    }

    private mutating func exitIfDone() -> [Action] {
        guard case .shuttingDown = phase else { return [] }
        let anyAlive = slots.values.contains { $0.current != nil } || !retiring.isEmpty
        guard !anyAlive else { return [] }
        phase = .exited
        return [.exit(code: 0)]
    }

    private static func wholeSeconds(_ duration: Duration) -> Int {
        max(0, Int(duration.components.seconds))
    }
}
