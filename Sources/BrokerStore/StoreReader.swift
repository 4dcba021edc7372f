import GRDB
import NIOCore

/// Reads retained messages and sessions back into values, validating every column (`RowReader`).
enum StoreReader {
    static func retained(_ db: Database, path: String) throws -> [String: StoredMessage] {
        var messages: [String: StoredMessage] = [:]
        let rows = try Row.fetchCursor(
            db, sql: "SELECT topic, payload, qos, retain, properties, expires_at FROM retained_message"
        )
        while let row = try rows.next() {
            let reader = RowReader(row: row, table: "retained_message", path: path)
            let message = StoredMessage(
                topic: try reader.text(0, "topic"),
                payload: ByteBuffer(bytes: try reader.bytes(1, "payload")),
                qos: try reader.integer(2, "qos"),
                retain: try reader.bool(3, "retain"),
                properties: try reader.bytes(4, "properties"),
                expiresAt: try reader.optionalReal(5, "expires_at")
            )
            messages[message.topic] = message
        }
        return messages
    }

    /// Every session, or only `clientID`'s.
    static func sessions(_ db: Database, path: String, clientID: String? = nil) throws -> [String: StoredSession] {
        let filter = clientID == nil ? "" : " WHERE client_id = ?"
        let arguments: StatementArguments = clientID.map { [$0] } ?? []
        var sessions: [String: StoredSession] = [:]
        let sessionRows = try Row.fetchCursor(
            db,
            sql: """
                SELECT client_id, owner, protocol_version, username, expiry_interval, disconnected_at, inbound_qos2
                FROM session
                """ + filter,
            arguments: arguments
        )
        while let row = try sessionRows.next() {
            let reader = RowReader(row: row, table: "session", path: path)
            let id = try reader.text(0, "client_id")
            let packed = try reader.bytes(6, "inbound_qos2")
            guard let inbound = PackedIntegers.decode(packed, as: UInt16.self) else {
                throw reader.mismatch(
                    "inbound_qos2", expected: "2-byte packet identifiers", found: "\(packed.count) bytes"
                )
            }
            sessions[id] = StoredSession(
                clientID: id,
                owner: try reader.integer(1, "owner"),
                protocolVersion: try reader.integer(2, "protocol_version"),
                username: try reader.optionalText(3, "username"),
                expiryInterval: try reader.integer(4, "expiry_interval"),
                disconnectedAt: try reader.optionalReal(5, "disconnected_at"),
                inboundQoS2: inbound
            )
        }
        guard !sessions.isEmpty else { return sessions }

        let subscriptionRows = try Row.fetchCursor(
            db,
            sql: "SELECT client_id, filter, options, identifier FROM session_subscription" + filter
                + " ORDER BY client_id, position",
            arguments: arguments
        )
        while let row = try subscriptionRows.next() {
            let reader = RowReader(row: row, table: "session_subscription", path: path)
            let id = try reader.text(0, "client_id")
            let subscription = StoredSubscription(
                filter: try reader.text(1, "filter"),
                options: try reader.integer(2, "options"),
                identifier: try reader.optionalInteger(3, "identifier")
            )
            // A child without its session cannot come from our writes; with foreign keys on it cannot exist.
            sessions[id]?.subscriptions.append(subscription)
        }

        // A message several sessions hold is read once and shared (one payload in memory, as in the file).
        var messages: [Int64: StoredMessage] = [:]
        let outboundRows = try Row.fetchCursor(
            db,
            sql: """
                SELECT d.client_id, d.stage, d.packet_identifier, d.qos, d.retain, d.subscription_identifiers,
                    d.message_id, m.topic, m.payload, m.qos, m.retain, m.properties, m.expires_at, m.id
                FROM session_delivery AS d LEFT JOIN message AS m ON m.id = d.message_id
                """ + (clientID == nil ? "" : " WHERE d.client_id = ?") + " ORDER BY d.client_id, d.position",
            arguments: arguments
        )
        while let row = try outboundRows.next() {
            let reader = RowReader(row: row, table: "session_delivery", path: path)
            let id = try reader.text(0, "client_id")
            let rawStage: UInt8 = try reader.integer(1, "stage")
            guard let stage = StoredOutbound.Stage(rawValue: rawStage) else {
                throw reader.mismatch("stage", expected: "0, 1 or 2", found: "\(rawStage)")
            }
            let packed = try reader.bytes(5, "subscription_identifiers")
            guard let identifiers = PackedIntegers.decode(packed, as: Int64.self) else {
                throw reader.mismatch(
                    "subscription_identifiers", expected: "8-byte integers", found: "\(packed.count) bytes"
                )
            }
            let messageID: Int64 = try reader.integer(6, "message_id")
            let message: StoredMessage
            if let known = messages[messageID] {
                message = known
            } else {
                guard try reader.optionalInteger(13, "message.id", as: Int64.self) != nil else {
                    throw reader.mismatch("message_id", expected: "the number of a stored message", found: "\(messageID)")
                }
                let messageReader = RowReader(row: row, table: "message", path: path)
                message = StoredMessage(
                    topic: try messageReader.text(7, "topic"),
                    payload: ByteBuffer(bytes: try messageReader.bytes(8, "payload")),
                    qos: try messageReader.integer(9, "qos"),
                    retain: try messageReader.bool(10, "retain"),
                    properties: try messageReader.bytes(11, "properties"),
                    expiresAt: try messageReader.optionalReal(12, "expires_at"),
                    id: messageID
                )
                messages[messageID] = message
            }
            let outbound = StoredOutbound(
                stage: stage,
                packetIdentifier: try reader.optionalInteger(2, "packet_identifier"),
                qos: try reader.integer(3, "qos"),
                retain: try reader.bool(4, "retain"),
                subscriptionIdentifiers: identifiers.map { Int(truncatingIfNeeded: $0) },
                message: message
            )
            sessions[id]?.outbound.append(outbound)
        }
        return sessions
    }
}
