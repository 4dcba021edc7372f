import BrokerStore
import Foundation
import GRDB
import NIOCore
import Testing

/// One row per message however many sessions hold it (issue 15, item 8): sessions refer to messages by number,
/// the last reference takes the row with it, a session snapshot rewrites no payload, the WAL is truncated after a
/// large commit, and a schema 1 file moves over.
@Suite struct BrokerStoreMessageTests {
    static func delivery(_ message: StoredMessage) -> StoredOutbound {
        StoredOutbound(stage: .queued, packetIdentifier: nil, qos: 1, retain: false, message: message)
    }

    static func session(_ clientID: String, holding messages: [StoredMessage]) -> StoredSession {
        StoredSession(
            clientID: clientID, owner: 0, protocolVersion: 5, expiryInterval: 3600, outbound: messages.map(delivery))
    }

    static func count(_ table: String, in path: String) throws -> Int {
        try DatabaseQueue(path: path).read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? -1 }
    }

    @Test func sessionsHoldingOneMessageShareOneRow() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        let ids = try store.reserveMessageIDs()
        var big = Samples.message("fan", size: 1 << 20, seed: 3)
        big.id = ids.lowerBound
        for index in 0..<40 {
            store.saveSession(Self.session("s\(index)", holding: [big]))
        }
        try store.flush()
        #expect(try Self.count("message", in: directory.database) == 1)
        #expect(store.fileSizes.database < 4 << 20, "40 sessions of one 1 MiB message: one copy in the file")

        // Loaded back, the sessions share one payload in memory too.
        let loaded = try store.loadSessions()
        let addresses = Set(loaded.flatMap(\.outbound).map { outbound in
            outbound.message.payload.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        })
        #expect(loaded.count == 40 && addresses.count == 1)
        #expect(loaded.allSatisfy { $0.outbound.first?.message == big && $0.outbound.first?.message.id == big.id })

        // The row goes with the last session that refers to it.
        for index in 0..<39 {
            store.deleteSession(clientID: "s\(index)")
        }
        try store.flush()
        #expect(try Self.count("message", in: directory.database) == 1)
        store.saveSession(Self.session("s39", holding: []))
        try store.flush()
        #expect(try Self.count("message", in: directory.database) == 0)
    }

    @Test func aDeliveryWithoutANumberGetsOneAndNumbersNeverRepeat() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try BrokerStore(path: directory.database)
        let second = try BrokerStore(path: directory.database)
        let a = try first.reserveMessageIDs()
        let b = try second.reserveMessageIDs()
        #expect(!a.overlaps(b))
        #expect(a.count == 1 << 40 && a.lowerBound > 0)
        first.saveSession(Self.session("x", holding: [Samples.message("q"), Samples.message("q")]))
        try first.flush()
        let loaded = try #require(try second.loadSession(clientID: "x"))
        let numbers = loaded.outbound.compactMap(\.message.id)
        #expect(numbers.count == 2 && Set(numbers).count == 2, "each unnumbered delivery is its own message")
        #expect(!numbers.contains { a.contains($0) || b.contains($0) })
        first.close()
        second.close()
        let reopened = try BrokerStore(path: directory.database)
        defer { reopened.close() }
        #expect(try reopened.reserveMessageIDs().lowerBound > max(a.upperBound, b.upperBound) - 1)
    }

    @Test func aLargeCommitLeavesNoLargeWAL() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        let ids = try store.reserveMessageIDs()
        let messages = (0..<24).map { index in
            var message = Samples.message("m/\(index)", size: 1 << 20, seed: UInt64(index + 1))
            message.id = ids.lowerBound + Int64(index)
            return message
        }
        store.saveSession(Self.session("big", holding: messages))
        try store.flush()
        #expect(store.fileSizes.wal <= BrokerStore.walCheckpointBytes, "the WAL is truncated after the commit")
        #expect(try store.loadSession(clientID: "big")?.outbound.count == 24)
    }

    /// A file written by schema 1 (deliveries with their messages inline in `session_outbound`) is migrated: the
    /// sessions load as before, each message under a number of its own.
    @Test func aSchemaOneFileMovesOver() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let queue = try DatabaseQueue(path: directory.database)
        try queue.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE retained_message (topic TEXT NOT NULL PRIMARY KEY, payload BLOB NOT NULL,
                        qos INTEGER NOT NULL, retain INTEGER NOT NULL, properties BLOB NOT NULL, expires_at REAL);
                    CREATE TABLE session (client_id TEXT NOT NULL PRIMARY KEY, owner INTEGER NOT NULL,
                        protocol_version INTEGER NOT NULL, username TEXT, expiry_interval INTEGER NOT NULL,
                        disconnected_at REAL, inbound_qos2 BLOB NOT NULL);
                    CREATE TABLE session_subscription (client_id TEXT NOT NULL REFERENCES session(client_id)
                        ON DELETE CASCADE, position INTEGER NOT NULL, filter TEXT NOT NULL, options INTEGER NOT NULL,
                        identifier INTEGER, PRIMARY KEY (client_id, position)) WITHOUT ROWID;
                    CREATE TABLE session_outbound (client_id TEXT NOT NULL REFERENCES session(client_id)
                        ON DELETE CASCADE, position INTEGER NOT NULL, stage INTEGER NOT NULL,
                        packet_identifier INTEGER, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
                        subscription_identifiers BLOB NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
                        message_qos INTEGER NOT NULL, message_retain INTEGER NOT NULL, properties BLOB NOT NULL,
                        expires_at REAL, PRIMARY KEY (client_id, position));
                    INSERT INTO session VALUES ('old', 1, 4, 'u', 60, NULL, x'');
                    INSERT INTO session_outbound VALUES ('old', 0, 1, 7, 1, 0, x'', 'a/b', x'0102', 1, 0, x'', NULL);
                    INSERT INTO session_outbound VALUES ('old', 1, 0, NULL, 2, 1, x'0000000000000005', 'c', x'03', 2,
                        1, x'01', 12.5);
                    PRAGMA application_id = 1195463749;
                    PRAGMA user_version = 1;
                    """)
        }
        try queue.close()
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        let session = try #require(try store.loadSession(clientID: "old"))
        #expect(session.owner == 1 && session.username == "u")
        #expect(session.outbound == [
            StoredOutbound(
                stage: .published, packetIdentifier: 7, qos: 1, retain: false,
                message: StoredMessage(topic: "a/b", payload: [1, 2], qos: 1, retain: false)),
            StoredOutbound(
                stage: .queued, packetIdentifier: nil, qos: 2, retain: true, subscriptionIdentifiers: [5],
                message: StoredMessage(topic: "c", payload: [3], qos: 2, retain: true, properties: [1], expiresAt: 12.5)),
        ])
        #expect(Set(session.outbound.compactMap(\.message.id)).count == 2)
        #expect(try Self.count("message", in: directory.database) == 2)
        // The moved messages are numbered below every block the store hands out.
        let firstBlock = try store.reserveMessageIDs().lowerBound
        #expect(session.outbound.compactMap(\.message.id).allSatisfy { $0 < firstBlock })
    }
}
