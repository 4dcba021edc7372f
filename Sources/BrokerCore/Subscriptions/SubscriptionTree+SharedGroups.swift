extension SubscriptionTree {
    /// Picks the member of a matched shared group that receives the message, round robin over the
    /// group's current members, skipping those `isEligible` rejects (e.g. offline sessions).
    /// Returns `nil` when the group is gone or no member is eligible.
    ///
    /// Uses the group as it is in the tree now, not the snapshot in `group.members`, so it stays
    /// correct if the tree changed since `match(topic:)`.
    @inlinable
    public mutating func nextSharedMember(
        of group: SharedGroupMatch,
        where isEligible: (Member) throws -> Bool
    ) rethrows -> Member? {
        guard trie.isLive(group.node) else { return nil }
        let slot = Int(trie.nodes[Int(group.node)].value)
        guard slot >= 0,
            let groupIndex = sharedGroupIndex(shareName: group.shareName, slot: slot),
            filterSubscriptions[slot].sharedGroups[groupIndex].filter == group.filter
        else { return nil }
        let members = filterSubscriptions[slot].sharedGroups[groupIndex].members
        guard !members.isEmpty else { return nil }
        var position = filterSubscriptions[slot].sharedGroups[groupIndex].cursor % members.count
        for _ in 0..<members.count {
            if try isEligible(members[position]) {
                filterSubscriptions[slot].sharedGroups[groupIndex].cursor = (position + 1) % members.count
                return members[position]
            }
            position = (position + 1) % members.count
        }
        return nil
    }

    /// Picks the next member of a matched shared group, round robin; see `nextSharedMember(of:where:)`.
    @inlinable
    public mutating func nextSharedMember(of group: SharedGroupMatch) -> Member? {
        nextSharedMember(of: group, where: { _ in true })
    }

    /// The members of the shared group `filter` (`$share/{ShareName}/…`) names, in subscription
    /// order; `nil` when no such group exists or the filter is not shared.
    public func sharedGroupMembers(of filter: TopicFilter) -> [Member]? {
        guard let shareName = filter.shareName else { return nil }
        let node = filter.withMatchFilterBytes { bytes in trie.path(bytes, wildcards: true) }
        guard node != LevelTrie.noNode else { return nil }
        let slot = Int(trie.nodes[Int(node)].value)
        guard slot >= 0, let group = sharedGroupIndex(shareName: shareName, slot: slot) else { return nil }
        return filterSubscriptions[slot].sharedGroups[group].members
    }
}
