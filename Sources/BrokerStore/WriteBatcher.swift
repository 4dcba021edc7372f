import Foundation

/// The write-behind queue of one `BrokerStore`: callers enqueue and return at once; one writer thread commits
/// everything pending in one transaction every `interval`, sooner when `maximumPending` keys wait or a caller
/// flushes.
///
/// Pending operations are keyed by `StoreKey` and coalesce (last one wins), so memory is bounded by the number of
/// distinct retained topics and sessions, not by the write rate: a producer faster than the disk coalesces instead
/// of queueing without bound. A batch that fails to commit goes back into `pending` (behind anything newer for the
/// same key) and is retried with a growing delay (up to one second); the failure stays in `lastError` until a later
/// commit succeeds.
///
/// All mutable state is guarded by `condition`. The database is touched only by `commit`, on the writer thread,
/// never while the lock is held.
final class WriteBatcher: @unchecked Sendable {
    // @unchecked: every `var` below is read and written only with `condition` locked.
    typealias Commit = @Sendable ([StoreOperation]) throws(BrokerStoreError) -> Void

    private static let maximumRetryDelay: UInt64 = 1_000_000_000

    private let condition = MonotonicCondition()
    private let commit: Commit
    private let interval: UInt64
    private let maximumPending: Int
    private let path: String

    private var pending: [StoreKey: StoreOperation] = [:]
    /// The batch being committed, kept visible to readers until it is in the database or back in `pending`.
    private var inFlight: [StoreKey: StoreOperation] = [:]
    /// When the oldest pending operation arrived, or when the last failure happened (CLOCK_MONOTONIC ns).
    private var pendingSince: UInt64 = 0
    /// Operations accepted so far, and how many of them are committed; a flush waits for `committed` to reach
    /// the `enqueued` it saw.
    private var enqueued: UInt64 = 0
    private var committed: UInt64 = 0
    private var failures: UInt64 = 0
    private var committedOperations: UInt64 = 0
    private var committedBatches: UInt64 = 0
    private var retryDelay: UInt64 = 0
    private var flushRequests: UInt64 = 0
    private var flushRequestsServed: UInt64 = 0
    private var lastError: BrokerStoreError?
    /// Callbacks waiting for `committed` to reach their target (`whenCommitted`), in target order.
    private var commitWaiters: [(target: UInt64, callback: @Sendable () -> Void)] = []
    private var isClosing = false
    private var writerExited = false

    init(path: String, interval: Duration, maximumPending: Int, commit: @escaping Commit) {
        self.path = path
        self.interval = interval.clampedNanoseconds
        self.maximumPending = max(1, maximumPending)
        self.commit = commit
    }

    /// Starts the writer thread; call once.
    func start() {
        let thread = Thread { [self] in
            self.run()
        }
        thread.name = "gatehouse.store"
        thread.start()
    }

    func enqueue(_ operation: StoreOperation) {
        condition.lock()
        defer { condition.unlock() }
        guard !isClosing else {
            lastError = BrokerStoreError(
                kind: .closed, path: path, message: "a write arrived after close() and was not stored"
            )
            return
        }
        enqueued += 1
        let wasEmpty = pending.isEmpty
        pending[operation.key] = operation
        if wasEmpty {
            pendingSince = MonotonicCondition.now()
            condition.broadcast()
        } else if pending.count == maximumPending {
            condition.broadcast()
        }
    }

    /// Calls `callback` once every operation enqueued before now is committed (at once if it already is).
    func whenCommitted(_ callback: @escaping @Sendable () -> Void) {
        condition.lock()
        let target = enqueued
        guard committed < target, !writerExited else {
            condition.unlock()
            callback()
            return
        }
        commitWaiters.append((target, callback))
        condition.unlock()
    }

    /// Returns once every operation enqueued before the call is committed; throws if a commit fails first.
    func flush() throws(BrokerStoreError) {
        condition.lock()
        defer { condition.unlock() }
        let target = enqueued
        let failuresAtStart = failures
        guard committed < target else { return }
        flushRequests += 1
        condition.broadcast()
        while committed < target {
            if failures != failuresAtStart || writerExited {
                throw lastError
                    ?? BrokerStoreError(
                        kind: .closed, path: path, message: "the store closed before the flush completed"
                    )
            }
            condition.wait()
        }
    }

    /// Commits what is pending (one attempt), then stops the writer thread. Returns false if already closed.
    func close() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let first = !isClosing
        isClosing = true
        condition.broadcast()
        while !writerExited {
            condition.wait()
        }
        return first
    }

    /// Reports a failure that happened outside a commit (closing the connection) through `lastWriteError`.
    func record(_ error: BrokerStoreError) {
        condition.withLock { lastError = error }
    }

    var statistics: BrokerStoreStatistics {
        condition.withLock {
            var statistics = BrokerStoreStatistics()
            statistics.enqueuedOperations = enqueued
            statistics.committedOperations = committedOperations
            statistics.committedBatches = committedBatches
            statistics.failedBatches = failures
            statistics.pendingOperations = pending.count + inFlight.count
            return statistics
        }
    }

    var isClosed: Bool {
        condition.withLock { isClosing }
    }

    var lastWriteError: BrokerStoreError? {
        condition.withLock { lastError }
    }

    /// The newest operation on `key` that is not committed yet; nil means the database has the latest state.
    /// Take it before reading the database: an operation leaves `inFlight` only after its commit returned.
    func uncommittedOperation(for key: StoreKey) -> StoreOperation? {
        condition.withLock { pending[key] ?? inFlight[key] }
    }

    /// Every operation not yet committed, newest per key. Same rule as `uncommittedOperation(for:)`.
    func overlay() -> [StoreKey: StoreOperation] {
        condition.withLock { inFlight.merging(pending) { _, newer in newer } }
    }

    private func run() {
        condition.lock()
        defer {
            writerExited = true
            condition.broadcast()
            condition.unlock()
        }
        var closingAttemptFailed = false
        while true {
            while pending.isEmpty && !isClosing {
                condition.wait()
            }
            if pending.isEmpty || closingAttemptFailed {
                return
            }
            let due = pendingSince &+ max(interval, retryDelay)
            // A full batch goes at once, unless it is waiting out a failure: then only a flush or close hurries it.
            while !isClosing && flushRequests == flushRequestsServed
                && (pending.count < maximumPending || retryDelay > 0) && MonotonicCondition.now() < due
            {
                condition.wait(untilNanoseconds: due)
            }
            let batch = pending
            let target = enqueued
            let closingAtTake = isClosing
            pending = [:]
            inFlight = batch
            flushRequestsServed = flushRequests
            condition.unlock()
            var failure: BrokerStoreError?
            do {
                try commit(Array(batch.values))
            } catch {
                failure = error
            }
            condition.lock()
            inFlight = [:]
            if let failure {
                for (key, operation) in batch where pending[key] == nil {
                    pending[key] = operation
                }
                lastError = failure
                failures += 1
                retryDelay = min(max(retryDelay * 2, interval * 2, 1_000_000), Self.maximumRetryDelay)
                pendingSince = MonotonicCondition.now()
                closingAttemptFailed = closingAtTake
            } else {
                committed = target
                committedOperations += UInt64(batch.count)
                committedBatches += 1
                lastError = nil
                retryDelay = 0
            }
            condition.broadcast()
            let ready = commitWaiters.prefix { $0.target <= committed }
            if !ready.isEmpty {
                commitWaiters.removeFirst(ready.count)
                condition.unlock()
                for waiter in ready { waiter.callback() }
                condition.lock()
            }
        }
    }
}
