import NIOCore

/// `ByteToMessageDecoder` over `MQTTDecoder`: wrap it in `ByteToMessageHandler` to get `MQTTPacket`s inbound.
/// Lives on its channel's event loop.
///
/// A decoding failure reaches `errorCaught` as the thrown `MQTTDecodingError`; answering it (see
/// `MQTTDecodingError.suggestedResponse`) and closing the channel is the next handler's job.
public struct MQTTPacketDecoderHandler: ByteToMessageDecoder {
    public typealias InboundOut = MQTTPacket

    public var decoder: MQTTDecoder

    public init(
        maximumPacketSize: Int = MQTTDecoder.protocolMaximumPacketSize, protocolVersion: MQTTProtocolVersion? = nil
    ) {
        self.decoder = MQTTDecoder(maximumPacketSize: maximumPacketSize, protocolVersion: protocolVersion)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let packet = try decoder.decode(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(packet))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // A packet cut short by EOF is dropped with the connection.
        try decode(context: context, buffer: &buffer)
    }
}

/// `MessageToByteEncoder` for `MQTTPacket`s at a fixed protocol version: wrap it in `MessageToByteHandler`.
/// Add it once the version is known (after CONNECT); CONNECT itself is always encoded at its own level.
public struct MQTTPacketEncoderHandler: MessageToByteEncoder {
    public typealias OutboundIn = MQTTPacket

    public let protocolVersion: MQTTProtocolVersion

    public init(protocolVersion: MQTTProtocolVersion) {
        self.protocolVersion = protocolVersion
    }

    public func encode(data: MQTTPacket, out: inout ByteBuffer) throws {
        MQTTEncoder.encode(data, version: protocolVersion, into: &out)
    }
}
