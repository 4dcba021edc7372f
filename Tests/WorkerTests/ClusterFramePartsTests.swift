import MQTTBroker
import MQTTCodec
import NIOCore
import Testing

@testable import WorkerCluster

/// A publish frame written in three parts (head, the payload's own buffer, tail) is byte for byte the frame
/// `writeClusterFrame` writes, and decodes to the same publish: what a worker buffers for a slow peer holds the
/// payload once, not a second copy of it.
@Suite struct ClusterFramePartsTests {
    static let publishes: [ForwardedPublish] = {
        var properties = MQTTProperties()
        properties.contentType = "text/plain"
        properties.userProperties = [.init(name: "k", value: "v")]
        var message = ApplicationMessage(
            topic: "a/b", payload: ByteBuffer(string: "payload"), qos: .atLeastOnce, retain: true,
            properties: properties, publisher: "pub")
        message.id = 42
        let empty = ApplicationMessage(topic: "empty", payload: ByteBuffer(), qos: .atMostOnce, retain: false)
        return [
            ForwardedPublish(message: message, deliver: true, sharedGroups: [], retainStamp: RetainStamp(clock: 9, node: 3)),
            ForwardedPublish(
                message: empty, deliver: false,
                sharedGroups: [.init(shareName: "g", filter: "$share/g/empty")], retainStamp: nil),
        ]
    }()

    @Test(arguments: publishes)
    func partsAreTheFrame(_ publish: ForwardedPublish) throws {
        var whole = ByteBuffer()
        whole.writeClusterFrame(.publish(publish, sequence: 77))
        let parts = ClusterFrame.publishParts(publish, sequence: 77, allocator: ByteBufferAllocator())
        var joined = parts.head
        joined.writeImmutableBuffer(parts.payload)
        joined.writeImmutableBuffer(parts.tail)
        #expect(joined == whole)
        #expect(parts.payload == publish.message.payload)

        _ = joined.readInteger(as: UInt32.self)
        let decoded = try joined.readClusterFrame()
        #expect(decoded == .publish(publish, sequence: 77))
    }
}
