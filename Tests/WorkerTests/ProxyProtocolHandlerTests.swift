import BrokerConfiguration
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import Worker

/// `ProxyProtocolHandler` on an `EmbeddedChannel`: the header is taken off, the client it names decides, the
/// bytes after it reach the handlers added for the connection; garbage and silence are refused and counted.
@Suite struct ProxyProtocolHandlerTests {
    /// Collects what reaches the end of the pipeline.
    final class Sink: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var received: [UInt8] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += Array(unwrapInboundIn(data).readableBytesView)
        }
    }

    private func admission(_ lines: [String] = []) throws -> ConnectionAdmission {
        let text = (["listener.tcp.t = 1883", "listener.tcp.t.proxy_protocol = true"] + lines).joined(separator: "\n")
        let configuration = try ConfigurationLoader.parse(
            text, displayPath: "test.conf", baseDirectory: "/tmp", options: .init(checkFiles: false))
        let listener = try #require(configuration.listeners.first)
        return try ConnectionAdmission(listener: listener, runDirectory: NSTemporaryDirectory())
    }

    /// A channel with the handler whose callback admits through `admission` and adds a `Sink`.
    private func channel(
        _ admission: ConnectionAdmission, seen: @escaping (SocketAddress?) -> Void = { _ in }
    ) throws -> (EmbeddedChannel, Sink) {
        let channel = EmbeddedChannel()
        let sink = Sink()
        let handler = ProxyProtocolHandler(
            timeout: .milliseconds(500), admission: admission, logger: Logger(label: "test")
        ) { channel, peer in
            seen(peer)
            guard case .admitted = admission.admit(peer) else { return false }
            try channel.pipeline.syncOperations.addHandler(sink)
            return true
        }
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1883)).wait()
        return (channel, sink)
    }

    @Test func headerIsRemovedAndTheRestFlowsOn() throws {
        var peer: SocketAddress?
        let (channel, sink) = try channel(try admission()) { peer = $0 }
        try channel.writeInbound(ByteBuffer(string: "PROXY TCP4 192.0.2.7 "))
        #expect(sink.received.isEmpty)
        try channel.writeInbound(ByteBuffer(string: "198.51.100.1 4000 1883\r\nhello"))
        #expect(peer == (try SocketAddress(ipAddress: "192.0.2.7", port: 4000)))
        #expect(sink.received == Array("hello".utf8))
        try channel.writeInbound(ByteBuffer(string: " world"))
        #expect(sink.received == Array("hello world".utf8))
        #expect((try? channel.pipeline.syncOperations.handler(type: ProxyProtocolHandler.self)) == nil)
        #expect(channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func accessAppliesToTheProxiedAddress() throws {
        let admission = try admission(["listener.tcp.t.access.1 = deny 192.0.2.0/24"])
        let (channel, sink) = try channel(admission)
        try channel.writeInbound(ByteBuffer(string: "PROXY TCP4 192.0.2.7 198.51.100.1 4000 1883\r\nhello"))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
        #expect(sink.received.isEmpty)
        #expect(admission.refusalCounts == ["access_denied": 1])
    }

    @Test func garbageIsRefusedAndCounted() throws {
        let admission = try admission()
        let (channel, sink) = try channel(admission)
        try channel.writeInbound(ByteBuffer(bytes: [0x10, 0x0F, 0x00, 0x04]))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
        #expect(sink.received.isEmpty)
        #expect(admission.refusalCounts == ["proxy_header_invalid": 1])
    }

    @Test func silenceTimesOut() throws {
        let admission = try admission()
        let (channel, _) = try channel(admission)
        try channel.writeInbound(ByteBuffer(string: "PROXY TCP4"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(499))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(admission.refusalCounts == ["proxy_header_timeout": 1])
    }
}
