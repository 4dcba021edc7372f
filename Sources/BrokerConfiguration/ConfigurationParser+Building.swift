extension ConfigurationParser {
    /// The model from values that passed validation; defaults that depend on other values are computed here.
    func build() -> GatehouseConfiguration {
        let global = ConfigurationValues(values: globalValues, schema: KnownKeys.globalByName)
        let dataDirectory = global.optionalString("node.data_dir")
            ?? PathNormalizer.absolute("../var", relativeTo: baseDirectory)
        let workerRange = 1...256
        let node = NodeSettings(
            workerProcesses: global.optionalInteger("node.worker_processes")
                ?? min(max(options.cpuCount, workerRange.lowerBound), workerRange.upperBound),
            dataDirectory: dataDirectory,
            cacheDirectory: global.optionalString("node.cache_dir") ?? dataDirectory + "/cache",
            runDirectory: global.optionalString("node.run_dir") ?? dataDirectory + "/run",
            shutdownTimeout: global.duration("node.shutdown_timeout"),
            metricsListener: global.address("node.metrics_listener"),
            fetchRefreshFloor: global.duration("node.fetch_refresh_floor"),
            fetchRedirects: global.choice("node.fetch_redirects"))
        let log = LogSettings(
            level: global.choice("log.level"),
            destination: global.choice("log.to"),
            directory: global.optionalString("log.dir") ?? dataDirectory + "/log")
        let mqtt = MQTTSettings(
            maxPacketSize: global.integer("mqtt.max_packet_size"),
            maxInflight: global.integer("mqtt.max_inflight"),
            maxQueuedMessages: global.integer("mqtt.max_queued_messages"),
            retainAvailable: global.boolean("mqtt.retain_available"),
            maxSessionExpiryInterval: global.duration("mqtt.max_session_expiry_interval"),
            maxTopicAlias: global.integer("mqtt.max_topic_alias"),
            sharedSubscription: global.boolean("mqtt.shared_subscription"),
            maxTopicAliasBytes: global.integer("mqtt.max_topic_alias_bytes"),
            maxConnectPacketSize: global.integer("mqtt.max_connect_packet_size"))
        let authentication = AuthenticationSettings(
            allowAnonymous: global.boolean("allow_anonymous"),
            aclFile: global.optionalString("acl_file"),
            passwordFile: global.optionalString("password_file"))
        let crlCache = CRLCacheSettings(
            httpTimeout: global.duration("crl_cache_http_timeout"),
            refreshInterval: global.duration("crl_cache_refresh_interval"),
            maxSize: global.integer("crl_cache_max_size"),
            maxEntries: global.integer("crl_cache_max_entries"),
            httpsCACertFile: global.optionalString("crl_cache_https_cacertfile"))
        var configuration = GatehouseConfiguration(
            sourcePath: sourcePath, node: node, log: log, mqtt: mqtt, authentication: authentication,
            crlCache: crlCache, listeners: listenerOrder.compactMap { listeners[$0].flatMap(buildListener) })
        configuration.storage = StorageLimits(
            maxQueuedBytes: global.integer("mqtt.max_queued_bytes"),
            maxNodeQueuedBytes: global.integer("mqtt.max_node_queued_bytes"),
            maxRetainedMessages: global.integer("mqtt.max_retained_messages"),
            maxRetainedBytes: global.integer("mqtt.max_retained_bytes"),
            maxSubscriptions: global.integer("mqtt.max_subscriptions"),
            maxTopicLevels: global.integer("mqtt.max_topic_levels"),
            maxPeerBufferedBytes: global.integer("node.max_peer_buffered_bytes"))
        return configuration
    }

    private func buildListener(_ draft: ListenerDraft) -> ListenerConfiguration? {
        guard let line = draft.definitionLine, let address = draft.address else { return nil }
        let values = ConfigurationValues(values: draft.values, schema: KnownKeys.listenerSubkeysByName)
        return ListenerConfiguration(
            kind: draft.id.kind, name: draft.id.name, address: address,
            allowAnonymous: values.optionalBoolean("allow_anonymous"),
            tls: draft.id.kind == .ssl ? buildTLS(values) : nil, line: line,
            accept: buildAccept(values, rules: draft.accessRules),
            backPressure: BackPressureSettings(
                highWatermark: values.integer("high_watermark"), sendTimeout: values.duration("send_timeout"),
                sendTimeoutClose: values.boolean("send_timeout_close")))
    }

    private func buildAccept(_ values: ConfigurationValues, rules: [AccessRule]) -> AcceptSettings {
        AcceptSettings(
            access: AccessRules(rules),
            maxConnections: values.optionalInteger("max_connections"),
            maxConnectionRate: values.optionalInteger("max_conn_rate"),
            backlog: values.integer("backlog"),
            noDelay: values.boolean("nodelay"),
            reuseAddress: values.boolean("reuseaddr"),
            proxyProtocol: values.boolean("proxy_protocol"),
            proxyProtocolTimeout: values.duration("proxy_protocol_timeout"),
            maxConnectionsPerAddress: values.optionalInteger("max_connections_per_address"))
    }

    private func buildTLS(_ values: ConfigurationValues) -> TLSSettings {
        TLSSettings(
            keyFile: values.string("keyfile"),
            certFile: values.string("certfile"),
            caCertFile: values.optionalString("cacertfile"),
            verify: values.choice("verify"),
            failIfNoPeerCert: values.boolean("fail_if_no_peer_cert"),
            tlsVersions: values.list("tls_versions").compactMap(TLSSettings.Version.init(rawValue:)),
            ciphers: values.list("ciphers"),
            handshakeTimeout: values.duration("handshake_timeout"),
            peerCertAsUsername: values.optionalChoice("peer_cert_as_username"),
            peerCertAsClientID: values.optionalChoice("peer_cert_as_clientid"),
            enableCRLCheck: values.boolean("enable_crl_check"),
            crlCacheURLs: values.list("crl_cache_urls"),
            crlFiles: values.list("crlfile"),
            crlCheckDepth: values.choice("crl_check_depth"),
            crlFailPolicy: values.choice("crl_fail_policy"),
            crlStaleGrace: values.duration("crl_stale_grace"),
            disconnectRevoked: values.boolean("disconnect_revoked"),
            enableOCSPStapling: values.boolean("enable_ocsp_stapling"),
            ocspResponderURL: values.optionalString("ocsp_responder_url"),
            ocspIssuerPEM: values.optionalString("ocsp_issuer_pem"),
            ocspRefreshInterval: values.duration("ocsp_refresh_interval"),
            ocspRefreshHTTPTimeout: values.duration("ocsp_refresh_http_timeout"),
            verifyDepth: values.integer("depth"),
            honorCipherOrder: values.boolean("honor_cipher_order"),
            reuseSessions: values.boolean("reuse_sessions"))
    }
}
