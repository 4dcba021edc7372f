#if canImport(Glibc)
import Glibc
#endif

/// Process resource limits.
public enum ResourceLimits {
    /// Raises the soft limit on open files to the hard limit and returns the limit now in force. Every client
    /// connection is a descriptor, and a soft limit of 1024 (the usual default) would cap a worker at about a
    /// thousand clients; children started afterwards inherit the raised limit.
    @discardableResult
    public static func raiseOpenFiles() -> UInt64 {
        guard let current = openFiles() else { return 0 }
        guard current.soft < current.hard else { return current.soft }
        var raised = rlimit(rlim_cur: rlim_t(current.hard), rlim_max: rlim_t(current.hard))
        return setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 ? current.hard : current.soft
    }

    /// The open-files limit in force, soft and hard, or nil if it cannot be read.
    public static func openFiles() -> (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }
}
