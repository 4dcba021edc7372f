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

    @Test func theLimitPerAddressHoldsAcrossWorkers() throws {
        let directory = try runDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try SharedListenerCounters(runDirectory: directory, listener: "tcp:a")
        let second = try SharedListenerCounters(runDirectory: directory, listener: "tcp:a")
        let one: [UInt8] = [127, 0, 0, 1]
        let a = try #require(first.reserveAddress(one, limit: 2))
        let b = try #require(second.reserveAddress(one, limit: 2))
        #expect(a == b)
        #expect(first.reserveAddress(one, limit: 2) == nil)
        #expect(second.reserveAddress(one, limit: 2) == nil)
        #expect(second.connections(inBucket: a) == 2)
        first.releaseAddress(bucket: a)
        #expect(second.reserveAddress(one, limit: 2) == a)
        #expect(first.reserveAddress(one, limit: 2) == nil)
    }

    @Test func bothWorkersHashWithTheKeyTheFirstWrote() throws {
        let directory = try runDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try SharedListenerCounters(runDirectory: directory, listener: "tcp:k")
        let second = try SharedListenerCounters(runDirectory: directory, listener: "tcp:k")
        for last in UInt8(0)..<64 {
            let address: [UInt8] = [10, 1, 2, last]
            let bucket = try #require(first.reserveAddress(address, limit: 1000))
            #expect(second.reserveAddress(address, limit: 1000) == bucket)
        }
    }

    @Test func aDeadWorkersAddressesStopCounting() throws {
        let directory = try runDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let survivor = try SharedListenerCounters(runDirectory: directory, listener: "tcp:d")
        var dying: SharedListenerCounters? = try SharedListenerCounters(runDirectory: directory, listener: "tcp:d")
        let bucket = try #require(dying?.reserveAddress([192, 0, 2, 1], limit: 1))
        #expect(survivor.reserveAddress([192, 0, 2, 1], limit: 1) == nil)
        dying = nil
        _ = try SharedListenerCounters(runDirectory: directory, listener: "tcp:d")
        #expect(survivor.connections(inBucket: bucket) == 0)
        #expect(survivor.reserveAddress([192, 0, 2, 1], limit: 1) == bucket)
    }

    @Test func addressKeys() {
        #expect(SharedListenerCounters.addressKey([192, 0, 2, 1]) == [192, 0, 2, 1])
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1]
        #expect(SharedListenerCounters.addressKey(mapped) == [192, 0, 2, 1])
        let v6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 1, 0, 2, 0xA, 0xB, 0xC, 0xD, 1, 2, 3, 4]
        #expect(SharedListenerCounters.addressKey(v6) == [0x20, 0x01, 0x0D, 0xB8, 0, 1, 0, 2])
    }

    /// The reference vectors of SipHash-2-4 (key 00…0f; messages of 0 and 15 bytes 00, 01, …).
    @Test func sipHashReferenceVectors() {
        let k0: UInt64 = 0x0706_0504_0302_0100
        let k1: UInt64 = 0x0F0E_0D0C_0B0A_0908
        #expect(SipHash.hash([], k0: k0, k1: k1) == 0x726F_DB47_DD0E_0E31)
        #expect(SipHash.hash(Array(0..<15), k0: k0, k1: k1) == 0xA129_CA61_49BE_45E5)
        #expect(SipHash.hash(Array(0..<8), k0: k0, k1: k1) == 0x93F5_F579_9A93_2462)
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
