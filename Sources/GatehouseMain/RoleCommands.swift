#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CurlClient
import Fetcher
import Logging
import OpenSSLTLS
import ProcessSupport
import Supervisor
import Worker

/// Arguments the supervisor passes to every child it spawns.
struct ChildArguments: ParsableArguments {
    @Option(name: .long) var slot: Int
    @Option(name: .long) var config: String
    @Option(name: .long) var snapshot: String
    @Option(name: .long) var supervisorPid: Int32

    /// The supervisor channel is always fd 3.
    static let supervisorChannel: Int32 = 3

    /// Dies with the supervisor (SIGTERM → graceful quit), then loads the configuration the supervisor validated.
    func prepare(role: String) throws -> (LoadedConfiguration, Logger) {
        do {
            guard try ParentWatch.arm(signal: SIGTERM, expectedParent: supervisorPid) else {
                throw ExitCode(0)  // The supervisor is already gone.
            }
        } catch let error as SystemError {
            throw Failure("\(role): \(error)")
        }
        let loaded: LoadedConfiguration
        do {
            loaded = try LoadedConfiguration.loadSnapshot(snapshotPath: snapshot, originalPath: config)
        } catch {
            Console.error("gatehouse \(role): \(error)")
            throw ExitCode(78)
        }
        let daemonized = getenv("GATEHOUSE_DAEMONIZED") != nil
        let logger = LoggingSetup.bootstrap(loaded.configuration.log, role: role, slot: slot, daemonized: daemonized)
        return (loaded, logger)
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Internal: a worker process (spawned by the supervisor).",
        shouldDisplay: false)

    @OptionGroup var child: ChildArguments

    func run() throws {
        let (loaded, logger) = try child.prepare(role: "worker")
        logger.info("worker starting", metadata: ["listeners": "\(loaded.configuration.listeners.count)"])
        let service = WorkerService(configuration: loaded.configuration, slot: child.slot, logger: logger)
        let code = service.run(supervisorChannel: ChildArguments.supervisorChannel)
        logger.info("worker exiting", metadata: ["code": "\(code)"])
        if code != 0 { throw ExitCode(code) }
    }
}

struct FetcherCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetcher", abstract: "Internal: the fetcher process (spawned by the supervisor).",
        shouldDisplay: false)

    @OptionGroup var child: ChildArguments

    func run() throws {
        let (loaded, logger) = try child.prepare(role: "fetcher")
        let service: FetcherService
        do {
            service = try FetcherService(
                configuration: loaded.configuration, logger: logger,
                supervisorChannel: ChildArguments.supervisorChannel)
        } catch {
            logger.critical("cannot start the fetcher", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        let code = service.run()
        if code != 0 { throw ExitCode(code) }
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print the versions of Gatehouse and of the TLS and HTTP libraries.")

    func run() throws {
        Console.out("gatehouse 0.1.0")
        Console.out(OpenSSLVersion.description)
        Console.out(CurlVersion.description)
    }
}
