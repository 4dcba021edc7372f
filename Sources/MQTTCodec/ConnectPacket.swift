import NIOCore

/// CONNECT: the first packet a client sends. A plain value.
///
/// `protocolVersion` is the level on the wire; the encoder always encodes CONNECT at this level.
public struct ConnectPacket: Sendable, Equatable {
    /// The will message carried by CONNECT.
    public struct Will: Sendable, Equatable {
        /// A topic name (no wildcards).
        public var topic: String
        public var payload: ByteBuffer
        public var qos: QoS
        public var retain: Bool
        /// Will properties (MQTT 5 only): will delay interval, payload format indicator, message expiry interval,
        /// content type, response topic, correlation data, user properties.
        public var properties: MQTTProperties

        public init(
            topic: String,
            payload: ByteBuffer,
            qos: QoS = .atMostOnce,
            retain: Bool = false,
            properties: MQTTProperties = MQTTProperties()
        ) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
            self.properties = properties
        }
    }

    public var protocolVersion: MQTTProtocolVersion
    /// May be empty (the broker decides whether to assign one or reject it).
    public var clientIdentifier: String
    /// "Clean Session" in 3.x, "Clean Start" in 5.
    public var cleanStart: Bool
    /// Keep alive in seconds; 0 disables it.
    public var keepAlive: UInt16
    public var username: String?
    public var password: ByteBuffer?
    public var will: Will?
    /// CONNECT properties (MQTT 5 only).
    public var properties: MQTTProperties

    public init(
        protocolVersion: MQTTProtocolVersion = .v5,
        clientIdentifier: String,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 60,
        username: String? = nil,
        password: ByteBuffer? = nil,
        will: Will? = nil,
        properties: MQTTProperties = MQTTProperties()
    ) {
        self.protocolVersion = protocolVersion
        self.clientIdentifier = clientIdentifier
        self.cleanStart = cleanStart
        self.keepAlive = keepAlive
        self.username = username
        self.password = password
        self.will = will
        self.properties = properties
    }
}

extension ConnectPacket {
    private enum Flag {
        static let reserved: UInt8 = 0b0000_0001
        static let cleanStart: UInt8 = 0b0000_0010
        static let will: UInt8 = 0b0000_0100
        static let willQoSShift: UInt8 = 3
        static let willRetain: UInt8 = 0b0010_0000
        static let password: UInt8 = 0b0100_0000
        static let username: UInt8 = 0b1000_0000
    }

    /// Decodes a CONNECT body. Errors raised after the protocol level was read carry that version.
    static func decode(from body: inout ByteBuffer) throws(MQTTDecodingError) -> ConnectPacket {
        let protocolName = try body.readMQTTString()
        let level = try body.readMQTTByte()
        guard let version = MQTTProtocolVersion(rawValue: level) else {
            throw MQTTDecodingError(
                reasonCode: .unsupportedProtocolVersion,
                message: "unsupported protocol level \(level)",
                requestedProtocolLevel: level
            )
        }
        guard protocolName == version.protocolName else {
            throw MQTTDecodingError(
                reasonCode: .unsupportedProtocolVersion,
                message: "protocol name \"\(protocolName)\" does not match level \(level)",
                protocolVersion: version,
                requestedProtocolLevel: level
            )
        }
        do {
            return try decodeAfterLevel(version: version, from: &body)
        } catch {
            var error = error
            error.protocolVersion = version
            throw error
        }
    }

    private static func decodeAfterLevel(
        version: MQTTProtocolVersion,
        from body: inout ByteBuffer
    ) throws(MQTTDecodingError) -> ConnectPacket {
        let flags = try body.readMQTTByte()
        guard flags & Flag.reserved == 0 else {
            throw .malformed("CONNECT reserved flag is set")
        }
        let hasWill = flags & Flag.will != 0
        let willQoSBits = (flags >> Flag.willQoSShift) & 0b11
        let willRetain = flags & Flag.willRetain != 0
        let hasPassword = flags & Flag.password != 0
        let hasUsername = flags & Flag.username != 0
        guard let willQoS = QoS(rawValue: willQoSBits) else {
            throw .malformed("will QoS is 3")
        }
        if !hasWill && (willQoSBits != 0 || willRetain) {
            throw .malformed("will QoS or will retain set without the will flag")
        }
        if version != .v5 && hasPassword && !hasUsername {
            throw .protocolError("password flag set without the user name flag")
        }
        let keepAlive = try body.readMQTTUInt16()
        let properties =
            version == .v5
            ? try MQTTProperties.decode(from: &body, allowed: .connect, in: .connect) : MQTTProperties()
        let clientIdentifier = try body.readMQTTString()
        var will: Will?
        if hasWill {
            let willProperties =
                version == .v5
                ? try MQTTProperties.decode(from: &body, allowed: .will, in: .connect) : MQTTProperties()
            let topic = try body.readMQTTTopicName()
            guard !topic.isEmpty else {
                throw MQTTDecodingError(reasonCode: .topicNameInvalid, message: "will topic is empty")
            }
            let payload = try body.readMQTTBinary()
            will = Will(topic: topic, payload: payload, qos: willQoS, retain: willRetain, properties: willProperties)
        }
        let username = hasUsername ? try body.readMQTTString() : nil
        let password = hasPassword ? try body.readMQTTBinary() : nil
        try body.expectMQTTEnd(.connect)
        return ConnectPacket(
            protocolVersion: version,
            clientIdentifier: clientIdentifier,
            cleanStart: flags & Flag.cleanStart != 0,
            keepAlive: keepAlive,
            username: username,
            password: password,
            will: will,
            properties: properties
        )
    }

    func remainingLength() -> Int {
        var length = mqttStringSize(protocolVersion.protocolName) + 1 + 1 + 2
        if protocolVersion == .v5 { length += properties.encodedLengthWithPrefix }
        length += mqttStringSize(clientIdentifier)
        if let will {
            if protocolVersion == .v5 { length += will.properties.encodedLengthWithPrefix }
            length += mqttStringSize(will.topic) + 2 + will.payload.readableBytes
        }
        if let username { length += mqttStringSize(username) }
        if let password { length += 2 + password.readableBytes }
        return length
    }

    func write(remainingLength: Int, into buffer: inout ByteBuffer) {
        buffer.writeMQTTFixedHeader(.connect, remainingLength: remainingLength)
        buffer.writeMQTTString(protocolVersion.protocolName)
        buffer.writeInteger(protocolVersion.rawValue)
        var flags: UInt8 = 0
        if cleanStart { flags |= Flag.cleanStart }
        if let will {
            flags |= Flag.will | will.qos.rawValue << Flag.willQoSShift
            if will.retain { flags |= Flag.willRetain }
        }
        if password != nil { flags |= Flag.password }
        if username != nil { flags |= Flag.username }
        buffer.writeInteger(flags)
        buffer.writeInteger(keepAlive, endianness: .big)
        if protocolVersion == .v5 { properties.write(into: &buffer) }
        buffer.writeMQTTString(clientIdentifier)
        if let will {
            if protocolVersion == .v5 { will.properties.write(into: &buffer) }
            buffer.writeMQTTString(will.topic)
            buffer.writeMQTTBinary(will.payload)
        }
        if let username { buffer.writeMQTTString(username) }
        if let password { buffer.writeMQTTBinary(password) }
    }
}
