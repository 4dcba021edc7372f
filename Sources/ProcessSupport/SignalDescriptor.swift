#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// Signals delivered as readable events on a descriptor (signalfd), so a poll loop handles them like any input
/// and no code runs in signal-handler context.
///
/// Create it on the main thread before any other thread starts: the signals are blocked in the calling thread,
/// and threads created later inherit the mask.
public final class SignalDescriptor {
    public let fileDescriptor: Int32

    public init(signals: [Int32]) throws(SystemError) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        let rc = pthread_sigmask(SIG_BLOCK, &set, nil)
        if rc != 0 { throw SystemError(call: "pthread_sigmask", errno: rc) }
        fileDescriptor = try systemCall("signalfd") {
            signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        }
    }

    deinit {
        close(fileDescriptor)
    }

    /// Every signal pending now (empty when none).
    public func drain() -> [Int32] {
        var result: [Int32] = []
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        while true {
            let count = withUnsafeMutableBytes(of: &info) { read(fileDescriptor, $0.baseAddress, size) }
            if count == size {
                result.append(Int32(bitPattern: info.ssi_signo))
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                return result
            }
        }
    }
}
