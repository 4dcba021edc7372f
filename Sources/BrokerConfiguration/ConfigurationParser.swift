/// Reads the text of one configuration file into a `GatehouseConfiguration`, collecting every problem instead of
/// stopping at the first. A short-lived value created by one `ConfigurationLoader` call.
struct ConfigurationParser {
    let displayPath: String
    let sourcePath: String
    /// Absolute and normalized.
    let baseDirectory: String
    let options: ConfigurationLoadOptions

    private(set) var errors: [ConfigurationError] = []
    private var firstLineOfKey: [String: Int] = [:]
    private(set) var globalValues: [String: ConfigurationValue] = [:]
    private(set) var globalLines: [String: Int] = [:]
    private(set) var listeners: [ListenerID: ListenerDraft] = [:]
    private(set) var listenerOrder: [ListenerID] = []

    init(displayPath: String, sourcePath: String, baseDirectory: String, options: ConfigurationLoadOptions) {
        self.displayPath = displayPath
        self.sourcePath = sourcePath
        self.baseDirectory = baseDirectory
        self.options = options
    }

    private var context: ValueParsingContext {
        ValueParsingContext(baseDirectory: baseDirectory, cpuCount: options.cpuCount)
    }

    mutating func parse(_ text: String) throws(ConfigurationErrors) -> GatehouseConfiguration {
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        for (index, line) in lines.enumerated() {
            read(line, number: index + 1)
        }
        validateListeners()
        guard errors.isEmpty else {
            throw ConfigurationErrors(errors: sortedErrors())
        }
        return build()
    }

    // MARK: Lines

    private mutating func read(_ rawLine: Substring, number: Int) {
        let line = rawLine.trimmingWhitespace()
        if line.isEmpty || line.hasPrefix("#") {
            return
        }
        guard let equals = line.firstIndex(of: "=") else {
            report(line: number, key: nil, "expected 'key = value'")
            return
        }
        let key = line[..<equals].trimmingWhitespace()
        var value = line[line.index(after: equals)...].trimmingWhitespace()
        guard !key.isEmpty else {
            report(line: number, key: nil, "missing key before '='")
            return
        }
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
            value = String(value.dropFirst().dropLast())
        }
        guard !value.isEmpty else {
            report(line: number, key: key, "missing value")
            return
        }
        if let firstLine = firstLineOfKey[key] {
            report(line: number, key: key, "duplicate key (first set on line \(firstLine))")
            return
        }
        firstLineOfKey[key] = number
        apply(key: key, value: value, line: number)
    }

    private mutating func apply(key: String, value: String, line: Int) {
        switch ConfigurationKey(classifying: key) {
        case .global(let specification):
            globalLines[key] = line
            if let parsed = parse(value, as: specification.kind, key: key, line: line) {
                globalValues[key] = parsed
            }
        case .listener(let id):
            touchListener(id, line: line)
            listeners[id]?.definitionLine = line
            if let parsed = parse(value, as: .address, key: key, line: line), case .address(let address) = parsed {
                listeners[id]?.address = address
            }
        case .listenerSubkey(let id, let specification):
            touchListener(id, line: line)
            listeners[id]?.subkeyLines[specification.name] = line
            listeners[id]?.memberLines.append((key, line))
            if let parsed = parse(value, as: specification.kind, key: key, line: line) {
                listeners[id]?.values[specification.name] = parsed
            }
        case .accessRule(let id, let number):
            touchListener(id, line: line)
            listeners[id]?.memberLines.append((key, line))
            if let first = listeners[id]?.accessRuleLines[number] {
                report(line: line, key: key, "duplicate access rule \(number) (first set on line \(first))")
                return
            }
            listeners[id]?.accessRuleLines[number] = line
            do {
                listeners[id]?.accessRules.append(try AccessRule.parse(value, number: number))
            } catch {
                report(line: line, key: key, error.message)
            }
        case .refusedListenerSubkey(let reason):
            report(line: line, key: key, reason)
        case .unknown(let message):
            report(line: line, key: key, message)
        }
    }

    private mutating func touchListener(_ id: ListenerID, line: Int) {
        if listeners[id] == nil {
            listeners[id] = ListenerDraft(id: id, firstLine: line)
            listenerOrder.append(id)
        }
    }

    /// The parsed value, or `nil` after reporting why it is invalid. Files are checked here when asked to.
    private mutating func parse(_ text: String, as kind: ValueKind, key: String, line: Int) -> ConfigurationValue? {
        let value: ConfigurationValue
        do {
            value = try ConfigurationValue.parse(text, as: kind, context: context)
        } catch {
            report(line: line, key: key, error.message)
            return nil
        }
        if options.checkFiles {
            switch (kind, value) {
            case (.file, .string(let path)):
                checkFile(path, key: key, line: line)
            case (.fileList, .list(let paths)):
                for path in paths {
                    checkFile(path, key: key, line: line)
                }
            default:
                break
            }
        }
        return value
    }

    private mutating func checkFile(_ path: String, key: String, line: Int) {
        if let problem = FileCheck.problem(at: path) {
            report(line: line, key: key, problem)
        }
    }

    // MARK: Listeners as a whole

    private mutating func validateListeners() {
        var addressOwners: [ListenAddress: String] = [:]
        if case .address(let metrics?)? = effectiveGlobalValue("node.metrics_listener") {
            addressOwners[metrics] = globalLines["node.metrics_listener"].map { "node.metrics_listener (line \($0))" }
                ?? "node.metrics_listener (default)"
        }
        let defined = listenerOrder.compactMap { listeners[$0] }
            .sorted { ($0.definitionLine ?? $0.firstLine) < ($1.definitionLine ?? $1.firstLine) }
        for draft in defined {
            guard let definitionLine = draft.definitionLine else {
                for member in draft.memberLines {
                    report(
                        line: member.line, key: member.key,
                        "no '\(draft.id.key) = <port>' line defines this listener")
                }
                continue
            }
            if let address = draft.address {
                if let owner = addressOwners[address] {
                    report(line: definitionLine, key: draft.id.key, "address \(address) is already used by \(owner)")
                } else {
                    addressOwners[address] = "\(draft.id.key) (line \(definitionLine))"
                }
            }
            validateAccept(of: draft)
            if draft.id.kind == .ssl {
                validateTLS(of: draft, definitionLine: definitionLine)
            }
        }
    }

    private mutating func validateAccept(of draft: ListenerDraft) {
        let listenerKey = draft.id.key
        if draft.values["proxy_protocol"] != .boolean(true), let line = draft.subkeyLines["proxy_protocol_timeout"] {
            report(
                line: line, key: "\(listenerKey).proxy_protocol_timeout",
                "has no effect without \(listenerKey).proxy_protocol = true")
        }
    }

    private mutating func validateTLS(of draft: ListenerDraft, definitionLine: Int) {
        let listenerKey = draft.id.key
        for required in ["keyfile", "certfile"] where draft.subkeyLines[required] == nil {
            report(line: definitionLine, key: listenerKey, "\(required) is required for an ssl listener")
        }
        let verifyPeer = ConfigurationValue.string(TLSSettings.Verify.verifyPeer.rawValue)
        let verify = draft.effectiveValue("verify")
        if verify == verifyPeer, draft.subkeyLines["cacertfile"] == nil, let line = draft.subkeyLines["verify"] {
            report(line: line, key: "\(listenerKey).verify", "verify_peer requires \(listenerKey).cacertfile")
        }
        if draft.values["secure_renegotiate"] == .boolean(false), let line = draft.subkeyLines["secure_renegotiate"] {
            report(
                line: line, key: "\(listenerKey).secure_renegotiate",
                "false is not supported: renegotiation is disabled entirely, so no insecure renegotiation can "
                    + "happen (remove the line or set true)")
        }
        for flag in ["fail_if_no_peer_cert", "enable_crl_check"] where draft.values[flag] == .boolean(true) {
            if let verify, verify != verifyPeer, let line = draft.subkeyLines[flag] {
                report(line: line, key: "\(listenerKey).\(flag)", "\(flag) = true requires verify = verify_peer")
            }
        }
        // Without verify_peer no client sends a certificate, so every CONNECT would be refused.
        for field in ["peer_cert_as_username", "peer_cert_as_clientid"] {
            if let verify, verify != verifyPeer, let line = draft.subkeyLines[field] {
                report(line: line, key: "\(listenerKey).\(field)", "requires verify = verify_peer")
            }
        }
        // enable_ocsp_stapling needs neither ocsp_responder_url (default: the certificate's OCSP URL) nor
        // ocsp_issuer_pem (default: the issuer found in certfile or cacertfile); without a URL it is off, said
        // once in the log.
    }

    /// The global key's parsed value or its default; `nil` when the key is present but invalid.
    private func effectiveGlobalValue(_ key: String) -> ConfigurationValue? {
        if let value = globalValues[key] {
            return value
        }
        if globalLines[key] != nil {
            return nil
        }
        return KnownKeys.globalByName[key]?.defaultValue
    }

    // MARK: Errors

    private mutating func report(line: Int?, key: String?, _ message: String) {
        errors.append(ConfigurationError(file: displayPath, line: line, key: key, message: message))
    }

    /// Line order; problems found later on the same line keep their order.
    private func sortedErrors() -> [ConfigurationError] {
        errors.enumerated()
            .sorted { ($0.element.line ?? 0, $0.offset) < ($1.element.line ?? 0, $1.offset) }
            .map(\.element)
    }
}
