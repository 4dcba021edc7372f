import Foundation
import GRDB

/// Message numbers (`StoredMessage.id`) handed out by one process: `block << 40 | n`, from a block that the
/// database's `message_id_block` table (AUTOINCREMENT, never reused) reserved for it. No two processes, and no
/// two runs, share a block, so a number names one message in the whole file.
///
/// A value; the writer thread keeps one for deliveries that come without a number, and takes it back from a copy
/// only when the batch that reserved its block committed.
struct MessageNumbers: Sendable {
    private var next: Int64 = 0
    private var end: Int64 = 0

    mutating func next(_ db: Database) throws -> Int64 {
        if next >= end {
            let range = try Self.reserve(db)
            next = range.lowerBound
            end = range.upperBound
        }
        defer { next += 1 }
        return next
    }

    /// Reserves the next block in the caller's transaction: the numbers are this process's once it commits.
    static func reserve(_ db: Database) throws -> Range<Int64> {
        try db.execute(
            sql: "INSERT INTO message_id_block (reserved_at) VALUES (?)", arguments: [Date().timeIntervalSince1970])
        let block = db.lastInsertedRowID
        let bits = StoreSchema.messageIDBlockBits
        guard block > 0, block < Int64(1) << (63 - bits) else {
            throw BrokerStoreError(
                kind: .sqlite, path: db.description, message: "message number blocks exhausted (block \(block))")
        }
        return (block << bits)..<((block + 1) << bits)
    }
}
