/// What the file says about one listener, gathered line by line before the listener is checked as a whole.
/// Owned by one `ConfigurationParser`.
struct ListenerDraft {
    var id: ListenerID
    /// The first line that mentions the listener; listeners keep this order.
    var firstLine: Int
    /// The line of `listener.<kind>.<name> = …`, if there is one.
    var definitionLine: Int?
    /// `nil` until a valid address is read.
    var address: ListenAddress?
    /// Every known subkey present, valid or not, with its line.
    var subkeyLines: [String: Int] = [:]
    /// The subkeys whose values parsed.
    var values: [String: ConfigurationValue] = [:]
    /// The `access.<N>` rules that parsed, and the line of each `N` (to report a second rule with the same `N`).
    var accessRules: [AccessRule] = []
    var accessRuleLines: [Int: Int] = [:]
    /// Full key and line of every subkey line, for reporting a missing definition.
    var memberLines: [(key: String, line: Int)] = []

    init(id: ListenerID, firstLine: Int) {
        self.id = id
        self.firstLine = firstLine
    }

    /// The subkey's parsed value or its default; `nil` when the subkey is present but invalid, or has no default.
    func effectiveValue(_ subkey: String) -> ConfigurationValue? {
        if let value = values[subkey] {
            return value
        }
        if subkeyLines[subkey] != nil {
            return nil
        }
        return KnownKeys.listenerSubkeysByName[subkey]?.defaultValue
    }
}
