#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Where log lines go: standard error, an append-only file, or both. Shared by every logger of the process.
///
/// Lines are written with one `write(2)` each, and the file is opened with O_APPEND, so lines from the
/// supervisor and its children interleave whole in one file.
public final class LogSink: Sendable {
    private let descriptors: [Int32]
    private let lock = Mutex(())

    /// - Parameters:
    ///   - toStandardError: write to fd 2.
    ///   - filePath: append to this file too (created 0640 if missing).
    public init(toStandardError: Bool, filePath: String?) throws(LogSinkError) {
        var descriptors: [Int32] = []
        if toStandardError { descriptors.append(2) }
        if let filePath {
            let fd = open(filePath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd < 0 { throw LogSinkError(path: filePath, errno: errno) }
            descriptors.append(fd)
        }
        self.descriptors = descriptors
    }

    private init(descriptors: [Int32]) {
        self.descriptors = descriptors
    }

    /// Standard error only; cannot fail.
    public static func standardError() -> LogSink {
        LogSink(descriptors: [2])
    }

    func write(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        lock.withLock { _ in
            for fd in descriptors {
                _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            }
        }
    }
}

/// The log file could not be opened.
public struct LogSinkError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var errno: Int32
    public var description: String { "cannot open log file \(path): \(String(cString: strerror(errno)))" }
}

/// One line per event: `2026-11-29T07:01:02.123Z info worker/1[4711] message key=value …`.
///
/// The process role and slot are fixed for the process and printed on every line; metadata follows the message
/// as sorted `key=value` pairs, quoted when they contain spaces.
public struct GatehouseLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let sink: LogSink

    public init(label: String, processLabel: String, level: Logger.Level, sink: LogSink) {
        self.label = processLabel
        self.logLevel = level
        self.sink = sink
        _ = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata {
            merged.merge(extra) { _, new in new }
        }
        var line = "\(Self.timestamp()) \(event.level) \(label)[\(getpid())] \(event.message)"
        for key in merged.keys.sorted() where key != "process.role" && key != "process.slot" {
            if let value = merged[key] {
                line += " \(key)=\(Self.quote("\(value)"))"
            }
        }
        sink.write(line)
    }

    /// Installs this handler for every `Logger` of the process. Call once, from the executable.
    public static func bootstrap(processLabel: String, level: Logger.Level, sink: LogSink) {
        LoggingSystem.bootstrap { label in
            GatehouseLogHandler(label: label, processLabel: processLabel, level: level, sink: sink)
        }
    }

    static func quote(_ value: String) -> String {
        if value.isEmpty { return "\"\"" }
        guard value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" }) else { return value }
        var escaped = "\""
        for character in value {
            switch character {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped + "\""
    }

    static func timestamp() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(spec.tv_nsec / 1_000_000), 3))Z"
    }
}
