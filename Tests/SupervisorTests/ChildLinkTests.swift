#if canImport(Glibc)
import Glibc
#endif
import ControlChannel
import ProcessSupport
import Testing
@testable import Supervisor

/// A child that sends a message and dies at once: the supervisor reads the message and the EOF in one go. The
/// link must then count as closed and never read again, since its descriptor number is soon someone else's (a
/// control client's, whose request a stale link once swallowed, so that `status` got no answer).
@Suite struct ChildLinkTests {
    @Test func messagesThenEOFCloseTheLinkForGood() throws {
        let (parent, child) = try FileDescriptor.socketPair()
        try FileDescriptor.setNonBlocking(parent)
        let link = ChildLink(pid: 4242, fileDescriptor: parent)
        try FileDescriptor.writeAll(child, ChildMessage.statistics(json: "{}").encoded())
        close(child)

        let messages = link.receive()
        #expect(messages == [.statistics(json: "{}")])
        #expect(link.isClosed)

        // Closed for good: nothing more is read, whatever the descriptor number refers to by now.
        #expect(link.receive() == nil)
        #expect(link.isClosed)
    }
}
