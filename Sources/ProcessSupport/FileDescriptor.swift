#if canImport(Glibc)
import Glibc
#endif

/// Small helpers on raw descriptors; callers own the descriptors.
public enum FileDescriptor {
    public static func setNonBlocking(_ fd: Int32) throws(SystemError) {
        let flags = try systemCall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        try systemCall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    public static func setCloseOnExec(_ fd: Int32) throws(SystemError) {
        let flags = try systemCall("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
        try systemCall("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }

    /// A connected stream socketpair, both ends close-on-exec.
    public static func socketPair() throws(SystemError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        try systemCall("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (fds[0], fds[1])
    }

    /// Writes all of `bytes`, retrying on EINTR and short writes; a non-blocking fd that is full throws EAGAIN.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let start = offset
            let written = try systemCall("write") {
                bytes.withUnsafeBytes { buffer in write(fd, buffer.baseAddress.map { $0 + start }, buffer.count - start) }
            }
            offset += written
        }
    }

    /// Reads what is available (up to `limit` bytes). Returns an empty array at EOF; throws EAGAIN when nothing is ready.
    public static func readAvailable(_ fd: Int32, limit: Int = 65536) throws(SystemError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: limit)
        let count = try systemCall("read") {
            buffer.withUnsafeMutableBytes { pointer in read(fd, pointer.baseAddress, limit) }
        }
        return Array(buffer.prefix(count))
    }

    /// Reads a whole small file, or nil if it cannot be opened.
    public static func readFile(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        while result.count < limit {
            guard let chunk = try? readAvailable(fd) else { return nil }
            if chunk.isEmpty { break }
            result.append(contentsOf: chunk)
        }
        return result
    }

    /// Write-temp, fsync, rename, fsync-the-directory: readers see the old file or the new one, never a torn one.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(SystemError) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let temporary = "\(path).tmp.\(getpid())"
        let fd = try systemCall("open", detail: temporary) {
            open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        }
        do {
            // Exactly `mode` whatever the umask; created with it, so never more open than that on the way.
            try systemCall("fchmod", detail: temporary) { fchmod(fd, mode) }
            try writeAll(fd, bytes)
            try systemCall("fsync", detail: temporary) { fsync(fd) }
            close(fd)
            try systemCall("rename", detail: path) { rename(temporary, path) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        let directoryFD = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }

    /// mkdir -p: `path` itself gets `mode` (exactly, when it is created or `enforceMode`), missing parents get
    /// `parentMode` (default: `mode`).
    public static func makeDirectory(
        _ path: String, mode: mode_t, parentMode: mode_t? = nil, enforceMode: Bool = false
    ) throws(SystemError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            let isTarget = index == components.count - 1
            let wanted = isTarget ? mode : (parentMode ?? mode)
            if mkdir(prefix, wanted) == 0 {
                try systemCall("chmod", detail: prefix) { chmod(prefix, wanted) }
            } else {
                let code = Glibc.errno
                if code != EEXIST { throw SystemError(call: "mkdir", errno: code, detail: prefix) }
            }
        }
        if enforceMode {
            try systemCall("chmod", detail: path) { chmod(path, mode) }
        }
    }

    public static func fileExists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}
