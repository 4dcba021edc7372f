#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import Worker

/// `SharedListenerCounters`: the node-wide connection count and rate shared through a memory-mapped file. Two
/// instances in one process stand for two workers (each holds its own open file description and slot lock).
@Suite struct SharedListenerCountersTests {
    private func runDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "gatehouse-counters-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func theLimitHoldsAcrossWorkers() throws {
        let directory = try runDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try SharedListenerCounters(runDirectory: directory, listener: "tcp:external")
        let second = try SharedListenerCounters(runDirectory: directory, listener: "tcp:external")
        #expect(first.slot != second.slot)
        #expect(first.reserveConnection(limit: 3))
        #expect(second.reserveConnection(limit: 3))
        #expect(second.reserveConnection(limit: 3))
        #expect(!first.reserveConnection(limit: 3))
        #expect(!second.reserveConnection(limit: 3))
        #expect(first.totalConnections == 3)
        second.releaseConnection()
        #expect(first.reserveConnection(limit: 3))
        #expect(!second.reserveConnection(limit: 3))
    }

    @Test func aDeadWorkersSlotIsFreedAndZeroed() throws {
        let directory = try runDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let survivor = try SharedListenerCounters(runDirectory: directory, listener: "ssl:x")
        var dying: SharedListenerCounters? = try SharedListenerCounters(runDirectory: directory, listener: "ssl:x")
        let dyingSlot = try #require(dying?.slot)
        #expect(dying?.reserveConnection(limit: 10) == true)
        #expect(dying?.reserveConnection(limit: 10) == true)
        #expect(survivor.totalConnections == 2)
        // Closing the file (as the kernel does for a killed process) drops the slot lock; its count stays
        // until a new worker takes the slot and zeroes it.
        dying = nil
        let respawned = try SharedListenerCounters(runDirectory: directory, listener: "ssl:x")
        #expect(respawned.slot == dyingSlot)
        #expect(survivor.totalConnections == 0)
    }

    @Test func theRateAllowsABurstThenRefills() throws {
        let directory = try runDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try SharedListenerCounters(runDirectory: directory, listener: "tcp:r")
        let second = try SharedListenerCounters(runDirectory: directory, listener: "tcp:r")
        let start: Int64 = 1_000_000_000
        var granted = 0
        for index in 0..<20 where (index.isMultiple(of: 2) ? first : second).takeRateToken(rate: 5, now: start) {
            granted += 1
        }
        #expect(granted == 5, "a burst of 5 at 5/s, shared by both workers")
        #expect(!first.takeRateToken(rate: 5, now: start + 199_999))
        #expect(second.takeRateToken(rate: 5, now: start + 200_000))
        #expect(!first.takeRateToken(rate: 5, now: start + 200_000))
        var afterASecond = 0
        for _ in 0..<10 where first.takeRateToken(rate: 5, now: start + 1_400_000) {
            afterASecond += 1
        }
        #expect(afterASecond == 5)
    }
}
