import BrokerCore

/// Options as a broker would keep them, for the tests.
struct TestOptions: SubscriptionDeliveryOptions, Hashable, Sendable {
    var maximumQoS: UInt8
    var subscriptionIdentifier: Int?

    init(qos: UInt8 = 0, identifier: Int? = nil) {
        maximumQoS = qos
        subscriptionIdentifier = identifier
    }
}

/// A retained message of the tests: a label and a size.
struct TestMessage: RetainedMessageSizing, Hashable, Sendable {
    var label: String
    var retainedByteCount: Int

    init(_ label: String, size: Int = 1) {
        self.label = label
        self.retainedByteCount = size
    }
}

typealias TestTree = SubscriptionTree<String, TestOptions>

func name(_ string: String) throws -> TopicName {
    try TopicName(string)
}

func filter(_ string: String) throws -> TopicFilter {
    try TopicFilter(string)
}

/// Deterministic generator (SplitMix64) so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The spec's matching rules written the obvious way, with arrays of levels: the reference the
/// trie is checked against. `filter` is the part after any `$share/{ShareName}/`.
func referenceMatches(filter: String, topic: String) -> Bool {
    referenceMatches(filterLevels: levels(of: filter), topicLevels: levels(of: topic))
}

func levels(of string: String) -> [[UInt8]] {
    string.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map { Array($0) }
}

func referenceMatches(filterLevels: [[UInt8]], topicLevels: [[UInt8]]) -> Bool {
    let plus: [UInt8] = [UInt8(ascii: "+")]
    let hash: [UInt8] = [UInt8(ascii: "#")]
    if topicLevels[0].first == UInt8(ascii: "$"), filterLevels[0] == plus || filterLevels[0] == hash {
        return false
    }
    for (index, level) in filterLevels.enumerated() {
        if level == hash { return true }
        if index >= topicLevels.count { return false }
        if level != plus, level != topicLevels[index] { return false }
    }
    return filterLevels.count == topicLevels.count
}

/// `string` with every non-ASCII scalar escaped, so comparisons and sorting are exact: `String.==`
/// treats `é` and `e\u{301}` as equal, MQTT does not.
func escaped(_ string: String) -> String {
    string.unicodeScalars.map { $0.escaped(asASCII: true) }.joined()
}

/// The ordinary matches as a sorted list of "subscriber filter" strings (escaped), for comparisons.
func describe(_ matches: TestTree.Matches) -> [String] {
    matches.subscriptions.map { escaped("\($0.subscriber) \($0.filter.string)") }.sorted()
}
