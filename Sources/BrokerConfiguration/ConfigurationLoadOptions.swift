#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How `ConfigurationLoader` treats things outside the file itself: the file system and the machine.
public struct ConfigurationLoadOptions: Sendable {
    /// When true (the default), every file the configuration names must exist and be readable.
    public var checkFiles: Bool
    /// The default for `node.worker_processes` and the meaning of `auto`.
    public var cpuCount: Int

    public init(checkFiles: Bool = true, cpuCount: Int = ConfigurationLoadOptions.onlineCPUCount) {
        self.checkFiles = checkFiles
        self.cpuCount = cpuCount
    }

    /// The number of online CPU cores (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
    public static var onlineCPUCount: Int {
        let count = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return count > 0 ? Int(count) : 1
    }
}
