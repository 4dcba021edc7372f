import ControlChannel
import Prometheus

/// The storage bounds of issue 15 in the metrics: what each limit dropped or refused, summed over the workers and
/// labelled with the limit's configuration key, and what the workers hold now.
extension MetricsEndpoint {
    static func renderStorage(
        _ statistics: [ChildStatistics], into registry: PrometheusCollectorRegistry,
        descriptor: (String, String, String) -> MetricNameDescriptor
    ) {
        var hits: [String: Int] = [:]
        for worker in statistics {
            for (key, count) in worker.limitHits ?? [:] {
                hits[key, default: 0] += count
            }
        }
        let hitDescriptor = descriptor(
            "limit_hits", "total",
            "Limits that held: messages dropped and requests refused at a storage limit (by its configuration key), "
                + "and connection limit events (high_watermark, send_timeout, topic alias bytes, CONNECT size)")
        for (key, count) in hits.sorted(by: { $0.key < $1.key }) {
            registry.makeCounter(descriptor: hitDescriptor, labels: [("limit", key)]).increment(by: Int64(count))
        }
        let held = statistics.compactMap(\.storage)
        guard !held.isEmpty else { return }
        func gauge(_ name: String, _ unit: String, _ help: String, _ value: Int) {
            registry.makeGauge(descriptor: descriptor(name, unit, help), labels: []).set(Double(value))
        }
        gauge(
            "queued_messages", "", "Messages queued for sessions beyond those in flight, all workers",
            held.reduce(0) { $0 + $1.queuedMessages })
        gauge(
            "queued", "bytes", "Bytes of the messages queued for sessions (each session's copy counted), all workers",
            held.reduce(0) { $0 + $1.queuedBytes })
        // Every worker holds every retained message: the largest view is the node's.
        gauge(
            "retained_messages", "", "Retained messages (each worker holds them all)",
            held.map(\.retainedMessages).max() ?? 0)
        gauge("retained", "bytes", "Bytes of the retained messages", held.map(\.retainedBytes).max() ?? 0)
        gauge(
            "peer_buffered", "bytes", "Bytes of forwarded publishes workers keep for other workers",
            held.reduce(0) { $0 + $1.peerBufferedBytes })
        gauge("store_database", "bytes", "Size of the SQLite database file", held.map(\.databaseBytes).max() ?? 0)
        gauge("store_wal", "bytes", "Size of the SQLite write-ahead log", held.map(\.walBytes).max() ?? 0)
    }
}
