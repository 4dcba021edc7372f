#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import Worker

@Suite struct AcceptBackoffOnErrorHandlerTests {
    private struct NotAnIOError: Error {}

    private func makeChannel() throws -> (EmbeddedChannel, AcceptBackoffOnErrorHandler) {
        let channel = EmbeddedChannel()
        let handler = AcceptBackoffOnErrorHandler(
            listener: "tcp:test", logger: Logger(label: "test"), backoff: .seconds(1))
        try channel.pipeline.syncOperations.addHandler(handler)
        return (channel, handler)
    }

    /// The last autoRead value the handler set (EmbeddedChannel records options, it does not act on them).
    private func lastAutoRead(_ channel: EmbeddedChannel) -> Bool? {
        channel.options.last { $0.option is ChannelOptions.Types.AutoReadOption }?.value as? Bool
    }

    @Test func pausesAcceptingForTheBackoffThenResumes() throws {
        let (channel, handler) = try makeChannel()
        channel.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        #expect(handler.isPaused)
        #expect(lastAutoRead(channel) == false)
        // More failures while paused: one episode, no second timer.
        channel.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        #expect(handler.episodes == 1 && handler.failuresInEpisode == 2)
        // Handled here, not passed on.
        try channel.throwIfErrorCaught()

        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(handler.isPaused)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!handler.isPaused)
        #expect(lastAutoRead(channel) == true)

        // An accepted connection ends the episode and is passed on.
        let accepted = EmbeddedChannel()
        try channel.writeInbound(accepted as any Channel)
        #expect(handler.failuresInEpisode == 0)
        #expect(try channel.readInbound(as: (any Channel).self) === accepted)

        channel.pipeline.fireErrorCaught(IOError(errnoCode: ENFILE, reason: "accept"))
        #expect(handler.episodes == 2 && handler.isPaused)
        _ = try channel.finish()
        #expect(!handler.isPaused)
    }

    @Test func passesOtherErrorsOn() throws {
        let (channel, handler) = try makeChannel()
        channel.pipeline.fireErrorCaught(NotAnIOError())
        #expect(throws: NotAnIOError.self) { try channel.throwIfErrorCaught() }
        channel.pipeline.fireErrorCaught(IOError(errnoCode: ECONNABORTED, reason: "accept"))
        #expect(throws: IOError.self) { try channel.throwIfErrorCaught() }
        #expect(!handler.isPaused && handler.episodes == 0)
        _ = try channel.finish()
    }
}
