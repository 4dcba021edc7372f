import BrokerStore
import Foundation
import NIOCore
import Testing

/// Several connections to one file at once, as the worker processes have them, and the batcher's throughput.
@Suite struct BrokerStoreConcurrencyTests {
    /// The interpreter for the child-process test: Python's sqlite3 module is a second, independent SQLite user.
    static let python: String? = ["/usr/bin/python3", "/usr/local/bin/python3"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    @Test func twoStoresOnOneFileWriteConcurrentlyFromSeveralThreads() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let stores = [try BrokerStore(path: directory.database), try BrokerStore(path: directory.database)]
        defer { stores.forEach { $0.close() } }
        let threads = 4
        let perThread = 300
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let store = stores[thread % 2]
            for index in 0..<perThread {
                store.saveSession(Samples.session("t\(thread)-\(index)", owner: thread))
                store.setRetained(Samples.message("t\(thread)/\(index)", seed: UInt64(index)))
                // Both connections also fight over one key.
                store.saveSession(Samples.session("shared", owner: thread))
                if index % 50 == 0 {
                    usleep(2_000)
                }
            }
        }
        for store in stores {
            try store.flush()
        }
        for store in stores {
            #expect(store.lastWriteError == nil)
            #expect(store.statistics.failedBatches == 0)
            #expect(store.statistics.committedBatches > 1)
            let sessions = try store.loadSessions()
            #expect(sessions.count == threads * perThread + 1)
            #expect(sessions.first { $0.clientID == "t3-299" } == Samples.session("t3-299", owner: 3))
            #expect((0..<threads).contains(sessions.first { $0.clientID == "shared" }?.owner ?? -1))
            #expect(try store.loadRetained().count == threads * perThread)
        }
    }

    @Test(.enabled(if: python != nil)) func aSecondProcessWritesWhileThisOneDoes() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        let count = 400
        // The child writes retained messages one transaction each, interleaving with this process's batches,
        // then waits to see every session this process writes.
        let script = """
            import sqlite3, sys, time
            path, count = sys.argv[1], int(sys.argv[2])
            db = sqlite3.connect(path, timeout=10, isolation_level=None)
            for i in range(count):
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT OR REPLACE INTO retained_message (topic, payload, qos, retain, properties, "
                           "expires_at) VALUES (?, ?, 1, 1, x'', NULL)", (f"child/{i}", bytes([i % 256]) * 32))
                db.execute("COMMIT")
            deadline = time.time() + 20
            while time.time() < deadline:
                seen = db.execute("SELECT count(*) FROM session WHERE client_id LIKE 'parent-%'").fetchone()[0]
                if seen == count:
                    break
                time.sleep(0.01)
            print(seen)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python ?? "/usr/bin/python3")
        process.arguments = ["-c", script, directory.database, "\(count)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        for index in 0..<count {
            store.saveSession(Samples.session("parent-\(index)"))
            if index % 20 == 0 {
                usleep(1_000)
            }
        }
        try store.flush()
        process.waitUntilExit()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0)
        #expect(printed.trimmingCharacters(in: .whitespacesAndNewlines) == "\(count)")
        let retained = try store.loadRetained()
        #expect(retained.count == count)
        #expect(retained.first { $0.topic == "child/7" }?.payload == ByteBuffer(bytes: [UInt8](repeating: 7, count: 32)))
        #expect(store.lastWriteError == nil)
    }

    /// Not an assertion: prints how many writes per second the batcher commits, for the record.
    @Test func throughputIsPrinted() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try BrokerStore(path: directory.database)
        defer { store.close() }
        let clock = ContinuousClock()

        // Distinct keys: nothing coalesces, every write reaches SQLite. Values are built before the clock starts.
        let distinct = 20_000
        let sessions = (0..<distinct).map { Samples.session("distinct-\($0)") }
        let messages = (0..<distinct).map { Samples.message("distinct/\($0)", size: 64) }
        var start = clock.now
        for index in 0..<distinct {
            store.saveSession(sessions[index])
            store.setRetained(messages[index])
        }
        let enqueued = clock.now - start
        try store.flush()
        let elapsed = clock.now - start
        let before = store.statistics
        report("distinct keys", operations: 2 * distinct, enqueued: enqueued, elapsed: elapsed, before)

        // Hot keys: 1000 sessions and 1000 topics rewritten over and over, as a QoS 1 stream does.
        let rounds = 20
        let hotSessions = (0..<4).map { outbound in
            (0..<1000).map { Samples.session("hot-\($0)", outbound: outbound) }
        }
        let hotMessages = (0..<1000).map { Samples.message("hot/\($0)", size: 64) }
        start = clock.now
        for round in 0..<rounds {
            for index in 0..<1000 {
                store.saveSession(hotSessions[round % 4][index])
                store.setRetained(hotMessages[index])
            }
        }
        try store.flush()
        let hotElapsed = clock.now - start
        var after = store.statistics
        after.committedOperations -= before.committedOperations
        after.committedBatches -= before.committedBatches
        report("hot keys", operations: 2 * 1000 * rounds, enqueued: nil, elapsed: hotElapsed, after)
        #expect(store.lastWriteError == nil)
    }

    private func report(
        _ name: String, operations: Int, enqueued: Duration?, elapsed: Duration, _ statistics: BrokerStoreStatistics
    ) {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = Int(Double(operations) / max(seconds, 1e-9))
        var line = "BrokerStore throughput (\(name)): \(operations) saveSession+setRetained in "
        line += String(format: "%.3f s = %d ops/s", seconds, rate)
        if let enqueued {
            line += ", enqueue alone \(enqueued)"
        }
        line += "; \(statistics.committedOperations) rows-sets written in \(statistics.committedBatches) transactions"
        print(line)
    }
}
