/// What `SubscriptionTree.Matches.mergedPerSubscriber()` needs to know of a subscription's options.
/// The broker's own options type conforms.
public protocol SubscriptionDeliveryOptions {
    /// The maximum QoS granted for the subscription, 0, 1 or 2.
    var maximumQoS: UInt8 { get }
    /// The MQTT 5 Subscription Identifier given with the subscription, if any.
    var subscriptionIdentifier: Int? { get }
}
