import ArgumentParser

/// `gatehouse`: the one executable. Operator commands talk to a running supervisor; `worker` and `fetcher` are
/// the roles the supervisor spawns by re-executing this binary.
@main
struct Gatehouse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatehouse",
        abstract: "An MQTT broker whose TLS gate never lets a revoked certificate in.",
        subcommands: [
            StartCommand.self, StopCommand.self, StatusCommand.self, ReloadCommand.self, RefreshCommand.self,
            RestartCommand.self,
            PasswdCommand.self, VersionCommand.self, WorkerCommand.self, FetcherCommand.self,
        ]
    )
}
