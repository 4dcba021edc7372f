import MQTTBroker
import NIOCore

extension ClusterFrame {
    /// A publish frame as three buffers: the length prefix and everything before the payload, the payload (the
    /// message's own buffer, not a copy), and everything after it. Written in order they are exactly the bytes of
    /// `writeClusterFrame(.publish(publish, sequence:))`, so what a worker buffers for a slow peer is the payload
    /// it keeps for replay anyway, not a second copy of it.
    static func publishParts(
        _ publish: ForwardedPublish, sequence: UInt64, allocator: ByteBufferAllocator
    ) -> (head: ByteBuffer, payload: ByteBuffer, tail: ByteBuffer) {
        var head = allocator.buffer(capacity: 64 + publish.message.topic.utf8.count)
        head.writeInteger(UInt32(0))
        head.writeClusterPublishHead(publish, sequence: sequence)
        var tail = allocator.buffer(capacity: 32)
        tail.writeClusterMessageTail(publish.message)
        let length = head.readableBytes - 4 + publish.message.payload.readableBytes + tail.readableBytes
        head.setInteger(UInt32(length), at: head.readerIndex)
        return (head, publish.message.payload, tail)
    }
}
