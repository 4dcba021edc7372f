import BrokerConfiguration
import ControlChannel

/// What the metrics endpoint renders from: the supervisor's process table with each child's last statistics, and
/// the configuration (for the cache directory and the stapling listeners). An immutable value that the poll loop
/// hands to `MetricsServer` whenever it changes; the endpoint never touches the loop's state.
struct MetricsSnapshot: Sendable {
    /// Processes and statistics; `cache` and `stapling` are left empty (read from disk at render time).
    var report: StatusReport
    var configuration: GatehouseConfiguration
}
