// The hold mode's connections: non-blocking sockets driven by `poll`, OpenSSL on the socket itself.
#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// One mTLS + MQTT 3.1.1 connection of the hold mode, from TCP connect to CONNACK, then PINGREQ/PINGRESP.
/// Owned by the `ConnectionHolder` of one thread and used only on that thread (not Sendable).
final class HeldConnection {
    enum State: Equatable {
        case connecting
        case handshaking
        case sendingConnect
        case awaitingConnack
        case held
        case sendingPing
        case awaitingPingResponse
        case alive
        case failed(String)
    }

    /// What the connection waits for before it can make progress.
    enum Interest {
        case readable
        case writable
    }

    let fd: Int32
    private(set) var state: State
    private(set) var interest: Interest = .writable
    let startedAt: UInt64
    private(set) var openedAt: UInt64 = 0
    private var ssl: OpaquePointer?
    private var packet: [UInt8]
    private var received: [UInt8] = []

    /// Starts a non-blocking connect to 127.0.0.1:`port`; the connection is `.failed` at once if that fails.
    init(context: ClientContext, port: Int, clientID: String, keepAlive: UInt16) {
        startedAt = now()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        packet = HeldConnection.connectPacket(clientID: clientID, keepAlive: keepAlive)
        guard fd >= 0 else {
            state = .failed("socket: \(errnoDescription(errno))")
            return
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = connectLoopback(fd, port: port)
        let connectErrno = errno
        guard let ssl = SSL_new(context.pointer) else {
            state = .failed("SSL_new failed")
            return
        }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        SSL_set_connect_state(ssl)
        if result == 0 {
            state = .handshaking
        } else if connectErrno == EINPROGRESS {
            state = .connecting
        } else {
            state = .failed("connect: \(errnoDescription(connectErrno))")
        }
    }

    deinit {
        if let ssl { SSL_free(ssl) }
        if fd >= 0 { close(fd) }
    }

    var isDone: Bool {
        switch state {
        case .held, .alive, .failed: return true
        default: return false
        }
    }

    /// Makes as much progress as possible without blocking (after `poll` said the socket is ready, or at once).
    func advance() {
        while let ssl, !isDone {
            ERR_clear_error()
            switch state {
            case .connecting:
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                if error == EINPROGRESS || error == EALREADY {
                    interest = .writable
                    return
                }
                if error != 0 {
                    state = .failed("connect: \(errnoDescription(error))")
                    return
                }
                // SO_ERROR is 0 both when connected and while still connecting; tell them apart by the peer name.
                var peer = sockaddr_in()
                var peerLength = socklen_t(MemoryLayout<sockaddr_in>.size)
                let named = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &peerLength) }
                }
                if named != 0 {
                    interest = .writable
                    return
                }
                state = .handshaking
            case .handshaking:
                let result = SSL_connect(ssl)
                if result == 1 {
                    state = .sendingConnect
                } else if !wait(ssl, result, during: "handshake") {
                    return
                }
            case .sendingConnect, .sendingPing:
                let result = packet.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
                if result == Int32(packet.count) {
                    received.removeAll(keepingCapacity: true)
                    state = state == .sendingConnect ? .awaitingConnack : .awaitingPingResponse
                } else if !wait(ssl, result, during: state == .sendingConnect ? "CONNECT" : "PINGREQ") {
                    return
                }
            case .awaitingConnack, .awaitingPingResponse:
                let expecting = state == .awaitingConnack
                let wanted = (expecting ? 4 : 2) - received.count
                var buffer = [UInt8](repeating: 0, count: wanted)
                let result = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32(wanted)) }
                if result > 0 {
                    received += buffer.prefix(Int(result))
                    if received.count == (expecting ? 4 : 2) {
                        finishRead(connack: expecting)
                    }
                } else if !wait(ssl, result, during: expecting ? "CONNACK" : "PINGRESP") {
                    return
                }
            case .held, .alive, .failed:
                return
            }
        }
    }

    /// Sends PINGREQ; the connection must be `.held`.
    func ping() {
        guard state == .held else { return }
        packet = [0xC0, 0x00]
        state = .sendingPing
        advance()
    }

    /// DISCONNECT and close_notify, best effort, without waiting for anything.
    func disconnect() {
        guard let ssl, state == .held || state == .alive else { return }
        ERR_clear_error()
        let disconnect: [UInt8] = [0xE0, 0x00]
        _ = disconnect.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, 2) }
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    func fail(_ reason: String) {
        state = .failed(reason)
    }

    private func finishRead(connack: Bool) {
        if connack {
            if received[0] == 0x20 && received[1] == 0x02 && received[3] == 0x00 {
                state = .held
                openedAt = now()
            } else {
                state = .failed("CONNACK refused: bytes \(received.map { String($0, radix: 16) })")
            }
        } else {
            state = received == [0xD0, 0x00] ? .alive : .failed("PINGRESP expected, got \(received)")
        }
    }

    /// After an SSL call that did not complete: true to try again at once, false to wait (interest set) or stop
    /// (state failed).
    private func wait(_ ssl: OpaquePointer, _ result: Int32, during step: String) -> Bool {
        let error = SSL_get_error(ssl, result)
        switch error {
        case SSL_ERROR_WANT_READ:
            interest = .readable
            return false
        case SSL_ERROR_WANT_WRITE:
            interest = .writable
            return false
        case SSL_ERROR_ZERO_RETURN:
            state = .failed("\(step): closed by the broker (close_notify)")
        case SSL_ERROR_SYSCALL:
            let detail = openSSLErrors()
            let code = errno
            state = .failed(
                "\(step): " + (detail.isEmpty ? (code == 0 ? "connection closed (EOF)" : errnoDescription(code)) : detail))
        default:
            state = .failed("\(step): " + openSSLErrors())
        }
        return false
    }

    private static func connectPacket(clientID: String, keepAlive: UInt16) -> [UInt8] {
        let id = Array(clientID.utf8)
        var body: [UInt8] = [0x00, 0x04] + Array("MQTT".utf8) + [0x04, 0x02, UInt8(keepAlive >> 8), UInt8(keepAlive & 0xFF)]
        body += [UInt8(id.count >> 8), UInt8(id.count & 0xFF)] + id
        return [0x10, UInt8(body.count)] + body
    }
}

func errnoDescription(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}

/// The OpenSSL error queue of this thread as text ("" when empty); empties it.
func openSSLErrors() -> String {
    var parts: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        parts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return parts.joined(separator: "; ")
}
