/// Counters of one `BrokerStore`'s write-behind queue since it opened, for metrics and tests. A snapshot value.
public struct BrokerStoreStatistics: Sendable, Equatable {
    /// Writes accepted by `setRetained`, `removeRetained`, `saveSession` and `deleteSession`.
    public var enqueuedOperations: UInt64 = 0
    /// Writes that reached the database after coalescing (each key once per batch).
    public var committedOperations: UInt64 = 0
    /// Transactions committed.
    public var committedBatches: UInt64 = 0
    /// Transactions that failed and were rolled back (their writes retried later).
    public var failedBatches: UInt64 = 0
    /// Writes not committed yet (waiting, or in the transaction under way), after coalescing.
    public var pendingOperations: Int = 0

    public init() {}
}
