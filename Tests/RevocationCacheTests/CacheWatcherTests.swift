import Foundation
import ProcessSupport
@testable import RevocationCache
import Synchronization
import Testing

/// Real inotify on a temp directory; each test waits at most a few seconds for the watcher thread.
@Suite struct CacheWatcherTests {
    final class Reports: Sendable {
        private let batches = Mutex<[[String]]>([])

        func append(_ paths: [String]) { batches.withLock { $0.append(paths) } }

        var all: [[String]] { batches.withLock { $0 } }

        /// Waits until `predicate` holds for the flattened paths.
        func wait(timeout: Duration = .seconds(3), _ predicate: (Set<String>) -> Bool) -> Bool {
            let deadline = MonotonicInstant.now() + timeout
            while MonotonicInstant.now() < deadline {
                if predicate(Set(all.flatMap { $0 })) { return true }
                usleep(10_000)
            }
            return predicate(Set(all.flatMap { $0 }))
        }
    }

    func makeDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "gatehouse-watch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path + "/crl", withIntermediateDirectories: true)
        return path
    }

    @Test func atomicPublishIsReportedOnceUnderItsFinalName() throws {
        let root = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let watcher = try CacheWatcher(targets: [.init(directory: root + "/crl")])
        let reports = Reports()
        watcher.start { reports.append($0) }
        defer { watcher.stop() }
        usleep(50_000)

        try FileDescriptor.writeAtomically(Array("crl-1".utf8), to: root + "/crl/ca.der")
        #expect(reports.wait { $0.contains(root + "/crl/ca.der") })
        usleep(100_000)
        // The temp file is never reported.
        #expect(reports.all.flatMap { $0 } .allSatisfy { !$0.contains(".tmp.") })
        #expect(reports.all.flatMap { $0 } == [root + "/crl/ca.der"])
    }

    @Test func burstsAreCoalesced() throws {
        let root = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let watcher = try CacheWatcher(targets: [.init(directory: root + "/crl")], settle: .milliseconds(200))
        let reports = Reports()
        watcher.start { reports.append($0) }
        defer { watcher.stop() }
        usleep(50_000)
        for index in 0..<5 {
            try FileDescriptor.writeAtomically(Array("x".utf8), to: root + "/crl/\(index).der")
        }
        #expect(reports.wait { $0.count == 5 })
        #expect(reports.all.count == 1)
    }

    @Test func nameFilterLimitsAFileTarget() throws {
        let root = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let watcher = try CacheWatcher(targets: [.file(root + "/crl/local.pem")])
        let reports = Reports()
        watcher.start { reports.append($0) }
        defer { watcher.stop() }
        usleep(50_000)
        try FileDescriptor.writeAtomically(Array("other".utf8), to: root + "/crl/other.pem")
        // Written in place (not renamed): IN_CLOSE_WRITE counts too.
        try "local".write(toFile: root + "/crl/local.pem", atomically: false, encoding: .utf8)
        #expect(reports.wait { $0.contains(root + "/crl/local.pem") })
        #expect(!reports.all.flatMap { $0 }.contains(root + "/crl/other.pem"))
    }

    @Test func aRemovedAndRecreatedDirectoryIsWatchedAgain() throws {
        let root = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let watcher = try CacheWatcher(targets: [.init(directory: root + "/crl")])
        let reports = Reports()
        watcher.start { reports.append($0) }
        defer { watcher.stop() }
        usleep(50_000)

        try FileManager.default.removeItem(atPath: root + "/crl")
        usleep(100_000)
        try FileManager.default.createDirectory(atPath: root + "/crl", withIntermediateDirectories: true)
        // Whatever the new directory holds when it is picked up again is reported…
        try FileDescriptor.writeAtomically(Array("a".utf8), to: root + "/crl/a.der")
        #expect(reports.wait { $0.contains(root + "/crl/a.der") })
        // …and later changes are seen too.
        try FileDescriptor.writeAtomically(Array("b".utf8), to: root + "/crl/b.der")
        #expect(reports.wait { $0.contains(root + "/crl/b.der") })
    }

    @Test func aDirectoryThatDoesNotExistYetIsPickedUpWhenCreated() throws {
        let root = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let watcher = try CacheWatcher(targets: [.init(directory: root + "/ocsp")])
        let reports = Reports()
        watcher.start { reports.append($0) }
        defer { watcher.stop() }
        try FileManager.default.createDirectory(atPath: root + "/ocsp", withIntermediateDirectories: true)
        usleep(400_000)
        try FileDescriptor.writeAtomically(Array("r".utf8), to: root + "/ocsp/listener.der")
        #expect(reports.wait { $0.contains(root + "/ocsp/listener.der") })
    }

    @Test func targetsInOneDirectoryAreMerged() {
        let merged = CacheWatcher.merge([.file("/a/x.pem"), .file("/a/y.pem"), .file("/b/z.pem")])
        #expect(merged == [.init(directory: "/a", names: ["x.pem", "y.pem"]), .init(directory: "/b", names: ["z.pem"])])
        let everything = CacheWatcher.merge([.file("/a/x.pem"), .init(directory: "/a")])
        #expect(everything == [.init(directory: "/a", names: nil)])
    }
}
