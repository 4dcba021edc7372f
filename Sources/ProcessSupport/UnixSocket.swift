#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// Unix-domain stream sockets for the control socket: a listener owned by the supervisor, and a blocking
/// client used by the CLI.
public enum UnixSocket {
    /// Binds and listens at `path` with mode 0600 (the umask is tightened around bind, so there is no window in
    /// which the socket is more open). An existing stale socket file at `path` is replaced.
    public static func listen(at path: String) throws(SystemError) -> Int32 {
        let fd = try systemCall("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        do {
            var address = try makeAddress(path)
            unlink(path)
            let previous = umask(0o177)
            defer { umask(previous) }
            try systemCall("bind", detail: path) {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
            try systemCall("chmod", detail: path) { chmod(path, 0o600) }
            try systemCall("listen", detail: path) { Glibc.listen(fd, 16) }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// Connects to `path` (blocking) with send/receive timeouts.
    public static func connect(to path: String, timeout: Duration) throws(SystemError) -> Int32 {
        let fd = try systemCall("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do {
            var address = try makeAddress(path)
            var interval = timeval(
                tv_sec: Int(timeout.components.seconds),
                tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000)
            )
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            try systemCall("connect", detail: path) {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// Accepts one pending connection as a non-blocking, close-on-exec descriptor; nil when none is pending.
    public static func accept(_ listener: Int32) -> Int32? {
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { return nil }
        do {
            try FileDescriptor.setCloseOnExec(fd)
            try FileDescriptor.setNonBlocking(fd)
        } catch {
            close(fd)
            return nil
        }
        return fd
    }

    /// The credentials of the peer of a connected Unix socket.
    public static func peerUID(_ fd: Int32) -> uid_t? {
        var uid: uid_t = 0
        guard CSystemShims_peer_uid(fd, &uid) == 0 else { return nil }
        return uid
    }

    private static func makeAddress(_ path: String) throws(SystemError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw SystemError(call: "bind", errno: ENAMETOOLONG, detail: path)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }
}
