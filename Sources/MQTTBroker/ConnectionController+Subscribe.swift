import BrokerCore
import MQTTCodec

extension ConnectionController {
    /// SUBSCRIBE (§3.8): validate each filter, check the ACL, add it, answer SUBACK, then send retained messages.
    func handleSubscribe(_ subscribe: SubscribePacket, session: Session) {
        let identifier = subscribe.properties.subscriptionIdentifiers.first.map { Int($0) }
        var codes: [ReasonCode] = []
        var retainedToSend: [(TopicFilter, QoS)] = []
        for subscription in subscribe.subscriptions {
            let requested = subscription.options
            let filter: TopicFilter
            do {
                filter = try TopicFilter(subscription.topicFilter, sharedSubscriptions: true)
            } catch {
                codes.append(.topicFilterInvalid)
                continue
            }
            // mqtt.max_topic_levels (3.1.1 clients see 0x80).
            guard filter.levelCount <= broker.settings.storage.maxTopicLevels else {
                broker.countLimit(.maxTopicLevels)
                logger.info("subscribe refused: too many topic levels", metadata: ["mqtt.levels": "\(filter.levelCount)"])
                codes.append(.topicFilterInvalid)
                continue
            }
            if filter.isShared {
                guard broker.settings.sharedSubscriptionAvailable else {
                    codes.append(.sharedSubscriptionsNotSupported)
                    continue
                }
                if requested.noLocal && protocolVersion == .v5 {
                    protocolViolation(.protocolError, "No Local on a shared subscription")
                    return
                }
            }
            guard broker.access.canSubscribe(filter: subscription.topicFilter, clientID: clientID, username: username)
            else {
                logger.info("subscribe denied by ACL", metadata: ["mqtt.filter": "\(subscription.topicFilter)"])
                codes.append(.notAuthorized)
                continue
            }
            // mqtt.max_subscriptions: a new filter beyond it is refused; replacing one is no new subscription.
            if session.subscriptionsByFilter[filter.string] == nil
                && session.subscriptionCount >= broker.settings.storage.maxSubscriptions
            {
                broker.countLimit(.maxSubscriptions)
                logger.info(
                    "subscribe refused: mqtt.max_subscriptions reached",
                    metadata: ["mqtt.subscriptions": "\(session.subscriptionCount)"])
                codes.append(.quotaExceeded)
                continue
            }
            var options = requested
            if protocolVersion != .v5 {
                options.noLocal = false
                options.retainAsPublished = false
                options.retainHandling = .sendOnSubscribe
            }
            let isNew = broker.subscribe(
                session, filter: filter, entry: SubscriptionEntry(options: options, identifier: identifier))
            codes.append(.granted(options.qos))
            if !filter.isShared {
                switch options.retainHandling {
                case .sendOnSubscribe: retainedToSend.append((filter, options.qos))
                case .sendOnSubscribeIfNew where isNew: retainedToSend.append((filter, options.qos))
                default: break
                }
            }
        }
        // SUBACK once every worker knows the new routes: a publish anywhere after it reaches this subscription.
        holdInput(until: broker.afterRoutesPropagate) { [weak self] in
            guard let self, case .connected = self.state else { return }
            self.send(.suback(SubAckPacket(packetIdentifier: subscribe.packetIdentifier, reasonCodes: codes)))
            for (filter, qos) in retainedToSend {
                self.broker.sendRetained(to: session, filter: filter, maximumQoS: qos, identifier: identifier)
            }
        }
    }

    /// UNSUBSCRIBE (§3.10).
    func handleUnsubscribe(_ unsubscribe: UnsubscribePacket, session: Session) {
        var codes: [ReasonCode] = []
        for text in unsubscribe.topicFilters {
            guard let filter = try? TopicFilter(text, sharedSubscriptions: true) else {
                codes.append(.topicFilterInvalid)
                continue
            }
            codes.append(broker.unsubscribe(session, filter: filter) ? .success : .noSubscriptionExisted)
        }
        send(.unsuback(UnsubAckPacket(packetIdentifier: unsubscribe.packetIdentifier, reasonCodes: codes)))
    }
}
