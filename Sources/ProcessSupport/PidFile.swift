#if canImport(Glibc)
import Glibc
#endif

/// `<run_dir>/gatehouse.pid`, held with an exclusive flock for the supervisor's lifetime, so a second supervisor
/// on the same run directory refuses to start instead of fighting over the control socket.
public final class PidFile {
    public let path: String
    private let fd: Int32

    public enum LockError: Error, Sendable {
        case alreadyRunning(pid: pid_t?)
        case system(SystemError)
    }

    public init(path: String) throws(LockError) {
        self.path = path
        let fd: Int32
        do {
            fd = try systemCall("open", detail: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }
        } catch {
            throw .system(error)
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = PidFile.readPid(path)
            close(fd)
            throw .alreadyRunning(pid: holder)
        }
        ftruncate(fd, 0)
        let text = Array("\(getpid())\n".utf8)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    /// Removes the file and releases the lock.
    public func remove() {
        unlink(path)
        close(fd)
    }

    /// The pid written in the file, if any.
    public static func readPid(_ path: String) -> pid_t? {
        guard let bytes = FileDescriptor.readFile(path, limit: 64) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        return pid_t(text)
    }

    /// True when some process holds the lock on `path`.
    public static func isLocked(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) != 0 { return true }
        flock(fd, LOCK_UN)
        return false
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
