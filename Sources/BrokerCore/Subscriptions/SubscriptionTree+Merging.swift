extension SubscriptionTree {
    /// One delivery to a subscriber whose overlapping subscriptions were merged: MQTT 3.1.1 sends one
    /// copy at the highest QoS of all its matching subscriptions (§3.3.5), and MQTT 5 may do the same
    /// (§3.3.4), then carrying every matching Subscription Identifier.
    public struct MergedDelivery {
        public var subscriber: Subscriber
        public var maximumQoS: UInt8
        /// The Subscription Identifiers of the merged subscriptions, in match order; empty when none
        /// had one (always under MQTT 3.1.1).
        public var subscriptionIdentifiers: [Int]
        /// The matching subscriptions merged into this delivery (at least one).
        public var subscriptionCount: Int

        @usableFromInline
        init(subscriber: Subscriber, maximumQoS: UInt8, subscriptionIdentifiers: [Int], subscriptionCount: Int) {
            self.subscriber = subscriber
            self.maximumQoS = maximumQoS
            self.subscriptionIdentifiers = subscriptionIdentifiers
            self.subscriptionCount = subscriptionCount
        }
    }
}

extension SubscriptionTree.MergedDelivery: Sendable where Subscriber: Sendable {}
extension SubscriptionTree.MergedDelivery: Equatable where Subscriber: Equatable {}

extension SubscriptionTree.Matches where Options: SubscriptionDeliveryOptions {
    /// The ordinary subscriptions merged to one delivery per subscriber; see `mergedPerSubscriber(where:)`.
    @inlinable
    public func mergedPerSubscriber() -> [SubscriptionTree.MergedDelivery] {
        mergedPerSubscriber(where: { _ in true })
    }

    /// The ordinary subscriptions merged to one delivery per subscriber, in order of first match.
    /// Shared groups are not included: each delivers to one picked member on its own.
    ///
    /// - Parameter isIncluded: drop matches first, e.g. MQTT 5 No Local subscriptions of the publisher.
    @inlinable
    public func mergedPerSubscriber(
        where isIncluded: (SubscriptionTree.Match) throws -> Bool
    ) rethrows -> [SubscriptionTree.MergedDelivery] {
        var deliveries: [SubscriptionTree.MergedDelivery] = []
        // A handful of matches is the common case: a linear search beats building a dictionary.
        let usesIndex = subscriptions.count > 16
        var positions: [Subscriber: Int] = [:]
        for match in subscriptions where try isIncluded(match) {
            let options = match.options
            let existing =
                usesIndex
                ? positions[match.subscriber] : deliveries.firstIndex { $0.subscriber == match.subscriber }
            if let position = existing {
                deliveries[position].maximumQoS = max(deliveries[position].maximumQoS, options.maximumQoS)
                deliveries[position].subscriptionCount += 1
                if let identifier = options.subscriptionIdentifier {
                    deliveries[position].subscriptionIdentifiers.append(identifier)
                }
            } else {
                if usesIndex {
                    positions[match.subscriber] = deliveries.count
                }
                deliveries.append(
                    SubscriptionTree.MergedDelivery(
                        subscriber: match.subscriber,
                        maximumQoS: options.maximumQoS,
                        subscriptionIdentifiers: options.subscriptionIdentifier.map { [$0] } ?? [],
                        subscriptionCount: 1
                    )
                )
            }
        }
        return deliveries
    }
}
