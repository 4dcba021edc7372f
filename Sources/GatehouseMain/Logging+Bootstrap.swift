import BrokerConfiguration
import GatehouseLogging
import Logging

/// Sets up swift-log for this process: one line per event, every line tagged `role/slot`.
enum LoggingSetup {
    static func bootstrap(
        _ settings: LogSettings, role: String, slot: Int?, daemonized: Bool
    ) -> Logger {
        let console: Bool
        switch settings.destination {
        case .console: console = true
        case .file: console = false
        // A daemon's stderr already is the log file: write it once.
        case .both: console = !daemonized
        }
        let file = settings.destination == .console ? nil : settings.directory + "/gatehouse.log"
        let sink: LogSink
        do {
            sink = try LogSink(toStandardError: console, filePath: file)
        } catch {
            Console.error("gatehouse: \(error); logging to standard error")
            sink = LogSink.standardError()
        }
        let label = slot.map { "\(role)/\($0)" } ?? role
        GatehouseLogHandler.bootstrap(processLabel: label, level: settings.level.swiftLogLevel, sink: sink)
        var logger = Logger(label: "gatehouse.\(role)")
        logger[metadataKey: "process.role"] = "\(role)"
        logger[metadataKey: "process.slot"] = "\(slot ?? 0)"
        return logger
    }
}

extension LogSettings.Level {
    var swiftLogLevel: Logger.Level {
        switch self {
        case .trace: .trace
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}
