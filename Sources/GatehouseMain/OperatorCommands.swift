#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BrokerConfiguration
import ControlChannel
import Foundation
import OpenSSLTLS
import ProcessSupport
import Supervisor

/// Sends one request to the supervisor of `options`' configuration; prints the failure and exits 1 on error.
/// Only the run directory is read from the file, so a broken file on disk still reaches the supervisor.
private func request(_ command: ControlRequest.Command, options: ConfigOption) throws -> ControlResponse {
    let runDirectory = try options.runDirectory()
    do {
        return try ControlClientConnection(runDirectory: runDirectory).send(.init(command: command))
    } catch {
        Console.error("gatehouse: \(error)")
        throw ExitCode(1)
    }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Shut down gracefully: workers close their clients, then everything exits.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let runDirectory = try options.runDirectory()
        let pid = PidFile.readPid(RunPaths(runDirectory: runDirectory).pidFile)
        let path = try options.resolvedPath()
        let shutdownTimeout =
            (try? ConfigurationLoader.load(path: path, options: .init(checkFiles: false)))?.node.shutdownTimeout
            ?? .seconds(60)
        let response = try request(.stop, options: options)
        guard response.ok else {
            Console.error("gatehouse: \(response.message ?? "stop refused")")
            throw ExitCode(1)
        }
        Console.out(response.message ?? "stopping")
        guard let pid else { return }
        let limit = shutdownTimeout + .seconds(5)
        let deadline = MonotonicInstant.now() + limit
        while MonotonicInstant.now() < deadline {
            if kill(pid, 0) != 0 && errno == ESRCH {
                Console.out("stopped")
                return
            }
            usleep(50_000)
        }
        Console.error("gatehouse: the supervisor (pid \(pid)) is still running after \(limit)")
        throw ExitCode(1)
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the supervisor and every child: role, slot, pid, uptime, restarts.")

    @OptionGroup var options: ConfigOption

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() throws {
        let response = try request(.status, options: options)
        guard let report = response.status else {
            Console.error("gatehouse: \(response.message ?? "no status")")
            throw ExitCode(1)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            Console.out(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        Console.out("Gatehouse (config \(report.config)), \(report.workerProcesses) worker(s) configured")
        let header = ["ROLE", "SLOT", "PID", "STATE", "UPTIME", "RESTARTS", "LAST EXIT"]
        let rows = report.processes.map { process in
            [
                process.role, "\(process.slot)", process.pid == 0 ? "-" : "\(process.pid)", process.state,
                Self.format(seconds: process.uptimeSeconds), "\(process.restarts)", process.lastExit ?? "-",
            ]
        }
        Self.printTable(header: header, rows: rows)
        let reporting = report.processes.filter { $0.role == "worker" && $0.statistics != nil }
        if !reporting.isEmpty {
            Console.out("")
            var table: [[String]] = []
            for process in reporting {
                guard let statistics = process.statistics else { continue }
                let tls = statistics.listeners.map { listener in
                    let refused = listener.refusals.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                    return "\(listener.listener) generation \(listener.revocationGeneration), \(listener.crls) CRL(s), "
                        + "\(listener.revokedEntries) revoked, refused: \(refused.isEmpty ? "none" : refused.joined(separator: " "))"
                        + (listener.revokedDisconnected > 0 ? ", disconnected revoked: \(listener.revokedDisconnected)" : "")
                }
                let refusedAtAccept = statistics.connectionsRefused.sorted { $0.key < $1.key }.map { listener, reasons in
                    "\(listener) " + reasons.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                        .joined(separator: " ")
                }
                table.append([
                    "\(process.slot)", "\(statistics.connections)", "\(statistics.messagesReceived)",
                    "\(statistics.messagesSent)", "\(statistics.messagesDropped)",
                    refusedAtAccept.isEmpty ? "-" : refusedAtAccept.joined(separator: "; "),
                    tls.isEmpty ? "-" : tls.joined(separator: "; "),
                ])
            }
            Self.printTable(
                header: ["WORKER", "CONNECTIONS", "MSGS IN", "MSGS OUT", "DROPPED", "REFUSED AT ACCEPT", "TLS"],
                rows: table)
            printStorage(reporting)
            printInForce(reporting)
        }
        if !report.stapling.isEmpty {
            Console.out("")
            Self.printTable(
                header: ["LISTENER", "STAPLING", "MUST-STAPLE", "DETAIL"],
                rows: report.stapling.map {
                    ["ssl:" + $0.listener, $0.state, $0.mustStaple ? "yes" : "no", $0.detail]
                })
        }
        if !report.cache.isEmpty {
            Console.out("")
            let now = Date().timeIntervalSince1970
            Self.printTable(
                header: ["CACHED", "ORIGIN", "PUBLISHED", "FETCHED", "NEXT UPDATE", "LAST ERROR", "SOURCE"],
                rows: report.cache.map { item in
                    [
                        item.kind, item.origin, item.published ? "yes" : "no",
                        item.fetchedAt.map { Self.format(seconds: now - $0) + " ago" } ?? "never",
                        item.nextUpdate.map { $0 >= now ? "in " + Self.format(seconds: $0 - now) : "PASSED" } ?? "-",
                        item.lastError.map { "\($0) (x\(item.consecutiveFailures))" } ?? "-",
                        (item.listener.map { "ssl:\($0) " } ?? "") + item.url,
                    ]
                })
        }
    }

    /// What each worker holds against the storage limits, and what the limits dropped or refused.
    private func printStorage(_ workers: [StatusReport.Process]) {
        let rows: [[String]] = workers.compactMap { process in
            guard let statistics = process.statistics, let storage = statistics.storage else { return nil }
            let hits = (statistics.limitHits ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            return [
                "\(process.slot)", "\(storage.queuedMessages) (\(Self.format(bytes: storage.queuedBytes)))",
                "\(storage.retainedMessages) (\(Self.format(bytes: storage.retainedBytes)))", "\(storage.subscriptions)",
                Self.format(bytes: storage.peerBufferedBytes),
                "\(Self.format(bytes: storage.databaseBytes)) + WAL \(Self.format(bytes: storage.walBytes))",
                hits.isEmpty ? "-" : hits.joined(separator: " "),
            ]
        }
        guard !rows.isEmpty else { return }
        Console.out("")
        Self.printTable(
            header: ["WORKER", "QUEUED", "RETAINED", "SUBSCRIPTIONS", "PEER BUFFER", "STORE", "AT LIMITS"], rows: rows)
    }

    static func format(bytes: Int) -> String {
        if bytes >= 1 << 30 { return String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) }
        if bytes >= 1 << 20 { return String(format: "%.1f MiB", Double(bytes) / Double(1 << 20)) }
        if bytes >= 1 << 10 { return String(format: "%.1f KiB", Double(bytes) / Double(1 << 10)) }
        return "\(bytes) B"
    }

    /// Every CRL in force and the staple served, per worker and listener.
    private func printInForce(_ workers: [StatusReport.Process]) {
        let now = Date().timeIntervalSince1970
        func relative(_ seconds: Int64?) -> String {
            guard let seconds else { return "-" }
            let delta = Double(seconds) - now
            return delta >= 0 ? "in " + Self.format(seconds: delta) : Self.format(seconds: -delta) + " ago"
        }
        var crls: [[String]] = []
        var staples: [[String]] = []
        for process in workers {
            for listener in process.statistics?.listeners ?? [] {
                for crl in listener.crlsInForce {
                    let refusing = crl.refusesFrom.map { Double($0) <= now ? "NOW (since \(relative($0)))" : relative($0) }
                    crls.append([
                        "\(process.slot)", listener.listener, crl.issuer, crl.crlNumber ?? "-",
                        crl.thisUpdate.map { Timestamp.iso8601($0) } ?? "-", relative(crl.nextUpdate),
                        refusing ?? "never", "\(crl.entries)", crl.source,
                    ])
                }
                if let staple = listener.staple {
                    staples.append([
                        "\(process.slot)", listener.listener, staple.state, staple.certificateSerial,
                        staple.nextUpdate.map { Timestamp.iso8601($0) } ?? "-", staple.detail ?? "-",
                    ])
                }
            }
        }
        if !crls.isEmpty {
            Console.out("")
            Self.printTable(
                header: ["WORKER", "LISTENER", "CRL IN FORCE (ISSUER)", "CRL#", "THIS UPDATE", "NEXT UPDATE",
                         "REFUSING CLIENTS", "ENTRIES", "SOURCE"],
                rows: crls)
        }
        if !staples.isEmpty {
            Console.out("")
            Self.printTable(
                header: ["WORKER", "LISTENER", "STAPLE SERVED", "CERTIFICATE", "UNTIL", "DETAIL"], rows: staples)
        }
    }

    static func printTable(header: [String], rows: [[String]]) {
        let widths = header.indices.map { column in
            ([header] + rows).map { $0[column].count }.max() ?? 0
        }
        for row in [header] + rows {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
            }
            Console.out(cells.joined())
        }
    }

    static func format(seconds: Double) -> String {
        let total = Int(seconds)
        if total >= 86400 { return "\(total / 86400)d\((total % 86400) / 3600)h" }
        if total >= 3600 { return "\(total / 3600)h\((total % 3600) / 60)m" }
        if total >= 60 { return "\(total / 60)m\(total % 60)s" }
        return String(format: "%.1fs", seconds)
    }
}

struct RefreshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refresh", abstract: "Make the fetcher fetch every CRL and OCSP response now.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let response = try request(.refresh, options: options)
        Console.out(response.message ?? (response.ok ? "ok" : "failed"))
        if !response.ok { throw ExitCode(1) }
    }
}

struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Re-read the configuration; scale workers; an invalid file is refused and the running one stays.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let response = try request(.reload, options: options)
        if response.ok {
            Console.out(response.message ?? "reloaded")
        } else {
            Console.error(response.message ?? "reload refused")
            Console.error("gatehouse: reload refused; the running configuration stays in force")
            throw ExitCode(1)
        }
    }
}

struct RestartCommand: ParsableCommand {
    enum Target: String, ExpressibleByArgument, CaseIterable {
        case fetcher, workers
    }

    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "Replace the fetcher (workers and clients untouched) or every worker (one generation at a time).")

    @Argument(help: "fetcher | workers")
    var target: Target

    @OptionGroup var options: ConfigOption

    func run() throws {
        let response = try request(target == .fetcher ? .restartFetcher : .restartWorkers, options: options)
        guard response.ok else {
            Console.error("gatehouse: \(response.message ?? "restart refused")")
            throw ExitCode(1)
        }
        Console.out(response.message ?? "restarting")
    }
}
