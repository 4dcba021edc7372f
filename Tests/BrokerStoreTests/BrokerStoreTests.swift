import BrokerStore
import Foundation
import GRDB
import Testing

/// Round trips, write-behind batching, coalescing and durability of one `BrokerStore`, on temp files.
@Suite struct BrokerStoreTests {
    @Test func retainedMessagesRoundTripEveryField() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        for message in Samples.retained {
            store.setRetained(message)
        }
        let expected = Samples.retained.sorted { $0.topic < $1.topic }
        // Visible before the commit (read your own writes), then after it, then from a new connection.
        #expect(try store.loadRetained() == expected)
        try store.flush()
        #expect(try store.loadRetained() == expected)
        store.close()

        let reopened = try BrokerStore(path: directory.database)
        defer { reopened.close() }
        #expect(try reopened.loadRetained() == expected)
        #expect(reopened.lastWriteError == nil)
    }

    @Test func sessionsRoundTripEveryField() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        var absent = Samples.full
        absent.clientID = "absent-fields"
        absent.username = nil
        absent.disconnectedAt = nil
        absent.inboundQoS2 = []
        absent.subscriptions = []
        absent.outbound = []
        for session in [Samples.full, Samples.minimal, absent] {
            store.saveSession(session)
        }
        try store.flush()
        store.close()

        let reopened = try BrokerStore(path: directory.database)
        defer { reopened.close() }
        #expect(try reopened.loadSession(clientID: Samples.full.clientID) == Samples.full)
        #expect(try reopened.loadSession(clientID: "") == Samples.minimal)
        #expect(try reopened.loadSession(clientID: "absent-fields") == absent)
        #expect(try reopened.loadSession(clientID: "nobody") == nil)
        #expect(try reopened.loadSessions() == [Samples.minimal, absent, Samples.full])
    }

    @Test func savingReplacesTheWholeSessionAndDeletingRemovesIt() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        store.saveSession(Samples.full)
        store.saveSession(Samples.session("other", outbound: 3))
        try store.flush()

        var smaller = Samples.full
        smaller.subscriptions = [StoredSubscription(filter: "only", options: 1)]
        smaller.outbound = []
        smaller.owner = 1
        store.saveSession(smaller)
        try store.flush()
        #expect(try store.loadSession(clientID: Samples.full.clientID) == smaller)
        #expect(try store.loadSession(clientID: "other") == Samples.session("other", outbound: 3))

        store.deleteSession(clientID: Samples.full.clientID)
        store.removeRetained(topic: "never-set")
        try store.flush()
        #expect(try store.loadSessions() == [Samples.session("other", outbound: 3)])
        let rows = try DatabaseQueue(path: directory.database).read { db in
            try Int.fetchOne(
                db, sql: "SELECT count(*) FROM session_subscription WHERE client_id = ?",
                arguments: [Samples.full.clientID]
            )
        }
        #expect(rows == 0)
    }

    @Test func writesToOneKeyCoalesceWithinABatch() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A long interval: nothing commits until the flush, so everything lands in one batch.
        let store = try BrokerStore(path: directory.database, batchInterval: .seconds(60))
        defer { store.close() }
        store.setRetained(Samples.message("t", seed: 1))
        store.setRetained(Samples.message("t", seed: 2))
        store.removeRetained(topic: "u")
        store.setRetained(Samples.message("u", seed: 3))
        store.removeRetained(topic: "v")
        store.saveSession(Samples.session("c", outbound: 1))
        store.deleteSession(clientID: "c")
        store.saveSession(Samples.session("c", outbound: 2))
        store.saveSession(Samples.session("d"))
        store.deleteSession(clientID: "d")
        #expect(store.statistics.committedBatches == 0)
        #expect(store.statistics.pendingOperations == 5)

        try store.flush()
        let statistics = store.statistics
        #expect(statistics.enqueuedOperations == 10)
        #expect(statistics.committedOperations == 5)
        #expect(statistics.committedBatches == 1)
        #expect(statistics.pendingOperations == 0)
        #expect(try store.loadRetained() == [Samples.message("t", seed: 2), Samples.message("u", seed: 3)])
        #expect(try store.loadSessions() == [Samples.session("c", outbound: 2)])
    }

    @Test func loadsSeeUncommittedWrites() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database, batchInterval: .seconds(60))
        defer { store.close() }
        store.saveSession(Samples.session("a"))
        store.saveSession(Samples.session("b"))
        store.setRetained(Samples.message("r"))
        try store.flush()

        store.deleteSession(clientID: "a")
        store.saveSession(Samples.session("b", owner: 7))
        store.saveSession(Samples.session("c"))
        store.removeRetained(topic: "r")
        store.setRetained(Samples.message("s"))
        #expect(try store.loadSession(clientID: "a") == nil)
        #expect(try store.loadSession(clientID: "b") == Samples.session("b", owner: 7))
        #expect(try store.loadSession(clientID: "c") == Samples.session("c"))
        #expect(try store.loadSessions() == [Samples.session("b", owner: 7), Samples.session("c")])
        #expect(try store.loadRetained() == [Samples.message("s")])
        #expect(store.statistics.committedBatches == 1)
    }

    @Test func aLoadAlwaysSeesTheWritesBeforeItWhileBatchesLand() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A short interval, so that commits keep landing between and during the loads.
        let store = try BrokerStore(path: directory.database, batchInterval: .microseconds(200))
        defer { store.close() }
        for owner in 0..<3000 {
            store.saveSession(Samples.session("moving", owner: owner))
            store.setRetained(Samples.message("moving", seed: UInt64(owner + 1)))
            if owner % 3 == 0 {
                #expect(try store.loadSession(clientID: "moving")?.owner == owner)
            } else if owner % 3 == 1 {
                #expect(try store.loadSessions().first?.owner == owner)
            } else {
                #expect(try store.loadRetained() == [Samples.message("moving", seed: UInt64(owner + 1))])
            }
        }
        #expect(store.statistics.committedBatches > 10)
    }

    @Test func theWriterThreadCommitsWithoutAFlush() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        let observer = try BrokerStore(path: directory.database)
        defer { observer.close() }
        store.saveSession(Samples.session("timer"))
        #expect(eventually { (try? observer.loadSession(clientID: "timer")) == Samples.session("timer") })

        // With a long interval, reaching `maximumBatchSize` distinct keys commits at once.
        let sized = try BrokerStore(path: directory.database, batchInterval: .seconds(60), maximumBatchSize: 10)
        defer { sized.close() }
        for index in 0..<10 {
            sized.setRetained(Samples.message("size/\(index)"))
        }
        #expect(eventually { ((try? observer.loadRetained()) ?? []).count == 10 })
        #expect(sized.statistics.committedBatches == 1)
    }

    @Test func closeCommitsPendingWritesDurably() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        do {
            let store = try BrokerStore(path: directory.database, batchInterval: .seconds(60))
            store.saveSession(Samples.full)
            store.setRetained(Samples.retained[2])
            store.close()
            #expect(store.lastWriteError == nil)
            store.setRetained(Samples.retained[1])
            #expect(store.lastWriteError?.kind == .closed)
            #expect(throws: BrokerStoreError.self) { _ = try store.loadRetained() }
        }
        let reopened = try BrokerStore(path: directory.database)
        defer { reopened.close() }
        #expect(try reopened.loadSessions() == [Samples.full])
        #expect(try reopened.loadRetained() == [Samples.retained[2]])
    }

    @Test func aFailedBatchIsReportedAndRetried() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A batch of one is always "full": the retry must still back off instead of spinning.
        let store = try BrokerStore(path: directory.database, maximumBatchSize: 1, busyTimeout: .milliseconds(20))
        defer { store.close() }

        // Another connection holds the write lock longer than the busy timeout.
        let blocker = try DatabaseQueue(path: directory.database)
        let locked = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holder = Thread {
            try? blocker.inTransaction(.immediate) { _ in
                locked.signal()
                release.wait()
                return .commit
            }
        }
        holder.start()
        locked.wait()

        store.saveSession(Samples.session("retried"))
        #expect(throws: BrokerStoreError.self) { try store.flush() }
        #expect(store.lastWriteError?.kind == .sqlite)
        #expect(store.lastWriteError?.path == directory.database)
        #expect(store.statistics.failedBatches >= 1)
        // Still visible to this process while it waits for its retry.
        #expect(try store.loadSession(clientID: "retried") == Samples.session("retried"))
        usleep(600_000)
        // Back-off doubles from 10 ms: about six attempts in 0.6 s; without it, one every 20 ms.
        #expect(store.statistics.failedBatches < 12)

        release.signal()
        #expect(eventually { store.lastWriteError == nil })
        try store.flush()
        let observer = try BrokerStore(path: directory.database)
        defer { observer.close() }
        #expect(try observer.loadSession(clientID: "retried") == Samples.session("retried"))
    }
}
