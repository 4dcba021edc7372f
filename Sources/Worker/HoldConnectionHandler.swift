import NIOCore

/// Accepts a client connection and holds it open, discarding input, until MQTT arrives (issue 3).
final class HoldConnectionHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Discarded on purpose: the protocol layer is not there yet.
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
