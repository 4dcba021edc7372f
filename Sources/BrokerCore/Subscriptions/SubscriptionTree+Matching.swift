extension SubscriptionTree {
    /// Every ordinary subscription and shared group whose filter matches `topic`.
    @inlinable
    public func match(topic: TopicName) -> Matches {
        var matches = Matches()
        match(topic: topic, into: &matches)
        return matches
    }

    /// Like `match(topic:)`, reusing `matches`' storage (it is emptied first); the hot path for
    /// PUBLISH. Walks the trie iteratively over the topic's bytes: no allocation beyond growing
    /// `matches`, no recursion, each filter node visited at most once.
    @inlinable
    public func match(topic: TopicName, into matches: inout Matches) {
        matches.removeAll()
        topic.string.withUTF8Bytes { bytes in
            let levelCount = TopicBytes.levelCount(bytes)
            withUnsafeTemporaryAllocation(of: LevelSpan.self, capacity: levelCount) { levels in
                var start = 0
                var level = 0
                TopicBytes.forEachLevel(bytes) { slice, _ in
                    levels.initializeElement(at: level, to: LevelSpan(start: start, count: slice.count))
                    start += slice.count + 1
                    level += 1
                    return true
                }
                // Depth-first: each pop pushes at most two entries one level deeper, so the stack
                // never holds more than one pending entry per level plus two.
                withUnsafeTemporaryAllocation(of: (node: Int32, level: Int32).self, capacity: levelCount + 2) { stack in
                    trie.withReader { reader in
                        filterSubscriptions.withUnsafeBufferPointer { subscriptions in
                            Self.collect(
                                bytes: bytes,
                                levels: levels,
                                stack: stack,
                                reader: reader,
                                subscriptions: subscriptions,
                                into: &matches
                            )
                        }
                    }
                }
            }
        }
    }

    @inlinable
    static func collect(
        bytes: UnsafeRawBufferPointer,
        levels: UnsafeMutableBufferPointer<LevelSpan>,
        stack: UnsafeMutableBufferPointer<(node: Int32, level: Int32)>,
        reader: LevelTrie.Reader,
        subscriptions: UnsafeBufferPointer<FilterSubscriptions>,
        into matches: inout Matches
    ) {
        let levelCount = Int32(levels.count)
        // MQTT-4.7.2-1: filters starting with a wildcard do not match topics starting with `$`.
        let wildcardsAtRoot = bytes.first != TopicBytes.dollar
        var depth = 1
        stack[0] = (LevelTrie.root, 0)
        while depth > 0 {
            depth &-= 1
            let (index, level) = stack[depth]
            let node = reader.nodes[Int(index)]
            let multiLevel = node.multiLevelWildcardChild
            if level == levelCount {
                append(node: index, value: node.value, subscriptions: subscriptions, to: &matches)
                // `sport/tennis/#` matches `sport/tennis`.
                if multiLevel != LevelTrie.noNode {
                    append(
                        node: multiLevel,
                        value: reader.nodes[Int(multiLevel)].value,
                        subscriptions: subscriptions,
                        to: &matches
                    )
                }
                continue
            }
            if wildcardsAtRoot || index != LevelTrie.root {
                if multiLevel != LevelTrie.noNode {
                    append(
                        node: multiLevel,
                        value: reader.nodes[Int(multiLevel)].value,
                        subscriptions: subscriptions,
                        to: &matches
                    )
                }
                if node.singleLevelWildcardChild != LevelTrie.noNode {
                    stack[depth] = (node.singleLevelWildcardChild, level &+ 1)
                    depth &+= 1
                }
            }
            // Skip the probe (and hashing the level) when the node has no literal children.
            var literalChildren = node.childCount
            if node.singleLevelWildcardChild != LevelTrie.noNode { literalChildren &-= 1 }
            if multiLevel != LevelTrie.noNode { literalChildren &-= 1 }
            guard literalChildren > 0 else { continue }
            let span = levels[Int(level)]
            let levelBytes = UnsafeRawBufferPointer(rebasing: bytes[span.start..<(span.start &+ span.count)])
            if !span.isHashed {
                levels[Int(level)].hash = LevelTrie.levelHash(levelBytes)
                levels[Int(level)].isHashed = true
            }
            let child = reader.literalChild(of: index, level: levelBytes, levelHash: levels[Int(level)].hash)
            if child != LevelTrie.noNode {
                stack[depth] = (child, level &+ 1)
                depth &+= 1
            }
        }
    }

    @inlinable
    static func append(
        node: Int32,
        value slot: Int32,
        subscriptions: UnsafeBufferPointer<FilterSubscriptions>,
        to matches: inout Matches
    ) {
        guard slot != LevelTrie.noValue else { return }
        let filter = subscriptions[Int(slot)].filter
        if let head = subscriptions[Int(slot)].direct.head {
            matches.subscriptions.append(Match(subscriber: head.subscriber, filter: filter, options: head.options))
            for member in subscriptions[Int(slot)].direct.tail {
                matches.subscriptions.append(
                    Match(subscriber: member.subscriber, filter: filter, options: member.options)
                )
            }
        }
        for group in subscriptions[Int(slot)].sharedGroups {
            matches.sharedGroups.append(
                SharedGroupMatch(shareName: group.shareName, filter: group.filter, members: group.members, node: node)
            )
        }
    }
}
