/// The parsed values of one scope (the global keys, or the subkeys of one listener) with the schema's defaults
/// behind them. Typed accessors for building the model.
///
/// Only used after validation succeeded, so a key that has neither a value nor a default where the builder needs
/// one, or a value of the wrong case, means the schema and the builder disagree: a bug, not a config problem.
struct ConfigurationValues {
    var values: [String: ConfigurationValue]
    var schema: [String: KeySpecification]

    /// The value from the file, else the schema default, else `nil`.
    func value(_ key: String) -> ConfigurationValue? {
        values[key] ?? schema[key]?.defaultValue
    }

    func integer(_ key: String) -> Int {
        guard case .integer(let integer)? = value(key) else { Self.schemaMismatch(key) }
        return integer
    }

    func optionalInteger(_ key: String) -> Int? {
        switch value(key) {
        case nil: return nil
        case .integer(let integer)?: return integer
        default: Self.schemaMismatch(key)
        }
    }

    func duration(_ key: String) -> Duration {
        guard case .duration(let duration)? = value(key) else { Self.schemaMismatch(key) }
        return duration
    }

    func boolean(_ key: String) -> Bool {
        guard let boolean = optionalBoolean(key) else { Self.schemaMismatch(key) }
        return boolean
    }

    func optionalBoolean(_ key: String) -> Bool? {
        switch value(key) {
        case nil: return nil
        case .boolean(let boolean)?: return boolean
        default: Self.schemaMismatch(key)
        }
    }

    func string(_ key: String) -> String {
        guard let string = optionalString(key) else { Self.schemaMismatch(key) }
        return string
    }

    func optionalString(_ key: String) -> String? {
        switch value(key) {
        case nil: return nil
        case .string(let string)?: return string
        default: Self.schemaMismatch(key)
        }
    }

    func list(_ key: String) -> [String] {
        guard case .list(let list)? = value(key) else { Self.schemaMismatch(key) }
        return list
    }

    func address(_ key: String) -> ListenAddress? {
        guard case .address(let address)? = value(key) else { Self.schemaMismatch(key) }
        return address
    }

    func choice<Choice: RawRepresentable>(_ key: String, as type: Choice.Type = Choice.self) -> Choice
    where Choice.RawValue == String {
        guard let choice = optionalChoice(key, as: type) else { Self.schemaMismatch(key) }
        return choice
    }

    func optionalChoice<Choice: RawRepresentable>(_ key: String, as type: Choice.Type = Choice.self) -> Choice?
    where Choice.RawValue == String {
        guard let raw = optionalString(key) else { return nil }
        guard let choice = Choice(rawValue: raw) else { Self.schemaMismatch(key) }
        return choice
    }

    private static func schemaMismatch(_ key: String) -> Never {
        preconditionFailure("KnownKeys and the configuration builder disagree about '\(key)'")
    }
}
