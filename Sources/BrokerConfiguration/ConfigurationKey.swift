/// Which listener a key belongs to: `listener.<kind>.<name>`.
struct ListenerID: Hashable, Sendable {
    var kind: ListenerConfiguration.Kind
    var name: String

    /// `listener.ssl.external`, the key that defines the listener.
    var key: String { "listener.\(kind.rawValue).\(name)" }
}

/// What a key of the file refers to, decided from the key's text alone (values are parsed later).
enum ConfigurationKey {
    /// A key of `KnownKeys.global`.
    case global(KeySpecification)
    /// `listener.<kind>.<name>`: the listener's address.
    case listener(ListenerID)
    /// A subkey of `KnownKeys.listenerSubkeys` valid for the listener's kind.
    case listenerSubkey(ListenerID, KeySpecification)
    /// `listener.<kind>.<name>.access.<N>`: one access rule, `N` its place in the order.
    case accessRule(ListenerID, number: Int)
    /// An EMQX listener subkey that Gatehouse refuses; `reason` says why.
    case refusedListenerSubkey(reason: String)
    /// Not a key we know; `message` says so, with a suggestion when one is close.
    case unknown(message: String)

    init(classifying key: String) {
        if let specification = KnownKeys.globalByName[key] {
            self = .global(specification)
            return
        }
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, parts[0] == "listener", let kind = ListenerConfiguration.Kind(rawValue: parts[1]) else {
            let suggestion = Self.suggestion(forGlobal: key, parts: parts)
            self = .unknown(message: Self.unknownKeyMessage(key, suggestion: suggestion))
            return
        }
        let name = parts[2]
        guard Self.isValidListenerName(name) else {
            self = .unknown(message: "invalid listener name '\(name)' (use letters, digits, '_' or '-')")
            return
        }
        let listener = ListenerID(kind: kind, name: name)
        guard parts.count > 3 else {
            self = .listener(listener)
            return
        }
        let subkey = parts[3...].joined(separator: ".")
        if let specification = KnownKeys.listenerSubkeysByName[subkey] {
            if specification.listenerKinds.contains(kind) {
                self = .listenerSubkey(listener, specification)
            } else {
                let kinds = specification.listenerKinds.map(\.rawValue).sorted().joined(separator: " and ")
                self = .unknown(message: "unknown key (\(subkey) is only valid for \(kinds) listeners)")
            }
            return
        }
        if let reason = KnownKeys.refusal(of: subkey) {
            self = .refusedListenerSubkey(reason: reason)
            return
        }
        let access = parts[3...]
        if access.count == 2, access.first == "access", let digits = access.last, !digits.isEmpty,
            digits.allSatisfy(\.isASCIIDigit)
        {
            guard let number = Int(digits), number <= KnownKeys.maximumAccessRuleNumber else {
                self = .unknown(message: "access rule number out of range (0-\(KnownKeys.maximumAccessRuleNumber))")
                return
            }
            self = .accessRule(listener, number: number)
            return
        }
        let candidates = KnownKeys.listenerSubkeys(for: kind).map(\.name)
            + KnownKeys.refusedListenerSubkeys.map(\.subkey) + ["access.1"]
        let suggestion = EditDistance.closest(to: subkey, among: candidates).map { "\(listener.key).\($0)" }
        self = .unknown(message: Self.unknownKeyMessage(key, suggestion: suggestion))
    }

    /// `[A-Za-z0-9_-]+`.
    static func isValidListenerName(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }

    private static func unknownKeyMessage(_ key: String, suggestion: String?) -> String {
        guard let suggestion else { return "unknown key" }
        return "unknown key (did you mean '\(suggestion)'?)"
    }

    /// The closest global key; for keys shaped like a listener key with a wrong first or second part
    /// (`listner.tcp.x`, `listener.tls.x.certfile`), also listener keys that keep the user's listener name.
    private static func suggestion(forGlobal key: String, parts: [String]) -> String? {
        var candidates = KnownKeys.global.map(\.name)
        if parts.count >= 3, isValidListenerName(parts[2]) {
            for kind in [ListenerConfiguration.Kind.tcp, .ssl] {
                let listener = ListenerID(kind: kind, name: parts[2])
                candidates.append(listener.key)
                candidates += KnownKeys.listenerSubkeys(for: kind).map { "\(listener.key).\($0.name)" }
            }
        }
        return EditDistance.closest(to: key, among: candidates)
    }
}
