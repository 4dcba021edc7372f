import Testing

@testable import MQTTCodec

@Suite struct ReasonCodeTests {
    @Test func namedValues() {
        #expect(ReasonCode.success.rawValue == 0x00)
        #expect(ReasonCode.normalDisconnection == .grantedQoS0)
        #expect(ReasonCode.malformedPacket.rawValue == 0x81)
        #expect(ReasonCode.protocolError.rawValue == 0x82)
        #expect(ReasonCode.unsupportedProtocolVersion.rawValue == 0x84)
        #expect(ReasonCode.topicNameInvalid.rawValue == 0x90)
        #expect(ReasonCode.packetTooLarge.rawValue == 0x95)
        #expect(ReasonCode.wildcardSubscriptionsNotSupported.rawValue == 0xA2)
        #expect(ReasonCode.granted(.exactlyOnce) == .grantedQoS2)
        #expect(ReasonCode.notAuthorized.isFailure)
        #expect(!ReasonCode.noMatchingSubscribers.isFailure)
        #expect(ReasonCode.packetTooLarge.description == "0x95 (Packet too large)")
    }

    @Test func v3ConnectReturnCodesRoundTrip() throws {
        for code in UInt8(0)...5 {
            let reasonCode = try #require(ReasonCode(v3ConnectReturnCode: code))
            #expect(reasonCode.v3ConnectReturnCode == code)
        }
        #expect(ReasonCode(v3ConnectReturnCode: 6) == nil)
        #expect(ReasonCode.malformedPacket.v3ConnectReturnCode == 3)
        #expect(ReasonCode.badAuthenticationMethod.v3ConnectReturnCode == 4)
    }

    @Test func v3SubAckReturnCodes() {
        #expect(ReasonCode.grantedQoS0.v3SubAckReturnCode == 0x00)
        #expect(ReasonCode.grantedQoS2.v3SubAckReturnCode == 0x02)
        #expect(ReasonCode.topicFilterInvalid.v3SubAckReturnCode == 0x80)
        #expect(ReasonCode.quotaExceeded.v3SubAckReturnCode == 0x80)
    }

    @Test func validityPerPacket() {
        #expect(ReasonCode.noMatchingSubscribers.isValid(for: .puback))
        #expect(!ReasonCode.noMatchingSubscribers.isValid(for: .pubrel))
        #expect(ReasonCode.packetIdentifierNotFound.isValid(for: .pubcomp))
        #expect(ReasonCode.sessionTakenOver.isValid(for: .disconnect))
        #expect(!ReasonCode.sessionTakenOver.isValid(for: .connack))
        #expect(ReasonCode.continueAuthentication.isValid(for: .auth))
        #expect(ReasonCode.noSubscriptionExisted.isValid(for: .unsuback))
        #expect(!ReasonCode.success.isValid(for: .publish))
        // Every defined code is valid somewhere, and every code valid somewhere is named.
        let defined = Set<UInt8>([0x00, 0x01, 0x02, 0x04, 0x10, 0x11, 0x18, 0x19]).union(0x80...0xA2)
        for raw in UInt8(0)...255 {
            let code = ReasonCode(rawValue: raw)
            let validSomewhere = MQTTPacketType.allCases.contains { code.isValid(for: $0) }
            #expect(validSomewhere == defined.contains(raw), "\(code)")
            #expect((code.name != "Unknown") == defined.contains(raw), "\(code)")
        }
    }
}
