import Synchronization

/// Counts refused or failed TLS handshakes per reason (`TLSHandshakeFailure.reason`), for a metrics exporter.
/// Shared by every connection of a worker; Sendable, lock-protected. Each update is one short critical section.
public final class TLSRefusalCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    private let accepted = Mutex<(completed: Int, onStaleCRL: Int)>((0, 0))

    /// Handshakes that completed, and those of them decided on a CRL past its nextUpdate (grace policy).
    public var completed: (total: Int, onStaleCRL: Int) {
        accepted.withLock { ($0.completed, $0.onStaleCRL) }
    }

    /// Adds one completed handshake.
    public func countCompleted(onStaleCRL: Bool) {
        accepted.withLock {
            $0.completed += 1
            if onStaleCRL { $0.onStaleCRL += 1 }
        }
    }

    public init() {}

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
