/// A validated MQTT topic filter from a SUBSCRIBE or UNSUBSCRIBE (MQTT 3.1.1 and 5.0 §4.7, §4.8.2).
///
/// Non-empty, at most 65,535 UTF-8 bytes, no U+0000; `#` only as the whole last level, `+` only as a
/// whole level. With shared subscriptions enabled (MQTT 5), `$share/{ShareName}/{filter}` is parsed:
/// `shareName` is set and `matchFilter` is the part after it. Equality and hashing are byte-wise over
/// the whole string, so `$share/g/a` and `a` are different subscriptions. A plain value; `Sendable`.
public struct TopicFilter: Hashable, Sendable, CustomStringConvertible {
    /// The filter as the client sent it, including any `$share/{ShareName}/` prefix.
    public let string: String
    /// UTF-8 offset of the matched part within `string`: 0, or past `$share/{ShareName}/`.
    /// Kept as an offset rather than a second string so copies (one per match) retain one object.
    @usableFromInline let matchFilterOffset: Int32
    /// Whether the matched part contains `+` or `#`.
    public let hasWildcards: Bool

    /// Validates `string` as a topic filter.
    ///
    /// - Parameter sharedSubscriptions: whether `$share/…` denotes a shared subscription (MQTT 5).
    ///   MQTT 3.1.1 has no shared subscriptions: pass `false` and `$share/…` is an ordinary filter.
    public init(_ string: String, sharedSubscriptions: Bool = true) throws(TopicValidationError) {
        let parsed: Result<(offset: Int, hasWildcards: Bool), TopicValidationError> =
            string.withUTF8Bytes { bytes in Self.parse(bytes, sharedSubscriptions: sharedSubscriptions) }
        switch parsed {
        case .success(let parts):
            self.string = string
            self.matchFilterOffset = Int32(parts.offset)
            self.hasWildcards = parts.hasWildcards
        case .failure(let error):
            throw error
        }
    }

    /// A filter already known to be valid and not shared.
    init(uncheckedMatchFilter string: String) {
        self.string = string
        self.matchFilterOffset = 0
        self.hasWildcards = string.utf8.contains { $0 == TopicBytes.plus || $0 == TopicBytes.hash }
    }

    /// Whether this is a shared subscription (`$share/{ShareName}/{filter}`).
    @inlinable
    public var isShared: Bool { matchFilterOffset > 0 }

    /// The ShareName of a shared subscription, `nil` for an ordinary one.
    public var shareName: String? {
        guard isShared else { return nil }
        let utf8 = string.utf8
        let start = utf8.index(utf8.startIndex, offsetBy: Self.sharePrefix.count)
        let end = utf8.index(utf8.startIndex, offsetBy: Int(matchFilterOffset) - 1)
        return String(string[start..<end])
    }

    /// The part matched against topic names: the whole string, or what follows `$share/{ShareName}/`.
    public var matchFilter: Substring {
        let start = string.utf8.index(string.startIndex, offsetBy: Int(matchFilterOffset))
        return string[start...]
    }

    /// The number of `/`-separated levels of the matched part (what follows `$share/{ShareName}/`).
    public var levelCount: Int { withMatchFilterBytes { TopicBytes.levelCount($0) } }

    /// Whether the matched part starts with a wildcard, so it does not match `$` topics (MQTT-4.7.2-1).
    public var startsWithWildcard: Bool {
        withMatchFilterBytes { bytes in
            bytes.first == TopicBytes.plus || bytes.first == TopicBytes.hash
        }
    }

    public var description: String { string }

    /// Runs `body` over the UTF-8 bytes of `matchFilter`.
    @inlinable
    func withMatchFilterBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try string.withUTF8Bytes { bytes in
            try body(UnsafeRawBufferPointer(rebasing: bytes[Int(matchFilterOffset)...]))
        }
    }

    /// Whether this filter matches `topic`, following §4.7: `+` matches one level (possibly empty),
    /// `#` matches the parent level and any number of levels below it, and a filter starting with a
    /// wildcard does not match a topic starting with `$`. `SubscriptionTree` gives the same answers
    /// for many filters at once; this is for single checks.
    public func matches(_ topic: TopicName) -> Bool {
        withMatchFilterBytes { filter in
            topic.string.withUTF8Bytes { name in Self.matches(filter: filter, name: name) }
        }
    }

    public static func == (lhs: TopicFilter, rhs: TopicFilter) -> Bool {
        lhs.string.utf8Equals(rhs.string)
    }

    public func hash(into hasher: inout Hasher) {
        string.hashUTF8(into: &hasher)
    }

    // MARK: - Parsing

    private static let sharePrefix: [UInt8] = Array("$share/".utf8)

    private static func parse(
        _ bytes: UnsafeRawBufferPointer,
        sharedSubscriptions: Bool
    ) -> Result<(offset: Int, hasWildcards: Bool), TopicValidationError> {
        if bytes.isEmpty { return .failure(.empty) }
        if bytes.count > TopicBytes.maximumByteCount { return .failure(.tooLong(byteCount: bytes.count)) }
        if bytes.contains(0) { return .failure(.containsNullCharacter) }

        var offset = 0
        if sharedSubscriptions, bytes.starts(with: sharePrefix) {
            let nameStart = sharePrefix.count
            var nameEnd = nameStart
            while nameEnd < bytes.count, bytes[nameEnd] != TopicBytes.slash {
                let byte = bytes[nameEnd]
                if byte == TopicBytes.plus || byte == TopicBytes.hash { return .failure(.invalidShareName) }
                nameEnd += 1
            }
            if nameEnd == nameStart { return .failure(.invalidShareName) }
            if nameEnd >= bytes.count - 1 { return .failure(.missingSharedTopicFilter) }
            offset = nameEnd + 1
        }

        var hasWildcards = false
        var failure: TopicValidationError?
        TopicBytes.forEachLevel(UnsafeRawBufferPointer(rebasing: bytes[offset...])) { level, isLast in
            for byte in level {
                if byte == TopicBytes.hash {
                    guard level.count == 1, isLast else {
                        failure = .misplacedMultiLevelWildcard
                        return false
                    }
                    hasWildcards = true
                } else if byte == TopicBytes.plus {
                    guard level.count == 1 else {
                        failure = .misplacedSingleLevelWildcard
                        return false
                    }
                    hasWildcards = true
                }
            }
            return true
        }
        if let failure { return .failure(failure) }
        return .success((offset, hasWildcards))
    }

    // MARK: - Matching one topic

    /// Level-by-level comparison without allocating; `filter` must be a valid, non-shared filter.
    static func matches(filter: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer) -> Bool {
        if name.first == TopicBytes.dollar, filter.first == TopicBytes.plus || filter.first == TopicBytes.hash {
            return false
        }
        var filterStart = 0
        var nameStart = 0
        while true {
            let filterEnd = nextSlash(filter, from: filterStart)
            let filterLevel = UnsafeRawBufferPointer(rebasing: filter[filterStart..<filterEnd])
            if TopicBytes.isSingleByte(filterLevel, TopicBytes.hash) { return true }
            let nameEnd = nextSlash(name, from: nameStart)
            if !TopicBytes.isSingleByte(filterLevel, TopicBytes.plus),
                !TopicBytes.equal(filterLevel, UnsafeRawBufferPointer(rebasing: name[nameStart..<nameEnd]))
            {
                return false
            }
            let filterDone = filterEnd == filter.count
            let nameDone = nameEnd == name.count
            if filterDone { return nameDone }
            if nameDone {
                // `sport/tennis/#` matches `sport/tennis`: only a final `#` may follow.
                let rest = UnsafeRawBufferPointer(rebasing: filter[(filterEnd + 1)...])
                return TopicBytes.isSingleByte(rest, TopicBytes.hash)
            }
            filterStart = filterEnd + 1
            nameStart = nameEnd + 1
        }
    }

    private static func nextSlash(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count, bytes[index] != TopicBytes.slash {
            index += 1
        }
        return index
    }
}
