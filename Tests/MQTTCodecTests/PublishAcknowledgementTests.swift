import NIOCore
import Testing

@testable import MQTTCodec

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one wire layout; each case is run for all four.
@Suite struct PublishAcknowledgementTests {
    struct Kind: Sendable, CustomStringConvertible {
        var firstByte: UInt8
        var make: @Sendable (UInt16, ReasonCode, MQTTProperties) -> MQTTPacket
        var failureCode: ReasonCode
        var description: String
    }

    static let kinds: [Kind] = [
        Kind(
            firstByte: 0x40, make: { .puback(PubAckPacket(packetIdentifier: $0, reasonCode: $1, properties: $2)) },
            failureCode: .notAuthorized, description: "PUBACK"),
        Kind(
            firstByte: 0x50, make: { .pubrec(PubRecPacket(packetIdentifier: $0, reasonCode: $1, properties: $2)) },
            failureCode: .quotaExceeded, description: "PUBREC"),
        Kind(
            firstByte: 0x62, make: { .pubrel(PubRelPacket(packetIdentifier: $0, reasonCode: $1, properties: $2)) },
            failureCode: .packetIdentifierNotFound, description: "PUBREL"),
        Kind(
            firstByte: 0x70, make: { .pubcomp(PubCompPacket(packetIdentifier: $0, reasonCode: $1, properties: $2)) },
            failureCode: .packetIdentifierNotFound, description: "PUBCOMP"),
    ]

    @Test(arguments: kinds)
    func v3(_ kind: Kind) {
        let packet = kind.make(1, .success, MQTTProperties())
        expectWire(packet, .v3_1_1, [kind.firstByte, 0x02, 0x00, 0x01])
        expectWire(packet, .v3_1, [kind.firstByte, 0x02, 0x00, 0x01])
        // 3.x has no reason code: a failure still encodes as the bare identifier.
        #expect(
            encode(kind.make(1, kind.failureCode, MQTTProperties()), .v3_1_1) == [kind.firstByte, 0x02, 0x00, 0x01])
        expectDecodingError([kind.firstByte, 0x03, 0x00, 0x01, 0x00], .v3_1_1, .malformedPacket)
    }

    @Test(arguments: kinds)
    func v5ShortForms(_ kind: Kind) {
        expectWire(kind.make(0xABCD, .success, MQTTProperties()), .v5, [kind.firstByte, 0x02, 0xAB, 0xCD])
        expectWire(
            kind.make(1, kind.failureCode, MQTTProperties()),
            .v5,
            [kind.firstByte, 0x03, 0x00, 0x01, kind.failureCode.rawValue]
        )
        // The longer forms of a plain success decode too.
        #expect(decodeOne([kind.firstByte, 0x03, 0x00, 0x01, 0x00], .v5) == kind.make(1, .success, MQTTProperties()))
        #expect(
            decodeOne([kind.firstByte, 0x04, 0x00, 0x01, 0x00, 0x00], .v5) == kind.make(1, .success, MQTTProperties()))
    }

    @Test(arguments: kinds)
    func v5WithProperties(_ kind: Kind) {
        let properties = MQTTProperties(reasonString: "e", userProperties: [UserProperty("k", "v")])
        let code = kind.failureCode.rawValue
        let bytes: [UInt8] = [
            kind.firstByte, 0x0F, 0x00, 0x01, code, 0x0B, 0x1F, 0x00, 0x01, 0x65,
            0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76,
        ]
        expectWire(kind.make(1, kind.failureCode, properties), .v5, bytes)
        // Success with properties keeps the reason code byte.
        let success: [UInt8] = [kind.firstByte, 0x08, 0x00, 0x01, 0x00, 0x04, 0x1F, 0x00, 0x01, 0x65]
        expectWire(kind.make(1, .success, MQTTProperties(reasonString: "e")), .v5, success)
    }

    @Test(arguments: kinds)
    func validation(_ kind: Kind) {
        // Packet identifier 0.
        expectDecodingError([kind.firstByte, 0x02, 0x00, 0x00], .v5, .protocolError)
        expectDecodingError([kind.firstByte, 0x02, 0x00, 0x00], .v3_1_1, .protocolError)
        // Reason code not defined for the packet.
        expectDecodingError([kind.firstByte, 0x03, 0x00, 0x01, 0x05], .v5, .malformedPacket)
        // Property not allowed, duplicated reason string.
        expectDecodingError([kind.firstByte, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01], .v5, .malformedPacket)
        expectDecodingError(
            [kind.firstByte, 0x0C, 0x00, 0x01, 0x00, 0x08, 0x1F, 0x00, 0x01, 0x65, 0x1F, 0x00, 0x01, 0x65],
            .v5,
            .protocolError
        )
        // Wrong fixed header flags.
        let wrongFlags = kind.firstByte == 0x62 ? UInt8(0x60) : kind.firstByte | 0x02
        expectDecodingError([wrongFlags, 0x02, 0x00, 0x01], .v5, .malformedPacket)
        // Truncated identifier; trailing byte after the properties.
        expectDecodingError([kind.firstByte, 0x01, 0x00], .v5, .malformedPacket)
        expectDecodingError([kind.firstByte, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], .v5, .malformedPacket)
    }
}
