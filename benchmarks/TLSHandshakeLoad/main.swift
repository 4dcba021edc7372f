// tls-handshake-load: full mTLS handshakes + MQTT CONNECT/CONNACK per second against a broker, used by
// benchmarks/run. Each thread loops: TCP connect, TLS handshake with a client certificate (no resumption),
// MQTT 3.1.1 CONNECT, wait for CONNACK, DISCONNECT, close. Prints one JSON object; with --samples FILE it also
// writes "start_ns latency_ns ok" per handshake, for latency over time (e.g. during a CRL swap).
//
// Hold mode (--hold N [--hold-seconds S]): opens N concurrent connections the same way (at most --window per
// thread in progress at once, non-blocking, --threads threads), keeps them all open for S seconds, then checks
// each with PINGREQ/PINGRESP and closes them. It prints "holding N connections ..." on stderr once all are open
// and one JSON object on stdout at the end (see ConnectionHolder.swift); it exits 1 unless all N were held and
// answered.
#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import COpenSSLShims
import Foundation

struct Options {
    var port = 8883
    var threads = 4
    var seconds = 5.0
    var certificate = ""
    var key = ""
    var ca = ""
    var tlsVersion = "1.3"
    var samples: String?
    var expectRefusal = false
    /// Send status_request and count the handshakes that came back with an OCSP staple.
    var requestStatus = false
    /// Hold mode: this many concurrent connections (0: the handshake-rate mode).
    var hold = 0
    var holdSeconds = 10.0
    /// Hold mode: connections in progress at once, per thread.
    var window = 64
    /// Hold mode: the MQTT keep alive sent in CONNECT (0: none, the broker never times the client out).
    var keepAlive = 0
    /// Hold mode: seconds one connection may take to reach CONNACK, and the PINGRESP phase may take.
    var timeout = 60.0

    static func parse() -> Options {
        var options = Options()
        let arguments = CommandLine.arguments
        var index = 1
        func value() -> String {
            index += 1
            return index < arguments.count ? arguments[index] : ""
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--port": options.port = Int(value()) ?? 8883
            case "--threads": options.threads = Int(value()) ?? 4
            case "--seconds": options.seconds = Double(value()) ?? 5
            case "--cert": options.certificate = value()
            case "--key": options.key = value()
            case "--ca": options.ca = value()
            case "--tls": options.tlsVersion = value()
            case "--samples": options.samples = value()
            case "--expect-refusal": options.expectRefusal = true
            case "--status": options.requestStatus = true
            case "--hold": options.hold = Int(value()) ?? 0
            case "--hold-seconds": options.holdSeconds = Double(value()) ?? 10
            case "--window": options.window = Int(value()) ?? 64
            case "--keepalive": options.keepAlive = Int(value()) ?? 0
            case "--timeout": options.timeout = Double(value()) ?? 60
            default:
                FileHandle.standardError.write(Data("unknown option \(arguments[index])\n".utf8))
                exit(2)
            }
            index += 1
        }
        return options
    }
}

/// connect(2) to 127.0.0.1:`port`; its return value.
func connectLoopback(_ fd: Int32, port: Int) -> Int32 {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
}

func now() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// The client SSL_CTX: read-only once built, shared by the threads (OpenSSL allows SSL_new from many threads).
final class ClientContext: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ options: Options) {
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            FileHandle.standardError.write(Data("SSL_CTX_new failed\n".utf8))
            exit(2)
        }
        pointer = context
        let version = options.tlsVersion == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION
        _ = COpenSSLShims_SSL_CTX_set_min_proto_version(context, Int32(version))
        _ = COpenSSLShims_SSL_CTX_set_max_proto_version(context, Int32(version))
        // Full handshakes every time: no client-side session cache.
        _ = COpenSSLShims_SSL_CTX_set_session_cache_mode(context, Int(SSL_SESS_CACHE_OFF))
        guard SSL_CTX_use_certificate_chain_file(context, options.certificate) == 1,
            SSL_CTX_use_PrivateKey_file(context, options.key, SSL_FILETYPE_PEM) == 1,
            SSL_CTX_load_verify_locations(context, options.ca, nil) == 1
        else {
            FileHandle.standardError.write(Data("cannot load the client certificate, key or CA\n".utf8))
            exit(2)
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        if options.hold > 0 {
            // Thousands of idle connections: give their read and write buffers back while they wait.
            _ = COpenSSLShims_SSL_CTX_set_mode(context, Int(SSL_MODE_RELEASE_BUFFERS))
        }
    }
}

/// One handshake + CONNECT/CONNACK: whether the broker accepted, and whether the handshake carried a staple.
func attempt(_ context: ClientContext, port: Int, clientID: String, requestStatus: Bool) -> (ok: Bool, stapled: Bool) {
    var stapled = false
    let ok = attempt(context, port: port, clientID: clientID, requestStatus: requestStatus, stapled: &stapled)
    return (ok, stapled)
}

func attempt(
    _ context: ClientContext, port: Int, clientID: String, requestStatus: Bool, stapled: inout Bool
) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let connected = connectLoopback(fd, port: port)
    guard connected == 0, let ssl = SSL_new(context.pointer) else { return false }
    defer { SSL_free(ssl) }
    SSL_set_fd(ssl, fd)
    if requestStatus {
        _ = SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_STATUS_REQ_TYPE, Int(TLSEXT_STATUSTYPE_ocsp), nil)
    }
    guard SSL_connect(ssl) == 1 else {
        ERR_clear_error()
        return false
    }
    if requestStatus {
        var response: UnsafeMutablePointer<UInt8>?
        stapled = withUnsafeMutablePointer(to: &response) {
            SSL_ctrl(ssl, SSL_CTRL_GET_TLSEXT_STATUS_REQ_OCSP_RESP, 0, UnsafeMutableRawPointer($0))
        } > 0
    }
    // MQTT 3.1.1 CONNECT, clean session, keep alive 10 s.
    let id = Array(clientID.utf8)
    var packet: [UInt8] = [0x00, 0x04] + Array("MQTT".utf8) + [0x04, 0x02, 0x00, 0x0A]
    packet += [UInt8(id.count >> 8), UInt8(id.count & 0xFF)] + id
    packet = [0x10, UInt8(packet.count)] + packet
    guard SSL_write(ssl, packet, Int32(packet.count)) == Int32(packet.count) else { return false }
    var connack = [UInt8](repeating: 0, count: 4)
    var received = 0
    while received < 4 {
        let count = connack.withUnsafeMutableBytes { buffer in
            SSL_read(ssl, buffer.baseAddress.map { $0 + received }, Int32(4 - received))
        }
        if count <= 0 {
            ERR_clear_error()
            return false
        }
        received += Int(count)
    }
    let accepted = connack[0] == 0x20 && connack[3] == 0x00
    let disconnect: [UInt8] = [0xE0, 0x00]
    _ = SSL_write(ssl, disconnect, 2)
    _ = SSL_shutdown(ssl)
    ERR_clear_error()
    return accepted
}

final class Collector: @unchecked Sendable {
    private let lock = NSLock()
    var samples: [(start: UInt64, latency: UInt64, ok: Bool)] = []
    var stapled = 0

    func add(_ batch: [(UInt64, UInt64, Bool)], stapled count: Int) {
        lock.lock()
        samples += batch.map { (start: $0.0, latency: $0.1, ok: $0.2) }
        stapled += count
        lock.unlock()
    }
}

let options = Options.parse()
SSL_library_init_compat()
// A write to a connection the broker closed must fail with EPIPE, not kill the load generator.
signal(SIGPIPE, SIG_IGN)
let context = ClientContext(options)
if options.hold > 0 {
    exit(runHold(options, context: context))
}
let collector = Collector()
let deadline = now() + UInt64(options.seconds * 1e9)
let startedAt = now()
let group = DispatchGroup()
for thread in 0..<options.threads {
    group.enter()
    Thread {
        var batch: [(UInt64, UInt64, Bool)] = []
        var counter = 0
        var stapled = 0
        while now() < deadline {
            let start = now()
            let result = attempt(
                context, port: options.port, clientID: "hs-\(getpid())-\(thread)-\(counter)",
                requestStatus: options.requestStatus)
            batch.append((start, now() - start, result.ok))
            if result.ok && result.stapled { stapled += 1 }
            counter += 1
        }
        collector.add(batch, stapled: stapled)
        group.leave()
    }.start()
}
group.wait()
let elapsed = Double(now() - startedAt) / 1e9
let samples = collector.samples
let succeeded = samples.filter(\.ok)
let latencies = succeeded.map(\.latency).sorted()
func percentile(_ p: Double) -> Double {
    guard !latencies.isEmpty else { return 0 }
    return Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1e6
}
if let path = options.samples {
    let text = samples.sorted { $0.start < $1.start }.map { "\($0.start) \($0.latency) \($0.ok ? 1 : 0)" }
        .joined(separator: "\n")
    _ = FileManager.default.createFile(atPath: path, contents: Data((text + "\n").utf8))
}
let report: [String: Any] = [
    "handshakes_per_second": Double(succeeded.count) / elapsed, "failures": samples.count - succeeded.count,
    "attempts": samples.count, "p50_ms": percentile(0.5), "p99_ms": percentile(0.99), "seconds": elapsed,
    "threads": options.threads, "tls": options.tlsVersion, "stapled": collector.stapled,
]
let json = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
if !options.expectRefusal && succeeded.isEmpty { exit(1) }

/// OpenSSL 3 initialises itself; kept as a named step for readability.
func SSL_library_init_compat() {
    OPENSSL_init_ssl(0, nil)
}
