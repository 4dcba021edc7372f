/// A Mosquitto-format ACL file (`acl_file`):
/// ```
/// # rules before any `user` line apply to anonymous clients
/// topic read public/#
/// user alice
/// topic readwrite alice/#
/// topic deny alice/secret
/// # patterns apply to every client; %c = client id, %u = username
/// pattern write devices/%c/telemetry
/// ```
/// With an ACL file every access is denied unless a rule grants it; a matching `deny` rule always wins.
/// An immutable value: `reload` builds a new one.
public struct ACLFile: Sendable, Equatable {
    public enum Access: String, Sendable, Equatable {
        case read, write, readwrite, deny
    }

    public struct Rule: Sendable, Equatable {
        public var access: Access
        /// Topic filter levels; for patterns they may hold `%c` / `%u`.
        public var levels: [Substring]
        public var isPattern: Bool
        public var line: Int
    }

    /// Rules for clients without a username.
    public private(set) var anonymousRules: [Rule] = []
    public private(set) var userRules: [String: [Rule]] = [:]
    public private(set) var patterns: [Rule] = []

    public init() {}

    public init(parsing text: String, path: String) throws(AccessControlError) {
        var currentUser: String?
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.trimmingCharacters(in: " \t\r")
            if line.isEmpty || line.hasPrefix("#") { continue }
            let words = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard words.count == 2 else {
                throw AccessControlError(path: path, line: lineNumber, message: "expected 'user NAME', 'topic …' or 'pattern …'")
            }
            let keyword = words[0]
            let rest = words[1].trimmingCharacters(in: " \t")
            switch keyword {
            case "user":
                currentUser = String(rest)
            case "topic", "pattern":
                let (access, topic) = try Self.parseRule(rest, path: path, line: lineNumber)
                let rule = Rule(
                    access: access, levels: topic.split(separator: "/", omittingEmptySubsequences: false),
                    isPattern: keyword == "pattern", line: lineNumber)
                if keyword == "pattern" {
                    patterns.append(rule)
                } else if let user = currentUser {
                    userRules[user, default: []].append(rule)
                } else {
                    anonymousRules.append(rule)
                }
            default:
                throw AccessControlError(
                    path: path, line: lineNumber, message: "unknown keyword '\(keyword)' (expected user, topic or pattern)")
            }
        }
    }

    private static func parseRule(
        _ text: Substring, path: String, line: Int
    ) throws(AccessControlError) -> (Access, Substring) {
        let words = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        if words.count == 2, let access = Access(rawValue: String(words[0])) {
            let topic = words[1].trimmingCharacters(in: " \t")
            guard !topic.isEmpty else { throw AccessControlError(path: path, line: line, message: "missing topic") }
            return (access, topic)
        }
        // No access word: Mosquitto's default is readwrite, and the whole rest is the topic.
        guard !text.isEmpty else { throw AccessControlError(path: path, line: line, message: "missing topic") }
        if words.count == 1, Access(rawValue: String(words[0])) != nil {
            throw AccessControlError(path: path, line: line, message: "missing topic")
        }
        return (.readwrite, text)
    }

    // MARK: Checks

    /// May this client publish to `topic`?
    public func canPublish(topic: String, clientID: String, username: String?) -> Bool {
        decide(clientID: clientID, username: username) { rule, levels in
            Self.filter(levels, matchesTopic: topic) ? rule.access : nil
        } wants: { $0 == .write || $0 == .readwrite }
    }

    /// May this client receive a message published on `topic`?
    public func canReceive(topic: String, clientID: String, username: String?) -> Bool {
        decide(clientID: clientID, username: username) { rule, levels in
            Self.filter(levels, matchesTopic: topic) ? rule.access : nil
        } wants: { $0 == .read || $0 == .readwrite }
    }

    /// May this client subscribe to `filter`? Granted when a read rule covers every topic the filter can match,
    /// and no deny rule covers it.
    public func canSubscribe(filter: String, clientID: String, username: String?) -> Bool {
        let filterLevels = filter.split(separator: "/", omittingEmptySubsequences: false)
        return decide(clientID: clientID, username: username) { rule, levels in
            if rule.access == .deny {
                return Self.filter(filterLevels, overlaps: levels) ? .deny : nil
            }
            return Self.filter(levels, covers: filterLevels) ? rule.access : nil
        } wants: { $0 == .read || $0 == .readwrite }
    }

    private func decide(
        clientID: String, username: String?,
        _ evaluate: (Rule, [Substring]) -> Access?, wants: (Access) -> Bool
    ) -> Bool {
        var granted = false
        let direct = username.map { userRules[$0] ?? [] } ?? anonymousRules
        for rule in direct {
            guard let access = evaluate(rule, rule.levels) else { continue }
            if access == .deny { return false }
            if wants(access) { granted = true }
        }
        for rule in patterns {
            guard let levels = Self.substitute(rule.levels, clientID: clientID, username: username) else { continue }
            guard let access = evaluate(rule, levels) else { continue }
            if access == .deny { return false }
            if wants(access) { granted = true }
        }
        return granted
    }

    /// `%c` and `%u` replaced; nil when the pattern needs a username the client lacks, or a substituted value
    /// contains wildcards or separators (a client id of `#` must not widen its own rule).
    static func substitute(_ levels: [Substring], clientID: String, username: String?) -> [Substring]? {
        var result: [Substring] = []
        result.reserveCapacity(levels.count)
        for level in levels {
            guard level.contains("%") else {
                result.append(level)
                continue
            }
            if level.contains("%u") && username == nil { return nil }
            for value in [clientID, username ?? ""] where value.contains(where: { "+#/".contains($0) }) {
                if (value == clientID && level.contains("%c")) || (value == username && level.contains("%u")) {
                    return nil
                }
            }
            var text = String(level)
            text = text.replacingAll("%c", with: clientID)
            if let username { text = text.replacingAll("%u", with: username) }
            result.append(Substring(text))
        }
        return result
    }

    /// MQTT matching of a topic name against filter levels.
    static func filter(_ levels: [Substring], matchesTopic topic: String) -> Bool {
        let topicLevels = topic.split(separator: "/", omittingEmptySubsequences: false)
        if topic.hasPrefix("$"), let first = levels.first, first == "#" || first == "+" { return false }
        var index = 0
        for level in levels {
            if level == "#" { return true }
            guard index < topicLevels.count else { return false }
            if level != "+" && level != topicLevels[index] { return false }
            index += 1
        }
        return index == topicLevels.count
    }

    /// Does the rule filter match every topic that `filter` can match?
    static func filter(_ rule: [Substring], covers filter: [Substring]) -> Bool {
        var index = 0
        for level in rule {
            if level == "#" { return true }
            guard index < filter.count else { return false }
            let wanted = filter[index]
            if wanted == "#" { return false }
            if level != "+" && (level != wanted || wanted == "+") { return false }
            index += 1
        }
        return index == filter.count
    }

    /// Can some topic match both filters? (For deny rules: a subscription that could receive a denied topic.)
    static func filter(_ a: [Substring], overlaps b: [Substring]) -> Bool {
        var index = 0
        while index < a.count && index < b.count {
            let x = a[index]
            let y = b[index]
            if x == "#" || y == "#" { return true }
            if x != "+" && y != "+" && x != y { return false }
            index += 1
        }
        if a.count == b.count { return true }
        let longer = a.count > b.count ? a : b
        return index == longer.count - 1 && longer[index] == "#"
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Substring.Index>? {
        let needle = Array(target)
        guard !needle.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            var matchEnd = index
            var matched = true
            for character in needle {
                guard matchEnd < endIndex, self[matchEnd] == character else {
                    matched = false
                    break
                }
                matchEnd = self.index(after: matchEnd)
            }
            if matched { return index..<matchEnd }
            index = self.index(after: index)
        }
        return nil
    }
}
