#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// Starts child processes with posix_spawn (Foundation's `Process` can only pass stdio).
///
/// The ones named in `descriptors` are dup2'ed onto their target numbers, which clears close-on-exec for the
/// child only; every other descriptor above stderr and those targets is closed in the child, close-on-exec or
/// not: libraries open descriptors without it (SwiftNIO's epoll and accepted sockets), and a child holding an
/// accepted connection would keep it open after the parent closed it.
public enum ProcessSpawner {
    public struct Options: Sendable {
        /// The absolute path to execute.
        public var executable: String
        /// argv, including argv[0].
        public var arguments: [String]
        /// `nil` inherits this process's environment.
        public var environment: [String]?
        /// parent fd → child fd.
        public var descriptors: [(source: Int32, target: Int32)]
        /// Start a new session (daemon mode).
        public var newSession: Bool

        public init(
            executable: String, arguments: [String], environment: [String]? = nil,
            descriptors: [(source: Int32, target: Int32)] = [], newSession: Bool = false
        ) {
            self.executable = executable
            self.arguments = arguments
            self.environment = environment
            self.descriptors = descriptors
            self.newSession = newSession
        }
    }

    /// Spawns the child with an empty signal mask and default dispositions for the signals a supervisor blocks.
    public static func spawn(_ options: Options) throws(SystemError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (source, target) in options.descriptors {
            let rc = posix_spawn_file_actions_adddup2(&actions, source, target)
            if rc != 0 { throw SystemError(call: "posix_spawn_file_actions_adddup2", errno: rc) }
        }
        let firstToClose = (options.descriptors.map(\.target).max() ?? 2) + 1
        let closeRC = CSystemShims_posix_spawn_close_from(&actions, max(3, firstToClose))
        if closeRC != 0 { throw SystemError(call: "posix_spawn_file_actions_addclosefrom_np", errno: closeRC) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGTERM, SIGCHLD, SIGPIPE, SIGUSR1, SIGUSR2, SIGQUIT] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if options.newSession { flags |= CSystemShims_posix_spawn_setsid_flag() }
        posix_spawnattr_setflags(&attributes, Int16(truncatingIfNeeded: flags))

        let environment = options.environment ?? currentEnvironment()
        var pid: pid_t = 0
        let rc = withCStringArray(options.arguments) { argv in
            withCStringArray(environment) { envp in
                posix_spawn(&pid, options.executable, &actions, &attributes, argv, envp)
            }
        }
        if rc != 0 { throw SystemError(call: "posix_spawn", errno: rc, detail: options.executable) }
        return pid
    }

    /// The running executable's absolute path, for re-executing ourselves in another role.
    public static func currentExecutablePath() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return CommandLine.arguments.first ?? "gatehouse" }
        return buffer.withUnsafeBufferPointer { pointer in
            String(decoding: UnsafeRawBufferPointer(start: pointer.baseAddress, count: length), as: UTF8.self)
        }
    }

    public static func currentEnvironment() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }

    private static func withCStringArray<R>(
        _ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R
    ) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return pointers.withUnsafeBufferPointer { buffer in
            // posix_spawn's argv is `char *const[]`; the buffer is never written through.
            body(buffer.baseAddress!)
        }
    }
}
