/// The schema of `gatehouse.conf`: every accepted key with its value kind and default. Adding a key starts here.
///
/// Immutable tables, shared by all loads.
enum KnownKeys {
    private static let positive: Duration = .milliseconds(1)
    /// Upper bounds: every duration ends up added to clock instants or converted to milliseconds or seconds
    /// (libcurl, NIO timers, MQTT's 32-bit intervals), so none may come near the 64-bit limits.
    private static let hour: Duration = .seconds(3600)
    private static let day: Duration = .seconds(86_400)
    private static let month: Duration = .seconds(30 * 86_400)

    /// Keys outside any listener, in the order of the reference file.
    static let global: [KeySpecification] = [
        KeySpecification("node.worker_processes", .integerOrAuto(1...256)),
        KeySpecification("node.data_dir", .directory),
        KeySpecification("node.cache_dir", .directory),
        KeySpecification("node.run_dir", .directory),
        KeySpecification(
            "node.shutdown_timeout", .duration(minimum: .zero, maximum: hour), default: .duration(.seconds(15))),
        KeySpecification(
            "node.fetch_refresh_floor", .duration(minimum: .seconds(1), maximum: day),
            default: .duration(.seconds(60))),
        KeySpecification(
            "node.fetch_redirects", .choice(FetchRedirects.allCases.map(\.rawValue)),
            default: .string(FetchRedirects.sameHost.rawValue)),
        KeySpecification(
            "node.max_peer_buffered_bytes", .size((1 << 20)...(1 << 30)),
            default: .integer(StorageLimits.defaultMaxPeerBufferedBytes)),
        KeySpecification(
            "node.metrics_listener", .addressOrOff,
            default: .address(ListenAddress(host: "127.0.0.1", port: 9469))),
        KeySpecification(
            "log.level", .choice(LogSettings.Level.allCases.map(\.rawValue)),
            default: .string(LogSettings.Level.info.rawValue)),
        KeySpecification(
            "log.to", .choice(LogSettings.Destination.allCases.map(\.rawValue)),
            default: .string(LogSettings.Destination.console.rawValue)),
        KeySpecification("log.dir", .directory),
        KeySpecification("allow_anonymous", .boolean, default: .boolean(false)),
        KeySpecification("acl_file", .file),
        KeySpecification("password_file", .file),
        KeySpecification("mqtt.max_packet_size", .size(1...268_435_455), default: .integer(1 << 20)),
        KeySpecification("mqtt.max_inflight", .integer(1...65535), default: .integer(32)),
        KeySpecification("mqtt.max_queued_messages", .integer(0...10_000_000), default: .integer(1000)),
        KeySpecification("mqtt.retain_available", .boolean, default: .boolean(true)),
        // MQTT 5 carries the interval in 32 bits of seconds; 4294967295s means "never expires".
        KeySpecification(
            "mqtt.max_session_expiry_interval", .duration(minimum: .zero, maximum: .seconds(Int64(UInt32.max))),
            default: .duration(.seconds(7200))),
        KeySpecification("mqtt.max_topic_alias", .integer(0...65535), default: .integer(10)),
        KeySpecification("mqtt.max_topic_alias_bytes", .size(1...(64 << 20)), default: .integer(64 << 10)),
        KeySpecification("mqtt.max_connect_packet_size", .size(64...268_435_455), default: .integer(64 << 10)),
        KeySpecification("mqtt.shared_subscription", .boolean, default: .boolean(true)),
        // Storage bounds (issue 15): sizes up to 1GB like every size key, counts far from the 64-bit limits.
        KeySpecification(
            "mqtt.max_queued_bytes", .size(1024...(1 << 30)), default: .integer(StorageLimits.defaultMaxQueuedBytes)),
        KeySpecification(
            "mqtt.max_node_queued_bytes", .size((1 << 20)...(1 << 30)),
            default: .integer(StorageLimits.defaultMaxNodeQueuedBytes)),
        KeySpecification(
            "mqtt.max_retained_messages", .integer(1...100_000_000),
            default: .integer(StorageLimits.defaultMaxRetainedMessages)),
        KeySpecification(
            "mqtt.max_retained_bytes", .size(1024...(1 << 30)),
            default: .integer(StorageLimits.defaultMaxRetainedBytes)),
        KeySpecification(
            "mqtt.max_subscriptions", .integer(1...10_000_000), default: .integer(StorageLimits.defaultMaxSubscriptions)),
        KeySpecification(
            "mqtt.max_topic_levels", .integer(1...65535), default: .integer(StorageLimits.defaultMaxTopicLevels)),
        KeySpecification(
            "crl_cache_http_timeout", .duration(minimum: positive, maximum: hour), default: .duration(.seconds(15))),
        KeySpecification(
            "crl_cache_refresh_interval", .duration(minimum: .seconds(1), maximum: month),
            default: .duration(.seconds(900))),
        // A 1M-entry CRL is about 23 MB; the fetcher reads at most one byte more than this to detect an
        // oversized file, so the bound also keeps that arithmetic far from Int.max.
        KeySpecification("crl_cache_max_size", .size(1...(1 << 30)), default: .integer(64 << 20)),
        KeySpecification(
            "crl_cache_max_entries", .integer(1...100_000_000), default: .integer(CRLCacheSettings.defaultMaxEntries)),
        KeySpecification("crl_cache_https_cacertfile", .file),
    ]

    /// Subkeys of `listener.<kind>.<name>.`, in the order of the reference file. `access.<N>` rules are matched
    /// separately (`isAccessRuleSubkey`).
    static let listenerSubkeys: [KeySpecification] = [
        KeySpecification("allow_anonymous", .boolean),
        KeySpecification("max_connections", .integer(1...10_000_000)),
        KeySpecification("max_conn_rate", .integer(1...1_000_000)),
        KeySpecification("max_connections_per_address", .integer(1...10_000_000)),
        KeySpecification("backlog", .integer(1...65535), default: .integer(1024)),
        KeySpecification("nodelay", .boolean, default: .boolean(true)),
        KeySpecification("reuseaddr", .boolean, default: .boolean(true)),
        KeySpecification("proxy_protocol", .boolean, default: .boolean(false)),
        KeySpecification(
            "proxy_protocol_timeout", .duration(minimum: positive, maximum: hour), default: .duration(.seconds(3))),
        KeySpecification("high_watermark", .size(1024...(1 << 30)), default: .integer(1 << 20)),
        KeySpecification(
            "send_timeout", .duration(minimum: positive, maximum: hour), default: .duration(.seconds(15))),
        KeySpecification("send_timeout_close", .boolean, default: .boolean(true)),
        KeySpecification("keyfile", .file, listenerKinds: [.ssl]),
        KeySpecification("certfile", .file, listenerKinds: [.ssl]),
        KeySpecification("cacertfile", .file, listenerKinds: [.ssl]),
        KeySpecification(
            "verify", .choice([TLSSettings.Verify.verifyPeer.rawValue, TLSSettings.Verify.verifyNone.rawValue]),
            default: .string(TLSSettings.Verify.verifyNone.rawValue), listenerKinds: [.ssl]),
        KeySpecification("fail_if_no_peer_cert", .boolean, default: .boolean(false), listenerKinds: [.ssl]),
        KeySpecification("depth", .integer(0...100), default: .integer(10), listenerKinds: [.ssl]),
        KeySpecification(
            "tls_versions", .tlsVersions,
            default: .list([TLSSettings.Version.tlsv1_3.rawValue, TLSSettings.Version.tlsv1_2.rawValue]),
            listenerKinds: [.ssl]),
        KeySpecification("ciphers", .list, default: .list([]), listenerKinds: [.ssl]),
        KeySpecification("honor_cipher_order", .boolean, default: .boolean(true), listenerKinds: [.ssl]),
        KeySpecification("reuse_sessions", .boolean, default: .boolean(true), listenerKinds: [.ssl]),
        KeySpecification("secure_renegotiate", .boolean, default: .boolean(true), listenerKinds: [.ssl]),
        KeySpecification(
            "handshake_timeout", .duration(minimum: positive, maximum: hour), default: .duration(.seconds(15)),
            listenerKinds: [.ssl]),
        KeySpecification("peer_cert_as_username", .choice(peerCertFields), listenerKinds: [.ssl]),
        KeySpecification("peer_cert_as_clientid", .choice(peerCertFields), listenerKinds: [.ssl]),
        KeySpecification("enable_crl_check", .boolean, default: .boolean(false), listenerKinds: [.ssl]),
        KeySpecification("crl_cache_urls", .urlList, default: .list([]), listenerKinds: [.ssl]),
        KeySpecification("crlfile", .fileList, default: .list([]), listenerKinds: [.ssl]),
        KeySpecification(
            "crl_check_depth",
            .choice([TLSSettings.CRLCheckDepth.leaf.rawValue, TLSSettings.CRLCheckDepth.chain.rawValue]),
            default: .string(TLSSettings.CRLCheckDepth.leaf.rawValue), listenerKinds: [.ssl]),
        KeySpecification(
            "crl_fail_policy",
            .choice([TLSSettings.CRLFailPolicy.closed.rawValue, TLSSettings.CRLFailPolicy.grace.rawValue]),
            default: .string(TLSSettings.CRLFailPolicy.closed.rawValue), listenerKinds: [.ssl]),
        KeySpecification(
            "crl_stale_grace", .duration(minimum: .zero, maximum: month), default: .duration(.seconds(3600)),
            listenerKinds: [.ssl]),
        KeySpecification("disconnect_revoked", .boolean, default: .boolean(true), listenerKinds: [.ssl]),
        KeySpecification("enable_ocsp_stapling", .boolean, default: .boolean(false), listenerKinds: [.ssl]),
        KeySpecification("ocsp_responder_url", .url, listenerKinds: [.ssl]),
        KeySpecification("ocsp_issuer_pem", .file, listenerKinds: [.ssl]),
        KeySpecification(
            "ocsp_refresh_interval", .duration(minimum: .seconds(1), maximum: month),
            default: .duration(.seconds(300)), listenerKinds: [.ssl]),
        KeySpecification(
            "ocsp_refresh_http_timeout", .duration(minimum: positive, maximum: hour),
            default: .duration(.seconds(15)), listenerKinds: [.ssl]),
    ]

    /// EMQX listener subkeys that Gatehouse refuses, each with the reason the error gives.
    static let refusedListenerSubkeys: [(subkey: String, reason: String)] = [
        ("acceptors", erlangTuning),
        ("zone", "not supported: Gatehouse has no zones; set the MQTT limits with the mqtt.* keys"),
        ("active_n", erlangTuning),
        ("rate_limit", byteRate),
        ("dhfile", "not supported: only ECDHE key exchange is offered, so Diffie-Hellman parameters are never used"),
    ]

    private static let erlangTuning =
        "not supported: Erlang VM tuning with no equivalent here (each worker accepts on its own event loop)"
    private static let byteRate =
        "not supported: there is no byte-rate limit per connection (high_watermark, send_timeout and "
        + "send_timeout_close bound what a client that does not read can cost)"

    /// Highest `N` of `access.<N>`.
    static let maximumAccessRuleNumber = 1_000_000

    private static let peerCertFields = [TLSSettings.PeerCertField.cn.rawValue, TLSSettings.PeerCertField.dn.rawValue]

    static let globalByName: [String: KeySpecification] = Dictionary(
        uniqueKeysWithValues: global.map { ($0.name, $0) })

    static let listenerSubkeysByName: [String: KeySpecification] = Dictionary(
        uniqueKeysWithValues: listenerSubkeys.map { ($0.name, $0) })

    /// The reason `subkey` is refused, or `nil` when it is not one of `refusedListenerSubkeys`.
    static func refusal(of subkey: String) -> String? {
        refusedListenerSubkeys.first { $0.subkey == subkey }?.reason
    }

    /// The subkeys a listener of `kind` accepts and acts on.
    static func listenerSubkeys(for kind: ListenerConfiguration.Kind) -> [KeySpecification] {
        listenerSubkeys.filter { $0.listenerKinds.contains(kind) }
    }
}
