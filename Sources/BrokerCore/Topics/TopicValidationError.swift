/// Why a string is not a valid MQTT topic name or topic filter (MQTT 3.1.1 and 5.0 §4.7, §4.8.2).
///
/// Every case is a protocol error on the peer's side: the broker maps it to a reason code
/// (0x90 Topic Name invalid on PUBLISH, 0x8F Topic Filter invalid on SUBSCRIBE) or closes the connection.
public enum TopicValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Topic names and filters must be at least one character long.
    case empty
    /// The UTF-8 encoding is longer than the 65,535 bytes a length prefix can carry.
    case tooLong(byteCount: Int)
    /// U+0000 is never allowed in a topic.
    case containsNullCharacter
    /// A topic name contains `+` or `#`.
    case wildcardInTopicName
    /// `#` is not alone in its level, or not in the last level.
    case misplacedMultiLevelWildcard
    /// `+` is not alone in its level.
    case misplacedSingleLevelWildcard
    /// `$share/{ShareName}/…` with an empty ShareName, or one holding `+` or `#`.
    case invalidShareName
    /// `$share/{ShareName}` without a `/` and a non-empty topic filter after it.
    case missingSharedTopicFilter

    public var description: String {
        switch self {
        case .empty: "topic is empty"
        case .tooLong(let byteCount): "topic is \(byteCount) bytes long, the limit is 65535"
        case .containsNullCharacter: "topic contains U+0000"
        case .wildcardInTopicName: "topic name contains a wildcard character"
        case .misplacedMultiLevelWildcard: "'#' must be the whole last level of a topic filter"
        case .misplacedSingleLevelWildcard: "'+' must be a whole level of a topic filter"
        case .invalidShareName: "shared subscription has an empty share name or one containing '+' or '#'"
        case .missingSharedTopicFilter: "shared subscription has no topic filter after the share name"
        }
    }
}
