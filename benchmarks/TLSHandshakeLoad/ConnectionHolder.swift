// The hold mode (--hold N): open N connections, keep them, prove they are still alive, close them.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One thread's share of the held connections, driven by `poll`. Created and used on that thread only.
final class ConnectionHolder {
    private let context: ClientContext
    private let port: Int
    private let count: Int
    private let window: Int
    private let keepAlive: UInt16
    private let timeoutNanoseconds: UInt64
    private let clientIDPrefix: String
    private(set) var held: [HeldConnection] = []
    /// Failure reasons in the order they happened.
    private(set) var failures: [String] = []
    /// Nanoseconds from the start of the connect to CONNACK, per held connection.
    private(set) var openLatencies: [UInt64] = []

    init(context: ClientContext, options: Options, count: Int, thread: Int) {
        self.context = context
        port = options.port
        self.count = count
        window = max(1, options.window)
        keepAlive = UInt16(clamping: options.keepAlive)
        timeoutNanoseconds = UInt64(max(1, options.timeout) * 1e9)
        clientIDPrefix = "hold-\(getpid())-\(thread)-"
    }

    /// Opens `count` connections, at most `window` of them in progress at once.
    func open() {
        var started = 0
        var pending: [HeldConnection] = []
        while started < count || !pending.isEmpty {
            while pending.count < window && started < count {
                let connection = HeldConnection(
                    context: context, port: port, clientID: clientIDPrefix + String(started), keepAlive: keepAlive)
                started += 1
                connection.advance()
                pending.append(connection)
            }
            pending = drive(pending)
        }
    }

    /// Sends PINGREQ on every held connection and waits for each PINGRESP; returns the failure reasons.
    func ping() -> [String] {
        for connection in held { connection.ping() }
        var pending = held.filter { !$0.isDone }
        let deadline = now() + timeoutNanoseconds
        var reasons: [String] = []
        while !pending.isEmpty {
            if now() > deadline {
                for connection in pending { connection.fail("PINGRESP: no answer in time") }
            }
            pending = drive(pending, deadline: deadline)
        }
        for connection in held {
            if case .failed(let reason) = connection.state { reasons.append(reason) }
        }
        return reasons
    }

    var aliveCount: Int { held.filter { $0.state == .alive }.count }

    func closeAll() {
        for connection in held { connection.disconnect() }
        held.removeAll()
    }

    /// One `poll` round over `pending`; returns those still in progress (finished ones are filed).
    private func drive(_ pending: [HeldConnection], deadline: UInt64? = nil) -> [HeldConnection] {
        var descriptors = pending.map { connection in
            pollfd(
                fd: connection.fd, events: Int16(connection.interest == .readable ? POLLIN : POLLOUT), revents: 0)
        }
        let ready = descriptors.isEmpty ? 0 : poll(&descriptors, nfds_t(descriptors.count), 50)
        let time = now()
        var still: [HeldConnection] = []
        still.reserveCapacity(pending.count)
        for (index, connection) in pending.enumerated() {
            if ready > 0 && descriptors[index].revents != 0 {
                connection.advance()
            }
            if !connection.isDone && deadline == nil && time - connection.startedAt > timeoutNanoseconds {
                connection.fail("timeout: no CONNACK within \(timeoutNanoseconds / 1_000_000_000) s (\(connection.state))")
            }
            switch connection.state {
            case .held:
                if deadline == nil {
                    held.append(connection)
                    openLatencies.append(connection.openedAt - connection.startedAt)
                }
            case .failed(let reason):
                if deadline == nil { failures.append(reason) }
            case .alive:
                break
            default:
                still.append(connection)
            }
        }
        return still
    }
}

/// Collects the threads' results (locked; the threads add once each).
final class HoldReport: @unchecked Sendable {
    private let lock = NSLock()
    private var held = 0
    private var failures: [String] = []
    private var latencies: [UInt64] = []
    private var alive = 0
    private var pingFailures: [String] = []

    func addOpened(held count: Int, failures reasons: [String], latencies values: [UInt64]) {
        lock.lock()
        held += count
        failures += reasons
        latencies += values
        lock.unlock()
    }

    func addPinged(alive count: Int, failures reasons: [String]) {
        lock.lock()
        alive += count
        pingFailures += reasons
        lock.unlock()
    }

    var heldCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return held
    }

    func json(requested: Int, threads: Int, openSeconds: Double, holdSeconds: Double, options: Options) -> [String: Any] {
        lock.lock()
        defer { lock.unlock() }
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
        }
        return [
            "mode": "hold", "requested": requested, "held": held, "failed": failures.count,
            "failure_reasons": Self.counted(failures), "first_failures": Array(failures.prefix(5)),
            "open_seconds": openSeconds, "opens_per_second": openSeconds > 0 ? Double(held) / openSeconds : 0,
            "open_p50_ms": percentile(0.5), "open_p99_ms": percentile(0.99), "hold_seconds": holdSeconds,
            "alive_after_hold": alive, "ping_failed": pingFailures.count,
            "ping_failure_reasons": Self.counted(pingFailures), "threads": threads, "window": options.window,
            "keepalive": options.keepAlive, "tls": options.tlsVersion,
        ]
    }

    /// The five most frequent reasons with their counts.
    private static func counted(_ reasons: [String]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for reason in reasons { counts[reason, default: 0] += 1 }
        return Dictionary(uniqueKeysWithValues: counts.sorted { $0.value > $1.value }.prefix(5).map { ($0.key, $0.value) })
    }
}

/// Raises RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit now in force.
func raiseDescriptorLimit() -> UInt64 {
    var limit = rlimit()
    guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { return UInt64(raised.rlim_cur) }
    }
    return UInt64(limit.rlim_cur)
}

/// `RLIMIT_NOFILE` as `getrlimit` takes it (an enum case in Glibc's import).
let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

/// Runs the hold mode and prints its JSON line; returns the exit status (0 when every connection was held and
/// answered its PINGREQ after the hold).
func runHold(_ options: Options, context: ClientContext) -> Int32 {
    let limit = raiseDescriptorLimit()
    if limit < UInt64(options.hold + 64) {
        FileHandle.standardError.write(
            Data("warning: RLIMIT_NOFILE is \(limit), fewer than the \(options.hold) connections need\n".utf8))
    }
    let threads = max(1, min(options.threads, options.hold))
    let report = HoldReport()
    let opened = DispatchGroup()
    let pinged = DispatchGroup()
    let closed = DispatchGroup()
    let pingNow = DispatchSemaphore(value: 0)
    let startedAt = now()
    for thread in 0..<threads {
        let share = options.hold / threads + (thread < options.hold % threads ? 1 : 0)
        opened.enter()
        pinged.enter()
        closed.enter()
        Thread {
            let holder = ConnectionHolder(context: context, options: options, count: share, thread: thread)
            holder.open()
            report.addOpened(held: holder.held.count, failures: holder.failures, latencies: holder.openLatencies)
            opened.leave()
            pingNow.wait()
            let reasons = holder.ping()
            report.addPinged(alive: holder.aliveCount, failures: reasons)
            pinged.leave()
            holder.closeAll()
            closed.leave()
        }.start()
    }
    opened.wait()
    let openSeconds = Double(now() - startedAt) / 1e9
    // For whoever started us (benchmarks/run samples the broker's memory now).
    FileHandle.standardError.write(
        Data("holding \(report.heldCount) connections for \(options.holdSeconds) s (opened in \(openSeconds) s)\n".utf8))
    let holdStarted = now()
    while Double(now() - holdStarted) / 1e9 < options.holdSeconds {
        usleep(50_000)
    }
    let holdSeconds = Double(now() - holdStarted) / 1e9
    for _ in 0..<threads { pingNow.signal() }
    pinged.wait()
    closed.wait()
    var json = report.json(
        requested: options.hold, threads: threads, openSeconds: openSeconds, holdSeconds: holdSeconds, options: options)
    json["nofile_limit"] = limit
    guard let data = try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) else { return 2 }
    print(String(decoding: data, as: UTF8.self))
    let held = json["held"] as? Int ?? 0
    let alive = json["alive_after_hold"] as? Int ?? 0
    return held == options.hold && alive == options.hold ? 0 : 1
}
