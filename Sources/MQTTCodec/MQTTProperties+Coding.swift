import NIOCore

/// A set of MQTT 5 property identifiers, one bit per identifier.
struct MQTTPropertySet: OptionSet {
    var rawValue: UInt64

    @inline(__always)
    init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    @inline(__always)
    init(identifier: Int) {
        self.rawValue = identifier < 64 ? 1 << UInt64(identifier) : 0
    }

    static let payloadFormatIndicator = MQTTPropertySet(identifier: 0x01)
    static let messageExpiryInterval = MQTTPropertySet(identifier: 0x02)
    static let contentType = MQTTPropertySet(identifier: 0x03)
    static let responseTopic = MQTTPropertySet(identifier: 0x08)
    static let correlationData = MQTTPropertySet(identifier: 0x09)
    static let subscriptionIdentifier = MQTTPropertySet(identifier: 0x0B)
    static let sessionExpiryInterval = MQTTPropertySet(identifier: 0x11)
    static let assignedClientIdentifier = MQTTPropertySet(identifier: 0x12)
    static let serverKeepAlive = MQTTPropertySet(identifier: 0x13)
    static let authenticationMethod = MQTTPropertySet(identifier: 0x15)
    static let authenticationData = MQTTPropertySet(identifier: 0x16)
    static let requestProblemInformation = MQTTPropertySet(identifier: 0x17)
    static let willDelayInterval = MQTTPropertySet(identifier: 0x18)
    static let requestResponseInformation = MQTTPropertySet(identifier: 0x19)
    static let responseInformation = MQTTPropertySet(identifier: 0x1A)
    static let serverReference = MQTTPropertySet(identifier: 0x1C)
    static let reasonString = MQTTPropertySet(identifier: 0x1F)
    static let receiveMaximum = MQTTPropertySet(identifier: 0x21)
    static let topicAliasMaximum = MQTTPropertySet(identifier: 0x22)
    static let topicAlias = MQTTPropertySet(identifier: 0x23)
    static let maximumQoS = MQTTPropertySet(identifier: 0x24)
    static let retainAvailable = MQTTPropertySet(identifier: 0x25)
    static let userProperty = MQTTPropertySet(identifier: 0x26)
    static let maximumPacketSize = MQTTPropertySet(identifier: 0x27)
    static let wildcardSubscriptionAvailable = MQTTPropertySet(identifier: 0x28)
    static let subscriptionIdentifierAvailable = MQTTPropertySet(identifier: 0x29)
    static let sharedSubscriptionAvailable = MQTTPropertySet(identifier: 0x2A)

    // Allowed per packet, from the property table in MQTT 5.0 section 2.2.2.2.
    static let connect: MQTTPropertySet = [
        .sessionExpiryInterval, .receiveMaximum, .maximumPacketSize, .topicAliasMaximum,
        .requestResponseInformation, .requestProblemInformation, .userProperty,
        .authenticationMethod, .authenticationData,
    ]
    static let will: MQTTPropertySet = [
        .willDelayInterval, .payloadFormatIndicator, .messageExpiryInterval, .contentType,
        .responseTopic, .correlationData, .userProperty,
    ]
    static let connack: MQTTPropertySet = [
        .sessionExpiryInterval, .receiveMaximum, .maximumQoS, .retainAvailable, .maximumPacketSize,
        .assignedClientIdentifier, .topicAliasMaximum, .reasonString, .userProperty,
        .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable,
        .serverKeepAlive, .responseInformation, .serverReference, .authenticationMethod, .authenticationData,
    ]
    static let publish: MQTTPropertySet = [
        .payloadFormatIndicator, .messageExpiryInterval, .topicAlias, .responseTopic, .correlationData,
        .userProperty, .subscriptionIdentifier, .contentType,
    ]
    static let acknowledgement: MQTTPropertySet = [.reasonString, .userProperty]
    static let subscribe: MQTTPropertySet = [.subscriptionIdentifier, .userProperty]
    static let unsubscribe: MQTTPropertySet = [.userProperty]
    static let disconnect: MQTTPropertySet = [
        .sessionExpiryInterval, .reasonString, .userProperty, .serverReference,
    ]
    static let auth: MQTTPropertySet = [
        .authenticationMethod, .authenticationData, .reasonString, .userProperty,
    ]
}

extension MQTTProperties {
    // MARK: Decoding

    /// Reads a property length and the properties it covers, accepting only those in `allowed`.
    ///
    /// A property not allowed on the packet is malformed (0x81); a repeated non-repeatable property, or a value
    /// outside its range, is a protocol error (0x82). Subscription identifiers repeat only on PUBLISH.
    static func decode(
        from buffer: inout ByteBuffer,
        allowed: MQTTPropertySet,
        in packetType: MQTTPacketType
    ) throws(MQTTDecodingError) -> MQTTProperties {
        let length = try buffer.readMQTTVariableByteInteger()
        if length == 0 { return MQTTProperties() }
        guard var bytes = buffer.readSlice(length: length) else {
            throw .malformed("property length exceeds the packet")
        }
        var fields = Fields()
        var seen = MQTTPropertySet()
        let repeatable: MQTTPropertySet =
            packetType == .publish ? [.userProperty, .subscriptionIdentifier] : [.userProperty]
        while bytes.readableBytes > 0 {
            let identifier = try bytes.readMQTTVariableByteInteger()
            let member = MQTTPropertySet(identifier: identifier)
            guard !member.isEmpty, allowed.contains(member) else {
                throw .malformed("property \(identifierName(identifier)) is not allowed in \(packetType)")
            }
            if seen.contains(member) && !repeatable.contains(member) {
                throw .protocolError("property \(identifierName(identifier)) appears more than once")
            }
            seen.insert(member)
            try decodeValue(identifier: identifier, from: &bytes, into: &fields, in: packetType)
        }
        if fields.authenticationData != nil && fields.authenticationMethod == nil {
            throw .protocolError("authentication data without an authentication method")
        }
        return MQTTProperties(fields: fields)
    }

    private static func decodeBoolean(
        _ bytes: inout ByteBuffer,
        _ name: StaticString
    ) throws(MQTTDecodingError) -> Bool {
        switch try bytes.readMQTTByte() {
        case 0: return false
        case 1: return true
        default: throw .protocolError("property \(name) must be 0 or 1")
        }
    }

    private static func decodeValue(
        identifier: Int,
        from bytes: inout ByteBuffer,
        into fields: inout Fields,
        in packetType: MQTTPacketType
    ) throws(MQTTDecodingError) {
        switch identifier {
        case 0x01:
            guard let value = PayloadFormatIndicator(rawValue: try bytes.readMQTTByte()) else {
                throw .protocolError("payload format indicator must be 0 or 1")
            }
            fields.payloadFormatIndicator = value
        case 0x02:
            fields.messageExpiryInterval = try bytes.readMQTTUInt32()
        case 0x03:
            fields.contentType = try bytes.readMQTTString()
        case 0x08:
            let topic = try bytes.readMQTTString()
            guard !topic.isEmpty, !topic.utf8.contains(UInt8(ascii: "+")), !topic.utf8.contains(UInt8(ascii: "#"))
            else {
                throw .protocolError("response topic is not a valid topic name")
            }
            fields.responseTopic = topic
        case 0x09:
            fields.correlationData = try bytes.readMQTTBinary()
        case 0x0B:
            let value = try bytes.readMQTTVariableByteInteger()
            guard value != 0 else {
                throw .protocolError("subscription identifier is 0")
            }
            fields.subscriptionIdentifiers.append(UInt32(truncatingIfNeeded: value))
        case 0x11:
            fields.sessionExpiryInterval = try bytes.readMQTTUInt32()
        case 0x12:
            fields.assignedClientIdentifier = try bytes.readMQTTString()
        case 0x13:
            fields.serverKeepAlive = try bytes.readMQTTUInt16()
        case 0x15:
            fields.authenticationMethod = try bytes.readMQTTString()
        case 0x16:
            fields.authenticationData = try bytes.readMQTTBinary()
        case 0x17:
            fields.requestProblemInformation = try decodeBoolean(&bytes, "request problem information")
        case 0x18:
            fields.willDelayInterval = try bytes.readMQTTUInt32()
        case 0x19:
            fields.requestResponseInformation = try decodeBoolean(&bytes, "request response information")
        case 0x1A:
            fields.responseInformation = try bytes.readMQTTString()
        case 0x1C:
            fields.serverReference = try bytes.readMQTTString()
        case 0x1F:
            fields.reasonString = try bytes.readMQTTString()
        case 0x21:
            let value = try bytes.readMQTTUInt16()
            guard value != 0 else { throw .protocolError("receive maximum is 0") }
            fields.receiveMaximum = value
        case 0x22:
            fields.topicAliasMaximum = try bytes.readMQTTUInt16()
        case 0x23:
            let value = try bytes.readMQTTUInt16()
            guard value != 0 else {
                throw MQTTDecodingError(reasonCode: .topicAliasInvalid, message: "topic alias is 0")
            }
            fields.topicAlias = value
        case 0x24:
            switch try bytes.readMQTTByte() {
            case 0: fields.maximumQoS = .atMostOnce
            case 1: fields.maximumQoS = .atLeastOnce
            default: throw .protocolError("maximum QoS must be 0 or 1")
            }
        case 0x25:
            fields.retainAvailable = try decodeBoolean(&bytes, "retain available")
        case 0x26:
            let name = try bytes.readMQTTString()
            let value = try bytes.readMQTTString()
            fields.userProperties.append(UserProperty(name: name, value: value))
        case 0x27:
            let value = try bytes.readMQTTUInt32()
            guard value != 0 else { throw .protocolError("maximum packet size is 0") }
            fields.maximumPacketSize = value
        case 0x28:
            fields.wildcardSubscriptionAvailable = try decodeBoolean(&bytes, "wildcard subscription available")
        case 0x29:
            fields.subscriptionIdentifierAvailable = try decodeBoolean(&bytes, "subscription identifier available")
        case 0x2A:
            fields.sharedSubscriptionAvailable = try decodeBoolean(&bytes, "shared subscription available")
        default:
            throw .malformed("unknown property identifier \(identifier)")
        }
    }

    private static func identifierName(_ identifier: Int) -> String {
        "0x" + (identifier < 0x10 ? "0" : "") + String(identifier, radix: 16, uppercase: true)
    }

    // MARK: Encoding

    /// Bytes the properties take encoded (without the length in front), for accounting what a message holds.
    public var encodedByteCount: Int { encodedLength }

    /// Bytes of the properties themselves, without the property length in front.
    var encodedLength: Int {
        guard let fields = storageFieldsIfAny else { return 0 }
        var length = 0
        if fields.payloadFormatIndicator != nil { length += 2 }
        if fields.messageExpiryInterval != nil { length += 5 }
        if let value = fields.contentType { length += 1 + mqttStringSize(value) }
        if let value = fields.responseTopic { length += 1 + mqttStringSize(value) }
        if let value = fields.correlationData { length += 3 + value.readableBytes }
        for identifier in fields.subscriptionIdentifiers {
            length += 1 + mqttVariableByteIntegerSize(Int(identifier))
        }
        if fields.sessionExpiryInterval != nil { length += 5 }
        if let value = fields.assignedClientIdentifier { length += 1 + mqttStringSize(value) }
        if fields.serverKeepAlive != nil { length += 3 }
        if let value = fields.authenticationMethod { length += 1 + mqttStringSize(value) }
        if let value = fields.authenticationData { length += 3 + value.readableBytes }
        if fields.requestProblemInformation != nil { length += 2 }
        if fields.willDelayInterval != nil { length += 5 }
        if fields.requestResponseInformation != nil { length += 2 }
        if let value = fields.responseInformation { length += 1 + mqttStringSize(value) }
        if let value = fields.serverReference { length += 1 + mqttStringSize(value) }
        if let value = fields.reasonString { length += 1 + mqttStringSize(value) }
        if fields.receiveMaximum != nil { length += 3 }
        if fields.topicAliasMaximum != nil { length += 3 }
        if fields.topicAlias != nil { length += 3 }
        if fields.maximumQoS != nil { length += 2 }
        if fields.retainAvailable != nil { length += 2 }
        for property in fields.userProperties {
            length += 1 + mqttStringSize(property.name) + mqttStringSize(property.value)
        }
        if fields.maximumPacketSize != nil { length += 5 }
        if fields.wildcardSubscriptionAvailable != nil { length += 2 }
        if fields.subscriptionIdentifierAvailable != nil { length += 2 }
        if fields.sharedSubscriptionAvailable != nil { length += 2 }
        return length
    }

    /// Whether `write` can encode every property: strings and binary data up to 65,535 bytes, subscription
    /// identifiers 1...268,435,455.
    var isEncodable: Bool {
        guard let fields = storageFieldsIfAny else { return true }
        let limit = Int(UInt16.max)
        let strings = [
            fields.contentType, fields.responseTopic, fields.assignedClientIdentifier, fields.authenticationMethod,
            fields.responseInformation, fields.serverReference, fields.reasonString,
        ]
        guard strings.allSatisfy({ ($0?.utf8.count ?? 0) <= limit }),
            (fields.correlationData?.readableBytes ?? 0) <= limit,
            (fields.authenticationData?.readableBytes ?? 0) <= limit,
            fields.userProperties.allSatisfy({ $0.name.utf8.count <= limit && $0.value.utf8.count <= limit }),
            fields.subscriptionIdentifiers.allSatisfy({ (1...UInt32(mqttMaximumVariableByteInteger)).contains($0) })
        else { return false }
        return true
    }

    /// Bytes of the property length plus the properties.
    @inline(__always)
    var encodedLengthWithPrefix: Int {
        let length = encodedLength
        return mqttVariableByteIntegerSize(length) + length
    }

    /// Writes the property length and the properties, in identifier order (user properties in their order).
    func write(into buffer: inout ByteBuffer) {
        write(into: &buffer, encodedLength: encodedLength)
    }

    /// Same as `write(into:)` with the length already computed.
    func write(into buffer: inout ByteBuffer, encodedLength: Int) {
        buffer.writeMQTTVariableByteInteger(encodedLength)
        guard let fields = storageFieldsIfAny else { return }
        func id(_ identifier: UInt8) { buffer.writeInteger(identifier) }
        if let value = fields.payloadFormatIndicator {
            id(0x01)
            buffer.writeInteger(value.rawValue)
        }
        if let value = fields.messageExpiryInterval {
            id(0x02)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.contentType {
            id(0x03)
            buffer.writeMQTTString(value)
        }
        if let value = fields.responseTopic {
            id(0x08)
            buffer.writeMQTTString(value)
        }
        if let value = fields.correlationData {
            id(0x09)
            buffer.writeMQTTBinary(value)
        }
        for value in fields.subscriptionIdentifiers {
            id(0x0B)
            buffer.writeMQTTVariableByteInteger(Int(value))
        }
        if let value = fields.sessionExpiryInterval {
            id(0x11)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.assignedClientIdentifier {
            id(0x12)
            buffer.writeMQTTString(value)
        }
        if let value = fields.serverKeepAlive {
            id(0x13)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.authenticationMethod {
            id(0x15)
            buffer.writeMQTTString(value)
        }
        if let value = fields.authenticationData {
            id(0x16)
            buffer.writeMQTTBinary(value)
        }
        if let value = fields.requestProblemInformation {
            id(0x17)
            buffer.writeInteger(value ? 1 : 0 as UInt8)
        }
        if let value = fields.willDelayInterval {
            id(0x18)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.requestResponseInformation {
            id(0x19)
            buffer.writeInteger(value ? 1 : 0 as UInt8)
        }
        if let value = fields.responseInformation {
            id(0x1A)
            buffer.writeMQTTString(value)
        }
        if let value = fields.serverReference {
            id(0x1C)
            buffer.writeMQTTString(value)
        }
        if let value = fields.reasonString {
            id(0x1F)
            buffer.writeMQTTString(value)
        }
        if let value = fields.receiveMaximum {
            id(0x21)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.topicAliasMaximum {
            id(0x22)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.topicAlias {
            id(0x23)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.maximumQoS {
            id(0x24)
            buffer.writeInteger(value.rawValue)
        }
        if let value = fields.retainAvailable {
            id(0x25)
            buffer.writeInteger(value ? 1 : 0 as UInt8)
        }
        for property in fields.userProperties {
            id(0x26)
            buffer.writeMQTTString(property.name)
            buffer.writeMQTTString(property.value)
        }
        if let value = fields.maximumPacketSize {
            id(0x27)
            buffer.writeInteger(value, endianness: .big)
        }
        if let value = fields.wildcardSubscriptionAvailable {
            id(0x28)
            buffer.writeInteger(value ? 1 : 0 as UInt8)
        }
        if let value = fields.subscriptionIdentifierAvailable {
            id(0x29)
            buffer.writeInteger(value ? 1 : 0 as UInt8)
        }
        if let value = fields.sharedSubscriptionAvailable {
            id(0x2A)
            buffer.writeInteger(value ? 1 : 0 as UInt8)
        }
    }
}

extension MQTTProperties {
    // MARK: Between broker processes

    /// Writes the forwarded properties of a routed message (property length, then the properties, as in a
    /// PUBLISH) for another broker process. `decodeForwarded(from:)` reads them back.
    public func encodeForwarded(into buffer: inout ByteBuffer) {
        write(into: &buffer)
    }

    /// Reads what `encodeForwarded(into:)` wrote: the PUBLISH properties (user properties and subscription
    /// identifiers may repeat).
    public static func decodeForwarded(from buffer: inout ByteBuffer) throws(MQTTDecodingError) -> MQTTProperties {
        try decode(from: &buffer, allowed: .publish, in: .publish)
    }
}
