#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ProcessSupport
import Synchronization

/// Watches directories (the cache directory's `crl/` and `ocsp/`, and the folders of local `crlfile`s) with
/// inotify and reports which files changed, so a worker rebuilds its TLS context only when there is something new.
///
/// Reports final names only: a file written in place and closed (IN_CLOSE_WRITE) or renamed into place
/// (IN_MOVED_TO), never the `*.tmp.*` files a writer uses on the way. A watched directory that is removed or
/// replaced is watched again as soon as it reappears, and that counts as a change of everything in it.
/// Events arriving close together are coalesced into one report (`settle`).
///
/// Runs its own thread, blocked in poll(2), so no event loop ever waits on inotify.
public final class CacheWatcher: Sendable {
    /// What to watch: a directory, optionally only some names in it.
    public struct Target: Sendable, Hashable {
        public var directory: String
        /// nil: every file in the directory.
        public var names: Set<String>?

        public init(directory: String, names: Set<String>? = nil) {
            self.directory = directory
            self.names = names
        }

        /// The directory of `file`, filtered to its name.
        public static func file(_ path: String) -> Target {
            let slash = path.lastIndex(of: "/")
            let directory = slash.map { String(path[..<$0]) } ?? "."
            let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
            return Target(directory: directory.isEmpty ? "/" : directory, names: [name])
        }
    }

    private let targets: [Target]
    private let settle: Duration
    private let inotify: Int32
    private let wakeup: (read: Int32, write: Int32)
    private let state = Mutex(State())
    /// Watches registered in init, so that nothing that happens between init and `start` is missed.
    private let initialWatches: [Int32: Target]

    private struct State {
        var stopped = false
    }

    public init(targets: [Target], settle: Duration = .milliseconds(20)) throws(SystemError) {
        self.targets = Self.merge(targets)
        self.settle = settle
        inotify = try systemCall("inotify_init1") { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
        do throws(SystemError) {
            let pair = try FileDescriptor.socketPair()
            try FileDescriptor.setNonBlocking(pair.0)
            try FileDescriptor.setNonBlocking(pair.1)
            wakeup = (pair.0, pair.1)
        } catch {
            close(inotify)
            throw error
        }
        var watches: [Int32: Target] = [:]
        for target in self.targets {
            let descriptor = inotify_add_watch(inotify, target.directory, Self.watchMask)
            if descriptor >= 0 { watches[descriptor] = target }
        }
        initialWatches = watches
    }

    private static let watchMask = UInt32(
        IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

    deinit {
        close(inotify)
        close(wakeup.read)
        close(wakeup.write)
    }

    /// Starts the watcher thread (at a lower priority); `onChange` runs on it with the changed paths (absolute,
    /// de-duplicated).
    public func start(onChange: @escaping @Sendable ([String]) -> Void) {
        let thread = Thread { [self] in
            // Reloads (parsing a million-entry CRL takes ~0.5 s) must not take the CPU from handshakes.
            ParentWatch.lowerCurrentThreadPriority()
            run(onChange: onChange)
        }
        thread.name = "gatehouse-cache-watcher"
        thread.start()
    }

    /// Stops the thread (returns at once; the thread ends within one poll cycle).
    public func stop() {
        state.withLock { $0.stopped = true }
        var byte: UInt8 = 1
        _ = write(wakeup.write, &byte, 1)
    }

    private var isStopped: Bool { state.withLock { $0.stopped } }

    // MARK: The thread

    private func run(onChange: @Sendable ([String]) -> Void) {
        // Directories watched since init report only what changes from then on (events queue in the kernel until
        // this thread reads them); directories that appear later are reported whole.
        var watches = initialWatches
        var missing = Set(targets).subtracting(initialWatches.values)
        var pending = Set<String>()
        var firstPendingAt: MonotonicInstant?

        func addMissingWatches() {
            for target in missing {
                let descriptor = inotify_add_watch(inotify, target.directory, Self.watchMask)
                guard descriptor >= 0 else { continue }
                watches[descriptor] = target
                missing.remove(target)
                // A directory that (re)appeared may hold anything: report what is in it.
                for name in Self.listDirectory(target.directory) where target.names?.contains(name) ?? !Self.isTemporary(name) {
                    pending.insert(target.directory + "/" + name)
                }
                if firstPendingAt == nil && !pending.isEmpty { firstPendingAt = .now() }
            }
        }

        addMissingWatches()

        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !isStopped {
            var timeout: Int32 = missing.isEmpty ? 1000 : 250
            if let first = firstPendingAt {
                let remaining = (first + settle).duration(since: .now()).millisecondsRoundedUp
                timeout = Int32(clamping: max(0, remaining))
            }
            var descriptors = [
                pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeup.read, events: Int16(POLLIN), revents: 0),
            ]
            _ = poll(&descriptors, 2, timeout)
            if isStopped { return }

            if descriptors[0].revents != 0 {
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(inotify, $0.baseAddress, $0.count) }
                    if count <= 0 { break }
                    var offset = 0
                    while offset + MemoryLayout<inotify_event>.size <= count {
                        let event = buffer.withUnsafeBytes {
                            $0.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                        }
                        let nameStart = offset + MemoryLayout<inotify_event>.size
                        let nameBytes = buffer[nameStart..<min(count, nameStart + Int(event.len))].prefix { $0 != 0 }
                        let name = String(decoding: nameBytes, as: UTF8.self)
                        offset = nameStart + Int(event.len)

                        guard let target = watches[event.wd] else { continue }
                        let mask = Int32(bitPattern: event.mask)
                        if mask & Int32(IN_IGNORED) != 0 || mask & Int32(IN_DELETE_SELF) != 0 || mask & Int32(IN_MOVE_SELF) != 0 {
                            // The directory went away (or was replaced): watch it again when it is back.
                            inotify_rm_watch(inotify, event.wd)
                            watches.removeValue(forKey: event.wd)
                            missing.insert(target)
                            continue
                        }
                        guard !name.isEmpty, !Self.isTemporary(name) else { continue }
                        if let names = target.names, !names.contains(name) { continue }
                        pending.insert(target.directory + "/" + name)
                        if firstPendingAt == nil { firstPendingAt = .now() }
                    }
                }
            }
            if !missing.isEmpty { addMissingWatches() }
            if let first = firstPendingAt, MonotonicInstant.now() >= first + settle {
                let changed = pending.sorted()
                pending.removeAll()
                firstPendingAt = nil
                onChange(changed)
            }
        }
    }

    /// Names writers use on the way to the final one (`x.der.tmp.<pid>`), and hidden files.
    public static func isTemporary(_ name: String) -> Bool {
        name.contains(".tmp.") || name.hasPrefix(".")
    }

    static func listDirectory(_ path: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    }

    /// One target per directory, name filters united (nil = everything wins).
    static func merge(_ targets: [Target]) -> [Target] {
        var byDirectory: [String: Set<String>?] = [:]
        var order: [String] = []
        for target in targets {
            if let existing = byDirectory[target.directory] {
                if let current = existing, let names = target.names {
                    byDirectory[target.directory] = .some(current.union(names))
                } else {
                    byDirectory[target.directory] = .some(nil)
                }
            } else {
                byDirectory[target.directory] = .some(target.names)
                order.append(target.directory)
            }
        }
        return order.map { Target(directory: $0, names: byDirectory[$0] ?? nil) }
    }
}
