#if canImport(Glibc)
import Glibc
#endif
import ControlChannel
import ProcessSupport
import Supervisor
import Testing

/// The supervisor's decisions as plain values: made-up pids and times, no processes.
@Suite struct SupervisorStateMachineTests {
    let t0 = MonotonicInstant(nanoseconds: 1_000_000_000_000)

    func at(_ offset: Duration) -> MonotonicInstant { t0 + offset }

    /// A machine with the fetcher as pid 100 and workers as 200, 201, … all ready.
    func running(workers: Int, timeout: Duration = .seconds(15)) -> SupervisorStateMachine {
        var machine = SupervisorStateMachine(policy: .init(shutdownTimeout: timeout))
        let actions = machine.start(workers: workers, now: t0)
        #expect(actions == [.spawn(ChildSlot(.fetcher, 0))] + (0..<workers).map { .spawn(ChildSlot(.worker, $0)) })
        machine.spawned(ChildSlot(.fetcher, 0), pid: 100, now: t0)
        machine.childReady(pid: 100)
        for index in 0..<workers {
            machine.spawned(ChildSlot(.worker, index), pid: pid_t(200 + index), now: t0)
            machine.childReady(pid: pid_t(200 + index))
        }
        return machine
    }

    @Test func startSpawnsOneFetcherAndNWorkers() {
        let machine = running(workers: 3)
        #expect(machine.slots.count == 4)
        #expect(machine.allWorkersReady)
        #expect(Set(machine.livePids) == [100, 200, 201, 202])
        #expect(machine.nextDeadline == nil)
    }

    @Test func crashedChildIsRespawnedAfterBackoff() {
        var machine = running(workers: 2)
        let killed = ExitStatus.signaled(signal: SIGKILL, coreDumped: false)
        #expect(machine.childExited(pid: 100, status: killed, now: at(.seconds(1))).isEmpty)
        let fetcher = machine.slots[ChildSlot(.fetcher, 0)]
        #expect(fetcher?.current == nil)
        #expect(fetcher?.restarts == 1)
        #expect(fetcher?.lastExit == "killed by signal 9 (SIGKILL)")
        #expect(machine.nextDeadline == at(.seconds(1) + .milliseconds(100)))
        #expect(machine.tick(now: at(.seconds(1) + .milliseconds(50))).isEmpty)
        #expect(machine.tick(now: at(.seconds(1) + .milliseconds(100))) == [.spawn(ChildSlot(.fetcher, 0))])
        // Workers are untouched.
        #expect(machine.slots[ChildSlot(.worker, 0)]?.current?.pid == 200)
        #expect(machine.slots[ChildSlot(.worker, 1)]?.current?.pid == 201)
    }

    @Test func backoffDoublesUpToTheCapAndResetsAfterAStableRun() {
        var machine = running(workers: 1)
        let slot = ChildSlot(.worker, 0)
        var pid: pid_t = 200
        var now = at(.seconds(1))
        var delays: [Duration] = []
        for _ in 0..<10 {
            _ = machine.childExited(pid: pid, status: .exited(code: 1), now: now)
            guard let due = machine.slots[slot]?.respawnAt else {
                Issue.record("no respawn scheduled")
                return
            }
            delays.append(due.duration(since: now))
            now = due
            #expect(machine.tick(now: now) == [.spawn(slot)])
            pid += 1
            machine.spawned(slot, pid: pid, now: now)
        }
        #expect(delays.prefix(8) == [
            .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
            .milliseconds(3200), .milliseconds(6400), .seconds(10),
        ])
        #expect(delays.last == .seconds(10))
        // Ran for a stable minute: back to the first delay.
        now = now + .seconds(61)
        _ = machine.childExited(pid: pid, status: .exited(code: 1), now: now)
        #expect(machine.slots[slot]?.respawnAt == now + .milliseconds(100))
        #expect(machine.slots[slot]?.restarts == 11)
    }

    @Test func scalingUpAddsSlotsAndKeepsExistingWorkers() {
        var machine = running(workers: 2)
        let actions = machine.scale(workers: 3, now: at(.seconds(5)))
        #expect(actions == [.spawn(ChildSlot(.worker, 2))])
        #expect(machine.slots[ChildSlot(.worker, 0)]?.current?.pid == 200)
        #expect(machine.slots[ChildSlot(.worker, 1)]?.current?.pid == 201)
        #expect(!machine.allWorkersReady)
        machine.spawned(ChildSlot(.worker, 2), pid: 202, now: at(.seconds(5)))
        machine.childReady(pid: 202)
        #expect(machine.allWorkersReady)
    }

    @Test func scalingDownRetiresSurplusWorkersGracefullyThenKillsStragglers() {
        var machine = running(workers: 3, timeout: .seconds(15))
        let actions = machine.scale(workers: 1, now: at(.seconds(5)))
        #expect(actions == [.send(201, .quit(deadlineSeconds: 15)), .send(202, .quit(deadlineSeconds: 15))])
        #expect(machine.workerCount == 1)
        #expect(machine.slots[ChildSlot(.worker, 1)] == nil)
        #expect(machine.owner(of: 201)?.isRetiring == true)
        // 201 leaves in time and is not respawned.
        #expect(machine.childExited(pid: 201, status: .exited(code: 0), now: at(.seconds(6))).isEmpty)
        #expect(machine.owner(of: 201) == nil)
        // 202 overstays its deadline.
        #expect(machine.nextDeadline == at(.seconds(20)))
        #expect(machine.tick(now: at(.seconds(20))) == [.kill(202, signal: SIGKILL)])
        #expect(machine.tick(now: at(.seconds(21))).isEmpty)
        #expect(machine.childExited(pid: 202, status: .signaled(signal: SIGKILL, coreDumped: false), now: at(.seconds(21))).isEmpty)
        #expect(Set(machine.livePids) == [100, 200])
    }

    @Test func restartFetcherWaitsForTheOldOneBeforeStartingTheNew() {
        var machine = running(workers: 2)
        let actions = machine.restartFetcher(now: at(.seconds(3)))
        #expect(actions == [.send(100, .quit(deadlineSeconds: 15))])
        #expect(machine.slots[ChildSlot(.fetcher, 0)]?.current == nil)
        #expect(machine.tick(now: at(.seconds(4))).isEmpty)
        #expect(machine.childExited(pid: 100, status: .exited(code: 0), now: at(.seconds(4))) == [.spawn(ChildSlot(.fetcher, 0))])
        // An asked-for restart is not a crash.
        #expect(machine.slots[ChildSlot(.fetcher, 0)]?.restarts == 0)
        #expect(machine.slots[ChildSlot(.worker, 0)]?.current?.pid == 200)
    }

    @Test func restartWorkersOverlapsOldAndNewGenerations() {
        var machine = running(workers: 2)
        let actions = machine.restartWorkers(now: at(.seconds(3)))
        #expect(actions == [
            .send(200, .quit(deadlineSeconds: 15)), .spawn(ChildSlot(.worker, 0)),
            .send(201, .quit(deadlineSeconds: 15)), .spawn(ChildSlot(.worker, 1)),
        ])
        machine.spawned(ChildSlot(.worker, 0), pid: 300, now: at(.seconds(3)))
        #expect(machine.owner(of: 200)?.isRetiring == true)
        #expect(machine.owner(of: 300)?.isRetiring == false)
        #expect(machine.childExited(pid: 200, status: .exited(code: 0), now: at(.seconds(4))).isEmpty)
        #expect(machine.slots[ChildSlot(.worker, 0)]?.current?.pid == 300)
    }

    @Test func shutdownQuitsEveryChildAndExitsOnceAllAreReaped() {
        var machine = running(workers: 2, timeout: .seconds(5))
        let actions = machine.shutdown(now: at(.seconds(1)))
        #expect(actions == [
            .send(100, .quit(deadlineSeconds: 5)), .send(200, .quit(deadlineSeconds: 5)), .send(201, .quit(deadlineSeconds: 5)),
        ])
        #expect(machine.shutdown(now: at(.seconds(2))).isEmpty)
        // Exits during shutdown are never respawned.
        #expect(machine.childExited(pid: 100, status: .exited(code: 0), now: at(.seconds(2))).isEmpty)
        #expect(machine.childExited(pid: 200, status: .exited(code: 0), now: at(.seconds(2))).isEmpty)
        #expect(machine.tick(now: at(.seconds(3))).isEmpty)
        #expect(machine.tick(now: at(.seconds(6))) == [.kill(201, signal: SIGKILL)])
        #expect(machine.childExited(pid: 201, status: .signaled(signal: SIGKILL, coreDumped: false), now: at(.seconds(6))) == [.exit(code: 0)])
        #expect(machine.phase == .exited)
    }

    @Test func shutdownCancelsPendingRespawns() {
        var machine = running(workers: 1)
        _ = machine.childExited(pid: 200, status: .exited(code: 1), now: at(.seconds(1)))
        _ = machine.shutdown(now: at(.seconds(1)))
        #expect(machine.tick(now: at(.seconds(2))).isEmpty)
        #expect(machine.childExited(pid: 100, status: .exited(code: 0), now: at(.seconds(2))) == [.exit(code: 0)])
    }

    @Test func spawnFailureIsRetriedWithBackoff() {
        var machine = SupervisorStateMachine(policy: .init())
        _ = machine.start(workers: 1, now: t0)
        machine.spawnFailed(ChildSlot(.worker, 0), reason: "posix_spawn: No such file", now: t0)
        #expect(machine.slots[ChildSlot(.worker, 0)]?.lastExit == "spawn failed: posix_spawn: No such file")
        #expect(machine.tick(now: t0 + .milliseconds(100)) == [.spawn(ChildSlot(.worker, 0))])
    }

    @Test func unknownPidsAreIgnored() {
        var machine = running(workers: 1)
        #expect(machine.childExited(pid: 999, status: .exited(code: 0), now: at(.seconds(1))).isEmpty)
        #expect(Set(machine.livePids) == [100, 200])
    }
}

@Suite struct ExitStatusTests {
    @Test func decodesWaitStatuses() {
        #expect(ExitStatus(waitStatus: 0) == .exited(code: 0))
        #expect(ExitStatus(waitStatus: 3 << 8) == .exited(code: 3))
        #expect(ExitStatus(waitStatus: 9) == .signaled(signal: 9, coreDumped: false))
        #expect(ExitStatus(waitStatus: 0x80 | 11) == .signaled(signal: 11, coreDumped: true))
        #expect(ExitStatus(waitStatus: 3 << 8).description == "exited with status 3")
        #expect(ExitStatus(waitStatus: 0x80 | 11).description == "killed by signal 11 (SIGSEGV), core dumped")
    }
}
