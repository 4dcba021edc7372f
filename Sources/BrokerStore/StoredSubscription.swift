/// One subscription of a stored session: the filter as the client sent it (shared ones included), with its options.
public struct StoredSubscription: Sendable, Equatable {
    public var filter: String
    /// The MQTT 5 subscription options byte (QoS, no local, retain as published, retain handling).
    public var options: UInt8
    /// The MQTT 5 subscription identifier, if the client gave one.
    public var identifier: Int?

    public init(filter: String, options: UInt8, identifier: Int? = nil) {
        self.filter = filter
        self.options = options
        self.identifier = identifier
    }
}
