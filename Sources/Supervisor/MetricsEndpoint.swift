#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import Foundation
import Prometheus
import ProcessSupport

/// `node.metrics_listener`: a small HTTP endpoint in the supervisor's poll loop that answers `GET /metrics` in
/// the Prometheus text format, aggregated over every worker and the fetcher (from the statistics they report
/// each second) and over the cache metadata (seconds until each CRL's and staple's nextUpdate).
///
/// One request per connection, read with a short timeout, answered and closed: a scrape costs the supervisor
/// well under a millisecond and a slow client at most the read timeout.
enum MetricsEndpoint {
    /// A listening TCP socket on `address` (non-blocking, close-on-exec).
    static func listen(on address: ListenAddress) throws(SystemError) -> Int32 {
        let fd = try TCPSocket.listening(host: address.host, port: address.port, backlog: 16)
        do {
            try FileDescriptor.setNonBlocking(fd)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Accepts one waiting connection, reads the request (200 ms at most) and answers it.
    static func serve(_ listener: Int32, render: () -> String) {
        let client = Glibc.accept(listener, nil, nil)
        guard client >= 0 else { return }
        defer { close(client) }
        try? FileDescriptor.setCloseOnExec(client)
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while request.count < 16 * 1024 {
            let count = chunk.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            request += chunk.prefix(count)
            if request.count >= 4, request.suffix(4) == Array("\r\n\r\n".utf8) { break }
        }
        let line = String(decoding: request.prefix { $0 != 0x0d && $0 != 0x0a }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let response: String
        if parts.count >= 2, parts[0] == "GET", parts[1] == "/metrics" || parts[1] == "/" {
            let body = render()
            response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        } else {
            let body = "GET /metrics\n"
            response = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
                + "Connection: close\r\n\r\n" + body
        }
        try? FileDescriptor.writeAll(client, Array(response.utf8))
    }

    /// The exposition text for a status report (processes with their statistics, cache items, stapling).
    static func render(_ report: StatusReport, now: Double) -> String {
        let registry = PrometheusCollectorRegistry()
        func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "gatehouse", metricName: name, unitName: unit, helpText: help)
        }
        let workers = report.processes.filter { $0.role == "worker" && $0.state == "ready" }
        registry.makeGauge(descriptor: descriptor("workers", "", "Workers serving clients"), labels: [])
            .set(Double(workers.count))
        let statistics = report.processes.filter { $0.role == "worker" }.compactMap(\.statistics)
        registry.makeGauge(descriptor: descriptor("connections", "", "Open client connections, all workers"), labels: [])
            .set(Double(statistics.reduce(0) { $0 + $1.connections }))
        let received = descriptor("messages_received", "total", "PUBLISH messages received from clients")
        registry.makeCounter(descriptor: received, labels: [])
            .increment(by: Int64(statistics.reduce(0) { $0 + $1.messagesReceived }))
        registry.makeCounter(descriptor: descriptor("messages_sent", "total", "PUBLISH messages sent to clients"), labels: [])
            .increment(by: Int64(statistics.reduce(0) { $0 + $1.messagesSent }))
        registry.makeCounter(
            descriptor: descriptor("messages_dropped", "total", "Messages dropped from full session queues"), labels: []
        ).increment(by: Int64(statistics.reduce(0) { $0 + $1.messagesDropped }))

        var handshakes: [String: Int] = [:]
        var staleAccepted: [String: Int] = [:]
        var refusals: [[String]: Int] = [:]
        var disconnected: [String: Int] = [:]
        var reloads: [String: Int] = [:]
        var entries: [String: Int] = [:]
        for worker in statistics {
            for listener in worker.listeners {
                for (reason, count) in listener.refusals {
                    refusals[[listener.listener, reason], default: 0] += count
                }
                disconnected[listener.listener, default: 0] += listener.revokedDisconnected
                handshakes[listener.listener, default: 0] += listener.handshakes
                staleAccepted[listener.listener, default: 0] += listener.acceptedOnStaleCRL
                reloads[listener.listener, default: 0] += max(0, listener.revocationGeneration - 1)
                entries[listener.listener] = max(entries[listener.listener] ?? 0, listener.revokedEntries)
            }
        }
        let refused = descriptor("tls_handshakes_refused", "total", "TLS handshakes refused, by listener and reason")
        for (key, count) in refusals.sorted(by: { $0.key.joined() < $1.key.joined() }) {
            registry.makeCounter(descriptor: refused, labels: [("listener", key[0]), ("reason", key[1])])
                .increment(by: Int64(count))
        }
        let completedDescriptor = descriptor("tls_handshakes_completed", "total", "TLS handshakes completed")
        for (listener, count) in handshakes.sorted(by: { $0.key < $1.key }) {
            registry.makeCounter(descriptor: completedDescriptor, labels: [("listener", listener)])
                .increment(by: Int64(count))
        }
        let staleDescriptor = descriptor(
            "tls_accepted_on_stale_crl", "total", "Handshakes decided on a CRL past its nextUpdate (grace policy)")
        for (listener, count) in staleAccepted.sorted(by: { $0.key < $1.key }) {
            registry.makeCounter(descriptor: staleDescriptor, labels: [("listener", listener)])
                .increment(by: Int64(count))
        }
        let revokedDescriptor = descriptor(
            "revoked_clients_disconnected", "total", "Connected clients disconnected because a new CRL revoked them")
        for (listener, count) in disconnected.sorted(by: { $0.key < $1.key }) {
            registry.makeCounter(descriptor: revokedDescriptor, labels: [("listener", listener)])
                .increment(by: Int64(count))
        }
        let reloadDescriptor = descriptor("revocation_reloads", "total", "Revocation data reloads, summed over workers")
        for (listener, count) in reloads.sorted(by: { $0.key < $1.key }) {
            registry.makeCounter(descriptor: reloadDescriptor, labels: [("listener", listener)])
                .increment(by: Int64(count))
        }
        let entriesDescriptor = descriptor("crl_revoked_entries", "", "Revoked certificates in the loaded CRLs")
        for (listener, count) in entries.sorted(by: { $0.key < $1.key }) {
            registry.makeGauge(descriptor: entriesDescriptor, labels: [("listener", listener)]).set(Double(count))
        }

        if let fetcher = report.processes.first(where: { $0.role == "fetcher" })?.statistics {
            let fetches = descriptor("fetches", "total", "Fetches of CRLs and OCSP responses, by result")
            for (result, count) in [
                ("published", fetcher.fetchPublished), ("not_modified", fetcher.fetchNotModified),
                ("failed", fetcher.fetchFailed),
            ] {
                registry.makeCounter(descriptor: fetches, labels: [("result", result)]).increment(by: Int64(count))
            }
        }
        let untilNext = descriptor(
            "revocation_next_update", "seconds", "Seconds until the nextUpdate of each cached CRL and OCSP response")
        for item in report.cache {
            guard let next = item.nextUpdate else { continue }
            registry.makeGauge(descriptor: untilNext, labels: [("kind", item.kind), ("source", item.url)])
                .set(next - now)
        }
        let stapled = descriptor("ocsp_stapled", "", "1 while the listener staples a valid OCSP response")
        for listener in report.stapling {
            registry.makeGauge(descriptor: stapled, labels: [("listener", "ssl:" + listener.listener)])
                .set(listener.state == "stapled" ? 1.0 : 0.0)
        }
        let revoked = descriptor(
            "ocsp_certificate_revoked", "",
            "1 when the latest verified OCSP answer says the listener's certificate is revoked or unknown")
        for listener in report.stapling where listener.state != "off" {
            let item = report.cache.first { $0.kind == "ocsp" && $0.listener == listener.listener && $0.published }
            let withdrawn = item?.certStatus.map { $0 == "revoked" || $0 == "unknown" } ?? false
            registry.makeGauge(descriptor: revoked, labels: [("listener", "ssl:" + listener.listener)])
                .set(withdrawn ? 1.0 : 0.0)
        }
        let restarts = descriptor("child_restarts", "total", "Respawns of children that died, by role")
        for role in ["fetcher", "worker"] {
            registry.makeCounter(descriptor: restarts, labels: [("role", role)])
                .increment(by: Int64(report.processes.filter { $0.role == role }.reduce(0) { $0 + $1.restarts }))
        }
        return registry.emitToString()
    }
}
