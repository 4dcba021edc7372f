/// One row of the schema: a key, the kind of value it takes and its static default.
///
/// A default of `nil` means either "unset" (optional settings such as `acl_file`) or a default that depends on
/// other values or on the machine (`node.cache_dir`, `node.worker_processes`); `GatehouseConfiguration+Building`
/// computes those.
struct KeySpecification: Sendable {
    /// The full global key, or for listener subkeys the part after `listener.<kind>.<name>.`.
    var name: String
    var kind: ValueKind
    var defaultValue: ConfigurationValue?
    /// For listener subkeys: the listener kinds that accept the key.
    var listenerKinds: Set<ListenerConfiguration.Kind>

    init(
        _ name: String, _ kind: ValueKind, default defaultValue: ConfigurationValue? = nil,
        listenerKinds: Set<ListenerConfiguration.Kind> = [.tcp, .ssl]
    ) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.listenerKinds = listenerKinds
    }
}
