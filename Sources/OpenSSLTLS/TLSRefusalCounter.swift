import Synchronization

/// Counts refused or failed TLS handshakes per reason (`TLSHandshakeFailure.reason`), for a metrics exporter.
/// Shared by every connection of a worker; Sendable, lock-protected. Each update is one short critical section.
public final class TLSRefusalCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    private let accepted = Mutex(Accepted())

    private struct Accepted {
        var completed = 0
        var onStaleCRL = 0
        var resumptionsRefused = 0
    }

    /// Handshakes that completed, and those of them decided on a CRL past its nextUpdate (grace policy).
    public var completed: (total: Int, onStaleCRL: Int) {
        accepted.withLock { ($0.completed, $0.onStaleCRL) }
    }

    /// Tickets not honoured because a full handshake with their certificate would have failed at that moment.
    public var resumptionsRefused: Int {
        accepted.withLock { $0.resumptionsRefused }
    }

    /// Adds one completed handshake.
    public func countCompleted(onStaleCRL: Bool) {
        accepted.withLock {
            $0.completed += 1
            if onStaleCRL { $0.onStaleCRL += 1 }
        }
    }

    /// Adds one refused ticket.
    public func countRefusedResumption() {
        accepted.withLock { $0.resumptionsRefused += 1 }
    }

    /// Refusal log lines allowed per second and listener; the rest are counted and summed up in one line.
    public static let logLinesPerSecond = 20
    private let logBudget = Mutex(LogBudget())

    private struct LogBudget {
        var windowStart = ContinuousClock.now
        var used = 0
        var suppressed: [String: Int] = [:]
    }

    public init() {}

    /// Whether a refusal for `reason` gets a log line of its own: at most `logLinesPerSecond` a second, so that a
    /// flood of bad handshakes (a slowloris, a scanner) cannot flood the log. The counters still count each one.
    public func admitLogLine(reason: String) -> Bool {
        logBudget.withLock { budget in
            let now = ContinuousClock.now
            if now - budget.windowStart >= .seconds(1) {
                budget.windowStart = now
                budget.used = 0
            }
            guard budget.used < Self.logLinesPerSecond else {
                budget.suppressed[reason, default: 0] += 1
                return false
            }
            budget.used += 1
            return true
        }
    }

    /// The refusals not logged one by one since the last call, by reason (empty when there were none).
    public func takeSuppressed() -> [String: Int] {
        logBudget.withLock { budget in
            defer { budget.suppressed = [:] }
            return budget.suppressed
        }
    }

    /// Adds one refusal for `reason`.
    public func increment(reason: String) {
        counts.withLock { $0[reason, default: 0] += 1 }
    }

    /// The count for one reason (0 if never seen).
    public func count(for reason: String) -> Int {
        counts.withLock { $0[reason] ?? 0 }
    }

    /// A snapshot of every reason's count.
    public var snapshot: [String: Int] {
        counts.withLock { $0 }
    }

    /// The sum over all reasons.
    public var total: Int {
        counts.withLock { $0.values.reduce(0, +) }
    }
}
