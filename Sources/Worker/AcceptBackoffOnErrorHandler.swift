#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import ProcessSupport

/// On a listening channel: when `accept` fails (EMFILE: every file descriptor in use; ENFILE, ENOBUFS, ENOMEM),
/// stops accepting for `backoff`, then tries again; says so once per episode, and once when it accepts again.
///
/// Without it the worker spun at 100% CPU while its descriptor table was full: NIO leaves a listener whose accept
/// failed registered for readability (level-triggered epoll) and retries at once, forever. NIO's own
/// `AcceptBackoffHandler` does not help on this path (it delays the next `read()`, which NIO does not issue
/// after a failed accept), so this handler turns `autoRead` off, which unregisters the listener, and back on.
/// Lives on the listening channel's event loop (not Sendable).
final class AcceptBackoffOnErrorHandler: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let listener: String
    private let logger: Logger
    private let backoff: TimeAmount
    private var resume: Scheduled<Void>?
    /// Failed accepts in the current episode (0: accepting normally).
    private(set) var failuresInEpisode = 0
    private(set) var episodes = 0
    var isPaused: Bool { resume != nil }

    init(listener: String, logger: Logger, backoff: TimeAmount = .seconds(1)) {
        self.listener = listener
        self.logger = logger
        self.backoff = backoff
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if failuresInEpisode > 0 {
            logger.notice(
                "accepting connections again",
                metadata: ["listener": "\(listener)", "accept.failures": "\(failuresInEpisode)"])
            failuresInEpisode = 0
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, Self.isResourceShortage(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        failuresInEpisode += 1
        if failuresInEpisode == 1 {
            episodes += 1
            let limit = ResourceLimits.openFiles().map { "\($0.soft)/\($0.hard)" } ?? "unknown"
            logger.warning(
                "cannot accept connections, pausing accept",
                metadata: [
                    "listener": "\(listener)", "error": "\(error)", "open_files_limit": "\(limit)",
                    "accept.retry_in_ms": "\(backoff.nanoseconds / 1_000_000)",
                ])
        }
        guard resume == nil else { return }
        do {
            try context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        } catch {
            context.fireErrorCaught(error)
            return
        }
        resume = context.eventLoop.assumeIsolated().scheduleTask(in: backoff) { [self] in
            resume = nil
            _ = try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        resume?.cancel()
        resume = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        resume?.cancel()
        resume = nil
        context.fireChannelInactive()
    }

    private static func isResourceShortage(_ code: Int32) -> Bool {
        code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM
    }
}

@available(*, unavailable)
extension AcceptBackoffOnErrorHandler: Sendable {}
