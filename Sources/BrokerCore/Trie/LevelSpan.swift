/// One topic level's position in the topic's bytes and its hash, computed at most once per match
/// and only when a literal lookup needs it.
@usableFromInline
struct LevelSpan {
    @usableFromInline var start: Int
    @usableFromInline var count: Int
    @usableFromInline var hash: UInt64
    @usableFromInline var isHashed: Bool

    @inlinable
    init(start: Int, count: Int) {
        self.start = start
        self.count = count
        self.hash = 0
        self.isHashed = false
    }

    @inlinable
    init(start: Int, count: Int, hash: UInt64) {
        self.start = start
        self.count = count
        self.hash = hash
        self.isHashed = true
    }
}
