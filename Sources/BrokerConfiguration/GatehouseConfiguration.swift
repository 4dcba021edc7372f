/// The validated, immutable configuration of one Gatehouse node, as loaded from `etc/gatehouse.conf`.
///
/// Built only by `ConfigurationLoader`; every path in it is absolute (relative paths in the file are resolved
/// against the directory that holds the file). A value type: each process holds its own copy.
public struct GatehouseConfiguration: Sendable, Equatable {
    /// The file this configuration was read from (absolute).
    public var sourcePath: String
    public var node: NodeSettings
    public var log: LogSettings
    public var mqtt: MQTTSettings
    public var authentication: AuthenticationSettings
    public var crlCache: CRLCacheSettings
    /// Listeners in the order they first appear in the file.
    public var listeners: [ListenerConfiguration]
    /// The storage bounds (`mqtt.max_queued_bytes`, `mqtt.max_subscriptions`, `node.max_peer_buffered_bytes`, …).
    public var storage = StorageLimits()

    public init(
        sourcePath: String, node: NodeSettings, log: LogSettings, mqtt: MQTTSettings,
        authentication: AuthenticationSettings, crlCache: CRLCacheSettings,
        listeners: [ListenerConfiguration]
    ) {
        self.sourcePath = sourcePath
        self.node = node
        self.log = log
        self.mqtt = mqtt
        self.authentication = authentication
        self.crlCache = crlCache
        self.listeners = listeners
    }
}

/// `node.*` keys.
public struct NodeSettings: Sendable, Equatable {
    /// `node.worker_processes`; default: the number of online CPU cores.
    public var workerProcesses: Int
    /// `node.data_dir`; default `<config dir>/../var`.
    public var dataDirectory: String
    /// `node.cache_dir`; default `<data_dir>/cache`.
    public var cacheDirectory: String
    /// `node.run_dir` (new key); default `<data_dir>/run`. Holds the control socket and the pid file.
    public var runDirectory: String
    /// `node.shutdown_timeout`; default 15s.
    public var shutdownTimeout: Duration
    /// `node.metrics_listener`; default 127.0.0.1:9469. `nil` when set to `off`.
    public var metricsListener: ListenAddress?
    /// `node.fetch_refresh_floor` (new key); default 1m, minimum 1s. The fetcher never refreshes a CRL or an OCSP
    /// response that it fetched successfully sooner than this, whatever the intervals and nextUpdate say.
    public var fetchRefreshFloor: Duration
    /// `node.fetch_redirects` (new key); default `same_host`. Which HTTP redirects the fetcher follows for CRLs
    /// and OCSP responses.
    public var fetchRedirects: FetchRedirects

    public init(
        workerProcesses: Int, dataDirectory: String, cacheDirectory: String, runDirectory: String,
        shutdownTimeout: Duration, metricsListener: ListenAddress?, fetchRefreshFloor: Duration = .seconds(60),
        fetchRedirects: FetchRedirects = .sameHost
    ) {
        self.fetchRefreshFloor = fetchRefreshFloor
        self.fetchRedirects = fetchRedirects
        self.workerProcesses = workerProcesses
        self.dataDirectory = dataDirectory
        self.cacheDirectory = cacheDirectory
        self.runDirectory = runDirectory
        self.shutdownTimeout = shutdownTimeout
        self.metricsListener = metricsListener
    }
}

/// `node.fetch_redirects`: which redirects the fetcher follows.
public enum FetchRedirects: String, Sendable, Equatable, CaseIterable {
    /// None: a redirect is a failed fetch.
    case none
    /// To the same host name or address only (scheme, port and path may change).
    case sameHost = "same_host"
    /// Anywhere over http or https.
    case any
}

/// `log.*` keys.
public struct LogSettings: Sendable, Equatable {
    public enum Level: String, Sendable, Equatable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }
    public enum Destination: String, Sendable, Equatable, CaseIterable {
        case console, file, both
    }
    /// `log.level`; default `info`.
    public var level: Level
    /// `log.to`; default `console`.
    public var destination: Destination
    /// `log.dir`; default `<data_dir>/log`. The file is `<log.dir>/gatehouse.log`.
    public var directory: String

    public init(level: Level, destination: Destination, directory: String) {
        self.level = level
        self.destination = destination
        self.directory = directory
    }
}

/// `mqtt.*` keys (used by the MQTT issue; parsed and validated now).
public struct MQTTSettings: Sendable, Equatable {
    /// `mqtt.max_packet_size`; default 1MB.
    public var maxPacketSize: Int
    /// `mqtt.max_inflight`; default 32.
    public var maxInflight: Int
    /// `mqtt.max_queued_messages`; default 1000.
    public var maxQueuedMessages: Int
    /// `mqtt.retain_available`; default true.
    public var retainAvailable: Bool
    /// `mqtt.max_session_expiry_interval`; default 2h.
    public var maxSessionExpiryInterval: Duration
    /// `mqtt.max_topic_alias`; default 10 (Mosquitto's).
    public var maxTopicAlias: Int
    /// `mqtt.shared_subscription`; default true.
    public var sharedSubscription: Bool
    /// `mqtt.max_topic_alias_bytes` (new key); default 64KB. The topic bytes the aliases of one connection may
    /// hold, in each direction.
    public var maxTopicAliasBytes: Int
    /// `mqtt.max_connect_packet_size` (new key); default 64KB. The largest packet accepted before a connection's
    /// CONNECT is: the CONNECT itself.
    public var maxConnectPacketSize: Int

    public static let defaultMaxTopicAliasBytes = 64 << 10
    public static let defaultMaxConnectPacketSize = 64 << 10

    public init(
        maxPacketSize: Int, maxInflight: Int, maxQueuedMessages: Int, retainAvailable: Bool,
        maxSessionExpiryInterval: Duration, maxTopicAlias: Int, sharedSubscription: Bool,
        maxTopicAliasBytes: Int = defaultMaxTopicAliasBytes, maxConnectPacketSize: Int = defaultMaxConnectPacketSize
    ) {
        self.maxTopicAliasBytes = maxTopicAliasBytes
        self.maxConnectPacketSize = maxConnectPacketSize
        self.maxPacketSize = maxPacketSize
        self.maxInflight = maxInflight
        self.maxQueuedMessages = maxQueuedMessages
        self.retainAvailable = retainAvailable
        self.maxSessionExpiryInterval = maxSessionExpiryInterval
        self.maxTopicAlias = maxTopicAlias
        self.sharedSubscription = sharedSubscription
    }
}

/// `allow_anonymous`, `acl_file`, `password_file`.
public struct AuthenticationSettings: Sendable, Equatable {
    /// `allow_anonymous`; default false (a listener may override it).
    public var allowAnonymous: Bool
    public var aclFile: String?
    public var passwordFile: String?

    public init(allowAnonymous: Bool, aclFile: String?, passwordFile: String?) {
        self.allowAnonymous = allowAnonymous
        self.aclFile = aclFile
        self.passwordFile = passwordFile
    }
}

/// The global `crl_cache_*` keys (EMQX 4.4 names).
public struct CRLCacheSettings: Sendable, Equatable {
    /// `crl_cache_http_timeout`; default 15s.
    public var httpTimeout: Duration
    /// `crl_cache_refresh_interval`; default 15m (never below `node.fetch_refresh_floor`).
    public var refreshInterval: Duration
    /// `crl_cache_max_size` (new key); default 64MB.
    public var maxSize: Int
    /// `crl_cache_max_entries` (new key); default 2,000,000. A CRL declaring more revoked entries is refused
    /// before it is parsed.
    public var maxEntries: Int
    /// `crl_cache_https_cacertfile` (new key): CA bundle for https CRL URLs; default: the system bundle.
    public var httpsCACertFile: String?

    public static let defaultMaxEntries = 2_000_000

    public init(
        httpTimeout: Duration, refreshInterval: Duration, maxSize: Int, maxEntries: Int = defaultMaxEntries,
        httpsCACertFile: String?
    ) {
        self.httpTimeout = httpTimeout
        self.refreshInterval = refreshInterval
        self.maxSize = maxSize
        self.maxEntries = maxEntries
        self.httpsCACertFile = httpsCACertFile
    }
}

/// Where a listener binds: `listener.tcp.<name> = port | ip:port | [ipv6]:port`.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// A literal IPv4 or IPv6 address; `0.0.0.0` when the value was only a port.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// One `listener.tcp.<name>` or `listener.ssl.<name>`.
public struct ListenerConfiguration: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case tcp, ssl
    }
    public var kind: Kind
    /// The `<name>` part, e.g. `external`.
    public var name: String
    public var address: ListenAddress
    /// `listener.<kind>.<name>.allow_anonymous`; `nil` means the global `allow_anonymous`.
    public var allowAnonymous: Bool?
    /// Present exactly when `kind == .ssl`.
    public var tls: TLSSettings?
    /// Access rules, connection limits, socket options and the PROXY protocol: what happens at accept.
    public var accept: AcceptSettings
    /// `high_watermark`, `send_timeout`, `send_timeout_close`: what a client that does not read may cost.
    public var backPressure: BackPressureSettings
    /// Line of the `listener.<kind>.<name> = …` key.
    public var line: Int

    /// `ssl:external`, the name used in logs and status.
    public var identifier: String { "\(kind.rawValue):\(name)" }

    public init(
        kind: Kind, name: String, address: ListenAddress, allowAnonymous: Bool?, tls: TLSSettings?, line: Int,
        accept: AcceptSettings = AcceptSettings(), backPressure: BackPressureSettings = BackPressureSettings()
    ) {
        self.backPressure = backPressure
        self.kind = kind
        self.name = name
        self.address = address
        self.allowAnonymous = allowAnonymous
        self.tls = tls
        self.accept = accept
        self.line = line
    }
}

/// The TLS, CRL and OCSP keys of one `listener.ssl.<name>`.
public struct TLSSettings: Sendable, Equatable {
    public enum Verify: String, Sendable, Equatable {
        case verifyPeer = "verify_peer"
        case verifyNone = "verify_none"
    }
    public enum Version: String, Sendable, Equatable, CaseIterable {
        case tlsv1_2 = "tlsv1.2"
        case tlsv1_3 = "tlsv1.3"
    }
    public enum PeerCertField: String, Sendable, Equatable {
        case cn, dn
    }
    public enum CRLCheckDepth: String, Sendable, Equatable {
        case leaf, chain
    }
    public enum CRLFailPolicy: String, Sendable, Equatable {
        case closed, grace
    }

    public var keyFile: String
    /// May hold a chain: leaf first, then intermediates.
    public var certFile: String
    public var caCertFile: String?
    /// Default `verify_none` as in EMQX.
    public var verify: Verify
    /// Default false.
    public var failIfNoPeerCert: Bool
    /// `depth`: the most intermediate CA certificates allowed between a client certificate and a trusted CA
    /// (OpenSSL's verify depth); default 10 as in EMQX, 0-100.
    public var verifyDepth: Int
    /// Default `tlsv1.3,tlsv1.2`.
    public var tlsVersions: [Version]
    /// OpenSSL cipher names; empty means OpenSSL's defaults.
    public var ciphers: [String]
    /// `honor_cipher_order`: the server's cipher preference wins over the client's; default true.
    public var honorCipherOrder: Bool
    /// `reuse_sessions`: clients may resume TLS sessions (session cache and tickets); default true.
    public var reuseSessions: Bool
    /// Default 15s.
    public var handshakeTimeout: Duration
    public var peerCertAsUsername: PeerCertField?
    public var peerCertAsClientID: PeerCertField?

    /// `enable_crl_check`; default false. Requires `verify = verify_peer`.
    public var enableCRLCheck: Bool
    /// `crl_cache_urls`, comma-separated.
    public var crlCacheURLs: [String]
    /// `crlfile` (new key), comma-separated local CRL files.
    public var crlFiles: [String]
    /// `crl_check_depth` (new key); default leaf.
    public var crlCheckDepth: CRLCheckDepth
    /// `crl_fail_policy` (new key); default closed.
    public var crlFailPolicy: CRLFailPolicy
    /// `crl_stale_grace` (new key); default 1h, used only with `grace`.
    public var crlStaleGrace: Duration
    /// `disconnect_revoked` (new key); default true.
    public var disconnectRevoked: Bool

    /// `enable_ocsp_stapling`; default false.
    public var enableOCSPStapling: Bool
    public var ocspResponderURL: String?
    public var ocspIssuerPEM: String?
    /// `ocsp_refresh_interval`; default 5m (never below `node.fetch_refresh_floor`).
    public var ocspRefreshInterval: Duration
    /// `ocsp_refresh_http_timeout`; default 15s.
    public var ocspRefreshHTTPTimeout: Duration

    public init(
        keyFile: String, certFile: String, caCertFile: String?, verify: Verify, failIfNoPeerCert: Bool,
        tlsVersions: [Version], ciphers: [String], handshakeTimeout: Duration,
        peerCertAsUsername: PeerCertField?, peerCertAsClientID: PeerCertField?,
        enableCRLCheck: Bool, crlCacheURLs: [String], crlFiles: [String], crlCheckDepth: CRLCheckDepth,
        crlFailPolicy: CRLFailPolicy, crlStaleGrace: Duration, disconnectRevoked: Bool,
        enableOCSPStapling: Bool, ocspResponderURL: String?, ocspIssuerPEM: String?,
        ocspRefreshInterval: Duration, ocspRefreshHTTPTimeout: Duration,
        verifyDepth: Int = 10, honorCipherOrder: Bool = true, reuseSessions: Bool = true
    ) {
        self.verifyDepth = verifyDepth
        self.honorCipherOrder = honorCipherOrder
        self.reuseSessions = reuseSessions
        self.keyFile = keyFile
        self.certFile = certFile
        self.caCertFile = caCertFile
        self.verify = verify
        self.failIfNoPeerCert = failIfNoPeerCert
        self.tlsVersions = tlsVersions
        self.ciphers = ciphers
        self.handshakeTimeout = handshakeTimeout
        self.peerCertAsUsername = peerCertAsUsername
        self.peerCertAsClientID = peerCertAsClientID
        self.enableCRLCheck = enableCRLCheck
        self.crlCacheURLs = crlCacheURLs
        self.crlFiles = crlFiles
        self.crlCheckDepth = crlCheckDepth
        self.crlFailPolicy = crlFailPolicy
        self.crlStaleGrace = crlStaleGrace
        self.disconnectRevoked = disconnectRevoked
        self.enableOCSPStapling = enableOCSPStapling
        self.ocspResponderURL = ocspResponderURL
        self.ocspIssuerPEM = ocspIssuerPEM
        self.ocspRefreshInterval = ocspRefreshInterval
        self.ocspRefreshHTTPTimeout = ocspRefreshHTTPTimeout
    }
}
