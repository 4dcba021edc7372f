/// Every subscription of one broker worker, indexed for matching PUBLISH topics against filters.
///
/// A trie keyed by topic level (`LevelTrie`) with `+` and `#` children; each filter node holds the
/// ordinary subscriptions to that filter and its shared-subscription groups (`$share/{ShareName}/…`,
/// one group per ShareName and filter). A reverse index (subscriber → filters) makes `unsubscribe`
/// and `removeAll(subscriber:)` independent of the trie's size. Nodes are freed as soon as they
/// hold nothing, so the tree returns to its initial size when every subscription is gone.
///
/// `Subscriber` identifies a session (a client id, a session number); `Options` is whatever the
/// broker keeps per subscription (granted QoS, No Local, Retain As Published, Retain Handling,
/// Subscription Identifier). A subscription is identified by (subscriber, full filter string):
/// `a/b` and `$share/g/a/b` are two subscriptions.
///
/// A plain value, `Sendable` when its parts are. Each worker process owns one and uses it from its
/// event loop only; it is never shared between threads.
public struct SubscriptionTree<Subscriber: Hashable, Options> {
    /// One subscription's subscriber and options.
    public struct Member {
        public var subscriber: Subscriber
        public var options: Options

        @inlinable
        public init(subscriber: Subscriber, options: Options) {
            self.subscriber = subscriber
            self.options = options
        }
    }

    /// An ordinary (non-shared) subscription whose filter matched the topic.
    public struct Match {
        public var subscriber: Subscriber
        public var filter: TopicFilter
        public var options: Options

        @usableFromInline
        init(subscriber: Subscriber, filter: TopicFilter, options: Options) {
            self.subscriber = subscriber
            self.filter = filter
            self.options = options
        }
    }

    /// A shared-subscription group whose filter matched the topic. The broker delivers the message
    /// to one member, picked with `SubscriptionTree.nextSharedMember(of:where:)` or its own policy.
    public struct SharedGroupMatch {
        public var shareName: String
        /// The full `$share/{ShareName}/{filter}` filter.
        public var filter: TopicFilter
        /// The group's members, in subscription order; never empty.
        public var members: [Member]
        @usableFromInline let node: Int32

        @usableFromInline
        init(shareName: String, filter: TopicFilter, members: [Member], node: Int32) {
            self.shareName = shareName
            self.filter = filter
            self.members = members
            self.node = node
        }
    }

    /// The result of `match(topic:)`: each matching ordinary subscription once (a subscriber with
    /// several overlapping filters appears once per filter), and each matching shared group once.
    public struct Matches {
        public var subscriptions: [Match]
        public var sharedGroups: [SharedGroupMatch]

        @inlinable
        public init() {
            subscriptions = []
            sharedGroups = []
        }

        @inlinable
        public var isEmpty: Bool { subscriptions.isEmpty && sharedGroups.isEmpty }

        /// Empties both lists, keeping their storage for the next `match(topic:into:)`.
        @inlinable
        public mutating func removeAll() {
            subscriptions.removeAll(keepingCapacity: true)
            sharedGroups.removeAll(keepingCapacity: true)
        }
    }

    /// One `$share/{ShareName}/{filter}` group at a filter node, with its round-robin position.
    @usableFromInline
    struct SharedGroup {
        @usableFromInline var shareName: String
        @usableFromInline var filter: TopicFilter
        @usableFromInline var members: [Member]
        /// Round-robin position: the member to try first next time.
        @usableFromInline var cursor: Int

        @usableFromInline
        init(shareName: String, filter: TopicFilter, members: [Member], cursor: Int) {
            self.shareName = shareName
            self.filter = filter
            self.members = members
            self.cursor = cursor
        }
    }

    /// What one filter node holds.
    @usableFromInline
    struct FilterSubscriptions {
        /// The node's filter, without any `$share` prefix; reported in `Match.filter`.
        @usableFromInline var filter: TopicFilter
        @usableFromInline var direct: MemberList
        /// Positions in `direct`, kept only once `direct` is large; otherwise `direct` is searched.
        @usableFromInline var directPositions: [Subscriber: Int]
        @usableFromInline var sharedGroups: ContiguousArray<SharedGroup>

        @usableFromInline
        init(filter: TopicFilter) {
            self.filter = filter
            direct = MemberList()
            directPositions = [:]
            sharedGroups = []
        }

        var isEmpty: Bool { direct.isEmpty && sharedGroups.isEmpty }
    }

    static var directIndexThreshold: Int { 8 }

    /// The ordinary subscribers of one filter. Most filters have exactly one, so it is stored inline:
    /// matching then reads it from the filter's entry without touching another heap block.
    @usableFromInline
    struct MemberList: RandomAccessCollection, MutableCollection {
        @usableFromInline var head: Member?
        /// The members after `head`; empty whenever `head` is `nil`.
        @usableFromInline var tail: ContiguousArray<Member>

        @inlinable
        init() {
            head = nil
            tail = []
        }

        @inlinable var startIndex: Int { 0 }
        @inlinable var endIndex: Int { head == nil ? 0 : 1 + tail.count }

        @inlinable
        subscript(position: Int) -> Member {
            get {
                if position == 0, let head { return head }
                return tail[position - 1]
            }
            set {
                if position == 0 {
                    head = newValue
                } else {
                    tail[position - 1] = newValue
                }
            }
        }

        mutating func append(_ member: Member) {
            if head == nil {
                head = member
            } else {
                tail.append(member)
            }
        }

        /// Removes and returns the last member; the list must not be empty.
        mutating func removeLast() -> Member {
            if let last = tail.popLast() { return last }
            guard let last = head else { preconditionFailure("removeLast() on an empty MemberList") }
            head = nil
            return last
        }
    }

    @usableFromInline var trie = LevelTrie()
    @usableFromInline var filterSubscriptions: ContiguousArray<FilterSubscriptions> = []
    var freeFilterSubscriptions: [Int32] = []
    /// subscriber → (full filter → trie node holding that subscription).
    var nodesBySubscriber: [Subscriber: [TopicFilter: Int32]] = [:]

    /// The number of subscriptions, ordinary and shared.
    public private(set) var count = 0

    @inlinable
    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// The number of distinct subscribers with at least one subscription.
    public var subscriberCount: Int { nodesBySubscriber.count }

    /// Live trie nodes, the root included (1 when empty). For diagnostics and tests.
    public var nodeCount: Int { trie.nodeCount }

    // MARK: - Subscribing

    /// Adds the subscription, or replaces the options of the identical one (same subscriber, same
    /// filter string). Returns `true` when the subscription is new, which is what MQTT 5 Retain
    /// Handling 1 ("send retained messages only for a new subscription") needs.
    @discardableResult
    public mutating func subscribe(_ filter: TopicFilter, subscriber: Subscriber, options: Options) -> Bool {
        if let node = nodesBySubscriber[subscriber]?[filter] {
            replaceOptions(at: node, filter: filter, subscriber: subscriber, options: options)
            return false
        }
        let node = filter.withMatchFilterBytes { trie.insertPath($0, wildcards: true) }
        var slot = trie.nodes[Int(node)].value
        if slot == LevelTrie.noValue {
            slot = allocateFilterSubscriptions(filter: TopicFilter(uncheckedMatchFilter: String(filter.matchFilter)))
            trie.setValue(slot, of: node)
        }
        let member = Member(subscriber: subscriber, options: options)
        if let shareName = filter.shareName {
            addShared(member, shareName: shareName, filter: filter, slot: Int(slot))
        } else {
            addDirect(member, slot: Int(slot))
        }
        nodesBySubscriber[subscriber, default: [:]][filter] = node
        count += 1
        return true
    }

    /// Removes the subscription; `false` when it did not exist.
    @discardableResult
    public mutating func unsubscribe(_ filter: TopicFilter, subscriber: Subscriber) -> Bool {
        guard let node = nodesBySubscriber[subscriber]?.removeValue(forKey: filter) else { return false }
        if nodesBySubscriber[subscriber]?.isEmpty == true {
            nodesBySubscriber[subscriber] = nil
        }
        remove(subscriber: subscriber, filter: filter, node: node)
        return true
    }

    /// Removes every subscription of `subscriber` (session ended) and returns how many there were.
    @discardableResult
    public mutating func removeAll(subscriber: Subscriber) -> Int {
        guard let nodes = nodesBySubscriber.removeValue(forKey: subscriber) else { return 0 }
        for (filter, node) in nodes {
            remove(subscriber: subscriber, filter: filter, node: node)
        }
        return nodes.count
    }

    /// The filters `subscriber` is subscribed to, in no particular order.
    public func filters(of subscriber: Subscriber) -> [TopicFilter] {
        guard let nodes = nodesBySubscriber[subscriber] else { return [] }
        return Array(nodes.keys)
    }

    /// The subscriptions of `subscriber` with their options, in no particular order.
    public func subscriptions(of subscriber: Subscriber) -> [(filter: TopicFilter, options: Options)] {
        guard let nodes = nodesBySubscriber[subscriber] else { return [] }
        return nodes.compactMap { filter, node in
            options(at: node, filter: filter, subscriber: subscriber).map { (filter, $0) }
        }
    }

    /// The options of one subscription, `nil` when it does not exist.
    public func options(for filter: TopicFilter, subscriber: Subscriber) -> Options? {
        guard let node = nodesBySubscriber[subscriber]?[filter] else { return nil }
        return options(at: node, filter: filter, subscriber: subscriber)
    }

    // MARK: - Storage

    private mutating func allocateFilterSubscriptions(filter: TopicFilter) -> Int32 {
        let entry = FilterSubscriptions(filter: filter)
        if let slot = freeFilterSubscriptions.popLast() {
            filterSubscriptions[Int(slot)] = entry
            return slot
        }
        filterSubscriptions.append(entry)
        return Int32(filterSubscriptions.count - 1)
    }

    private mutating func addDirect(_ member: Member, slot: Int) {
        filterSubscriptions[slot].direct.append(member)
        let count = filterSubscriptions[slot].direct.count
        if !filterSubscriptions[slot].directPositions.isEmpty {
            filterSubscriptions[slot].directPositions[member.subscriber] = count - 1
        } else if count > Self.directIndexThreshold {
            var positions: [Subscriber: Int] = [:]
            positions.reserveCapacity(count)
            for (position, existing) in filterSubscriptions[slot].direct.enumerated() {
                positions[existing.subscriber] = position
            }
            filterSubscriptions[slot].directPositions = positions
        }
    }

    private mutating func addShared(_ member: Member, shareName: String, filter: TopicFilter, slot: Int) {
        if let group = sharedGroupIndex(shareName: shareName, slot: slot) {
            filterSubscriptions[slot].sharedGroups[group].members.append(member)
        } else {
            filterSubscriptions[slot].sharedGroups.append(
                SharedGroup(shareName: shareName, filter: filter, members: [member], cursor: 0)
            )
        }
    }

    @inlinable
    func sharedGroupIndex(shareName: String, slot: Int) -> Int? {
        filterSubscriptions[slot].sharedGroups.firstIndex { $0.shareName.utf8Equals(shareName) }
    }

    private func directPosition(of subscriber: Subscriber, slot: Int) -> Int? {
        let entry = filterSubscriptions[slot]
        if !entry.directPositions.isEmpty {
            return entry.directPositions[subscriber]
        }
        return entry.direct.firstIndex { $0.subscriber == subscriber }
    }

    private func options(at node: Int32, filter: TopicFilter, subscriber: Subscriber) -> Options? {
        let slot = Int(trie.nodes[Int(node)].value)
        guard slot >= 0 else { return nil }
        if let shareName = filter.shareName {
            guard let group = sharedGroupIndex(shareName: shareName, slot: slot) else { return nil }
            return filterSubscriptions[slot].sharedGroups[group].members.first { $0.subscriber == subscriber }?.options
        }
        guard let position = directPosition(of: subscriber, slot: slot) else { return nil }
        return filterSubscriptions[slot].direct[position].options
    }

    private mutating func replaceOptions(at node: Int32, filter: TopicFilter, subscriber: Subscriber, options: Options)
    {
        let slot = Int(trie.nodes[Int(node)].value)
        guard slot >= 0 else { return }
        if let shareName = filter.shareName {
            guard let group = sharedGroupIndex(shareName: shareName, slot: slot),
                let position = filterSubscriptions[slot].sharedGroups[group].members.firstIndex(where: {
                    $0.subscriber == subscriber
                })
            else { return }
            filterSubscriptions[slot].sharedGroups[group].members[position].options = options
        } else if let position = directPosition(of: subscriber, slot: slot) {
            filterSubscriptions[slot].direct[position].options = options
        }
    }

    /// Removes the subscription from its node; the reverse index is already updated by the caller.
    private mutating func remove(subscriber: Subscriber, filter: TopicFilter, node: Int32) {
        let slot = Int(trie.nodes[Int(node)].value)
        guard slot >= 0 else { return }
        if let shareName = filter.shareName {
            removeShared(subscriber, shareName: shareName, slot: slot)
        } else {
            removeDirect(subscriber, slot: slot)
        }
        count -= 1
        if filterSubscriptions[slot].isEmpty {
            filterSubscriptions[slot] = FilterSubscriptions(filter: filterSubscriptions[slot].filter)
            freeFilterSubscriptions.append(Int32(slot))
            trie.setValue(LevelTrie.noValue, of: node)
            trie.removeIfUnused(node)
            if trie.nodeCount == 1 {
                filterSubscriptions = []
                freeFilterSubscriptions = []
            }
        }
    }

    private mutating func removeDirect(_ subscriber: Subscriber, slot: Int) {
        guard let position = directPosition(of: subscriber, slot: slot) else { return }
        let last = filterSubscriptions[slot].direct.removeLast()
        if position < filterSubscriptions[slot].direct.count {
            filterSubscriptions[slot].direct[position] = last
        }
        if !filterSubscriptions[slot].directPositions.isEmpty {
            if filterSubscriptions[slot].direct.count <= Self.directIndexThreshold / 2 {
                filterSubscriptions[slot].directPositions = [:]
            } else {
                filterSubscriptions[slot].directPositions[subscriber] = nil
                if position < filterSubscriptions[slot].direct.count {
                    filterSubscriptions[slot].directPositions[last.subscriber] = position
                }
            }
        }
    }

    private mutating func removeShared(_ subscriber: Subscriber, shareName: String, slot: Int) {
        guard let group = sharedGroupIndex(shareName: shareName, slot: slot),
            let position = filterSubscriptions[slot].sharedGroups[group].members.firstIndex(where: {
                $0.subscriber == subscriber
            })
        else { return }
        // Order-preserving removal keeps the round robin fair for the remaining members.
        filterSubscriptions[slot].sharedGroups[group].members.remove(at: position)
        if filterSubscriptions[slot].sharedGroups[group].members.isEmpty {
            filterSubscriptions[slot].sharedGroups.remove(at: group)
        } else if position < filterSubscriptions[slot].sharedGroups[group].cursor {
            filterSubscriptions[slot].sharedGroups[group].cursor -= 1
        }
    }
}

extension SubscriptionTree: Sendable where Subscriber: Sendable, Options: Sendable {}
extension SubscriptionTree.Member: Sendable where Subscriber: Sendable, Options: Sendable {}
extension SubscriptionTree.Match: Sendable where Subscriber: Sendable, Options: Sendable {}
extension SubscriptionTree.SharedGroupMatch: Sendable where Subscriber: Sendable, Options: Sendable {}
extension SubscriptionTree.Matches: Sendable where Subscriber: Sendable, Options: Sendable {}
extension SubscriptionTree.SharedGroup: Sendable where Subscriber: Sendable, Options: Sendable {}
extension SubscriptionTree.FilterSubscriptions: Sendable where Subscriber: Sendable, Options: Sendable {}

extension SubscriptionTree.Member: Equatable where Options: Equatable {}
extension SubscriptionTree.Match: Equatable where Options: Equatable {}
extension SubscriptionTree.MemberList: Sendable where Subscriber: Sendable, Options: Sendable {}
