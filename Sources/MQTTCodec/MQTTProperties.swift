import NIOCore

/// One MQTT 5 user property: a name/value pair of UTF-8 strings. Order and duplicates are significant.
public struct UserProperty: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.init(name: name, value: value)
    }
}

/// The MQTT 5 properties of a packet (or of a will), each typed; absent properties are nil or empty.
///
/// A copy-on-write value: an empty set is one nil reference, so 3.x packets and most PUBLISH packets pay nothing
/// for it. Which properties a packet may carry is checked by the decoder; the encoder writes what is set.
public struct MQTTProperties: Sendable, Equatable {
    /// MQTT 5 payload format indicator values.
    public enum PayloadFormatIndicator: UInt8, Sendable, Hashable {
        /// Unspecified bytes.
        case unspecified = 0
        /// UTF-8 encoded character data.
        case utf8 = 1
    }

    struct Fields: Equatable {
        var payloadFormatIndicator: PayloadFormatIndicator?
        var messageExpiryInterval: UInt32?
        var contentType: String?
        var responseTopic: String?
        var correlationData: ByteBuffer?
        var subscriptionIdentifiers: [UInt32] = []
        var sessionExpiryInterval: UInt32?
        var assignedClientIdentifier: String?
        var serverKeepAlive: UInt16?
        var authenticationMethod: String?
        var authenticationData: ByteBuffer?
        var requestProblemInformation: Bool?
        var willDelayInterval: UInt32?
        var requestResponseInformation: Bool?
        var responseInformation: String?
        var serverReference: String?
        var reasonString: String?
        var receiveMaximum: UInt16?
        var topicAliasMaximum: UInt16?
        var topicAlias: UInt16?
        var maximumQoS: QoS?
        var retainAvailable: Bool?
        var userProperties: [UserProperty] = []
        var maximumPacketSize: UInt32?
        var wildcardSubscriptionAvailable: Bool?
        var subscriptionIdentifierAvailable: Bool?
        var sharedSubscriptionAvailable: Bool?

        init() {}
    }

    /// Shared storage; only mutated while uniquely referenced, so sharing it across isolation domains is safe.
    final class Storage: @unchecked Sendable {
        var fields: Fields

        init(_ fields: Fields) {
            self.fields = fields
        }
    }

    private var storage: Storage?

    /// Empty properties.
    public init() {}

    init(fields: Fields) {
        self.storage = Storage(fields)
    }

    /// Whether no property is set.
    public var isEmpty: Bool {
        guard let storage else { return true }
        return storage.fields == Fields()
    }

    var fields: Fields {
        storage?.fields ?? Fields()
    }

    /// The stored fields, or nil for properties that were never set (the common, cheap case).
    var storageFieldsIfAny: Fields? {
        storage?.fields
    }

    private mutating func uniqueStorage() -> Storage {
        if isKnownUniquelyReferenced(&storage), let storage {
            return storage
        }
        let copy = Storage(storage?.fields ?? Fields())
        storage = copy
        return copy
    }

    public static func == (lhs: MQTTProperties, rhs: MQTTProperties) -> Bool {
        if lhs.storage === rhs.storage { return true }
        return lhs.fields == rhs.fields
    }

    /// Payload format indicator: whether the payload is UTF-8 text. (property 0x01)
    public var payloadFormatIndicator: PayloadFormatIndicator? {
        get { storage?.fields.payloadFormatIndicator ?? nil }
        set { uniqueStorage().fields.payloadFormatIndicator = newValue }
    }

    /// Message expiry interval in seconds. (property 0x02)
    public var messageExpiryInterval: UInt32? {
        get { storage?.fields.messageExpiryInterval ?? nil }
        set { uniqueStorage().fields.messageExpiryInterval = newValue }
    }

    /// MIME type of the payload. (property 0x03)
    public var contentType: String? {
        get { storage?.fields.contentType ?? nil }
        set { uniqueStorage().fields.contentType = newValue }
    }

    /// Topic name for a response message. (property 0x08)
    public var responseTopic: String? {
        get { storage?.fields.responseTopic ?? nil }
        set { uniqueStorage().fields.responseTopic = newValue }
    }

    /// Correlation data for request/response. (property 0x09)
    public var correlationData: ByteBuffer? {
        get { storage?.fields.correlationData ?? nil }
        set { uniqueStorage().fields.correlationData = newValue }
    }

    /// Subscription identifiers (1...268,435,455): several on PUBLISH, at most one on SUBSCRIBE. (property 0x0B)
    public var subscriptionIdentifiers: [UInt32] {
        get { storage?.fields.subscriptionIdentifiers ?? [] }
        set { uniqueStorage().fields.subscriptionIdentifiers = newValue }
    }

    /// Session expiry interval in seconds. (property 0x11)
    public var sessionExpiryInterval: UInt32? {
        get { storage?.fields.sessionExpiryInterval ?? nil }
        set { uniqueStorage().fields.sessionExpiryInterval = newValue }
    }

    /// Client identifier assigned by the server. (property 0x12)
    public var assignedClientIdentifier: String? {
        get { storage?.fields.assignedClientIdentifier ?? nil }
        set { uniqueStorage().fields.assignedClientIdentifier = newValue }
    }

    /// Keep alive imposed by the server, in seconds. (property 0x13)
    public var serverKeepAlive: UInt16? {
        get { storage?.fields.serverKeepAlive ?? nil }
        set { uniqueStorage().fields.serverKeepAlive = newValue }
    }

    /// Name of the extended authentication method. (property 0x15)
    public var authenticationMethod: String? {
        get { storage?.fields.authenticationMethod ?? nil }
        set { uniqueStorage().fields.authenticationMethod = newValue }
    }

    /// Extended authentication data. (property 0x16)
    public var authenticationData: ByteBuffer? {
        get { storage?.fields.authenticationData ?? nil }
        set { uniqueStorage().fields.authenticationData = newValue }
    }

    /// Whether the client wants reason strings and user properties on failures. (property 0x17)
    public var requestProblemInformation: Bool? {
        get { storage?.fields.requestProblemInformation ?? nil }
        set { uniqueStorage().fields.requestProblemInformation = newValue }
    }

    /// Delay before publishing the will, in seconds. (property 0x18)
    public var willDelayInterval: UInt32? {
        get { storage?.fields.willDelayInterval ?? nil }
        set { uniqueStorage().fields.willDelayInterval = newValue }
    }

    /// Whether the client asks for response information in CONNACK. (property 0x19)
    public var requestResponseInformation: Bool? {
        get { storage?.fields.requestResponseInformation ?? nil }
        set { uniqueStorage().fields.requestResponseInformation = newValue }
    }

    /// Basis for response topics. (property 0x1A)
    public var responseInformation: String? {
        get { storage?.fields.responseInformation ?? nil }
        set { uniqueStorage().fields.responseInformation = newValue }
    }

    /// Other server(s) the client should use. (property 0x1C)
    public var serverReference: String? {
        get { storage?.fields.serverReference ?? nil }
        set { uniqueStorage().fields.serverReference = newValue }
    }

    /// Human-readable diagnostic. (property 0x1F)
    public var reasonString: String? {
        get { storage?.fields.reasonString ?? nil }
        set { uniqueStorage().fields.reasonString = newValue }
    }

    /// Maximum number of unacknowledged QoS 1 and 2 publications (never 0). (property 0x21)
    public var receiveMaximum: UInt16? {
        get { storage?.fields.receiveMaximum ?? nil }
        set { uniqueStorage().fields.receiveMaximum = newValue }
    }

    /// Highest topic alias the sender accepts. (property 0x22)
    public var topicAliasMaximum: UInt16? {
        get { storage?.fields.topicAliasMaximum ?? nil }
        set { uniqueStorage().fields.topicAliasMaximum = newValue }
    }

    /// Topic alias (never 0). (property 0x23)
    public var topicAlias: UInt16? {
        get { storage?.fields.topicAlias ?? nil }
        set { uniqueStorage().fields.topicAlias = newValue }
    }

    /// Highest QoS the server supports (0 or 1; absent means 2). (property 0x24)
    public var maximumQoS: QoS? {
        get { storage?.fields.maximumQoS ?? nil }
        set { uniqueStorage().fields.maximumQoS = newValue }
    }

    /// Whether the server supports retained messages. (property 0x25)
    public var retainAvailable: Bool? {
        get { storage?.fields.retainAvailable ?? nil }
        set { uniqueStorage().fields.retainAvailable = newValue }
    }

    /// User properties, in the order they appeared. (property 0x26)
    public var userProperties: [UserProperty] {
        get { storage?.fields.userProperties ?? [] }
        set { uniqueStorage().fields.userProperties = newValue }
    }

    /// Largest packet the sender accepts (never 0). (property 0x27)
    public var maximumPacketSize: UInt32? {
        get { storage?.fields.maximumPacketSize ?? nil }
        set { uniqueStorage().fields.maximumPacketSize = newValue }
    }

    /// Whether the server supports wildcard subscriptions. (property 0x28)
    public var wildcardSubscriptionAvailable: Bool? {
        get { storage?.fields.wildcardSubscriptionAvailable ?? nil }
        set { uniqueStorage().fields.wildcardSubscriptionAvailable = newValue }
    }

    /// Whether the server supports subscription identifiers. (property 0x29)
    public var subscriptionIdentifierAvailable: Bool? {
        get { storage?.fields.subscriptionIdentifierAvailable ?? nil }
        set { uniqueStorage().fields.subscriptionIdentifierAvailable = newValue }
    }

    /// Whether the server supports shared subscriptions. (property 0x2A)
    public var sharedSubscriptionAvailable: Bool? {
        get { storage?.fields.sharedSubscriptionAvailable ?? nil }
        set { uniqueStorage().fields.sharedSubscriptionAvailable = newValue }
    }

    /// Properties with the given values set.
    public init(
        payloadFormatIndicator: PayloadFormatIndicator? = nil,
        messageExpiryInterval: UInt32? = nil,
        contentType: String? = nil,
        responseTopic: String? = nil,
        correlationData: ByteBuffer? = nil,
        subscriptionIdentifiers: [UInt32] = [],
        sessionExpiryInterval: UInt32? = nil,
        assignedClientIdentifier: String? = nil,
        serverKeepAlive: UInt16? = nil,
        authenticationMethod: String? = nil,
        authenticationData: ByteBuffer? = nil,
        requestProblemInformation: Bool? = nil,
        willDelayInterval: UInt32? = nil,
        requestResponseInformation: Bool? = nil,
        responseInformation: String? = nil,
        serverReference: String? = nil,
        reasonString: String? = nil,
        receiveMaximum: UInt16? = nil,
        topicAliasMaximum: UInt16? = nil,
        topicAlias: UInt16? = nil,
        maximumQoS: QoS? = nil,
        retainAvailable: Bool? = nil,
        userProperties: [UserProperty] = [],
        maximumPacketSize: UInt32? = nil,
        wildcardSubscriptionAvailable: Bool? = nil,
        subscriptionIdentifierAvailable: Bool? = nil,
        sharedSubscriptionAvailable: Bool? = nil
    ) {
        var fields = Fields()
        fields.payloadFormatIndicator = payloadFormatIndicator
        fields.messageExpiryInterval = messageExpiryInterval
        fields.contentType = contentType
        fields.responseTopic = responseTopic
        fields.correlationData = correlationData
        fields.subscriptionIdentifiers = subscriptionIdentifiers
        fields.sessionExpiryInterval = sessionExpiryInterval
        fields.assignedClientIdentifier = assignedClientIdentifier
        fields.serverKeepAlive = serverKeepAlive
        fields.authenticationMethod = authenticationMethod
        fields.authenticationData = authenticationData
        fields.requestProblemInformation = requestProblemInformation
        fields.willDelayInterval = willDelayInterval
        fields.requestResponseInformation = requestResponseInformation
        fields.responseInformation = responseInformation
        fields.serverReference = serverReference
        fields.reasonString = reasonString
        fields.receiveMaximum = receiveMaximum
        fields.topicAliasMaximum = topicAliasMaximum
        fields.topicAlias = topicAlias
        fields.maximumQoS = maximumQoS
        fields.retainAvailable = retainAvailable
        fields.userProperties = userProperties
        fields.maximumPacketSize = maximumPacketSize
        fields.wildcardSubscriptionAvailable = wildcardSubscriptionAvailable
        fields.subscriptionIdentifierAvailable = subscriptionIdentifierAvailable
        fields.sharedSubscriptionAvailable = sharedSubscriptionAvailable
        if fields != Fields() {
            self.storage = Storage(fields)
        }
    }
}
