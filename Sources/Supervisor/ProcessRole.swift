/// What a Gatehouse process does. The supervisor spawns the other two by re-executing its own binary.
public enum ProcessRole: String, Sendable, Hashable, CaseIterable {
    case supervisor
    case fetcher
    case worker
}

/// A place in the process table: the fetcher is slot 0 of its role, workers are slots 0..<N.
public struct ChildSlot: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var role: ProcessRole
    public var index: Int

    public init(_ role: ProcessRole, _ index: Int) {
        self.role = role
        self.index = index
    }

    public static func < (lhs: ChildSlot, rhs: ChildSlot) -> Bool {
        if lhs.role != rhs.role { return lhs.role == .fetcher }
        return lhs.index < rhs.index
    }

    public var description: String { "\(role.rawValue)/\(index)" }
}
