import Foundation
import GRDB

/// Applies a batch of `StoreOperation`s to the database, inside the caller's transaction, with cached statements.
///
/// Saving a session replaces its rows wholesale: the children are deleted and inserted again with fresh
/// positions, so no value a caller passes can break a constraint and block the batch (duplicate filters are kept
/// as given). The messages of its deliveries are rows of their own, keyed by number and shared by every session
/// that holds them: a message is written once, when the first session refers to it, and deleted when the last
/// reference goes. Each session snapshot rewrites only its small delivery rows, never the payloads, so a busy
/// queue does not fill the WAL.
enum StoreWriter {
    /// `numbers` gives deliveries written without a message number a fresh one.
    static func apply(_ operations: [StoreOperation], to db: Database, numbers: inout MessageNumbers) throws {
        for operation in operations {
            switch operation {
            case .setRetained(let message):
                try setRetained(message, db)
            case .removeRetained(let topic):
                try run(db, "DELETE FROM retained_message WHERE topic = ?", [topic])
            case .saveSession(let session):
                try saveSession(session, db, numbers: &numbers)
            case .deleteSession(let clientID):
                let previous = try deleteChildren(of: clientID, db)
                try run(db, "DELETE FROM session WHERE client_id = ?", [clientID])
                try deleteUnreferenced(previous, db)
            }
        }
    }

    private static func setRetained(_ message: StoredMessage, _ db: Database) throws {
        try run(
            db,
            """
            INSERT OR REPLACE INTO retained_message (topic, payload, qos, retain, properties, expires_at)
            VALUES (?, ?, ?, ?, ?, ?)
            """,
            [
                message.topic, Data(message.payload.readableBytesView), Int64(message.qos), message.retain,
                Data(message.properties), message.expiresAt,
            ]
        )
    }

    private static func saveSession(_ session: StoredSession, _ db: Database, numbers: inout MessageNumbers) throws {
        let previous = try deleteChildren(of: session.clientID, db)
        try run(
            db,
            """
            INSERT INTO session (client_id, owner, protocol_version, username, expiry_interval, disconnected_at,
                inbound_qos2)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner,
                protocol_version = excluded.protocol_version, username = excluded.username,
                expiry_interval = excluded.expiry_interval, disconnected_at = excluded.disconnected_at,
                inbound_qos2 = excluded.inbound_qos2
            """,
            [
                session.clientID, Int64(session.owner), Int64(session.protocolVersion), session.username,
                Int64(session.expiryInterval), session.disconnectedAt, PackedIntegers.encode(session.inboundQoS2),
            ]
        )
        for (position, subscription) in session.subscriptions.enumerated() {
            try run(
                db,
                """
                INSERT INTO session_subscription (client_id, position, filter, options, identifier)
                VALUES (?, ?, ?, ?, ?)
                """,
                [
                    session.clientID, Int64(position), subscription.filter, Int64(subscription.options),
                    subscription.identifier.map { Int64($0) },
                ]
            )
        }
        var kept: Set<Int64> = []
        for (position, outbound) in session.outbound.enumerated() {
            let message = outbound.message
            let id: Int64
            if let given = message.id {
                id = given
                // A number this session held before is in the table (nobody deletes a referenced message).
                if !previous.contains(given) && !kept.contains(given) {
                    try insertMessageIfMissing(message, id: given, db)
                }
            } else {
                id = try numbers.next(db)
                try insertMessageIfMissing(message, id: id, db)
            }
            kept.insert(id)
            try run(
                db,
                """
                INSERT INTO session_delivery (client_id, position, stage, packet_identifier, qos, retain,
                    subscription_identifiers, message_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    session.clientID, Int64(position), Int64(outbound.stage.rawValue),
                    outbound.packetIdentifier.map { Int64($0) }, Int64(outbound.qos), outbound.retain,
                    PackedIntegers.encode(outbound.subscriptionIdentifiers.map { Int64($0) }), id,
                ]
            )
        }
        try deleteUnreferenced(previous.subtracting(kept), db)
    }

    /// Writes the message under `id` unless a row has it already (another session, or another process, wrote it:
    /// same number, same message). The check and the write are in the caller's IMMEDIATE transaction, so no other
    /// process can delete the row in between.
    private static func insertMessageIfMissing(_ message: StoredMessage, id: Int64, _ db: Database) throws {
        let exists = try db.cachedStatement(sql: "SELECT 1 FROM message WHERE id = ?")
        exists.setUncheckedArguments([id])
        guard try Int64.fetchOne(exists) == nil else { return }
        try run(
            db,
            """
            INSERT INTO message (id, topic, payload, qos, retain, properties, expires_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            [
                id, message.topic, Data(message.payload.readableBytesView), Int64(message.qos), message.retain,
                Data(message.properties), message.expiresAt,
            ]
        )
    }

    /// Deletes the session's subscriptions and deliveries; returns the message numbers its deliveries held.
    private static func deleteChildren(of clientID: String, _ db: Database) throws -> Set<Int64> {
        let held = try db.cachedStatement(sql: "SELECT message_id FROM session_delivery WHERE client_id = ?")
        held.setUncheckedArguments([clientID])
        let previous = Set(try Int64.fetchAll(held))
        try run(db, "DELETE FROM session_subscription WHERE client_id = ?", [clientID])
        try run(db, "DELETE FROM session_delivery WHERE client_id = ?", [clientID])
        return previous
    }

    /// Deletes each of these messages that no session (of any process) refers to any more.
    private static func deleteUnreferenced(_ ids: Set<Int64>, _ db: Database) throws {
        for id in ids {
            try run(
                db,
                """
                DELETE FROM message WHERE id = ?
                    AND NOT EXISTS (SELECT 1 FROM session_delivery WHERE message_id = ?)
                """,
                [id, id]
            )
        }
    }

    private static func run(_ db: Database, _ sql: String, _ arguments: StatementArguments) throws {
        let statement = try db.cachedStatement(sql: sql)
        statement.setUncheckedArguments(arguments)
        try statement.execute()
    }
}
