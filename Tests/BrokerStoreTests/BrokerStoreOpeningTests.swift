import BrokerStore
import Foundation
import GRDB
import Testing

/// What `BrokerStore.init` does with the path: directories, new and empty files, and files it must refuse while
/// leaving them exactly as they were.
@Suite struct BrokerStoreOpeningTests {
    func contents(_ path: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path))
    }

    func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? Int) ?? -1
    }

    /// Opening must fail with `kind`, name the path, and leave the file byte for byte and create no side files.
    func expectRefused(_ path: String, _ kinds: Set<BrokerStoreError.Kind>, _ words: String...) throws {
        let before = try contents(path)
        do {
            let store = try BrokerStore(path: path)
            store.close()
            Issue.record("opened \(path)")
        } catch {
            #expect(kinds.contains(error.kind), "\(error)")
            #expect(error.path == path)
            #expect(error.description.contains(path))
            for word in words {
                #expect(error.message.contains(word), "\(error.message)")
            }
        }
        #expect(try contents(path) == before)
        #expect(!FileManager.default.fileExists(atPath: path + "-journal"))
    }

    @Test func missingDirectoriesAreCreatedOwnerOnly() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/data/node/gatehouse.db"
        let store = try BrokerStore(path: path)
        store.setRetained(Samples.message("x"))
        try store.flush()
        store.close()
        #expect(try mode(directory.path + "/data") == 0o700)
        #expect(try mode(directory.path + "/data/node") == 0o700)
        #expect(FileManager.default.fileExists(atPath: path))
    }

    @Test func aPathThroughAFileIsAClearError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try (Data([1])).write(to: URL(fileURLWithPath: directory.path + "/plain"))
        #expect {
            _ = try BrokerStore(path: directory.path + "/plain/gatehouse.db")
        } throws: { error in
            (error as? BrokerStoreError)?.kind == .fileSystem
                && "\(error)".contains("not a directory")
        }
    }

    @Test func anEmptyFileIsANewDatabase() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try (Data()).write(to: URL(fileURLWithPath: directory.database))
        let store = try BrokerStore(path: directory.database)
        store.saveSession(Samples.full)
        try store.flush()
        store.close()
        let reopened = try BrokerStore(path: directory.database)
        defer { reopened.close() }
        #expect(try reopened.loadSessions() == [Samples.full])
    }

    @Test func randomBytesAreRefusedUntouched() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try (Data(Samples.bytes(8192, seed: 5))).write(to: URL(fileURLWithPath: directory.database))
        try expectRefused(directory.database, [.notADatabase], "not an SQLite database", "left as it is")
        #expect(!FileManager.default.fileExists(atPath: directory.database + "-wal"))
        #expect(!FileManager.default.fileExists(atPath: directory.database + "-shm"))
    }

    @Test func aDirectoryAtThePathIsRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(atPath: directory.database, withIntermediateDirectories: false)
        #expect {
            _ = try BrokerStore(path: directory.database)
        } throws: { error in
            (error as? BrokerStoreError)?.kind == .notADatabase
        }
    }

    @Test func anSQLiteHeaderOverGarbageIsRefusedUntouched() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var bytes = Array("SQLite format 3".utf8) + [0]
        bytes += Samples.bytes(8192 - bytes.count, seed: 6)
        try (Data(bytes)).write(to: URL(fileURLWithPath: directory.database))
        try expectRefused(directory.database, [.notADatabase, .corrupt])
    }

    @Test func aTruncatedDatabaseIsRefusedUntouched() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        for index in 0..<200 {
            store.saveSession(Samples.session("client-\(index)", outbound: 3, payload: 200))
            store.setRetained(Samples.message("topic/\(index)", size: 300))
        }
        try store.flush()
        store.close()
        // The last connection closed: the WAL is checkpointed into the main file and removed.
        #expect(!FileManager.default.fileExists(atPath: directory.database + "-wal"))
        let full = try contents(directory.database)
        #expect(full.count > 100_000)

        try full.prefix(full.count / 2).write(to: URL(fileURLWithPath: directory.database))
        try expectRefused(directory.database, [.corrupt], "malformed")

        try full.prefix(60).write(to: URL(fileURLWithPath: directory.database))
        try expectRefused(directory.database, [.corrupt], "truncated")
    }

    @Test func aDamagedPageFailsTheQuickCheck() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        for index in 0..<200 {
            store.setRetained(Samples.message("topic/\(index)", size: 300))
        }
        try store.flush()
        store.close()
        var bytes = [UInt8](try contents(directory.database))
        // Scribble over the middle of the file, past the header and the schema page.
        let start = bytes.count / 2
        for index in start..<start + 4096 {
            bytes[index] = 0xA5
        }
        try Data(bytes).write(to: URL(fileURLWithPath: directory.database))
        try expectRefused(directory.database, [.corrupt])
    }

    @Test func anotherApplicationsDatabaseIsRefusedUntouched() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try DatabaseQueue(path: directory.database).write { db in
            try db.execute(sql: "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me')")
        }
        try expectRefused(directory.database, [.incompatible], "another application")
    }

    @Test func aNewerSchemaIsRefusedUntouched() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        store.close()
        try DatabaseQueue(path: directory.database).write { db in
            try db.execute(sql: "PRAGMA user_version = 99")
        }
        try expectRefused(directory.database, [.incompatible], "schema version 99")
    }

    @Test func aValueOutOfRangeIsAnErrorNotATrap() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        store.saveSession(Samples.full)
        store.setRetained(Samples.message("x"))
        try store.flush()
        let other = try DatabaseQueue(path: directory.database)
        try other.write { db in
            try db.execute(sql: "UPDATE retained_message SET qos = 300")
            try db.execute(sql: "UPDATE session_delivery SET stage = 9 WHERE position = 1")
        }
        #expect {
            _ = try store.loadRetained()
        } throws: { error in
            "\(error)".contains("table retained_message, column qos")
                && (error as? BrokerStoreError)?.kind == .corrupt
        }
        #expect {
            _ = try store.loadSession(clientID: Samples.full.clientID)
        } throws: { error in
            "\(error)".contains("column stage")
        }
        try other.write { db in
            try db.execute(sql: "UPDATE session SET inbound_qos2 = x'010203'")
        }
        #expect {
            _ = try store.loadSessions()
        } throws: { error in
            "\(error)".contains("column inbound_qos2")
        }
    }
}
