import NIOCore

@testable import MQTTCodec

/// Deterministic generator of valid packets for round-trip tests (SplitMix64).
struct PacketGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    mutating func bool() -> Bool { next() & 1 == 1 }

    mutating func maybe<T>(_ make: (inout PacketGenerator) -> T) -> T? {
        bool() ? make(&self) : nil
    }

    mutating func pick<T>(_ choices: [T]) -> T {
        choices[int(0...(choices.count - 1))]
    }

    static let words = ["a", "sensor", "ü", "€uro", "𝄞", "x y", "$SYS", "日本", "0", "-_.~"]

    mutating func text(allowEmpty: Bool = true) -> String {
        let count = int((allowEmpty ? 0 : 1)...3)
        var result = ""
        for _ in 0..<count { result += pick(Self.words) }
        return result.isEmpty && !allowEmpty ? "t" : result
    }

    mutating func topicName() -> String {
        (0..<int(1...4)).map { _ in text(allowEmpty: false) }.joined(separator: "/")
    }

    mutating func topicFilter() -> String {
        let levels = (0..<int(1...4)).map { _ in pick(["+", "#", "a", "b/c", "ü", ""]) }
        return levels.joined(separator: "/")
    }

    mutating func bytes(max: Int = 40) -> ByteBuffer {
        var buffer = ByteBuffer()
        for _ in 0..<int(0...max) { buffer.writeInteger(UInt8(truncatingIfNeeded: next())) }
        return buffer
    }

    mutating func qos() -> QoS { pick(QoS.allCases) }

    mutating func packetIdentifier() -> UInt16 { UInt16(int(1...65535)) }

    mutating func userProperties() -> [UserProperty] {
        (0..<int(0...3)).map { _ in UserProperty(text(), text()) }
    }

    mutating func reasonCode(for type: MQTTPacketType) -> ReasonCode {
        let valid = (0...255).map { ReasonCode(rawValue: UInt8($0)) }.filter { $0.isValid(for: type) }
        return pick(valid)
    }

    mutating func reasonString() -> String? { maybe { $0.text() } }

    // MARK: Packets

    mutating func packet(_ version: MQTTProtocolVersion) -> MQTTPacket {
        let v5 = version == .v5
        switch int(0...(v5 ? 14 : 13)) {
        case 0: return .connect(connect(version))
        case 1: return .connack(connack(version))
        case 2, 3: return .publish(publish(version))
        case 4:
            return .puback(
                PubAckPacket(
                    packetIdentifier: packetIdentifier(), reasonCode: ack(.puback, v5), properties: ackProperties(v5)))
        case 5:
            return .pubrec(
                PubRecPacket(
                    packetIdentifier: packetIdentifier(), reasonCode: ack(.pubrec, v5), properties: ackProperties(v5)))
        case 6:
            return .pubrel(
                PubRelPacket(
                    packetIdentifier: packetIdentifier(), reasonCode: ack(.pubrel, v5), properties: ackProperties(v5)))
        case 7:
            return .pubcomp(
                PubCompPacket(
                    packetIdentifier: packetIdentifier(), reasonCode: ack(.pubcomp, v5), properties: ackProperties(v5)))
        case 8: return .subscribe(subscribe(version))
        case 9: return .suback(suback(version))
        case 10:
            return .unsubscribe(
                UnsubscribePacket(
                    packetIdentifier: packetIdentifier(),
                    topicFilters: (0..<int(1...4)).map { _ in topicFilter() },
                    properties: v5 ? MQTTProperties(userProperties: userProperties()) : MQTTProperties()
                )
            )
        case 11:
            return .unsuback(
                UnsubAckPacket(
                    packetIdentifier: packetIdentifier(),
                    reasonCodes: v5 ? (0..<int(1...4)).map { _ in reasonCode(for: .unsuback) } : [],
                    properties: ackProperties(v5)
                )
            )
        case 12: return bool() ? .pingreq : .pingresp
        case 13:
            guard v5 else { return .disconnect(DisconnectPacket()) }
            return .disconnect(
                DisconnectPacket(
                    reasonCode: reasonCode(for: .disconnect),
                    properties: MQTTProperties(
                        sessionExpiryInterval: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                        serverReference: maybe { $0.text() },
                        reasonString: reasonString(),
                        userProperties: userProperties()
                    )
                )
            )
        default:
            let method = maybe { $0.text() }
            return .auth(
                AuthPacket(
                    reasonCode: reasonCode(for: .auth),
                    properties: MQTTProperties(
                        authenticationMethod: method,
                        authenticationData: method == nil ? nil : maybe { $0.bytes() },
                        reasonString: reasonString(),
                        userProperties: userProperties()
                    )
                )
            )
        }
    }

    private mutating func ack(_ type: MQTTPacketType, _ v5: Bool) -> ReasonCode {
        v5 && bool() ? reasonCode(for: type) : .success
    }

    private mutating func ackProperties(_ v5: Bool) -> MQTTProperties {
        guard v5 else { return MQTTProperties() }
        return MQTTProperties(reasonString: reasonString(), userProperties: userProperties())
    }

    mutating func connect(_ version: MQTTProtocolVersion) -> ConnectPacket {
        let v5 = version == .v5
        let username = maybe { $0.text() }
        // 3.x forbids a password without a user name.
        let password = (v5 || username != nil) ? maybe { $0.bytes() } : nil
        var will: ConnectPacket.Will?
        if bool() {
            will = ConnectPacket.Will(
                topic: topicName(),
                payload: bytes(max: 100),
                qos: qos(),
                retain: bool(),
                properties: v5
                    ? MQTTProperties(
                        payloadFormatIndicator: maybe { $0.pick([.unspecified, .utf8]) },
                        messageExpiryInterval: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                        contentType: maybe { $0.text() },
                        responseTopic: maybe { $0.topicName() },
                        correlationData: maybe { $0.bytes() },
                        willDelayInterval: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                        userProperties: userProperties()
                    ) : MQTTProperties()
            )
        }
        let method = maybe { $0.text() }
        return ConnectPacket(
            protocolVersion: version,
            clientIdentifier: text(),
            cleanStart: bool(),
            keepAlive: UInt16(truncatingIfNeeded: next()),
            username: username,
            password: password,
            will: will,
            properties: v5
                ? MQTTProperties(
                    sessionExpiryInterval: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    authenticationMethod: method,
                    authenticationData: method == nil ? nil : maybe { $0.bytes() },
                    requestProblemInformation: maybe { $0.bool() },
                    requestResponseInformation: maybe { $0.bool() },
                    receiveMaximum: maybe { UInt16($0.int(1...65535)) },
                    topicAliasMaximum: maybe { UInt16(truncatingIfNeeded: $0.next()) },
                    userProperties: userProperties(),
                    maximumPacketSize: maybe { UInt32($0.int(1...Int(UInt32.max))) }
                ) : MQTTProperties()
        )
    }

    mutating func connack(_ version: MQTTProtocolVersion) -> ConnAckPacket {
        switch version {
        case .v3_1, .v3_1_1:
            return ConnAckPacket(
                sessionPresent: version == .v3_1_1 && bool(),
                reasonCode: ReasonCode(v3ConnectReturnCode: UInt8(int(0...5))) ?? .success
            )
        case .v5:
            return ConnAckPacket(
                sessionPresent: bool(),
                reasonCode: reasonCode(for: .connack),
                properties: MQTTProperties(
                    sessionExpiryInterval: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                    assignedClientIdentifier: maybe { $0.text() },
                    serverKeepAlive: maybe { UInt16(truncatingIfNeeded: $0.next()) },
                    responseInformation: maybe { $0.text() },
                    serverReference: maybe { $0.text() },
                    reasonString: reasonString(),
                    receiveMaximum: maybe { UInt16($0.int(1...65535)) },
                    topicAliasMaximum: maybe { UInt16(truncatingIfNeeded: $0.next()) },
                    maximumQoS: maybe { $0.pick([.atMostOnce, .atLeastOnce]) },
                    retainAvailable: maybe { $0.bool() },
                    userProperties: userProperties(),
                    maximumPacketSize: maybe { UInt32($0.int(1...Int(UInt32.max))) },
                    wildcardSubscriptionAvailable: maybe { $0.bool() },
                    subscriptionIdentifierAvailable: maybe { $0.bool() },
                    sharedSubscriptionAvailable: maybe { $0.bool() }
                )
            )
        }
    }

    mutating func publish(_ version: MQTTProtocolVersion) -> PublishPacket {
        let qos = qos()
        var properties = MQTTProperties()
        var topic = topicName()
        if version == .v5 {
            properties = MQTTProperties(
                payloadFormatIndicator: maybe { $0.pick([.unspecified, .utf8]) },
                messageExpiryInterval: maybe { UInt32(truncatingIfNeeded: $0.next()) },
                contentType: maybe { $0.text() },
                responseTopic: maybe { $0.topicName() },
                correlationData: maybe { $0.bytes() },
                subscriptionIdentifiers: (0..<int(0...3)).map { _ in UInt32(int(1...268_435_455)) },
                topicAlias: maybe { UInt16($0.int(1...65535)) },
                userProperties: userProperties()
            )
            if properties.topicAlias != nil && bool() { topic = "" }
        }
        return PublishPacket(
            topic: topic,
            payload: bytes(max: int(0...3) == 0 ? 20_000 : 200),
            qos: qos,
            retain: bool(),
            dup: qos != .atMostOnce && bool(),
            packetIdentifier: qos == .atMostOnce ? nil : packetIdentifier(),
            properties: properties
        )
    }

    mutating func subscribe(_ version: MQTTProtocolVersion) -> SubscribePacket {
        let v5 = version == .v5
        let subscriptions = (0..<int(1...5)).map { _ in
            SubscribePacket.Subscription(
                topicFilter: topicFilter(),
                options: v5
                    ? SubscriptionOptions(
                        qos: qos(),
                        noLocal: bool(),
                        retainAsPublished: bool(),
                        retainHandling: pick(SubscriptionOptions.RetainHandling.allCases)
                    ) : SubscriptionOptions(qos: qos())
            )
        }
        return SubscribePacket(
            packetIdentifier: packetIdentifier(),
            subscriptions: subscriptions,
            properties: v5
                ? MQTTProperties(
                    subscriptionIdentifiers: bool() ? [UInt32(int(1...268_435_455))] : [],
                    userProperties: userProperties()
                ) : MQTTProperties()
        )
    }

    mutating func suback(_ version: MQTTProtocolVersion) -> SubAckPacket {
        let v5 = version == .v5
        let codes = (0..<int(1...5)).map { _ in
            v5 ? reasonCode(for: .suback) : pick([.grantedQoS0, .grantedQoS1, .grantedQoS2, .unspecifiedError])
        }
        return SubAckPacket(packetIdentifier: packetIdentifier(), reasonCodes: codes, properties: ackProperties(v5))
    }
}
