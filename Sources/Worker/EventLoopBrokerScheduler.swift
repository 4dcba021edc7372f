import MQTTBroker
import NIOCore
import ProcessSupport

/// The broker's timers on the worker's event loop.
final class EventLoopBrokerScheduler: BrokerScheduler {
    private let loop: any EventLoop

    init(loop: any EventLoop) {
        self.loop = loop
    }

    var now: MonotonicInstant { .now() }

    func schedule(after delay: Duration, _ work: @escaping () -> Void) -> any ScheduledWork {
        let nanoseconds = Int64(delay.components.seconds) * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        let task = loop.assumeIsolated().scheduleTask(in: .nanoseconds(max(0, nanoseconds))) { work() }
        return ScheduledTask(task)
    }

    func executeAfterCurrentEvents(_ work: @escaping () -> Void) {
        loop.assumeIsolated().execute(work)
    }

    private final class ScheduledTask: ScheduledWork {
        private let task: Scheduled<Void>

        init(_ task: Scheduled<Void>) {
            self.task = task
        }

        func cancel() {
            task.cancel()
        }
    }
}
