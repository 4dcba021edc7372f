import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct MQTTPropertiesTests {
    @Test func emptyByDefault() {
        let properties = MQTTProperties()
        #expect(properties.isEmpty)
        #expect(properties.encodedLength == 0)
        #expect(properties.userProperties.isEmpty)
        #expect(properties.topicAlias == nil)
        #expect(properties == MQTTProperties(topicAlias: nil))
    }

    @Test func copyOnWrite() {
        var first = MQTTProperties(reasonString: "a")
        let second = first
        first.reasonString = "b"
        first.userProperties.append(UserProperty("k", "v"))
        #expect(second.reasonString == "a")
        #expect(second.userProperties.isEmpty)
        #expect(first.reasonString == "b")
        #expect(first.userProperties == [UserProperty("k", "v")])
    }

    @Test func equalityIgnoresStorageIdentity() {
        var set = MQTTProperties()
        set.topicAlias = 4
        set.topicAlias = nil
        #expect(set == MQTTProperties())
        #expect(set.isEmpty)
        #expect(MQTTProperties(contentType: "x") != MQTTProperties(contentType: "y"))
        #expect(MQTTProperties(subscriptionIdentifiers: [1, 2]) != MQTTProperties(subscriptionIdentifiers: [2, 1]))
    }

    @Test func everyPropertyRoundTripsInAV5Packet() {
        // The union of all properties does not fit any one packet, so check them where each is allowed.
        let connack = MQTTProperties(
            sessionExpiryInterval: 1, assignedClientIdentifier: "id", serverKeepAlive: 2, authenticationMethod: "m",
            authenticationData: buffer([9]), responseInformation: "ri", serverReference: "sr", reasonString: "rs",
            receiveMaximum: 3, topicAliasMaximum: 4, maximumQoS: .atMostOnce, retainAvailable: true,
            userProperties: [UserProperty("a", "b")], maximumPacketSize: 5, wildcardSubscriptionAvailable: false,
            subscriptionIdentifierAvailable: true, sharedSubscriptionAvailable: false
        )
        let packet = MQTTPacket.connack(ConnAckPacket(properties: connack))
        #expect(decodeOne(encode(packet, .v5), .v5) == packet)
    }

    @Test func largeSubscriptionIdentifierAndManyUserProperties() {
        let pairs = (0..<200).map { UserProperty("name\($0)", String(repeating: "v", count: $0)) }
        let properties = MQTTProperties(subscriptionIdentifiers: [268_435_455, 1, 128], userProperties: pairs)
        let packet = MQTTPacket.publish(PublishPacket(topic: "t", payload: ByteBuffer(), properties: properties))
        let bytes = encode(packet, .v5)
        #expect(bytes.count > 16_384)
        #expect(decodeOne(bytes, .v5) == packet)
    }
}
