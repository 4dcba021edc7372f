import NIOCore
import Testing

@testable import MQTTCodec

@Suite struct ConnectPacketTests {
    // MARK: Byte-exact encodings

    @Test func minimalV311() {
        let packet = MQTTPacket.connect(
            ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "abc", cleanStart: true, keepAlive: 60)
        )
        let bytes: [UInt8] =
            [0x10, 0x0F, 0x00, 0x04] + Wire.utf8("MQTT") + [0x04, 0x02, 0x00, 0x3C, 0x00, 0x03] + Wire.utf8("abc")
        expectWire(packet, .v3_1_1, bytes)
        // A fresh server-side decoder learns the version from it.
        var decoder = MQTTDecoder(maximumPacketSize: 1024)
        var input = buffer(bytes)
        #expect(throws: Never.self) { _ = try decoder.decode(from: &input) }
        #expect(decoder.protocolVersion == .v3_1_1)
    }

    @Test func v311WithWillUsernameAndPassword() {
        let packet = MQTTPacket.connect(
            ConnectPacket(
                protocolVersion: .v3_1_1,
                clientIdentifier: "cid",
                cleanStart: false,
                keepAlive: 10,
                username: "user",
                password: buffer([0x01, 0x02]),
                will: ConnectPacket.Will(topic: "w/t", payload: buffer("bye"), qos: .atLeastOnce, retain: true)
            )
        )
        var bytes: [UInt8] = [0x10, 0x23, 0x00, 0x04] + Wire.utf8("MQTT") + [0x04, 0xEC, 0x00, 0x0A]
        bytes += [0x00, 0x03] + Wire.utf8("cid")
        bytes += [0x00, 0x03] + Wire.utf8("w/t")
        bytes += [0x00, 0x03] + Wire.utf8("bye")
        bytes += [0x00, 0x04] + Wire.utf8("user")
        bytes += [0x00, 0x02, 0x01, 0x02]
        expectWire(packet, .v3_1_1, bytes)
    }

    @Test func minimalV31() {
        let packet = MQTTPacket.connect(
            ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "abc", cleanStart: true, keepAlive: 60)
        )
        let bytes: [UInt8] =
            [0x10, 0x11, 0x00, 0x06] + Wire.utf8("MQIsdp") + [0x03, 0x02, 0x00, 0x3C, 0x00, 0x03]
            + Wire.utf8("abc")
        expectWire(packet, .v3_1, bytes)
        // The version argument does not matter for CONNECT: its own level is used.
        #expect(encode(packet, .v5) == bytes)
    }

    @Test func v5WithProperties() {
        let properties = MQTTProperties(
            sessionExpiryInterval: 3600,
            requestProblemInformation: false,
            receiveMaximum: 20,
            topicAliasMaximum: 5,
            userProperties: [UserProperty("k", "v")],
            maximumPacketSize: 1024
        )
        let packet = MQTTPacket.connect(
            ConnectPacket(protocolVersion: .v5, clientIdentifier: "c1", keepAlive: 30, properties: properties)
        )
        var bytes: [UInt8] = [0x10, 0x28, 0x00, 0x04] + Wire.utf8("MQTT") + [0x05, 0x02, 0x00, 0x1E]
        bytes += [0x19]
        bytes += [0x11, 0x00, 0x00, 0x0E, 0x10]
        bytes += [0x17, 0x00]
        bytes += [0x21, 0x00, 0x14]
        bytes += [0x22, 0x00, 0x05]
        bytes += [0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76]
        bytes += [0x27, 0x00, 0x00, 0x04, 0x00]
        bytes += [0x00, 0x02] + Wire.utf8("c1")
        expectWire(packet, .v5, bytes)
    }

    @Test func v5WithWillPropertiesAuthenticationAndCredentials() {
        let will = ConnectPacket.Will(
            topic: "a/b",
            payload: buffer([0xFF]),
            qos: .exactlyOnce,
            retain: false,
            properties: MQTTProperties(
                payloadFormatIndicator: .utf8,
                contentType: "t",
                willDelayInterval: 5,
                userProperties: [UserProperty("a", "b")]
            )
        )
        let packet = MQTTPacket.connect(
            ConnectPacket(
                protocolVersion: .v5,
                clientIdentifier: "",
                cleanStart: true,
                keepAlive: 60,
                username: "u",
                password: buffer("p"),
                will: will,
                properties: MQTTProperties(authenticationMethod: "m", authenticationData: buffer([0x01]))
            )
        )
        var bytes: [UInt8] = [0x10, 0x36, 0x00, 0x04] + Wire.utf8("MQTT") + [0x05, 0xD6, 0x00, 0x3C]
        bytes += [0x08, 0x15, 0x00, 0x01, 0x6D, 0x16, 0x00, 0x01, 0x01]
        bytes += [0x00, 0x00]
        bytes += [0x12, 0x01, 0x01, 0x03, 0x00, 0x01, 0x74, 0x18, 0x00, 0x00, 0x00, 0x05]
        bytes += [0x26, 0x00, 0x01, 0x61, 0x00, 0x01, 0x62]
        bytes += [0x00, 0x03] + Wire.utf8("a/b")
        bytes += [0x00, 0x01, 0xFF]
        bytes += [0x00, 0x01, 0x75]
        bytes += [0x00, 0x01, 0x70]
        expectWire(packet, .v5, bytes)
    }

    @Test func v5PasswordWithoutUsernameIsAllowed() {
        let packet = MQTTPacket.connect(
            ConnectPacket(protocolVersion: .v5, clientIdentifier: "c", password: buffer("secret"))
        )
        #expect(decodeOne(encode(packet, .v5), nil) == packet)
    }

    // MARK: Validation

    private static func connectBytes(
        name: String = "MQTT",
        level: UInt8 = 4,
        flags: UInt8 = 0x02,
        rest: [UInt8] = Wire.string("c")
    ) -> [UInt8] {
        let body = Wire.string(name) + [level, flags, 0x00, 0x3C] + rest
        return [0x10, UInt8(body.count)] + body
    }

    @Test func unsupportedProtocolLevel() throws {
        let error = try #require(expectDecodingError(Self.connectBytes(level: 6), nil, .unsupportedProtocolVersion))
        #expect(error.requestedProtocolLevel == 6)
        #expect(error.isBeforeConnect)
        #expect(error.protocolVersion == nil)
        // Answered with a 3.1.1 CONNACK, return code 0x01.
        let response = try #require(error.suggestedResponse)
        #expect(encode(response.packet, response.version) == [0x20, 0x02, 0x00, 0x01])
    }

    @Test func wrongProtocolName() throws {
        expectDecodingError(Self.connectBytes(name: "MQTX"), nil, .unsupportedProtocolVersion)
        expectDecodingError(Self.connectBytes(name: "MQIsdp", level: 4), nil, .unsupportedProtocolVersion)
        expectDecodingError(Self.connectBytes(name: "MQTT", level: 3), nil, .unsupportedProtocolVersion)
        // A v5 client with the wrong name is told 0x84 in a v5 CONNACK.
        let v5Bytes = Self.connectBytes(name: "MQIsdp", level: 5, rest: [0x00] + Wire.string("c"))
        let error = try #require(expectDecodingError(v5Bytes, nil, .unsupportedProtocolVersion))
        let response = try #require(error.suggestedResponse)
        #expect(response.version == .v5)
        #expect(encode(response.packet, response.version) == [0x20, 0x03, 0x00, 0x84, 0x00])
    }

    @Test func reservedFlagMustBeZero() throws {
        let error = try #require(expectDecodingError(Self.connectBytes(flags: 0x03), nil, .malformedPacket))
        #expect(error.protocolVersion == .v3_1_1)
        #expect(error.isBeforeConnect)
        #expect(error.suggestedResponse == nil)
        // An MQTT 5 client gets CONNACK 0x81.
        let v5 = try #require(
            expectDecodingError(
                Self.connectBytes(level: 5, flags: 0x03, rest: [0x00] + Wire.string("c")), nil, .malformedPacket)
        )
        let response = try #require(v5.suggestedResponse)
        #expect(encode(response.packet, response.version) == [0x20, 0x03, 0x00, 0x81, 0x00])
    }

    @Test func willFlagsMustBeConsistent() {
        // Will QoS 1 without the will flag.
        expectDecodingError(Self.connectBytes(flags: 0x0A), nil, .malformedPacket)
        // Will retain without the will flag.
        expectDecodingError(Self.connectBytes(flags: 0x22), nil, .malformedPacket)
        // Will QoS 3.
        let willRest = Wire.string("c") + Wire.string("t") + Wire.string("p")
        expectDecodingError(Self.connectBytes(flags: 0x1E, rest: willRest), nil, .malformedPacket)
        // Will QoS 2 with the flag is fine.
        #expect(decodingError(Self.connectBytes(flags: 0x16, rest: willRest), nil) == nil)
    }

    @Test func willTopicMustBeATopicName() {
        let wildcard = Wire.string("c") + Wire.string("a/#") + Wire.string("p")
        expectDecodingError(Self.connectBytes(flags: 0x06, rest: wildcard), nil, .topicNameInvalid)
        let empty = Wire.string("c") + Wire.string("") + Wire.string("p")
        expectDecodingError(Self.connectBytes(flags: 0x06, rest: empty), nil, .topicNameInvalid)
    }

    @Test func passwordWithoutUsernameIsAProtocolViolationIn3x() {
        let rest = Wire.string("c") + Wire.string("pw")
        expectDecodingError(Self.connectBytes(flags: 0x42, rest: rest), nil, .protocolError)
        expectDecodingError(Self.connectBytes(name: "MQIsdp", level: 3, flags: 0x42, rest: rest), nil, .protocolError)
    }

    @Test func trailingBytesAreMalformed() {
        expectDecodingError(Self.connectBytes(rest: Wire.string("c") + [0x00]), nil, .malformedPacket)
    }

    @Test func truncatedFieldsAreMalformed() {
        // Username flag set but no username.
        expectDecodingError(Self.connectBytes(flags: 0x82), nil, .malformedPacket)
        // Client identifier length beyond the packet.
        expectDecodingError(Self.connectBytes(rest: [0x00, 0x05, 0x61]), nil, .malformedPacket)
    }

    @Test func clientIdentifierMustBeValidUTF8() {
        expectDecodingError(Self.connectBytes(rest: [0x00, 0x02, 0xC3, 0x28]), nil, .malformedPacket)
        expectDecodingError(Self.connectBytes(rest: [0x00, 0x02, 0x61, 0x00]), nil, .malformedPacket)
    }

    @Test func v5ConnectPropertiesAreChecked() {
        func v5(_ properties: [UInt8]) -> [UInt8] {
            Self.connectBytes(level: 5, rest: [UInt8(properties.count)] + properties + Wire.string("c"))
        }
        // Topic alias is not a CONNECT property.
        expectDecodingError(v5([0x23, 0x00, 0x01]), nil, .malformedPacket)
        // Session expiry interval twice.
        expectDecodingError(v5([0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]), nil, .protocolError)
        // Receive maximum 0, maximum packet size 0, request problem information 2.
        expectDecodingError(v5([0x21, 0x00, 0x00]), nil, .protocolError)
        expectDecodingError(v5([0x27, 0, 0, 0, 0]), nil, .protocolError)
        expectDecodingError(v5([0x17, 0x02]), nil, .protocolError)
        expectDecodingError(v5([0x19, 0x02]), nil, .protocolError)
        // Authentication data without a method.
        expectDecodingError(v5([0x16, 0x00, 0x01, 0x01]), nil, .protocolError)
        // Property length beyond the packet.
        expectDecodingError(Self.connectBytes(level: 5, rest: [0x30] + Wire.string("c")), nil, .malformedPacket)
    }

    @Test func v5WillPropertiesAreChecked() {
        func v5Will(_ willProperties: [UInt8]) -> [UInt8] {
            let rest =
                [0x00] + Wire.string("c") + [UInt8(willProperties.count)] + willProperties
                + Wire.string("t") + Wire.string("p")
            return Self.connectBytes(level: 5, flags: 0x06, rest: rest)
        }
        // Session expiry interval is not a will property.
        expectDecodingError(v5Will([0x11, 0, 0, 0, 1]), nil, .malformedPacket)
        // Will delay interval twice.
        expectDecodingError(v5Will([0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1]), nil, .protocolError)
        // Response topic with a wildcard, payload format indicator 2.
        expectDecodingError(v5Will([0x08] + Wire.string("a/+")), nil, .protocolError)
        expectDecodingError(v5Will([0x01, 0x02]), nil, .protocolError)
        #expect(decodingError(v5Will([0x18, 0, 0, 0, 1, 0x08] + Wire.string("r/1")), nil) == nil)
    }
}
