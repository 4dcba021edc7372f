import Foundation
import GRDB

/// The broker's persistent state: retained messages and persistent sessions, in one SQLite file
/// (`<node.data_dir>/gatehouse.db`) that every worker process opens at once.
///
/// Each process (each `BrokerStore`) has its own connections: one writer, used only by the store's writer thread,
/// and up to two readers for the loads (a GRDB `DatabasePool`). The file is in WAL mode with
/// `synchronous = NORMAL`: a load reads a snapshot and never waits for a commit, a commit survives a crash of the
/// process, and the writers of several processes take turns on SQLite's write lock, waiting up to `busyTimeout`
/// for it. Every write transaction is IMMEDIATE, so a writer takes the lock before it reads and never fails
/// half-way on a lock upgrade.
///
/// Writes are write-behind: `setRetained`, `saveSession` and the others enqueue and return at once; a writer thread
/// owned by the store commits everything pending in one transaction every `batchInterval`, or as soon as
/// `maximumBatchSize` distinct keys wait. Writes to the same key coalesce (the last one wins). `flush()` waits for
/// what was enqueued before it. Loads see the store's own uncommitted writes, as if they had been committed.
///
/// Thread-safe: any thread may call any method. Only plain values cross the API; the broker maps its types onto
/// them.
public final class BrokerStore: Sendable {
    /// The database file.
    public let path: String
    private let database: DatabasePool
    private let batcher: WriteBatcher

    /// Opens the database at `path`, creating it (and missing directories, mode 0700) if it does not exist, and
    /// migrates its schema.
    ///
    /// A file that is not an SQLite database, that fails `PRAGMA quick_check`, or that belongs to another
    /// application or a newer Gatehouse throws, and is left exactly as it was: nothing is ever recreated or
    /// discarded. A zero-byte file counts as a new database.
    public init(
        path: String,
        batchInterval: Duration = .milliseconds(5),
        maximumBatchSize: Int = 1000,
        busyTimeout: Duration = .seconds(5)
    ) throws(BrokerStoreError) {
        self.path = path
        let database: DatabasePool
        do {
            database = try Self.open(path: path, busyTimeout: busyTimeout)
        } catch {
            switch error.kind {
            case .notADatabase, .corrupt, .incompatible:
                var refusal = error
                refusal.message += "; the file was left as it is"
                throw refusal
            case .fileSystem, .sqlite, .closed:
                throw error
            }
        }
        self.database = database

        let writer = WriterState()
        batcher = WriteBatcher(path: path, interval: batchInterval, maximumPending: maximumBatchSize) {
            operations throws(BrokerStoreError) in
            do {
                // A block of numbers reserved in a batch that fails is given back with it: keep the copy only
                // once the batch committed.
                var numbers = writer.numbers
                try database.writeWithoutTransaction { db in
                    try db.inTransaction(.immediate) {
                        try StoreWriter.apply(operations, to: db, numbers: &numbers)
                        return .commit
                    }
                }
                writer.numbers = numbers
            } catch {
                throw Self.storeError(error, path: path, while: "committing \(operations.count) writes")
            }
            Self.checkpointIfLarge(database, path: path)
        }
        batcher.start()
    }

    /// What only the writer thread touches between commits.
    private final class WriterState: @unchecked Sendable {
        // @unchecked: used by the commit closure only, which runs on the store's writer thread.
        var numbers = MessageNumbers()
    }

    /// A WAL longer than this after a commit is checkpointed and truncated at once (SQLite's automatic
    /// checkpoint copies pages back but keeps the file at its largest, up to `journal_size_limit`).
    public static let walCheckpointBytes = 8 << 20

    /// `PRAGMA wal_checkpoint(TRUNCATE)` when the WAL has grown past `walCheckpointBytes`. It waits (the busy
    /// timeout) for other connections; if they still hold it back, the next commit tries again.
    private static func checkpointIfLarge(_ database: DatabasePool, path: String) {
        guard fileSize(path + "-wal") > walCheckpointBytes else { return }
        _ = try? database.writeWithoutTransaction { db in
            try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    static func fileSize(_ path: String) -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Int(info.st_size)
    }

    /// The sizes of the database file and of its WAL now, for status and the metrics.
    public var fileSizes: (database: Int, wal: Int) {
        (Self.fileSize(path), Self.fileSize(path + "-wal"))
    }

    /// Reserves message numbers for the caller (a broker numbering the messages its sessions hold): a block of
    /// 2^40 that no other process, now or later, is given. One committed write.
    public func reserveMessageIDs() throws(BrokerStoreError) -> Range<Int64> {
        do {
            return try database.write { db in try MessageNumbers.reserve(db) }
        } catch {
            throw Self.storeError(error, path: path, while: "reserving message numbers")
        }
    }

    deinit {
        close()
    }

    // MARK: Reading

    /// Every retained message, ordered by topic, expired ones included (expiry is the caller's business).
    public func loadRetained() throws(BrokerStoreError) -> [StoredMessage] {
        let overlay = batcher.overlay()
        return try read("loading retained messages") { db in
            var messages = try StoreReader.retained(db, path: self.path)
            for case let (.retained(topic), operation) in overlay {
                switch operation {
                case .setRetained(let message): messages[topic] = message
                default: messages[topic] = nil
                }
            }
            return messages.values.sorted { $0.topic < $1.topic }
        }
    }

    /// Every stored session, ordered by client id.
    public func loadSessions() throws(BrokerStoreError) -> [StoredSession] {
        let overlay = batcher.overlay()
        return try read("loading sessions") { db in
            var sessions = try StoreReader.sessions(db, path: self.path)
            for case let (.session(clientID), operation) in overlay {
                switch operation {
                case .saveSession(let session): sessions[clientID] = session
                default: sessions[clientID] = nil
                }
            }
            return sessions.values.sorted { $0.clientID < $1.clientID }
        }
    }

    /// The session of `clientID`, or nil if none is stored.
    public func loadSession(clientID: String) throws(BrokerStoreError) -> StoredSession? {
        switch batcher.uncommittedOperation(for: .session(clientID: clientID)) {
        case .saveSession(let session):
            return session
        case .some:
            return nil
        case .none:
            return try read("loading a session") { db in
                try StoreReader.sessions(db, path: self.path, clientID: clientID)[clientID]
            }
        }
    }

    // MARK: Writing (write-behind)

    /// Stores `message` as the retained message of its topic. An empty payload is stored as given: clearing a
    /// retained message is `removeRetained(topic:)`.
    public func setRetained(_ message: StoredMessage) {
        batcher.enqueue(.setRetained(message))
    }

    public func removeRetained(topic: String) {
        batcher.enqueue(.removeRetained(topic: topic))
    }

    /// Replaces everything stored for `session.clientID` with `session`.
    public func saveSession(_ session: StoredSession) {
        batcher.enqueue(.saveSession(session))
    }

    public func deleteSession(clientID: String) {
        batcher.enqueue(.deleteSession(clientID: clientID))
    }

    /// Blocks until every write enqueued before the call is committed: it then survives a crash of the process
    /// (in WAL mode with `synchronous = NORMAL`, a power loss may still roll back the last commits). Throws if a
    /// commit fails first; the writes stay pending and are retried.
    public func flush() throws(BrokerStoreError) {
        try batcher.flush()
    }

    /// Calls `callback` (on the writer thread, or at once on the caller's when nothing is pending) once every
    /// operation enqueued before this call is committed. Never blocks: for acknowledging work as durable.
    public func whenCommitted(_ callback: @escaping @Sendable () -> Void) {
        batcher.whenCommitted(callback)
    }

    /// Commits what is pending (one attempt; a failure is left in `lastWriteError`), stops the writer thread and
    /// closes the connection. Later writes are not stored (and reported in `lastWriteError`); later loads throw.
    /// Call `flush()` first to learn whether the last writes landed.
    public func close() {
        guard batcher.close() else { return }
        do {
            try database.close()
        } catch {
            batcher.record(Self.storeError(error, path: path, while: "closing the database"))
        }
    }

    /// The failure of the most recent commit, if it failed; nil again once a later commit succeeds (the failed
    /// writes are retried, never dropped). Also set when a write arrives after `close()`.
    public var lastWriteError: BrokerStoreError? {
        batcher.lastWriteError
    }

    public var statistics: BrokerStoreStatistics {
        batcher.statistics
    }

    // MARK: Helpers

    /// Runs `body` on a reader connection, in a snapshot that starts inside the call.
    ///
    /// Callers take the batcher's overlay *before* calling: a write enqueued before the load is then either in
    /// the overlay or was committed (and left the overlay) before the snapshot began, so the load sees it.
    private func read<T>(_ activity: String, _ body: (Database) throws -> T) throws(BrokerStoreError) -> T {
        guard !batcher.isClosed else {
            throw BrokerStoreError(kind: .closed, path: path, message: "\(activity) after close()")
        }
        do {
            return try database.read(body)
        } catch {
            throw Self.storeError(error, path: path, while: activity)
        }
    }

    /// Checks the file, migrates it, and opens the pool the store runs on.
    private static func open(path: String, busyTimeout: Duration) throws(BrokerStoreError) -> DatabasePool {
        try DatabaseFile.createParentDirectory(of: path)
        if try DatabaseFile.inspect(path) == .missing {
            // Created empty with mode 0600 (it holds messages): SQLite gives its -wal and -shm files the same mode.
            try DatabaseFile.createPrivate(path)
        }

        var configuration = Configuration()
        configuration.label = "gatehouse.store"
        configuration.busyMode = .timeout(Double(busyTimeout.clampedNanoseconds) / 1e9)
        configuration.prepareDatabase { db in
            // Per connection. In WAL mode NORMAL syncs at checkpoints, not at each commit: a commit survives a crash
            // of the process, and a power loss can only roll back the last commits, never corrupt the file.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // The WAL does not shrink by itself after a burst; cap what it keeps once checkpointed (and see
            // `checkpointIfLarge`).
            try db.execute(sql: "PRAGMA journal_size_limit = 16777216")
        }
        // A single connection first, for the checks: a pool would switch the file to WAL before they ran.
        let checker: DatabaseQueue
        do {
            checker = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw storeError(error, path: path, while: "opening the database")
        }
        try checkIntegrity(checker, path: path)
        try prepareSchema(checker, path: path)
        do {
            try checker.close()
            configuration.maximumReaderCount = 2
            return try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw storeError(error, path: path, while: "opening the database")
        }
    }

    private static func checkIntegrity(_ database: DatabaseQueue, path: String) throws(BrokerStoreError) {
        let problems: [String]
        do {
            problems = try database.read { db in
                try String.fetchAll(db, sql: "PRAGMA quick_check(10)")
            }
        } catch {
            throw storeError(error, path: path, while: "checking integrity")
        }
        guard problems != ["ok"] else { return }
        throw BrokerStoreError(
            kind: .corrupt, path: path,
            message: "failed PRAGMA quick_check: "
                + problems.joined(separator: "; ").split(whereSeparator: \.isNewline).joined(separator: "; ")
        )
    }

    private static func prepareSchema(_ database: DatabaseQueue, path: String) throws(BrokerStoreError) {
        do {
            try database.read { db -> Void in
                try StoreSchema.checkCompatibility(db, path: path)
            }
            let mode = try database.writeWithoutTransaction { db in
                try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
            }
            guard mode == "wal" else {
                throw BrokerStoreError(
                    kind: .sqlite, path: path,
                    message: "could not switch to WAL journal mode (still \(mode ?? "unknown"))"
                )
            }
            try database.inTransaction(.immediate) { db in
                try StoreSchema.migrate(db, path: path)
                return .commit
            }
        } catch {
            throw storeError(error, path: path, while: "preparing the schema")
        }
    }

    /// Maps whatever GRDB or our own code threw to a `BrokerStoreError` that says what the store was doing.
    static func storeError(_ error: any Error, path: String, while activity: String) -> BrokerStoreError {
        if let error = error as? BrokerStoreError {
            return error
        }
        guard let error = error as? DatabaseError else {
            return BrokerStoreError(kind: .sqlite, path: path, message: "\(activity): \(error)")
        }
        let reason = error.message ?? "\(error.resultCode)"
        let code = "SQLite error \(error.extendedResultCode.rawValue)"
        switch error.resultCode {
        case .SQLITE_NOTADB:
            return BrokerStoreError(kind: .notADatabase, path: path, message: "\(activity): \(reason) (\(code))")
        case .SQLITE_CORRUPT:
            return BrokerStoreError(
                kind: .corrupt, path: path,
                message: "\(activity): \(reason) (\(code)): the file is damaged or truncated"
            )
        case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY:
            return BrokerStoreError(kind: .fileSystem, path: path, message: "\(activity): \(reason) (\(code))")
        default:
            return BrokerStoreError(kind: .sqlite, path: path, message: "\(activity): \(reason) (\(code))")
        }
    }
}
