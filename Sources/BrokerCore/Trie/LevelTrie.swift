/// The trie engine under `SubscriptionTree` and `RetainedStore`: one node per topic level, nodes in a
/// flat array addressed by `Int32` index, and one open-addressing hash table for all literal edges,
/// keyed by (parent node, level bytes). `+` and `#` children hang off direct pointers, so matching
/// costs one hash probe per literal step and never allocates.
///
/// Memory-latency matters more than instructions here (a 100k-subscription trie does not fit in
/// cache), so a table slot packs 32 bits of the edge hash with the node index: probes that miss never
/// touch a node. Labels of up to 8 bytes are stored inside the node; longer ones in one byte arena.
/// Labels are compared byte-wise.
///
/// Nodes that lose their value and children are freed at once (`removeIfUnused`), so the trie never
/// keeps garbage paths; emptied storage is released. Each node's `value` is an index the owner uses
/// for its own payload storage (`noValue` when none).
///
/// A plain value owned by one `SubscriptionTree` or `RetainedStore`; `Sendable`.
@usableFromInline
struct LevelTrie: Sendable {
    /// One topic level: its label, links to parent, siblings and wildcard children, and the owner's value.
    @usableFromInline
    struct Node: Sendable {
        /// The edge key (`edgeKey(parent:levelHash:)`) of a literal node, 0 for wildcard nodes.
        @usableFromInline var key: UInt64 = 0
        /// The label's bytes when `labelLength <= 8` (little-endian, zero-padded), else its arena offset.
        @usableFromInline var label: UInt64 = 0
        @usableFromInline var labelLength: UInt32 = 0
        @usableFromInline var parent: Int32 = LevelTrie.noNode
        @usableFromInline var firstChild: Int32 = LevelTrie.noNode
        @usableFromInline var nextSibling: Int32 = LevelTrie.noNode
        @usableFromInline var previousSibling: Int32 = LevelTrie.noNode
        @usableFromInline var singleLevelWildcardChild: Int32 = LevelTrie.noNode
        @usableFromInline var multiLevelWildcardChild: Int32 = LevelTrie.noNode
        @usableFromInline var childCount: Int32 = 0
        @usableFromInline var value: Int32 = LevelTrie.noValue
    }

    /// How a filter level is stored: as a literal edge in the table, or as a wildcard pointer.
    @usableFromInline
    enum LevelKind {
        case literal
        case singleLevelWildcard
        case multiLevelWildcard
    }

    @inlinable static var root: Int32 { 0 }
    @inlinable static var noNode: Int32 { -1 }
    @inlinable static var noValue: Int32 { -1 }
    /// `parent` of a node on the free list.
    @inlinable static var freeMarker: Int32 { -2 }
    @inlinable static var emptySlot: UInt64 { .max }
    @inlinable static var inlineLabelCapacity: Int { 8 }
    private static let minimumTableCapacity = 16

    @usableFromInline private(set) var nodes: ContiguousArray<Node>
    /// Open addressing, linear probing; each slot is `tag << 32 | node` or `emptySlot`.
    @usableFromInline private(set) var slots: ContiguousArray<UInt64>
    @usableFromInline private(set) var edgeCount = 0
    @usableFromInline private(set) var labels: ContiguousArray<UInt8>
    private var unusedLabelBytes = 0
    private var firstFreeNode: Int32 = noNode
    /// Live nodes, the root included.
    private(set) var nodeCount = 1

    init() {
        nodes = [Node()]
        slots = []
        labels = []
    }

    // MARK: Hashing

    /// Keyed (per process) hash of one level's bytes, so clients cannot aim topics at one bucket.
    @inlinable
    static func levelHash(_ level: UnsafeRawBufferPointer) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(bytes: level)
        return UInt64(UInt(bitPattern: hasher.finalize()))
    }

    @inlinable
    static func edgeKey(parent: Int32, levelHash: UInt64) -> UInt64 {
        var x = levelHash ^ (UInt64(UInt32(bitPattern: parent)) &* 0x9E37_79B9_7F4A_7C15)
        x ^= x >> 33
        x &*= 0xFF51_AFD7_ED55_8CCD
        x ^= x >> 33
        x &*= 0xC4CE_B9FE_1A85_EC53
        x ^= x >> 33
        return x
    }

    @inlinable
    static func tag(of key: UInt64) -> UInt64 {
        key >> 32
    }

    /// The level's bytes zero-padded into a word; only for levels of at most 8 bytes.
    @inlinable
    static func inlineLabel(_ level: UnsafeRawBufferPointer) -> UInt64 {
        var word: UInt64 = 0
        withUnsafeMutableBytes(of: &word) { $0.copyMemory(from: level) }
        return UInt64(littleEndian: word)
    }

    // MARK: Reading

    /// Read-only access through raw buffers: no reference counting or copies while matching.
    @usableFromInline
    struct Reader {
        @usableFromInline let nodes: UnsafeBufferPointer<Node>
        @usableFromInline let slots: UnsafeBufferPointer<UInt64>
        @usableFromInline let labels: UnsafeRawBufferPointer

        @inlinable
        init(nodes: UnsafeBufferPointer<Node>, slots: UnsafeBufferPointer<UInt64>, labels: UnsafeRawBufferPointer) {
            self.nodes = nodes
            self.slots = slots
            self.labels = labels
        }

        /// The literal child of `parent` labelled `level`, or `noNode`. `levelHash` is `levelHash(level)`.
        @inlinable
        func literalChild(of parent: Int32, level: UnsafeRawBufferPointer, levelHash: UInt64) -> Int32 {
            if slots.isEmpty { return LevelTrie.noNode }
            let key = LevelTrie.edgeKey(parent: parent, levelHash: levelHash)
            let tag = LevelTrie.tag(of: key)
            let mask = slots.count &- 1
            var slot = Int(truncatingIfNeeded: key) & mask
            while true {
                let entry = slots[slot]
                if entry == LevelTrie.emptySlot { return LevelTrie.noNode }
                if entry >> 32 == tag {
                    let candidate = Int32(truncatingIfNeeded: entry)
                    let node = nodes[Int(candidate)]
                    if node.key == key, node.parent == parent, labelEquals(node, level) {
                        return candidate
                    }
                }
                slot = (slot &+ 1) & mask
            }
        }

        @inlinable
        func labelEquals(_ node: Node, _ level: UnsafeRawBufferPointer) -> Bool {
            guard Int(node.labelLength) == level.count else { return false }
            if level.count <= LevelTrie.inlineLabelCapacity {
                return node.label == LevelTrie.inlineLabel(level)
            }
            guard let labelBase = labels.baseAddress, let levelBase = level.baseAddress else { return false }
            return TopicBytes.equal(labelBase + Int(node.label), levelBase, count: level.count)
        }

        /// Whether the node's label starts with `$`.
        @inlinable
        func labelStartsWithDollar(_ node: Node) -> Bool {
            guard node.labelLength > 0 else { return false }
            if node.labelLength <= UInt32(LevelTrie.inlineLabelCapacity) {
                return UInt8(truncatingIfNeeded: node.label) == TopicBytes.dollar
            }
            return labels[Int(node.label)] == TopicBytes.dollar
        }
    }

    @inlinable
    func withReader<Result>(_ body: (Reader) throws -> Result) rethrows -> Result {
        try nodes.withUnsafeBufferPointer { nodes in
            try slots.withUnsafeBufferPointer { slots in
                try labels.withUnsafeBytes { labels in
                    try body(Reader(nodes: nodes, slots: slots, labels: labels))
                }
            }
        }
    }

    /// The literal child of `parent` labelled `level`, or `noNode`.
    func literalChild(of parent: Int32, level: UnsafeRawBufferPointer) -> Int32 {
        withReader { $0.literalChild(of: parent, level: level, levelHash: Self.levelHash(level)) }
    }

    /// The existing node for `bytes` split on `/`, or `noNode`; with `wildcards`, `+` and `#` levels
    /// follow the wildcard children.
    func path(_ bytes: UnsafeRawBufferPointer, wildcards: Bool) -> Int32 {
        withReader { reader in
            var node = Self.root
            TopicBytes.forEachLevel(bytes) { level, _ in
                if wildcards, TopicBytes.isSingleByte(level, TopicBytes.plus) {
                    node = reader.nodes[Int(node)].singleLevelWildcardChild
                } else if wildcards, TopicBytes.isSingleByte(level, TopicBytes.hash) {
                    node = reader.nodes[Int(node)].multiLevelWildcardChild
                } else {
                    node = reader.literalChild(of: node, level: level, levelHash: Self.levelHash(level))
                }
                return node != Self.noNode
            }
            return node
        }
    }

    /// Whether `node` is a live node (not freed, in range).
    @inlinable
    func isLive(_ node: Int32) -> Bool {
        node >= 0 && Int(node) < nodes.count && nodes[Int(node)].parent != Self.freeMarker
    }

    // MARK: Writing

    mutating func setValue(_ value: Int32, of node: Int32) {
        nodes[Int(node)].value = value
    }

    /// The node for `bytes` split on `/`, creating missing nodes; with `wildcards`, `+` and `#` levels
    /// become wildcard children.
    mutating func insertPath(_ bytes: UnsafeRawBufferPointer, wildcards: Bool) -> Int32 {
        var node = Self.root
        TopicBytes.forEachLevel(bytes) { level, _ in
            var kind = LevelKind.literal
            if wildcards {
                if TopicBytes.isSingleByte(level, TopicBytes.plus) {
                    kind = .singleLevelWildcard
                } else if TopicBytes.isSingleByte(level, TopicBytes.hash) {
                    kind = .multiLevelWildcard
                }
            }
            node = childInserting(of: node, level: level, kind: kind)
            return true
        }
        return node
    }

    mutating func childInserting(of parent: Int32, level: UnsafeRawBufferPointer, kind: LevelKind) -> Int32 {
        switch kind {
        case .singleLevelWildcard:
            let existing = nodes[Int(parent)].singleLevelWildcardChild
            if existing != Self.noNode { return existing }
            let child = allocateNode(parent: parent, label: level, key: 0)
            nodes[Int(parent)].singleLevelWildcardChild = child
            return child
        case .multiLevelWildcard:
            let existing = nodes[Int(parent)].multiLevelWildcardChild
            if existing != Self.noNode { return existing }
            let child = allocateNode(parent: parent, label: level, key: 0)
            nodes[Int(parent)].multiLevelWildcardChild = child
            return child
        case .literal:
            let hash = Self.levelHash(level)
            let existing = withReader { $0.literalChild(of: parent, level: level, levelHash: hash) }
            if existing != Self.noNode { return existing }
            let child = allocateNode(parent: parent, label: level, key: Self.edgeKey(parent: parent, levelHash: hash))
            tableInsert(child)
            return child
        }
    }

    /// Frees `node` and then its ancestors for as long as they hold no value and no children.
    mutating func removeIfUnused(_ node: Int32) {
        var index = node
        while index != Self.root {
            let entry = nodes[Int(index)]
            guard entry.value == Self.noValue, entry.childCount == 0 else { break }
            let parent = entry.parent
            if nodes[Int(parent)].singleLevelWildcardChild == index {
                nodes[Int(parent)].singleLevelWildcardChild = Self.noNode
            } else if nodes[Int(parent)].multiLevelWildcardChild == index {
                nodes[Int(parent)].multiLevelWildcardChild = Self.noNode
            } else {
                tableRemove(index)
            }
            if entry.previousSibling != Self.noNode {
                nodes[Int(entry.previousSibling)].nextSibling = entry.nextSibling
            } else {
                nodes[Int(parent)].firstChild = entry.nextSibling
            }
            if entry.nextSibling != Self.noNode {
                nodes[Int(entry.nextSibling)].previousSibling = entry.previousSibling
            }
            nodes[Int(parent)].childCount -= 1
            if entry.labelLength > UInt32(Self.inlineLabelCapacity) {
                unusedLabelBytes += Int(entry.labelLength)
            }
            nodes[Int(index)] = Node(parent: Self.freeMarker, nextSibling: firstFreeNode)
            firstFreeNode = index
            nodeCount -= 1
            index = parent
        }
        if nodeCount == 1 {
            self = LevelTrie()
        } else if unusedLabelBytes > 4096, unusedLabelBytes * 2 > labels.count {
            compactLabels()
        }
    }

    // MARK: Internals

    private mutating func allocateNode(parent: Int32, label: UnsafeRawBufferPointer, key: UInt64) -> Int32 {
        let storedLabel: UInt64
        if label.count <= Self.inlineLabelCapacity {
            storedLabel = Self.inlineLabel(label)
        } else {
            storedLabel = UInt64(labels.count)
            labels.append(contentsOf: label)
        }
        let oldFirst = nodes[Int(parent)].firstChild
        let node = Node(
            key: key,
            label: storedLabel,
            labelLength: UInt32(label.count),
            parent: parent,
            nextSibling: oldFirst
        )
        let index: Int32
        if firstFreeNode != Self.noNode {
            index = firstFreeNode
            firstFreeNode = nodes[Int(index)].nextSibling
            nodes[Int(index)] = node
        } else {
            index = Int32(nodes.count)
            nodes.append(node)
        }
        if oldFirst != Self.noNode {
            nodes[Int(oldFirst)].previousSibling = index
        }
        nodes[Int(parent)].firstChild = index
        nodes[Int(parent)].childCount += 1
        nodeCount += 1
        return index
    }

    private func slotEntry(for node: Int32) -> UInt64 {
        Self.tag(of: nodes[Int(node)].key) << 32 | UInt64(UInt32(bitPattern: node))
    }

    private func homeSlot(of entry: UInt64, mask: Int) -> Int {
        Int(truncatingIfNeeded: nodes[Int(Int32(truncatingIfNeeded: entry))].key) & mask
    }

    private mutating func tableInsert(_ node: Int32) {
        if (edgeCount + 1) * 2 > slots.count {
            resizeTable(to: Swift.max(Self.minimumTableCapacity, slots.count * 2))
        }
        place(slotEntry(for: node))
        edgeCount += 1
    }

    private mutating func place(_ entry: UInt64) {
        let mask = slots.count - 1
        var slot = homeSlot(of: entry, mask: mask)
        while slots[slot] != Self.emptySlot {
            slot = (slot + 1) & mask
        }
        slots[slot] = entry
    }

    /// Linear-probing deletion with backward shift, so lookups never meet tombstones.
    private mutating func tableRemove(_ node: Int32) {
        let mask = slots.count - 1
        let entry = slotEntry(for: node)
        var hole = homeSlot(of: entry, mask: mask)
        while slots[hole] != entry {
            hole = (hole + 1) & mask
        }
        var probe = hole
        while true {
            probe = (probe + 1) & mask
            let moving = slots[probe]
            if moving == Self.emptySlot { break }
            let home = homeSlot(of: moving, mask: mask)
            // `moving` may fill the hole unless its home lies cyclically in (hole, probe].
            let staysPut = hole <= probe ? (hole < home && home <= probe) : (hole < home || home <= probe)
            if !staysPut {
                slots[hole] = moving
                hole = probe
            }
        }
        slots[hole] = Self.emptySlot
        edgeCount -= 1
        if slots.count > Self.minimumTableCapacity, edgeCount * 8 < slots.count {
            resizeTable(to: slots.count / 2)
        }
    }

    private mutating func resizeTable(to capacity: Int) {
        let old = slots
        slots = ContiguousArray(repeating: Self.emptySlot, count: capacity)
        for entry in old where entry != Self.emptySlot {
            place(entry)
        }
    }

    private mutating func compactLabels() {
        var compacted = ContiguousArray<UInt8>()
        compacted.reserveCapacity(labels.count - unusedLabelBytes)
        for index in nodes.indices
        where nodes[index].parent != Self.freeMarker && nodes[index].labelLength > UInt32(Self.inlineLabelCapacity) {
            let start = Int(nodes[index].label)
            let length = Int(nodes[index].labelLength)
            nodes[index].label = UInt64(compacted.count)
            compacted.append(contentsOf: labels[start..<(start + length)])
        }
        labels = compacted
        unusedLabelBytes = 0
    }
}
