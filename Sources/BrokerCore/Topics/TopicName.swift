/// A validated MQTT topic name, the topic a PUBLISH is sent to (MQTT 3.1.1 and 5.0 §4.7).
///
/// Non-empty, at most 65,535 UTF-8 bytes, no U+0000 and no wildcard characters. Equality and hashing
/// are byte-wise, as MQTT requires (no Unicode normalisation). A PUBLISH that relies on a v5 topic alias
/// carries an empty topic; the connection resolves the alias before building a `TopicName`.
/// A plain value; `Sendable`.
public struct TopicName: Hashable, Sendable, CustomStringConvertible {
    /// The topic as the client sent it.
    public let string: String

    /// Validates `string` as a topic name.
    public init(_ string: String) throws(TopicValidationError) {
        try Self.validate(string)
        self.string = string
    }

    init(unchecked string: String) {
        self.string = string
    }

    /// Whether the topic starts with `$` (`$SYS/…`): filters that start with a wildcard do not match it.
    public var isDollarTopic: Bool { string.utf8.first == TopicBytes.dollar }

    /// The number of `/`-separated levels; `a//b` and `/a` both have empty levels and count them.
    public var levelCount: Int { string.withUTF8Bytes { TopicBytes.levelCount($0) } }

    public var description: String { string }

    public static func == (lhs: TopicName, rhs: TopicName) -> Bool {
        lhs.string.utf8Equals(rhs.string)
    }

    public func hash(into hasher: inout Hasher) {
        string.hashUTF8(into: &hasher)
    }

    private static func validate(_ string: String) throws(TopicValidationError) {
        let error: TopicValidationError? = string.withUTF8Bytes { bytes in
            if bytes.isEmpty { return .empty }
            if bytes.count > TopicBytes.maximumByteCount { return .tooLong(byteCount: bytes.count) }
            for byte in bytes {
                switch byte {
                case 0: return .containsNullCharacter
                case TopicBytes.plus, TopicBytes.hash: return .wildcardInTopicName
                default: continue
                }
            }
            return nil
        }
        if let error { throw error }
    }
}
