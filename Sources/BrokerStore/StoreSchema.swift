import GRDB

/// The database schema and its migrations, numbered by `PRAGMA user_version`.
///
/// The file is marked with `PRAGMA application_id` so that a database of another application is refused instead of
/// having tables added to it. Migrations run in one IMMEDIATE transaction, so that workers starting together on
/// a new file serialize on SQLite's write lock and only the first one migrates.
enum StoreSchema {
    /// "GATE".
    static let applicationID: Int32 = 0x4741_5445

    /// Migration `n` takes the schema from version `n` to `n + 1`. Append only; never edit a shipped one.
    static let migrations: [String] = [
        """
        CREATE TABLE retained_message (
            topic TEXT NOT NULL PRIMARY KEY,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            properties BLOB NOT NULL,
            expires_at REAL
        );
        CREATE TABLE session (
            client_id TEXT NOT NULL PRIMARY KEY,
            owner INTEGER NOT NULL,
            protocol_version INTEGER NOT NULL,
            username TEXT,
            expiry_interval INTEGER NOT NULL,
            disconnected_at REAL,
            inbound_qos2 BLOB NOT NULL
        );
        CREATE TABLE session_subscription (
            client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            filter TEXT NOT NULL,
            options INTEGER NOT NULL,
            identifier INTEGER,
            PRIMARY KEY (client_id, position)
        ) WITHOUT ROWID;
        CREATE TABLE session_outbound (
            client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            stage INTEGER NOT NULL,
            packet_identifier INTEGER,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            subscription_identifiers BLOB NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            message_qos INTEGER NOT NULL,
            message_retain INTEGER NOT NULL,
            properties BLOB NOT NULL,
            expires_at REAL,
            PRIMARY KEY (client_id, position)
        );
        """,
        // 1 → 2: a message queued for many sessions is stored once (`message`), sessions refer to it by number
        // (`session_delivery`); `message_id_block` hands each process a block of 2^40 numbers. The rows of
        // `session_outbound` move over, each message under its old rowid (block 0, which is never handed out).
        """
        CREATE TABLE message (
            id INTEGER NOT NULL PRIMARY KEY,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            properties BLOB NOT NULL,
            expires_at REAL
        );
        CREATE TABLE session_delivery (
            client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            stage INTEGER NOT NULL,
            packet_identifier INTEGER,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            subscription_identifiers BLOB NOT NULL,
            message_id INTEGER NOT NULL,
            PRIMARY KEY (client_id, position)
        ) WITHOUT ROWID;
        CREATE INDEX session_delivery_message ON session_delivery (message_id);
        CREATE TABLE message_id_block (
            block INTEGER PRIMARY KEY AUTOINCREMENT,
            reserved_at REAL NOT NULL
        );
        INSERT INTO message (id, topic, payload, qos, retain, properties, expires_at)
            SELECT rowid, topic, payload, message_qos, message_retain, properties, expires_at FROM session_outbound;
        INSERT INTO session_delivery (client_id, position, stage, packet_identifier, qos, retain,
                subscription_identifiers, message_id)
            SELECT client_id, position, stage, packet_identifier, qos, retain, subscription_identifiers, rowid
            FROM session_outbound;
        DROP TABLE session_outbound;
        """,
    ]

    /// Message numbers are `block << messageIDBlockBits | n`: a block holds 2^40 numbers, and blocks up to 2^23
    /// keep every number below 2^63.
    static let messageIDBlockBits: Int64 = 40

    /// Throws unless the database is Gatehouse's (any schema version this build knows) or a new, empty one.
    /// Runs before anything is written, so that a foreign file is refused untouched. Returns the schema version.
    @discardableResult
    static func checkCompatibility(_ db: Database, path: String) throws -> Int {
        let applicationID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        if applicationID != Self.applicationID {
            guard applicationID == 0 else {
                throw BrokerStoreError(
                    kind: .incompatible, path: path,
                    message: "is the SQLite database of another application (application_id \(applicationID))"
                )
            }
            let tables =
                try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                ) ?? 0
            guard tables == 0 && version == 0 else {
                throw BrokerStoreError(
                    kind: .incompatible, path: path,
                    message: "is the SQLite database of another application (\(tables) tables, no Gatehouse"
                        + " application_id)"
                )
            }
        }
        guard version >= 0 && version <= migrations.count else {
            throw BrokerStoreError(
                kind: .incompatible, path: path,
                message: "has schema version \(version), not one this Gatehouse knows (0 to"
                    + " \(migrations.count)); a newer Gatehouse wrote it, or it is damaged"
            )
        }
        return version
    }

    /// Brings the schema up to date; must run inside an IMMEDIATE transaction, so that the check and the
    /// migration see the same file even when several processes start at once.
    static func migrate(_ db: Database, path: String) throws {
        let version = try checkCompatibility(db, path: path)
        guard version < migrations.count else { return }
        for migration in migrations[version...] {
            try db.execute(sql: migration)
        }
        try db.execute(sql: "PRAGMA application_id = \(Self.applicationID)")
        try db.execute(sql: "PRAGMA user_version = \(migrations.count)")
    }
}
