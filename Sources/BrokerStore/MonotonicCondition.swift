#if canImport(Glibc)
import Glibc
#endif

/// A mutex with one condition variable whose timed waits run on CLOCK_MONOTONIC, so that a jump of the wall clock
/// can neither stall nor hurry the batch timer (`NSCondition.wait(until:)` waits on the wall clock).
///
/// Owns both pthread objects. Shared by the `WriteBatcher`'s writer thread and the threads that call the store.
final class MonotonicCondition: @unchecked Sendable {
    // @unchecked: pthread mutexes and condition variables exist to be shared between threads; the pointers never
    // change after init.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deinitialize(count: 1)
        condition.deallocate()
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    func lock() {
        pthread_mutex_lock(mutex)
    }

    func unlock() {
        pthread_mutex_unlock(mutex)
    }

    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Waits for a broadcast; the lock must be held. Spurious wake-ups happen: callers loop on their predicate.
    func wait() {
        pthread_cond_wait(condition, mutex)
    }

    /// Waits for a broadcast or until `deadline` (nanoseconds on CLOCK_MONOTONIC); the lock must be held.
    func wait(untilNanoseconds deadline: UInt64) {
        var spec = timespec()
        spec.tv_sec = Int(deadline / 1_000_000_000)
        spec.tv_nsec = Int(deadline % 1_000_000_000)
        pthread_cond_timedwait(condition, mutex, &spec)
    }

    func broadcast() {
        pthread_cond_broadcast(condition)
    }

    /// Now on CLOCK_MONOTONIC, in nanoseconds.
    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}

extension Duration {
    /// Whole nanoseconds, clamped at zero.
    var clampedNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !nanoseconds.overflow else { return seconds < 0 ? 0 : UInt64.max / 2 }
        let total = nanoseconds.partialValue + attoseconds / 1_000_000_000
        return total > 0 ? UInt64(total) : 0
    }
}
