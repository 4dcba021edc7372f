#if canImport(Glibc)
import Glibc
#endif
import ProcessSupport
import Testing

@Suite struct ResourceLimitsTests {
    private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

    private func setOpenFiles(soft: UInt64, hard: UInt64) {
        var limit = rlimit(rlim_cur: rlim_t(soft), rlim_max: rlim_t(hard))
        _ = setrlimit(Self.resource, &limit)
    }

    @Test func raisesTheSoftOpenFilesLimitToTheHardOne() throws {
        let original = try #require(ResourceLimits.openFiles())
        try #require(original.soft > 256 && original.hard != UInt64(rlim_t.max))
        // Only the soft limit is lowered (an unprivileged process could not raise the hard one back).
        setOpenFiles(soft: original.soft - 100, hard: original.hard)
        defer { setOpenFiles(soft: original.soft, hard: original.hard) }
        #expect(ResourceLimits.openFiles()?.soft == original.soft - 100)

        #expect(ResourceLimits.raiseOpenFiles() == original.hard)
        let now = try #require(ResourceLimits.openFiles())
        #expect(now.soft == original.hard && now.hard == original.hard)
        // Already at the hard limit: nothing changes.
        #expect(ResourceLimits.raiseOpenFiles() == original.hard)
    }
}
