#if canImport(Glibc)
import Glibc
#endif

/// Checks that a TCP address can be listened on before workers are started, so a busy port is one clear error
/// instead of a crash loop. Binds without SO_REUSEPORT, so any current listener (ours included) counts as busy.
public enum ListenProbe {
    public static func check(host: String, port: Int) throws(SystemError) {
        let fd = try TCPSocket.listening(host: host, port: port, backlog: 1)
        close(fd)
    }
}

/// A listening TCP socket (close-on-exec, SO_REUSEADDR, IPv6 sockets v6-only) for an IPv4 or IPv6 literal.
public enum TCPSocket {
    /// Returns the listening descriptor; the caller closes it.
    public static func listening(host: String, port: Int, backlog: Int32) throws(SystemError) -> Int32 {
        let isIPv6 = host.contains(":")
        let fd = try systemCall("socket") {
            socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        var one: Int32 = 1
        // SO_REUSEADDR only skips TIME_WAIT leftovers; a live listener still makes bind fail.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let detail = isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
        do throws(SystemError) {
            if isIPv6 {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_port = in_port_t(UInt16(port).bigEndian)
                guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else {
                    throw SystemError(call: "inet_pton", errno: EINVAL, detail: host)
                }
                try bind(fd, &address, detail: detail)
            } else {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
                    throw SystemError(call: "inet_pton", errno: EINVAL, detail: host)
                }
                try bind(fd, &address, detail: detail)
            }
            try systemCall("listen", detail: detail) { listen(fd, backlog) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    private static func bind<Address>(_ fd: Int32, _ address: inout Address, detail: String) throws(SystemError) {
        try systemCall("bind", detail: detail) {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<Address>.size))
                }
            }
        }
    }
}
