#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BrokerConfiguration
import ControlChannel
import DevelopmentPKI
import ProcessSupport
import Supervisor

/// `gatehouse start`: validates the configuration, creates a development PKI on first start, then runs the
/// supervisor in the foreground or as a daemon that this command waits for until every worker is ready.
struct StartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start the supervisor, its fetcher and its workers.")

    @OptionGroup var options: ConfigOption

    @Flag(name: .long, help: "Run in the foreground, logging to standard error.")
    var foreground = false

    @Flag(name: .long, help: .hidden)
    var daemonized = false

    @Option(name: .long, help: "How long to wait for the workers to be ready (daemon mode), in seconds.")
    var waitSeconds: Int = 60

    func run() throws {
        let path = try options.resolvedPath()
        if !daemonized {
            try createDevelopmentPKIIfNeeded(configPath: path)
        }
        let loaded = try options.load()
        let configuration = loaded.configuration

        if foreground || daemonized {
            let logger = LoggingSetup.bootstrap(configuration.log, role: "supervisor", slot: nil, daemonized: daemonized)
            let service: SupervisorService
            do {
                service = try SupervisorService(
                    loaded: loaded, logger: logger, executable: ProcessSpawner.currentExecutablePath())
            } catch {
                throw Failure("cannot start the supervisor: \(error)")
            }
            let code = service.run()
            if code != 0 { throw ExitCode(code) }
            return
        }
        try startDaemon(loaded)
    }

    private func startDaemon(_ loaded: LoadedConfiguration) throws {
        let configuration = loaded.configuration
        do {
            try Preflight.checkNotRunning(configuration)
            try Preflight.prepareDirectories(configuration)
            try Preflight.checkAccessFiles(configuration)
            try Preflight.checkTLSListeners(configuration)
            try Preflight.checkListeners(configuration.listeners, in: configuration)
            try FileDescriptor.makeDirectory(configuration.log.directory, mode: 0o755)
        } catch {
            Console.error("gatehouse: \(error)")
            throw ExitCode(1)
        }
        let logFile = configuration.log.directory + "/gatehouse.log"
        let output = open(logFile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard output >= 0 else {
            throw Failure("cannot open \(logFile): \(String(cString: strerror(errno)))")
        }
        let outputStart = lseek(output, 0, SEEK_END)
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(output)
            close(devNull)
        }
        let executable = ProcessSpawner.currentExecutablePath()
        let descriptors: [(source: Int32, target: Int32)] = [
            (source: devNull, target: 0), (source: output, target: 1), (source: output, target: 2),
        ]
        var environment = ProcessSpawner.currentEnvironment()
        environment.append("GATEHOUSE_DAEMONIZED=1")
        let pid: pid_t
        do {
            pid = try ProcessSpawner.spawn(
                .init(
                    executable: executable,
                    arguments: [executable, "start", "--daemonized", "--config", loaded.path],
                    environment: environment,
                    descriptors: descriptors,
                    newSession: true))
        } catch {
            throw Failure("cannot start the supervisor: \(error)")
        }

        let client = ControlClientConnection(configuration: configuration)
        let deadline = MonotonicInstant.now() + .seconds(Int64(waitSeconds))
        while MonotonicInstant.now() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                Console.error("gatehouse: the supervisor exited during startup (\(ExitStatus(waitStatus: status)))")
                printLogTail(logFile, from: outputStart)
                throw ExitCode(1)
            }
            if let report = try? client.send(.init(command: .status)).status {
                let workers = report.processes.filter { $0.role == "worker" }
                let ready = workers.filter { $0.state == "ready" }.count
                if ready >= report.workerProcesses {
                    Console.out("Gatehouse started: supervisor pid \(pid), \(ready) worker(s)")
                    for listener in configuration.listeners {
                        Console.out("  listening: \(listener.identifier) on \(listener.address)")
                    }
                    Console.out("  log: \(logFile)")
                    Console.out("  control socket: \(RunPaths(configuration).controlSocket)")
                    Console.out("  stop with: bin/gatehouse stop --config \(loaded.path)")
                    return
                }
            }
            usleep(100_000)
        }
        Console.error("gatehouse: the workers were not ready after \(waitSeconds)s; see \(logFile)")
        throw ExitCode(1)
    }

    private func printLogTail(_ path: String, from offset: off_t) {
        guard let bytes = FileDescriptor.readFile(path) else { return }
        let start = min(Int(max(0, offset)), bytes.count)
        let text = String(decoding: bytes[start...], as: UTF8.self)
        for line in text.split(separator: "\n").suffix(20) { Console.error(String(line)) }
    }

    /// On first start with the shipped layout (TLS files under `<data_dir>/pki/` that do not exist yet), writes a
    /// development CA, server and client certificate and an empty CRL there.
    private func createDevelopmentPKIIfNeeded(configPath: String) throws {
        let relaxed: GatehouseConfiguration
        do {
            relaxed = try ConfigurationLoader.load(path: configPath, options: ConfigurationLoadOptions(checkFiles: false))
        } catch {
            return  // The full load reports the errors.
        }
        let files = DevelopmentPKIFiles(directory: relaxed.node.dataDirectory + "/pki")
        let generated = Set(files.all)
        var missing: [String] = []
        for listener in relaxed.listeners {
            guard let tls = listener.tls else { continue }
            let referenced = [tls.keyFile, tls.certFile] + [tls.caCertFile].compactMap { $0 } + tls.crlFiles
            missing += referenced.filter { !FileDescriptor.fileExists($0) }
        }
        guard !missing.isEmpty, missing.allSatisfy(generated.contains),
            !files.all.contains(where: FileDescriptor.fileExists)
        else { return }
        do {
            _ = try DevelopmentPKI.generate(in: files.directory)
        } catch {
            throw Failure("cannot create the development PKI in \(files.directory): \(error)")
        }
        Console.out("Created a development PKI in \(files.directory) (for testing only):")
        Console.out("  CA certificate:      \(files.caCertificate)")
        Console.out("  server certificate:  \(files.serverCertificate) (localhost, 127.0.0.1, ::1)")
        Console.out("  client certificate:  \(files.clientCertificate) with key \(files.clientKey)")
        Console.out("  CRL (empty):         \(files.crl)")
    }
}
