#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One `listener.<kind>.<name>.access.<N> = allow|deny all|CIDR` rule (EMQX 4.x, esockd's access rules).
///
/// A plain value; `AccessRules` evaluates a listener's rules in `N` order.
public struct AccessRule: Sendable, Equatable, CustomStringConvertible {
    public enum Action: String, Sendable, Equatable {
        case allow, deny
    }

    /// `N` of `access.<N>`: rules are evaluated in ascending `N`.
    public var number: Int
    public var action: Action
    /// `nil` for `all`.
    public var network: IPNetwork?

    public init(number: Int, action: Action, network: IPNetwork?) {
        self.number = number
        self.action = action
        self.network = network
    }

    /// `deny 10.0.0.0/8`, `allow all`.
    public var description: String {
        "\(action.rawValue) \(network?.description ?? "all")"
    }

    /// `allow all`, `deny 192.168.0.0/16`, `allow 2001:db8::/32`, `deny 10.1.2.3` (one address).
    static func parse(_ text: String, number: Int) throws(ValueError) -> AccessRule {
        let invalid = ValueError(
            message: "invalid access rule '\(text)' (use allow or deny, then all or an IPv4/IPv6 CIDR; "
                + "e.g. deny 10.0.0.0/8)")
        let words = text.split(whereSeparator: \.isWhitespace)
        guard words.count == 2, let action = Action(rawValue: String(words[0])) else { throw invalid }
        if words[1] == "all" {
            return AccessRule(number: number, action: action, network: nil)
        }
        guard let network = IPNetwork(parsing: String(words[1])) else {
            throw ValueError(
                message: "invalid network '\(words[1])' in access rule (use all, an IP address or a CIDR such as "
                    + "10.0.0.0/8 or 2001:db8::/32)")
        }
        return AccessRule(number: number, action: action, network: network)
    }
}

/// A listener's access rules in evaluation order: the first rule that matches an address decides; an address
/// that no rule matches is allowed, as in EMQX (esockd: `nomatch` → allowed), so a list meant to admit only
/// some networks ends with `deny all`.
public struct AccessRules: Sendable, Equatable {
    public var rules: [AccessRule]

    public init(_ rules: [AccessRule]) {
        self.rules = rules.sorted { $0.number < $1.number }
    }

    public var isEmpty: Bool { rules.isEmpty }

    /// The rule that decides for `address` (4 or 16 bytes), or `nil` when none matches (allowed).
    public func decidingRule(for address: [UInt8]) -> AccessRule? {
        let normalized = IPNetwork.unmapped(address)
        return rules.first { $0.network?.contains(normalized) ?? true }
    }

    /// Whether a client from `address` (4 or 16 bytes) may connect. An unknown address (no IP peer) matches
    /// only `all` rules.
    public func allows(_ address: [UInt8]?) -> Bool {
        guard let address else { return rules.first { $0.network == nil }?.action != .deny }
        return decidingRule(for: address)?.action != .deny
    }
}

/// An IPv4 or IPv6 network: address bytes with the bits past `prefixLength` cleared.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 bytes (IPv6).
    public private(set) var address: [UInt8]
    public private(set) var prefixLength: Int

    /// `10.0.0.0/8`, `2001:db8::/32`, or a single address (`/32`, `/128`). Host bits set below the prefix are
    /// cleared (`10.1.2.3/8` is `10.0.0.0/8`), as esockd does.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let bytes = IPNetwork.addressBytes(String(parts[0])) else {
            return nil
        }
        let maximum = bytes.count * 8
        var length = maximum
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy(\.isASCIIDigit), let parsed = Int(parts[1]),
                (0...maximum).contains(parsed)
            else { return nil }
            length = parsed
        }
        self.init(address: bytes, prefixLength: length)
    }

    /// `address` must have 4 or 16 bytes and `prefixLength` fit it.
    public init(address: [UInt8], prefixLength: Int) {
        precondition(address.count == 4 || address.count == 16, "an IP address has 4 or 16 bytes")
        precondition((0...address.count * 8).contains(prefixLength), "prefix length out of range")
        self.prefixLength = prefixLength
        self.address = address.enumerated().map { index, byte in
            let bitsInByte = min(max(prefixLength - index * 8, 0), 8)
            return byte & UInt8(truncatingIfNeeded: 0xFF << (8 - bitsInByte))
        }
    }

    /// Whether `candidate` (4 or 16 bytes, of the same family) lies in this network.
    public func contains(_ candidate: [UInt8]) -> Bool {
        guard candidate.count == address.count else { return false }
        var remaining = prefixLength
        for index in address.indices where remaining > 0 {
            let bits = min(remaining, 8)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if candidate[index] & mask != address[index] { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String {
        let family = address.count == 4 ? AF_INET : AF_INET6
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        let host = String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(host)/\(prefixLength)"
    }

    /// The bytes of a literal IPv4 (4) or IPv6 (16) address, or `nil` when `inet_pton` rejects it.
    public static func addressBytes(_ text: String) -> [UInt8]? {
        let family = text.contains(":") ? AF_INET6 : AF_INET
        var bytes = [UInt8](repeating: 0, count: family == AF_INET ? 4 : 16)
        let converted = bytes.withUnsafeMutableBytes { inet_pton(family, text, $0.baseAddress) == 1 }
        return converted ? bytes : nil
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 client) as
    /// its 4 IPv4 bytes, so that IPv4 rules apply to it; any other address unchanged.
    public static func unmapped(_ address: [UInt8]) -> [UInt8] {
        guard address.count == 16, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF
        else { return address }
        return Array(address[12..<16])
    }
}
