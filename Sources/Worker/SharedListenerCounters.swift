#if canImport(Glibc)
import Glibc
#endif
import ProcessSupport
import Synchronization

/// One listener's node-wide connection count and connection rate, shared by every worker process through a small
/// memory-mapped file `<run_dir>/listeners/<kind>.<name>.counters` (`max_connections`, `max_conn_rate`).
///
/// **Connections.** The file holds `slotCount` counters; each worker owns one slot for its lifetime, by holding
/// an open-file-description lock (`F_OFD_SETLK`) on the slot's bytes, and only it writes that counter. The
/// kernel drops the lock when the process dies, however it dies, so a respawned worker (or any new one) finds a
/// free slot and zeroes it: a killed worker's connections stop counting with it. To admit a connection a worker
/// first adds 1 to its own slot, then sums every slot, and takes the 1 back if the sum exceeds the limit. Every
/// admitted connection was counted before its own sum was read, so the node never holds more than the limit; at
/// the limit, two workers admitting at the same instant may both refuse (never both accept).
///
/// **Rate.** One 64-bit word holds the theoretical arrival time of GCRA (the generic cell rate algorithm, a
/// token bucket of `rate` tokens refilled at `rate` per second) in microseconds of `CLOCK_MONOTONIC`, which all
/// processes share; a compare-and-swap updates it, so the rate is node-wide and exact.
///
/// **Per address.** Behind the slots, every slot owns a table of `addressBuckets` counters: a client address (an
/// IPv4 address, or an IPv6 /64) counts in the bucket its keyed hash names (SipHash with a random key the first
/// worker writes into the file, so that nobody can aim addresses at one bucket). A worker admits a connection from
/// an address as it admits any: it adds 1 to its own counter of the bucket, sums that bucket over the slots ever
/// claimed, and takes the 1 back if the sum exceeds the limit (`max_connections_per_address`). Addresses that
/// share a bucket share its limit (a rare false refusal, never a false admission); a dead worker's counts go with
/// its slot. The file is sparse: only the tables of slots in use take memory.
///
/// Owned by the worker's `ConnectionAdmission` of that listener; the atomics make it safe from any thread.
final class SharedListenerCounters: @unchecked Sendable {
    // @unchecked: the mapping is immutable after init and every access to it goes through atomics.

    /// Slots for workers alive at once (up to 256 per generation, with retiring ones beside new ones).
    static let slotCount = 1024
    /// Counters per slot for client addresses (see `reserveAddress`).
    static let addressBuckets = 4096
    private static let rateOffset = 0
    /// How many slots were ever claimed (the highest index + 1), so sums over address buckets skip the rest.
    private static let claimedSlotsOffset = 8
    /// The SipHash key of the address buckets, written once (non-zero) by the first worker.
    private static let hashKeyOffset = 16
    private static let slotsOffset = 64
    private static let addressesOffset = 3 * 4096
    private static let fileSize = addressesOffset + slotCount * addressBuckets * 4
    /// `F_OFD_SETLK` (Linux 3.15); the Glibc module does not export it without _GNU_SOURCE.
    private static let setOpenFileDescriptionLock: Int32 = 37

    let path: String
    private let fileDescriptor: Int32
    private let mapping: UnsafeMutableRawPointer
    private let rateWord: UnsafeMutablePointer<Atomic<Int64>>
    private let slots: UnsafeMutablePointer<Atomic<Int64>>
    private let claimedSlots: UnsafeMutablePointer<Atomic<Int64>>
    private let hashKey: UInt64
    /// `slotCount` tables of `addressBuckets` counters, one table per slot.
    private let addresses: UnsafeMutablePointer<Atomic<Int32>>
    /// The slot this process owns.
    let slot: Int

    /// Opens (creating if needed) the counters of `listener` (`ssl:external`) under `runDirectory` and claims a
    /// free slot.
    init(runDirectory: String, listener: String) throws(SystemError) {
        let directory = runDirectory + "/listeners"
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw SystemError(call: "mkdir", errno: errno, detail: directory)
        }
        let path = directory + "/" + String(listener.map { $0 == ":" ? "." : $0 }) + ".counters"
        self.path = path
        let fd = try systemCall("open", detail: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        do throws(SystemError) {
            // Growing a new file fills it with zeros, a valid initial state; an existing one keeps its counters.
            try systemCall("ftruncate", detail: path) { ftruncate(fd, off_t(Self.fileSize)) }
            guard let base = mmap(nil, Self.fileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
                base != MAP_FAILED
            else {
                throw SystemError(call: "mmap", errno: errno, detail: path)
            }
            mapping = base
        } catch {
            close(fd)
            throw error
        }
        fileDescriptor = fd
        rateWord = (mapping + Self.rateOffset).bindMemory(to: Atomic<Int64>.self, capacity: 1)
        slots = (mapping + Self.slotsOffset).bindMemory(to: Atomic<Int64>.self, capacity: Self.slotCount)
        claimedSlots = (mapping + Self.claimedSlotsOffset).bindMemory(to: Atomic<Int64>.self, capacity: 1)
        addresses = (mapping + Self.addressesOffset).bindMemory(
            to: Atomic<Int32>.self, capacity: Self.slotCount * Self.addressBuckets)
        let keyWord = (mapping + Self.hashKeyOffset).bindMemory(to: Atomic<UInt64>.self, capacity: 1)
        let candidate = UInt64.random(in: 1...UInt64.max)
        let (_, existing) = keyWord.pointee.compareExchange(
            expected: 0, desired: candidate, ordering: .sequentiallyConsistent)
        hashKey = existing == 0 ? candidate : existing
        var claimed: Int?
        for index in 0..<Self.slotCount where Self.lock(fd, offset: Self.slotsOffset + index * 8) {
            claimed = index
            break
        }
        guard let claimed else {
            munmap(mapping, Self.fileSize)
            close(fd)
            throw SystemError(call: "fcntl", errno: EAGAIN, detail: "\(path): no free connection counter slot")
        }
        slot = claimed
        // What a dead owner left behind no longer counts.
        slots[claimed].store(0, ordering: .sequentiallyConsistent)
        for bucket in 0..<Self.addressBuckets {
            addresses[claimed * Self.addressBuckets + bucket].store(0, ordering: .sequentiallyConsistent)
        }
        var known = claimedSlots.pointee.load(ordering: .sequentiallyConsistent)
        while known < Int64(claimed + 1) {
            let (exchanged, original) = claimedSlots.pointee.compareExchange(
                expected: known, desired: Int64(claimed + 1), ordering: .sequentiallyConsistent)
            if exchanged { break }
            known = original
        }
    }

    deinit {
        munmap(mapping, Self.fileSize)
        close(fileDescriptor)
    }

    /// Counts one connection if the node holds fewer than `limit`; `false` (nothing counted) otherwise.
    func reserveConnection(limit: Int) -> Bool {
        slots[slot].wrappingAdd(1, ordering: .sequentiallyConsistent)
        if totalConnections > limit {
            slots[slot].wrappingSubtract(1, ordering: .sequentiallyConsistent)
            return false
        }
        return true
    }

    /// A connection counted by `reserveConnection` closed.
    func releaseConnection() {
        slots[slot].wrappingSubtract(1, ordering: .sequentiallyConsistent)
    }

    /// Open connections of this listener on the whole node.
    var totalConnections: Int {
        var total: Int64 = 0
        for index in 0..<Self.slotCount {
            total &+= slots[index].load(ordering: .sequentiallyConsistent)
        }
        return Int(total)
    }

    /// Counts one connection from the client address `key` (see `addressKey`) if the node holds fewer than
    /// `limit` from it; returns the bucket to release, or nil (nothing counted).
    func reserveAddress(_ key: [UInt8], limit: Int) -> Int? {
        let bucket = Int(SipHash.hash(key, key: hashKey) % UInt64(Self.addressBuckets))
        let mine = slot * Self.addressBuckets + bucket
        addresses[mine].wrappingAdd(1, ordering: .sequentiallyConsistent)
        if connections(inBucket: bucket) > limit {
            addresses[mine].wrappingSubtract(1, ordering: .sequentiallyConsistent)
            return nil
        }
        return bucket
    }

    /// A connection counted by `reserveAddress` closed.
    func releaseAddress(bucket: Int) {
        addresses[slot * Self.addressBuckets + bucket].wrappingSubtract(1, ordering: .sequentiallyConsistent)
    }

    /// Open connections on the whole node from the addresses of `bucket`.
    func connections(inBucket bucket: Int) -> Int {
        let claimed = min(Self.slotCount, Int(claimedSlots.pointee.load(ordering: .sequentiallyConsistent)))
        var total: Int32 = 0
        for owner in 0..<claimed {
            total &+= addresses[owner * Self.addressBuckets + bucket].load(ordering: .sequentiallyConsistent)
        }
        return Int(total)
    }

    /// What counts as one client address: an IPv4 address (also IPv4-mapped in IPv6), or an IPv6 /64 (one
    /// subscriber's network, which a single host can fill with addresses).
    static func addressKey(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.count == 16 else { return bytes }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return Array(bytes[12..<16])
        }
        return Array(bytes[0..<8])
    }

    /// Takes one connection from the node-wide budget of `rate` per second (bursts up to `rate`); `false` when
    /// it is used up.
    func takeRateToken(rate: Int, now: Int64 = SharedListenerCounters.monotonicMicroseconds()) -> Bool {
        let interval = Int64(1_000_000 / max(1, rate))
        let tolerance = interval * Int64(max(1, rate) - 1)
        var expected = rateWord.pointee.load(ordering: .sequentiallyConsistent)
        while true {
            let arrival = max(expected, now)
            if arrival - now > tolerance { return false }
            let (exchanged, original) = rateWord.pointee.compareExchange(
                expected: expected, desired: arrival + interval, ordering: .sequentiallyConsistent)
            if exchanged { return true }
            expected = original
        }
    }

    /// `CLOCK_MONOTONIC` in microseconds: the same clock in every process of the machine.
    static func monotonicMicroseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000 + Int64(time.tv_nsec) / 1000
    }

    /// Takes the write lock on 8 bytes at `offset` for this open file description, without waiting.
    private static func lock(_ fd: Int32, offset: Int) -> Bool {
        var request = flock()
        request.l_type = Int16(F_WRLCK)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = off_t(offset)
        request.l_len = 8
        request.l_pid = 0
        while true {
            if fcntl(fd, setOpenFileDescriptionLock, &request) == 0 { return true }
            if errno != EINTR { return false }
        }
    }
}
