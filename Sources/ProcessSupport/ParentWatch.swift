#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// Ties a child's life to its supervisor's: the kernel sends `signal` when the parent dies.
public enum ParentWatch {
    /// Arms PR_SET_PDEATHSIG, then checks the parent is still the one expected (it may have died before the call).
    /// Returns false when the expected parent is already gone.
    public static func arm(signal: Int32, expectedParent: pid_t) throws(SystemError) -> Bool {
        try systemCall("prctl(PR_SET_PDEATHSIG)") { CSystemShims_set_parent_death_signal(signal) }
        return getppid() == expectedParent
    }

    /// Lowers the calling thread's scheduling priority (nice 10), for background work such as parsing a large
    /// CRL, so it yields the CPU to event loops serving clients.
    public static func lowerCurrentThreadPriority() {
        _ = CSystemShims_set_thread_nice(10)
    }

}
