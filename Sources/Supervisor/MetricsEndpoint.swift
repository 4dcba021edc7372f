import BrokerConfiguration
import ControlChannel
import Prometheus
import RevocationCache

/// The Prometheus text of `node.metrics_listener` (`GET /metrics`): aggregated over every worker and the fetcher
/// (from the statistics they report each second) and over the cache metadata (seconds until each CRL's and
/// staple's nextUpdate). Pure: `MetricsServer` renders it from the supervisor's latest `MetricsSnapshot`.
enum MetricsEndpoint {
    /// The exposition text for a snapshot: the process table from the supervisor, the revocation state read
    /// from the cache directory now.
    static func render(_ snapshot: MetricsSnapshot, now: Double) -> String {
        var report = snapshot.report
        let layout = CacheLayout(root: snapshot.configuration.node.cacheDirectory)
        report.cache = RevocationStatus.cacheItems(layout: layout)
        report.stapling = RevocationStatus.stapling(configuration: snapshot.configuration, layout: layout)
        return render(report, now: now)
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
            descriptor: descriptor(
                "messages_dropped", "total", "Messages dropped: full session queues, deliveries too large for their client, QoS 0 to a busy client"), labels: []
        ).increment(by: Int64(statistics.reduce(0) { $0 + $1.messagesDropped }))

        renderStorage(statistics, into: registry, descriptor: descriptor)

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
        var connectionRefusals: [[String]: Int] = [:]
        for worker in statistics {
            for (listener, reasons) in worker.connectionsRefused {
                for (reason, count) in reasons {
                    connectionRefusals[[listener, reason], default: 0] += count
                }
            }
        }
        let connectionsRefused = descriptor(
            "connections_refused", "total",
            "Connections closed at accept (access rules, limits, PROXY header), by listener and reason")
        for (key, count) in connectionRefusals.sorted(by: { $0.key.joined() < $1.key.joined() }) {
            registry.makeCounter(descriptor: connectionsRefused, labels: [("listener", key[0]), ("reason", key[1])])
                .increment(by: Int64(count))
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
        renderInForce(report, now: now, into: registry)
        let restarts = descriptor("child_restarts", "total", "Respawns of children that died, by role")
        for role in ["fetcher", "worker"] {
            registry.makeCounter(descriptor: restarts, labels: [("role", role)])
                .increment(by: Int64(report.processes.filter { $0.role == role }.reduce(0) { $0 + $1.restarts }))
        }
        return registry.emitToString()
    }
}
