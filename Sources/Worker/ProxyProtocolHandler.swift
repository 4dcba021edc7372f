import Logging
import NIOCore

/// First in the pipeline of a `proxy_protocol = true` listener: reads the PROXY protocol header (at most
/// `ProxyProtocolHeader`'s bounds, within `timeout`), then hands the client address it names to `onHeader`,
/// which decides about the connection and adds the rest of the pipeline; the bytes after the header go on to
/// it and this handler removes itself. A connection without a valid header in time is closed and counted.
///
/// Lives in one channel pipeline on its event loop; not Sendable.
final class ProxyProtocolHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Called once with the client's address (the header's, else the socket's peer); returns whether the
    /// connection is served (the rest of the pipeline was added) or refused (the handler closes it).
    typealias HeaderCallback = (any Channel, SocketAddress?) throws -> Bool

    private let timeout: TimeAmount
    private let admission: ConnectionAdmission
    private let logger: Logger
    private let onHeader: HeaderCallback
    private var buffered: ByteBuffer?
    private var timeoutTask: Scheduled<Void>?
    private var isDone = false

    init(timeout: TimeAmount, admission: ConnectionAdmission, logger: Logger, onHeader: @escaping HeaderCallback) {
        self.timeout = timeout
        self.admission = admission
        self.logger = logger
        self.onHeader = onHeader
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { armTimeout(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        armTimeout(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeoutTask?.cancel()
        timeoutTask = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeoutTask?.cancel()
        timeoutTask = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !isDone else { return }
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered?.writeBuffer(&incoming)
        }
        guard var bytes = buffered else { return }
        switch ProxyProtocolHeader.parse(bytes) {
        case .needMoreBytes:
            return
        case .invalid(let reason):
            refuse(.proxyHeaderInvalid, reason, context: context)
        case .header(let length, let source):
            isDone = true
            timeoutTask?.cancel()
            timeoutTask = nil
            bytes.moveReaderIndex(forwardBy: length)
            buffered = nil
            let served: Bool
            do {
                served = try onHeader(context.channel, source ?? context.channel.remoteAddress)
            } catch {
                logger.debug("cannot set up the connection", metadata: ["error": "\(error)"])
                context.close(promise: nil)
                return
            }
            guard served else {
                context.close(promise: nil)
                return
            }
            if bytes.readableBytes > 0 {
                context.fireChannelRead(wrapInboundOut(bytes))
                context.fireChannelReadComplete()
            }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Held back until the header is done: the handlers after this one do not exist before.
        if isDone { context.fireChannelReadComplete() }
    }

    private func armTimeout(context: ChannelHandlerContext) {
        guard timeoutTask == nil, !isDone else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.scheduleTask(in: timeout) {
            let handler = handler.value
            guard !handler.isDone else { return }
            handler.refuse(.proxyHeaderTimeout, "no complete PROXY protocol header in time", context: boundContext.value)
        }
    }

    private func refuse(_ refusal: ConnectionAdmission.Refusal, _ reason: String, context: ChannelHandlerContext) {
        isDone = true
        timeoutTask?.cancel()
        timeoutTask = nil
        buffered = nil
        admission.refuse(refusal)
        logger.debug(
            "connection refused", metadata: [
                "listener": "\(admission.listener)",
                "tls.peer": "\(context.channel.remoteAddress.map(MQTTServerHandler.describe) ?? "unknown")",
                "reason": "\(refusal.rawValue)", "error": "\(reason)",
            ])
        context.close(promise: nil)
    }
}
