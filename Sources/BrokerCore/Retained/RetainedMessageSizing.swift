import NIOCore

/// A message whose memory `RetainedStore` accounts for in `totalByteCount`. The message decides what
/// it counts: typically payload plus properties.
public protocol RetainedMessageSizing {
    var retainedByteCount: Int { get }
}

extension ByteBuffer: RetainedMessageSizing {
    /// The readable bytes, i.e. the payload.
    public var retainedByteCount: Int { readableBytes }
}
