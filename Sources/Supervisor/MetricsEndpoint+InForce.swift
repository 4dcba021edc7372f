import ControlChannel
import Prometheus

/// The revocation data in force on each worker, per listener: every CRL in force (issuer, source, cRLNumber,
/// thisUpdate, nextUpdate, entries, seconds until `crl_fail_policy` starts refusing its issuer's clients) and the
/// staple served, so an operator sees the cliff coming on the worker where it is.
extension MetricsEndpoint {
    static func renderInForce(_ report: StatusReport, now: Double, into registry: PrometheusCollectorRegistry) {
        func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "gatehouse", metricName: name, unitName: unit, helpText: help)
        }
        let nextUpdate = descriptor(
            "crl_in_force_next_update", "seconds", "Seconds until the nextUpdate of each CRL in force, per worker")
        let refusal = descriptor(
            "crl_in_force_refusal", "seconds",
            "Seconds until the fail policy refuses the clients of each CRL's issuer unless a newer CRL arrives")
        let thisUpdate = descriptor(
            "crl_in_force_this_update", "timestamp_seconds", "thisUpdate of each CRL in force (Unix seconds)")
        let number = descriptor("crl_in_force_number", "", "cRLNumber of each CRL in force")
        let entries = descriptor("crl_in_force_entries", "", "Revoked entries of each CRL in force")
        let staple = descriptor(
            "ocsp_staple_state", "", "1 for the state of the staple each worker serves (stapled, expired, withdrawn, none)")
        let stapleUntil = descriptor("ocsp_staple_next_update", "seconds", "Seconds until the served staple expires")
        for process in report.processes where process.role == "worker" {
            guard let statistics = process.statistics else { continue }
            for listener in statistics.listeners {
                for crl in listener.crlsInForce {
                    let labels = [
                        ("listener", listener.listener), ("worker", "\(process.slot)"), ("issuer", crl.issuer),
                        ("source", crl.source),
                    ]
                    if let next = crl.nextUpdate {
                        registry.makeGauge(descriptor: nextUpdate, labels: labels).set(Double(next) - now)
                    }
                    if let from = crl.refusesFrom {
                        registry.makeGauge(descriptor: refusal, labels: labels).set(Double(from) - now)
                    }
                    if let time = crl.thisUpdate {
                        registry.makeGauge(descriptor: thisUpdate, labels: labels).set(Double(time))
                    }
                    if let value = crl.crlNumber.flatMap(Double.init) {
                        registry.makeGauge(descriptor: number, labels: labels).set(value)
                    }
                    registry.makeGauge(descriptor: entries, labels: labels).set(Double(crl.entries))
                }
                guard let served = listener.staple else { continue }
                for state in ["stapled", "expired", "withdrawn", "none"] {
                    registry.makeGauge(
                        descriptor: staple,
                        labels: [("listener", listener.listener), ("worker", "\(process.slot)"), ("state", state)]
                    ).set(served.state == state ? 1.0 : 0.0)
                }
                if let until = served.nextUpdate, served.state == "stapled" {
                    registry.makeGauge(
                        descriptor: stapleUntil, labels: [("listener", listener.listener), ("worker", "\(process.slot)")]
                    ).set(Double(until) - now)
                }
            }
        }
    }
}
