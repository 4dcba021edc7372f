import BrokerCore
import MQTTCodec
import NIOCore
import ProcessSupport

extension ConnectionController {
    /// PUBLISH from the client (§3.3): resolve the topic alias, check the ACL and limits, route, acknowledge.
    func handlePublish(_ publish: PublishPacket, session: Session) {
        var topic = publish.topic
        // An alias is set only by a publish the ACL allows (below).
        var aliasToSet: UInt16?
        if let alias = publish.properties.topicAlias {
            guard alias > 0, alias <= broker.settings.maximumTopicAlias else {
                protocolViolation(.topicAliasInvalid, "topic alias \(alias) outside 1…\(broker.settings.maximumTopicAlias)")
                return
            }
            if topic.isEmpty {
                guard let known = inboundTopicAliases[alias] else {
                    protocolViolation(.protocolError, "topic alias \(alias) was never set")
                    return
                }
                topic = known
            } else {
                aliasToSet = alias
            }
        }
        // mqtt.max_topic_levels: the topic is well formed but not accepted here (EMQX closes the same way).
        let levels = topic.utf8.count { $0 == UInt8(ascii: "/") } + 1
        if levels > broker.settings.storage.maxTopicLevels {
            broker.countLimit(.maxTopicLevels)
            protocolViolation(.topicNameInvalid, "topic of \(levels) levels, more than mqtt.max_topic_levels")
            return
        }
        if publish.retain && !broker.settings.retainAvailable {
            protocolViolation(.retainNotSupported, "retained messages are not available")
            return
        }
        if publish.qos == .exactlyOnce, let identifier = publish.packetIdentifier {
            if session.inboundQoS2.contains(identifier) {
                // A DUP of a message already received: answer again, do not route again (§4.3.3).
                send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
                return
            }
            if session.inboundQoS2.count >= broker.settings.maximumInflight && protocolVersion == .v5 {
                protocolViolation(.receiveMaximumExceeded, "more unacknowledged QoS 2 messages than Receive Maximum")
                return
            }
        }

        let allowed = broker.access.canPublish(topic: topic, clientID: clientID, username: username)
        if allowed, let alias = aliasToSet, !setInboundTopicAlias(alias, topic: topic) {
            return
        }
        if allowed {
            let message = ApplicationMessage(
                publish: publish, topic: topic, publisher: clientID, now: broker.scheduler.now)
            broker.publish(message)
        } else {
            logger.info("publish denied by ACL", metadata: ["mqtt.topic": "\(topic)"])
        }
        let reason: ReasonCode = allowed || protocolVersion != .v5 ? .success : .notAuthorized
        switch publish.qos {
        case .atMostOnce:
            break
        case .atLeastOnce:
            if let identifier = publish.packetIdentifier {
                send(.puback(PubAckPacket(packetIdentifier: identifier, reasonCode: reason)))
            }
        case .exactlyOnce:
            if let identifier = publish.packetIdentifier {
                if !reason.isFailure { session.inboundQoS2.insert(identifier) }
                send(.pubrec(PubRecPacket(packetIdentifier: identifier, reasonCode: reason)))
            }
        }
    }

    /// Records an alias the client set, within `mqtt.max_topic_alias_bytes` for all of its aliases' topics; over
    /// it, the client is disconnected with 0x97 (Quota exceeded) and `false` returned.
    private func setInboundTopicAlias(_ alias: UInt16, topic: String) -> Bool {
        let bytes = inboundTopicAliasBytes - (inboundTopicAliases[alias]?.utf8.count ?? 0) + topic.utf8.count
        guard bytes <= broker.settings.maximumTopicAliasBytes else {
            broker.count(.topicAliasBytesClosed)
            logger.warning(
                "topic aliases over mqtt.max_topic_alias_bytes, closing",
                metadata: [
                    "mqtt.reason": "\(ReasonCode.quotaExceeded)", "mqtt.topic_alias": "\(alias)",
                    "mqtt.topic_alias_bytes": "\(bytes)", "mqtt.max_topic_alias_bytes": "\(broker.settings.maximumTopicAliasBytes)",
                ])
            disconnect(reason: .quotaExceeded, publishWill: true)
            return false
        }
        inboundTopicAliases[alias] = topic
        inboundTopicAliasBytes = bytes
        return true
    }

    /// Puts what the session's outbound flow decided on the wire (flushed with the rest of the batch).
    func write(_ outputs: [OutboundFlow.Output], now: MonotonicInstant) {
        guard !outputs.isEmpty, case .connected(let session) = state else { return }
        var sent = 0
        for output in outputs {
            switch output {
            case .pubrel(let identifier):
                connection.send(.pubrel(PubRelPacket(packetIdentifier: identifier)))
            case .publish(let delivery, let identifier, let dup):
                if let packet = makePublish(delivery, packetIdentifier: identifier, dup: dup, now: now) {
                    connection.send(.publish(packet))
                    sent += 1
                } else if let identifier {
                    // Too large for the client: dropped as if delivered (§3.1.2.25), and its window slot freed.
                    let next =
                        delivery.qos == .atLeastOnce
                        ? session.outbound.acknowledged(identifier, now: now)
                        : session.outbound.received(identifier, failed: true, now: now)
                    write(next, now: now)
                }
            }
        }
        broker.countSent(sent)
        markPending()
    }

    /// A QoS 0 delivery: no flow state, no intermediate arrays.
    func writeImmediately(_ delivery: OutboundFlow.Delivery, now: MonotonicInstant) {
        guard case .connected = state else { return }
        if isBusy {
            // More than the listener's high_watermark waits for this client already: QoS 0 does not wait.
            broker.countDropped(1)
            broker.count(.highWatermarkQoS0Dropped)
            return
        }
        if let packet = makePublish(delivery, packetIdentifier: nil, dup: false, now: now) {
            connection.send(.publish(packet))
            broker.countSent(1)
            markPending()
        }
    }

    /// The PUBLISH for one delivery, or nil (dropped and counted) when it cannot go to this client: larger than
    /// its Maximum Packet Size, or larger than MQTT can encode at all. A message accepted at the size limit grows
    /// on its way out (a topic alias resolved to its topic, subscription identifiers, a new outbound alias), so
    /// this is checked per delivery; encoding it anyway would trap and take the worker down.
    private func makePublish(
        _ delivery: OutboundFlow.Delivery, packetIdentifier: UInt16?, dup: Bool, now: MonotonicInstant
    ) -> PublishPacket? {
        let message = delivery.message
        var packet = PublishPacket(
            topic: message.topic, payload: message.payload, qos: delivery.qos, retain: delivery.retain, dup: dup,
            packetIdentifier: packetIdentifier)
        // An alias is recorded only once the packet that establishes it is actually sent.
        var newAlias: UInt16?
        if protocolVersion == .v5 {
            var properties = message.properties
            if let remaining = message.remainingExpiry(at: now) {
                properties.messageExpiryInterval = remaining
            }
            if !delivery.subscriptionIdentifiers.isEmpty {
                properties.subscriptionIdentifiers = delivery.subscriptionIdentifiers.map { UInt32(clamping: $0) }
            }
            if clientTopicAliasMaximum > 0 {
                if let alias = outboundTopicAliases[message.topic] {
                    properties.topicAlias = alias
                    packet.topic = ""
                } else if outboundTopicAliases.count < Int(clientTopicAliasMaximum) {
                    if outboundTopicAliasBytes + message.topic.utf8.count <= broker.settings.maximumTopicAliasBytes {
                        let alias = UInt16(outboundTopicAliases.count + 1)
                        newAlias = alias
                        properties.topicAlias = alias
                    } else {
                        broker.count(.topicAliasBytesUnaliased)
                    }
                }
            }
            packet.properties = properties
        }
        guard let size = MQTTEncoder.checkedEncodedSize(packet, version: protocolVersion) else {
            logger.warning(
                "message too large for MQTT once prepared for this client, dropped",
                metadata: [
                    "mqtt.topic": "\(message.topic)", "mqtt.payload_bytes": "\(message.payload.readableBytes)",
                    "mqtt.subscription_identifiers": "\(delivery.subscriptionIdentifiers.count)",
                ])
            broker.countDropped(1)
            return nil
        }
        if size > clientMaximumPacketSize {
            logger.debug(
                "message larger than the client's maximum packet size, dropped",
                metadata: ["mqtt.topic": "\(message.topic)"])
            broker.countDropped(1)
            return nil
        }
        if let newAlias {
            outboundTopicAliases[message.topic] = newAlias
            outboundTopicAliasBytes += message.topic.utf8.count
        }
        return packet
    }
}
