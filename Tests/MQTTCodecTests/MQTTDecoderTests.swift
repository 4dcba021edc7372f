import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct MQTTDecoderTests {
    // MARK: State

    @Test func firstPacketMustBeConnect() throws {
        let error = try #require(expectDecodingError([0xC0, 0x00], nil, .protocolError))
        #expect(error.isBeforeConnect)
        #expect(error.packetType == .pingreq)
        #expect(error.suggestedResponse == nil)
        // Rejected from the first byte alone.
        expectDecodingError([0x30], nil, .protocolError)
        expectDecodingError([0x00], nil, .protocolError)
    }

    @Test func connectSetsTheVersionForTheRest() throws {
        var decoder = MQTTDecoder(maximumPacketSize: 1024)
        var input = ByteBuffer(
            bytes: encode(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")), .v5)
                + [0x40, 0x03, 0x00, 0x01, 0x10]
        )
        #expect(decoder.protocolVersion == nil)
        _ = try decoder.decode(from: &input)
        #expect(decoder.protocolVersion == .v5)
        // Decoded with the v5 layout: a PUBACK with a reason code.
        let ack = try decoder.decode(from: &input)
        #expect(ack == .puback(PubAckPacket(packetIdentifier: 1, reasonCode: .noMatchingSubscribers)))
    }

    @Test func secondConnectIsDecodedAndLeftToTheBroker() throws {
        var decoder = MQTTDecoder(maximumPacketSize: 1024)
        let v311 = encode(.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c")), .v3_1_1)
        let v5 = encode(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")), .v5)
        var input = ByteBuffer(bytes: v311 + v5)
        _ = try decoder.decode(from: &input)
        let second = try decoder.decode(from: &input)
        #expect(second == .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c")))
        #expect(decoder.protocolVersion == .v3_1_1)
    }

    @Test func packetTypeZeroIsMalformed() {
        expectDecodingError([0x00, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0x00, 0x00], .v5, .malformedPacket)
    }

    @Test func errorsAfterConnectSuggestDisconnectInV5Only() throws {
        let v5 = try #require(expectDecodingError([0x36, 0x00], .v5, .malformedPacket))
        #expect(!v5.isBeforeConnect)
        #expect(v5.protocolVersion == .v5)
        let response = try #require(v5.suggestedResponse)
        #expect(encode(response.packet, response.version) == [0xE0, 0x01, 0x81])
        let v3 = try #require(expectDecodingError([0x36, 0x00], .v3_1_1, .malformedPacket))
        #expect(v3.suggestedResponse == nil)
        #expect(v3.protocolVersion == .v3_1_1)
    }

    // MARK: Remaining length

    @Test func returnsNilUntilTheWholePacketIsThere() throws {
        let bytes: [UInt8] = [0x30, 0x07, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x68, 0x69]
        var decoder = MQTTDecoder(protocolVersion: .v3_1_1)
        for length in 0..<bytes.count {
            var input = buffer(Array(bytes[..<length]))
            #expect(try decoder.decode(from: &input) == nil)
            #expect(input.readableBytes == length, "nothing is consumed while incomplete")
        }
    }

    @Test func fourByteRemainingLengthIsAccepted() throws {
        // 268,435,455: the header is fine, the decoder just waits for the body.
        var decoder = MQTTDecoder(protocolVersion: .v3_1_1)
        var input = buffer([0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01])
        #expect(try decoder.decode(from: &input) == nil)
        #expect(input.readableBytes == 7)
        // Partial four-byte length: still waiting.
        var partial = buffer([0x30, 0xFF, 0xFF, 0xFF])
        #expect(try decoder.decode(from: &partial) == nil)
    }

    @Test func fiveByteRemainingLengthIsMalformed() {
        expectDecodingError([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], .v3_1_1, .malformedPacket)
        // Known as soon as the fourth byte has its continuation bit set.
        expectDecodingError([0x30, 0x80, 0x80, 0x80, 0x80], .v5, .malformedPacket)
    }

    @Test func nonMinimalRemainingLengthIsMalformed() {
        expectDecodingError([0xC0, 0x80, 0x00], .v3_1_1, .malformedPacket)
        expectDecodingError([0x30, 0x83, 0x80, 0x00], .v3_1_1, .malformedPacket)
    }

    @Test func variableByteIntegerEncodings() throws {
        let cases: [(Int, [UInt8])] = [
            (0, [0x00]), (127, [0x7F]), (128, [0x80, 0x01]), (16_383, [0xFF, 0x7F]), (16_384, [0x80, 0x80, 0x01]),
            (2_097_151, [0xFF, 0xFF, 0x7F]), (2_097_152, [0x80, 0x80, 0x80, 0x01]),
            (268_435_455, [0xFF, 0xFF, 0xFF, 0x7F]),
        ]
        for (value, bytes) in cases {
            var out = ByteBuffer()
            out.writeMQTTVariableByteInteger(value)
            #expect(Array(out.readableBytesView) == bytes)
            #expect(mqttVariableByteIntegerSize(value) == bytes.count)
            var input = buffer(bytes)
            #expect(try input.readMQTTVariableByteInteger() == value)
        }
    }

    @Test func oversizePacketIsRejectedFromItsHeader() throws {
        // Only the fixed header has arrived: 2 + 255 > 100.
        let error = try #require(
            expectDecodingError([0x30, 0xFF, 0x01], .v3_1_1, .packetTooLarge, maximumPacketSize: 100)
        )
        #expect(error.packetType == .publish)
        // The largest expressible packet against a 1 MiB limit, known from its four length bytes.
        expectDecodingError([0x30, 0xFF, 0xFF, 0xFF, 0x7F], .v5, .packetTooLarge, maximumPacketSize: 1 << 20)
        // Exactly at the limit is fine: 2 + 7 = 9.
        let bytes: [UInt8] = [0x30, 0x07, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x68, 0x69]
        #expect(decodeOne(bytes, .v3_1_1, maximumPacketSize: 9) != nil)
        expectDecodingError(bytes, .v3_1_1, .packetTooLarge, maximumPacketSize: 8)
    }

    @Test func oversizeConnectReportsItsVersionWhenVisible() throws {
        // A v5 CONNECT announcing 1000 bytes, of which only the start has arrived.
        let start: [UInt8] = [0x10, 0xE8, 0x07, 0x00, 0x04] + Wire.utf8("MQTT") + [0x05]
        let error = try #require(expectDecodingError(start, nil, .packetTooLarge, maximumPacketSize: 512))
        #expect(error.isBeforeConnect)
        #expect(error.protocolVersion == .v5)
        let response = try #require(error.suggestedResponse)
        #expect(encode(response.packet, response.version) == [0x20, 0x03, 0x00, 0x95, 0x00])
        // Header only: version unknown, nothing to send.
        let headerOnly = try #require(
            expectDecodingError([0x10, 0xE8, 0x07], nil, .packetTooLarge, maximumPacketSize: 512))
        #expect(headerOnly.protocolVersion == nil)
        #expect(headerOnly.suggestedResponse == nil)
    }

    // MARK: Streams split every way

    static let v5Stream: [MQTTPacket] = [
        .connect(
            ConnectPacket(
                protocolVersion: .v5,
                clientIdentifier: "client-ü",
                username: "u",
                password: buffer("pw"),
                will: .init(topic: "will", payload: buffer("gone"), qos: .atLeastOnce),
                properties: MQTTProperties(sessionExpiryInterval: 30, userProperties: [UserProperty("a", "b")])
            )
        ),
        .publish(
            PublishPacket(
                topic: "t/1",
                payload: ByteBuffer(repeating: 0x5A, count: 300),
                qos: .exactlyOnce,
                packetIdentifier: 9,
                properties: MQTTProperties(subscriptionIdentifiers: [1, 2_000_000])
            )
        ),
        .pubrel(PubRelPacket(packetIdentifier: 9)),
        .subscribe(SubscribePacket(packetIdentifier: 3, subscriptions: [.init(topicFilter: "#", qos: .atLeastOnce)])),
        .pingreq,
        .unsubscribe(UnsubscribePacket(packetIdentifier: 4, topicFilters: ["#"])),
        .puback(
            PubAckPacket(
                packetIdentifier: 5, reasonCode: .notAuthorized, properties: MQTTProperties(reasonString: "no"))),
        .auth(AuthPacket(reasonCode: .reAuthenticate, properties: MQTTProperties(authenticationMethod: "x"))),
        .publish(PublishPacket(topic: "", payload: ByteBuffer(), properties: MQTTProperties(topicAlias: 1))),
        .disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)),
    ]

    static let v311Stream: [MQTTPacket] = [
        .connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c", cleanStart: false, keepAlive: 0)),
        .publish(PublishPacket(topic: "a", payload: buffer("x"), qos: .atLeastOnce, retain: true, packetIdentifier: 1)),
        .puback(PubAckPacket(packetIdentifier: 1)),
        .subscribe(SubscribePacket(packetIdentifier: 2, subscriptions: [.init(topicFilter: "a/+", qos: .exactlyOnce)])),
        .pingreq,
        .publish(PublishPacket(topic: "b", payload: ByteBuffer(repeating: 1, count: 200))),
        .disconnect(DisconnectPacket()),
    ]

    static func streamBytes(_ packets: [MQTTPacket], _ version: MQTTProtocolVersion) -> [UInt8] {
        var out = ByteBuffer()
        for packet in packets {
            MQTTEncoder.encode(packet, version: version, into: &out)
        }
        return Array(out.readableBytesView)
    }

    @Test(arguments: [(v5Stream, MQTTProtocolVersion.v5), (v311Stream, .v3_1_1)])
    func splitAtEveryByteBoundary(_ packets: [MQTTPacket], _ version: MQTTProtocolVersion) throws {
        let bytes = Self.streamBytes(packets, version)
        let whole = try decodeStream([bytes[...]])
        #expect(whole.packets == packets)
        #expect(whole.leftover == 0)
        for split in 1..<bytes.count {
            let result = try decodeStream([bytes[..<split], bytes[split...]])
            #expect(result.packets == packets, "split at \(split)")
            #expect(result.leftover == 0)
        }
    }

    @Test(arguments: [(v5Stream, MQTTProtocolVersion.v5), (v311Stream, .v3_1_1)])
    func oneByteAtATime(_ packets: [MQTTPacket], _ version: MQTTProtocolVersion) throws {
        let bytes = Self.streamBytes(packets, version)
        let chunks = bytes.indices.map { bytes[$0...$0] }
        let result = try decodeStream(chunks)
        #expect(result.packets == packets)
        #expect(result.leftover == 0)
    }

    @Test func threeWaySplits() throws {
        let bytes = Self.streamBytes(Array(Self.v311Stream.prefix(4)), .v3_1_1)
        for first in stride(from: 1, to: bytes.count, by: 3) {
            for second in (first + 1)..<bytes.count {
                let result = try decodeStream([bytes[..<first], bytes[first..<second], bytes[second...]])
                #expect(result.packets == Array(Self.v311Stream.prefix(4)))
            }
        }
    }

    @Test func errorInTheMiddleOfAStream() throws {
        var bytes = Self.streamBytes(Array(Self.v311Stream.prefix(2)), .v3_1_1)
        bytes += [0x62, 0x02, 0x00, 0x00]
        var decoder = MQTTDecoder()
        var input = buffer(bytes)
        #expect(try decoder.decode(from: &input) != nil)
        #expect(try decoder.decode(from: &input) != nil)
        do {
            _ = try decoder.decode(from: &input)
            Issue.record("expected an error")
        } catch {
            #expect(error.reasonCode == .protocolError)
            #expect(error.packetType == .pubrel)
            #expect(!error.isBeforeConnect)
        }
    }
}
