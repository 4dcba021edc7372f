import ControlChannel
import NIOCore

/// Reads `ChildMessage`s from the supervisor on fd 3 and forwards them; EOF means the supervisor is gone.
final class SupervisorLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var decoder = ChildMessageDecoder()
    private let onMessage: @Sendable (ChildMessage) -> Void
    private let onClose: @Sendable () -> Void

    init(onMessage: @escaping @Sendable (ChildMessage) -> Void, onClose: @escaping @Sendable () -> Void) {
        self.onMessage = onMessage
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        do {
            while let message = try decoder.next() {
                onMessage(message)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelEvent, case .inputClosed = event as? ChannelEvent {
            onClose()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
