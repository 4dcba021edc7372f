import NIOCore
import NIOHTTP1

/// Answers one HTTP request on a metrics connection: `GET /metrics` (or `/`) with the Prometheus text, anything
/// else with 404; then closes. Lives in one channel pipeline on the metrics event loop; not Sendable.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: () -> String
    private var head: HTTPRequestHead?
    private var answered = false

    init(render: @escaping () -> String) {
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
        case .body:
            break
        case .end:
            guard !answered, let head else { return }
            answered = true
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            if head.method == .GET && (path == "/metrics" || path == "/") {
                respond(.ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: render(), context: context)
            } else {
                respond(.notFound, contentType: "text/plain", body: "GET /metrics\n", context: context)
            }
        }
    }

    private func respond(_ status: HTTPResponseStatus, contentType: String, body: String, context: ChannelHandlerContext) {
        let bytes = context.channel.allocator.buffer(string: body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(bytes.readableBytes)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

/// Closes a connection whose request grows beyond `limit` bytes, before the HTTP decoder buffers it.
/// Lives in one channel pipeline; not Sendable.
final class RequestSizeLimitHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let limit: Int
    private var received = 0

    init(limit: Int) {
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytes
        guard received <= limit else {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}
