import Foundation
import GRDB

/// Applies a batch of `StoreOperation`s to the database, inside the caller's transaction, with cached statements.
///
/// Saving a session replaces its rows wholesale: the children are deleted and inserted again with fresh
/// positions, so no value a caller passes can break a constraint and block the batch (duplicate filters are kept
/// as given).
enum StoreWriter {
    static func apply(_ operations: [StoreOperation], to db: Database) throws {
        for operation in operations {
            switch operation {
            case .setRetained(let message):
                try setRetained(message, db)
            case .removeRetained(let topic):
                try run(db, "DELETE FROM retained_message WHERE topic = ?", [topic])
            case .saveSession(let session):
                try saveSession(session, db)
            case .deleteSession(let clientID):
                try deleteChildren(of: clientID, db)
                try run(db, "DELETE FROM session WHERE client_id = ?", [clientID])
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
                message.topic, Data(message.payload), Int64(message.qos), message.retain, Data(message.properties),
                message.expiresAt,
            ]
        )
    }

    private static func saveSession(_ session: StoredSession, _ db: Database) throws {
        try deleteChildren(of: session.clientID, db)
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
        for (position, outbound) in session.outbound.enumerated() {
            let message = outbound.message
            try run(
                db,
                """
                INSERT INTO session_outbound (client_id, position, stage, packet_identifier, qos, retain,
                    subscription_identifiers, topic, payload, message_qos, message_retain, properties, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    session.clientID, Int64(position), Int64(outbound.stage.rawValue),
                    outbound.packetIdentifier.map { Int64($0) }, Int64(outbound.qos), outbound.retain,
                    PackedIntegers.encode(outbound.subscriptionIdentifiers.map { Int64($0) }), message.topic,
                    Data(message.payload), Int64(message.qos), message.retain, Data(message.properties),
                    message.expiresAt,
                ]
            )
        }
    }

    private static func deleteChildren(of clientID: String, _ db: Database) throws {
        try run(db, "DELETE FROM session_subscription WHERE client_id = ?", [clientID])
        try run(db, "DELETE FROM session_outbound WHERE client_id = ?", [clientID])
    }

    private static func run(_ db: Database, _ sql: String, _ arguments: StatementArguments) throws {
        let statement = try db.cachedStatement(sql: sql)
        statement.setUncheckedArguments(arguments)
        try statement.execute()
    }
}
