/// The retained messages of one broker worker, one per topic name, indexed by a topic-level trie
/// so a new subscription finds its retained messages without scanning every topic.
///
/// Whether an empty payload deletes is the caller's decision (MQTT-3.3.1-6/7: it does): call
/// `remove(topic:)` for it, `set(topic:message:)` otherwise. Nodes are freed as soon as they hold
/// nothing.
///
/// A plain value, `Sendable` when `Message` is. Each worker process owns one and uses it from its
/// event loop only.
public struct RetainedStore<Message: RetainedMessageSizing> {
    /// One retained message with its topic and accounted size.
    @usableFromInline
    struct Entry {
        @usableFromInline var topic: TopicName
        @usableFromInline var message: Message
        @usableFromInline var byteCount: Int

        @usableFromInline
        init(topic: TopicName, message: Message, byteCount: Int) {
            self.topic = topic
            self.message = message
            self.byteCount = byteCount
        }
    }

    @usableFromInline var trie = LevelTrie()
    @usableFromInline var entries: ContiguousArray<Entry?> = []
    var freeEntries: [Int32] = []

    /// The number of retained messages.
    public private(set) var count = 0
    /// The sum of the stored messages' `retainedByteCount`.
    public private(set) var totalByteCount = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Live trie nodes, the root included (1 when empty). For diagnostics and tests.
    public var nodeCount: Int { trie.nodeCount }

    /// Stores `message` as the retained message of `topic`, returning the one it replaced.
    @discardableResult
    public mutating func set(topic: TopicName, message: Message) -> Message? {
        let byteCount = message.retainedByteCount
        let node = topic.string.withUTF8Bytes { trie.insertPath($0, wildcards: false) }
        let slot = trie.nodes[Int(node)].value
        let entry = Entry(topic: topic, message: message, byteCount: byteCount)
        if slot != LevelTrie.noValue, let previous = entries[Int(slot)] {
            entries[Int(slot)] = entry
            totalByteCount += byteCount - previous.byteCount
            return previous.message
        }
        let newSlot: Int32
        if let free = freeEntries.popLast() {
            newSlot = free
            entries[Int(free)] = entry
        } else {
            newSlot = Int32(entries.count)
            entries.append(entry)
        }
        trie.setValue(newSlot, of: node)
        count += 1
        totalByteCount += byteCount
        return nil
    }

    /// Deletes the retained message of `topic`, returning it.
    @discardableResult
    public mutating func remove(topic: TopicName) -> Message? {
        let node = topic.string.withUTF8Bytes { trie.path($0, wildcards: false) }
        guard node != LevelTrie.noNode else { return nil }
        let slot = trie.nodes[Int(node)].value
        guard slot != LevelTrie.noValue, let previous = entries[Int(slot)] else { return nil }
        entries[Int(slot)] = nil
        freeEntries.append(slot)
        trie.setValue(LevelTrie.noValue, of: node)
        trie.removeIfUnused(node)
        count -= 1
        totalByteCount -= previous.byteCount
        if count == 0 {
            entries = []
            freeEntries = []
        }
        return previous.message
    }

    /// Deletes every retained message.
    public mutating func removeAll() {
        self = RetainedStore()
    }

    /// The retained message of exactly `topic`.
    /// Calls `body` for every retained message, `$` topics included, in no particular order.
    public func forEach(_ body: (TopicName, Message) throws -> Void) rethrows {
        for entry in entries {
            guard let entry else { continue }
            try body(entry.topic, entry.message)
        }
    }

    public func message(for topic: TopicName) -> Message? {
        let node = topic.string.withUTF8Bytes { trie.path($0, wildcards: false) }
        guard node != LevelTrie.noNode else { return nil }
        let slot = trie.nodes[Int(node)].value
        guard slot != LevelTrie.noValue else { return nil }
        return entries[Int(slot)]?.message
    }

    /// The retained messages whose topics match `filter`, for delivery on SUBSCRIBE, in no
    /// particular order. A shared filter matches nothing: retained messages are not sent for
    /// shared subscriptions (MQTT 5 §4.8.2).
    @inlinable
    public func matching(filter: TopicFilter) -> [(topic: TopicName, message: Message)] {
        var result: [(topic: TopicName, message: Message)] = []
        forEachMatch(filter: filter) { topic, message in result.append((topic, message)) }
        return result
    }

    /// Calls `body` for each retained message whose topic matches `filter`; see `matching(filter:)`.
    /// Walks only the trie paths the filter allows: a literal level is one hash probe, `+` visits
    /// the children, `#` the subtree. Iterative, so deep topics cannot overflow the stack.
    @inlinable
    public func forEachMatch(filter: TopicFilter, _ body: (TopicName, Message) throws -> Void) rethrows {
        guard !filter.isShared, !entries.isEmpty else { return }
        try filter.withMatchFilterBytes { bytes in
            let levelCount = TopicBytes.levelCount(bytes)
            var levels: [(kind: LevelTrie.LevelKind, span: LevelSpan)] = []
            levels.reserveCapacity(levelCount)
            var start = 0
            TopicBytes.forEachLevel(bytes) { level, _ in
                let kind: LevelTrie.LevelKind =
                    TopicBytes.isSingleByte(level, TopicBytes.plus)
                    ? .singleLevelWildcard
                    : TopicBytes.isSingleByte(level, TopicBytes.hash) ? .multiLevelWildcard : .literal
                levels.append((kind, LevelSpan(start: start, count: level.count, hash: LevelTrie.levelHash(level))))
                start += level.count + 1
                return true
            }
            // `level == wholeSubtree` marks a node whose entire subtree matches (below a `#`).
            let wholeSubtree = -1
            try trie.withReader { reader in
                var stack: [(node: Int32, level: Int)] = [(LevelTrie.root, 0)]
                while let (index, level) = stack.popLast() {
                    let node = reader.nodes[Int(index)]
                    if level == wholeSubtree {
                        try report(node.value, body)
                        pushChildren(of: node, index: index, level: wholeSubtree, reader: reader, onto: &stack)
                        continue
                    }
                    if level == levels.count {
                        try report(node.value, body)
                        continue
                    }
                    let (kind, span) = levels[level]
                    switch kind {
                    case .literal:
                        let child = reader.literalChild(
                            of: index,
                            level: UnsafeRawBufferPointer(rebasing: bytes[span.start..<(span.start + span.count)]),
                            levelHash: span.hash
                        )
                        if child != LevelTrie.noNode {
                            stack.append((child, level + 1))
                        }
                    case .singleLevelWildcard:
                        pushChildren(of: node, index: index, level: level + 1, reader: reader, onto: &stack)
                    case .multiLevelWildcard:
                        // `sport/#` matches `sport` itself; the root holds no message.
                        try report(node.value, body)
                        pushChildren(of: node, index: index, level: wholeSubtree, reader: reader, onto: &stack)
                    }
                }
            }
        }
    }

    @inlinable
    func pushChildren(
        of node: LevelTrie.Node,
        index: Int32,
        level: Int,
        reader: LevelTrie.Reader,
        onto stack: inout [(node: Int32, level: Int)]
    ) {
        var child = node.firstChild
        while child != LevelTrie.noNode {
            let childNode = reader.nodes[Int(child)]
            // MQTT-4.7.2-1: a wildcard in the first level does not match `$` topics.
            if index != LevelTrie.root || !reader.labelStartsWithDollar(childNode) {
                stack.append((child, level))
            }
            child = childNode.nextSibling
        }
    }

    @inlinable
    func report(_ slot: Int32, _ body: (TopicName, Message) throws -> Void) rethrows {
        guard slot != LevelTrie.noValue, let entry = entries[Int(slot)] else { return }
        try body(entry.topic, entry.message)
    }
}

extension RetainedStore: Sendable where Message: Sendable {}
extension RetainedStore.Entry: Sendable where Message: Sendable {}
