import Foundation
import Testing

@testable import BrokerConfiguration

@Suite struct ConfigurationLoaderTests {
    // MARK: Defaults

    @Test func emptyFileGivesEveryDefault() throws {
        let configuration = try TestSupport.parse("", cpuCount: 4)
        #expect(configuration.sourcePath == "test.conf")
        #expect(configuration.node == NodeSettings(
            workerProcesses: 4, dataDirectory: "/srv/gatehouse/var", cacheDirectory: "/srv/gatehouse/var/cache",
            runDirectory: "/srv/gatehouse/var/run", shutdownTimeout: .seconds(15),
            metricsListener: ListenAddress(host: "127.0.0.1", port: 9469)))
        #expect(configuration.log == LogSettings(level: .info, destination: .console, directory: "/srv/gatehouse/var/log"))
        #expect(configuration.mqtt == MQTTSettings(
            maxPacketSize: 1_048_576, maxInflight: 32, maxQueuedMessages: 1000, retainAvailable: true,
            maxSessionExpiryInterval: .seconds(7200), maxTopicAlias: 10, sharedSubscription: true,
            maxTopicAliasBytes: 65536, maxConnectPacketSize: 65536))
        #expect(configuration.authentication == AuthenticationSettings(allowAnonymous: false, aclFile: nil, passwordFile: nil))
        #expect(configuration.crlCache == CRLCacheSettings(
            httpTimeout: .seconds(15), refreshInterval: .seconds(900), maxSize: 67_108_864, httpsCACertFile: nil))
        #expect(configuration.listeners.isEmpty)
    }

    @Test func workerProcessesDefaultsToTheCPUCountWithinRange() throws {
        #expect(try TestSupport.parse("", cpuCount: 2).node.workerProcesses == 2)
        #expect(try TestSupport.parse("", cpuCount: 1000).node.workerProcesses == 256)
        #expect(try TestSupport.parse("", cpuCount: 0).node.workerProcesses == 1)
        #expect(try TestSupport.parse("node.worker_processes = auto", cpuCount: 6).node.workerProcesses == 6)
        #expect(try TestSupport.parse("node.worker_processes = auto", cpuCount: 999).node.workerProcesses == 256)
        #expect(try TestSupport.parse("node.worker_processes = 3", cpuCount: 6).node.workerProcesses == 3)
    }

    @Test func defaultOptions() {
        let options = ConfigurationLoadOptions()
        #expect(options.checkFiles)
        #expect(options.cpuCount == ConfigurationLoadOptions.onlineCPUCount)
        #expect(options.cpuCount >= 1)
    }

    @Test func tlsDefaults() throws {
        let tls = try TestSupport.tls("")
        #expect(tls == TLSSettings(
            keyFile: "/srv/gatehouse/etc/key.pem", certFile: "/srv/gatehouse/etc/cert.pem", caCertFile: nil,
            verify: .verifyNone, failIfNoPeerCert: false, tlsVersions: [.tlsv1_3, .tlsv1_2], ciphers: [],
            handshakeTimeout: .seconds(15), peerCertAsUsername: nil, peerCertAsClientID: nil,
            enableCRLCheck: false, crlCacheURLs: [], crlFiles: [], crlCheckDepth: .leaf, crlFailPolicy: .closed,
            crlStaleGrace: .seconds(3600), disconnectRevoked: true, enableOCSPStapling: false,
            ocspResponderURL: nil, ocspIssuerPEM: nil, ocspRefreshInterval: .seconds(300),
            ocspRefreshHTTPTimeout: .seconds(15)))
    }

    @Test func directoryDefaultsFollowTheFinalDataDirectory() throws {
        let configuration = try TestSupport.parse("log.level = debug\nnode.data_dir = /data/gh/")
        #expect(configuration.node.dataDirectory == "/data/gh")
        #expect(configuration.node.cacheDirectory == "/data/gh/cache")
        #expect(configuration.node.runDirectory == "/data/gh/run")
        #expect(configuration.log.directory == "/data/gh/log")

        let relative = try TestSupport.parse("node.cache_dir = /fast/cache\nnode.data_dir = ../state")
        #expect(relative.node.dataDirectory == "/srv/gatehouse/state")
        #expect(relative.node.cacheDirectory == "/fast/cache")
        #expect(relative.node.runDirectory == "/srv/gatehouse/state/run")
    }

    // MARK: Every key

    @Test func everyGlobalKeyParses() throws {
        let configuration = try TestSupport.parse("""
            node.worker_processes = 7
            node.data_dir = /var/lib/gatehouse
            node.cache_dir = cache
            node.run_dir = /run/gatehouse/./x/..
            node.shutdown_timeout = 1m30s
            node.metrics_listener = [::1]:9000
            log.level = warning
            log.to = both
            log.dir = /var/log/gatehouse
            allow_anonymous = on
            acl_file = acl.conf
            password_file = /etc/gatehouse/passwords
            crl_cache_http_timeout = 500ms
            crl_cache_refresh_interval = 1h
            crl_cache_max_size = 512KB
            crl_cache_https_cacertfile = ../pki/bundle.pem
            mqtt.max_packet_size = 268435455
            mqtt.max_inflight = 65535
            mqtt.max_queued_messages = 0
            mqtt.retain_available = false
            mqtt.max_session_expiry_interval = 1d
            mqtt.max_topic_alias = 0
            mqtt.shared_subscription = off
            """)
        #expect(configuration.node == NodeSettings(
            workerProcesses: 7, dataDirectory: "/var/lib/gatehouse", cacheDirectory: "/srv/gatehouse/etc/cache",
            runDirectory: "/run/gatehouse", shutdownTimeout: .seconds(90),
            metricsListener: ListenAddress(host: "::1", port: 9000)))
        #expect(configuration.log == LogSettings(level: .warning, destination: .both, directory: "/var/log/gatehouse"))
        #expect(configuration.authentication == AuthenticationSettings(
            allowAnonymous: true, aclFile: "/srv/gatehouse/etc/acl.conf", passwordFile: "/etc/gatehouse/passwords"))
        #expect(configuration.crlCache == CRLCacheSettings(
            httpTimeout: .milliseconds(500), refreshInterval: .seconds(3600), maxSize: 524_288,
            httpsCACertFile: "/srv/gatehouse/pki/bundle.pem"))
        #expect(configuration.mqtt == MQTTSettings(
            maxPacketSize: 268_435_455, maxInflight: 65535, maxQueuedMessages: 0, retainAvailable: false,
            maxSessionExpiryInterval: .seconds(86_400), maxTopicAlias: 0, sharedSubscription: false))
    }

    @Test func storageLimits() throws {
        #expect(try TestSupport.parse("").storage == StorageLimits(
            maxQueuedBytes: 16 << 20, maxNodeQueuedBytes: 512 << 20, maxRetainedMessages: 1_000_000,
            maxRetainedBytes: 128 << 20, maxSubscriptions: 1000, maxTopicLevels: 128, maxPeerBufferedBytes: 64 << 20))
        let configuration = try TestSupport.parse(
            """
            mqtt.max_queued_bytes = 64KB
            mqtt.max_node_queued_bytes = 1GB
            mqtt.max_retained_messages = 10
            mqtt.max_retained_bytes = 2MB
            mqtt.max_subscriptions = 5
            mqtt.max_topic_levels = 7
            node.max_peer_buffered_bytes = 8MB
            """)
        #expect(configuration.storage == StorageLimits(
            maxQueuedBytes: 64 << 10, maxNodeQueuedBytes: 1 << 30, maxRetainedMessages: 10, maxRetainedBytes: 2 << 20,
            maxSubscriptions: 5, maxTopicLevels: 7, maxPeerBufferedBytes: 8 << 20))
    }

    @Test func fetchRedirectsAndCRLEntryLimit() throws {
        let defaults = try TestSupport.parse("")
        #expect(defaults.node.fetchRedirects == .sameHost)
        #expect(defaults.crlCache.maxEntries == 2_000_000)
        let set = try TestSupport.parse("node.fetch_redirects = none\ncrl_cache_max_entries = 1000")
        #expect(set.node.fetchRedirects == FetchRedirects.none)
        #expect(set.crlCache.maxEntries == 1000)
        #expect(try TestSupport.parse("node.fetch_redirects = any").node.fetchRedirects == .any)
        #expect(TestSupport.error("node.fetch_redirects = elsewhere")?.hasPrefix(
            "test.conf:1: node.fetch_redirects: ") == true)
        #expect(TestSupport.error("crl_cache_max_entries = 0")?.hasPrefix("test.conf:1: crl_cache_max_entries: ") == true)
    }

    @Test func metricsListenerOff() throws {
        #expect(try TestSupport.parse("node.metrics_listener = off").node.metricsListener == nil)
        #expect(try TestSupport.parse("node.metrics_listener = 9100").node.metricsListener
            == ListenAddress(host: "0.0.0.0", port: 9100))
    }

    @Test func everyLevelAndDestination() throws {
        for level in LogSettings.Level.allCases {
            #expect(try TestSupport.parse("log.level = \(level.rawValue)").log.level == level)
        }
        for destination in LogSettings.Destination.allCases {
            #expect(try TestSupport.parse("log.to = \(destination.rawValue)").log.destination == destination)
        }
    }

    @Test func everySSLSubkeyParses() throws {
        let tls = try TestSupport.tls("""
            listener.ssl.s.cacertfile = /pki/ca.pem
            listener.ssl.s.verify = verify_peer
            listener.ssl.s.fail_if_no_peer_cert = true
            listener.ssl.s.tls_versions = tlsv1.2
            listener.ssl.s.ciphers = ECDHE-RSA-AES256-GCM-SHA384, TLS_AES_128_GCM_SHA256
            listener.ssl.s.handshake_timeout = 5s
            listener.ssl.s.peer_cert_as_username = cn
            listener.ssl.s.peer_cert_as_clientid = dn
            listener.ssl.s.enable_crl_check = true
            listener.ssl.s.crl_cache_urls = http://127.0.0.1:8080/ca.crl, https://ca.example/int.crl#x
            listener.ssl.s.crlfile = crl/a.pem,/pki/b.pem
            listener.ssl.s.crl_check_depth = chain
            listener.ssl.s.crl_fail_policy = grace
            listener.ssl.s.crl_stale_grace = 30m
            listener.ssl.s.disconnect_revoked = false
            listener.ssl.s.enable_ocsp_stapling = true
            listener.ssl.s.ocsp_responder_url = http://127.0.0.1:9877
            listener.ssl.s.ocsp_issuer_pem = ../pki/issuer.pem
            listener.ssl.s.ocsp_refresh_interval = 1m
            listener.ssl.s.ocsp_refresh_http_timeout = 2s
            """)
        #expect(tls == TLSSettings(
            keyFile: "/srv/gatehouse/etc/key.pem", certFile: "/srv/gatehouse/etc/cert.pem", caCertFile: "/pki/ca.pem",
            verify: .verifyPeer, failIfNoPeerCert: true, tlsVersions: [.tlsv1_2],
            ciphers: ["ECDHE-RSA-AES256-GCM-SHA384", "TLS_AES_128_GCM_SHA256"], handshakeTimeout: .seconds(5),
            peerCertAsUsername: .cn, peerCertAsClientID: .dn, enableCRLCheck: true,
            crlCacheURLs: ["http://127.0.0.1:8080/ca.crl", "https://ca.example/int.crl#x"],
            crlFiles: ["/srv/gatehouse/etc/crl/a.pem", "/pki/b.pem"], crlCheckDepth: .chain, crlFailPolicy: .grace,
            crlStaleGrace: .seconds(1800), disconnectRevoked: false, enableOCSPStapling: true,
            ocspResponderURL: "http://127.0.0.1:9877", ocspIssuerPEM: "/srv/gatehouse/pki/issuer.pem",
            ocspRefreshInterval: .seconds(60), ocspRefreshHTTPTimeout: .seconds(2)))
    }

    @Test func listeners() throws {
        let configuration = try TestSupport.parse("""
            listener.tcp.external.allow_anonymous = true
            listener.tcp.internal = localhost:11883
            listener.tcp.external = 1883
            \(TestSupport.sslListener)
            listener.ssl.s.allow_anonymous = false
            listener.tcp.v6_only-1 = [::]:1884
            """)
        #expect(configuration.listeners.map(\.identifier) == ["tcp:external", "tcp:internal", "ssl:s", "tcp:v6_only-1"])
        let external = configuration.listeners[0]
        #expect(external == ListenerConfiguration(
            kind: .tcp, name: "external", address: ListenAddress(host: "0.0.0.0", port: 1883), allowAnonymous: true,
            tls: nil, line: 3))
        #expect(configuration.listeners[1].address == ListenAddress(host: "127.0.0.1", port: 11883))
        #expect(configuration.listeners[1].allowAnonymous == nil)
        #expect(configuration.listeners[2].allowAnonymous == false)
        #expect(configuration.listeners[2].tls != nil)
        #expect(configuration.listeners[2].line == 4)
        #expect(configuration.listeners[3].address == ListenAddress(host: "::", port: 1884))
    }

    @Test func sameNameForBothKinds() throws {
        let configuration = try TestSupport.parse("listener.tcp.s = 1883\n" + TestSupport.sslListener)
        #expect(configuration.listeners.map(\.identifier) == ["tcp:s", "ssl:s"])
    }

    // MARK: Line syntax

    @Test func commentsBlanksQuotesAndWhitespace() throws {
        let configuration = try TestSupport.parse(
            "# comment\r\n   # indented comment\r\n\r\n\t log.level\t=  \"debug\"  \r\n"
                + "listener.tcp.t = \"1883\"\n"
                + "log.dir = \"/var/log/with # hash\"\n"
                + "listener.ssl.s = 8883\nlistener.ssl.s.keyfile = k\nlistener.ssl.s.certfile = c\n"
                + "listener.ssl.s.crl_cache_urls = http://h/ca.crl#frag\n")
        #expect(configuration.log.level == .debug)
        #expect(configuration.log.directory == "/var/log/with # hash")
        #expect(configuration.listeners.first?.address.port == 1883)
        #expect(configuration.listeners.last?.tls?.crlCacheURLs == ["http://h/ca.crl#frag"])
        #expect(configuration.listeners.last?.line == 7)
    }

    @Test func lineWithoutEquals() {
        #expect(TestSupport.error("log.level info") == "test.conf:1: expected 'key = value'")
    }

    @Test func emptyKey() {
        #expect(TestSupport.error("\n  = 5") == "test.conf:2: missing key before '='")
    }

    @Test func emptyValue() {
        #expect(TestSupport.errors("log.level =\nlog.to = \"\"") == [
            "test.conf:1: log.level: missing value",
            "test.conf:2: log.to: missing value",
        ])
    }

    @Test func duplicateKey() {
        #expect(TestSupport.error("log.level = info\n\nlog.level = debug")
            == "test.conf:3: log.level: duplicate key (first set on line 1)")
    }

    // MARK: Unknown keys

    @Test func unknownGlobalKeyWithSuggestion() {
        #expect(TestSupport.error("log.levle = info")
            == "test.conf:1: log.levle: unknown key (did you mean 'log.level'?)")
        #expect(TestSupport.error("node.worker_process = 2")
            == "test.conf:1: node.worker_process: unknown key (did you mean 'node.worker_processes'?)")
    }

    @Test func unknownKeyWithoutSuggestion() {
        #expect(TestSupport.error("completely.different = 1") == "test.conf:1: completely.different: unknown key")
    }

    @Test func unknownListenerSubkeyKeepsTheListenerName() {
        #expect(TestSupport.error("listener.ssl.external = 8883\nlistener.ssl.external.keyfile = k\n"
                + "listener.ssl.external.certfile = c\nlistener.ssl.external.verfy = verify_peer")
            == "test.conf:4: listener.ssl.external.verfy: unknown key (did you mean 'listener.ssl.external.verify'?)")
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.acceptor = 8")
            == "test.conf:2: listener.tcp.t.acceptor: unknown key (did you mean 'listener.tcp.t.acceptors'?)")
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.colour = blue")
            == "test.conf:2: listener.tcp.t.colour: unknown key")
    }

    @Test func listenerSubkeysAreComparedWithinTheirKind() {
        // `allow_anonymus` is close to the tcp subkey `allow_anonymous`; `cerfile` is an ssl subkey only.
        #expect(TestSupport.errors("listener.tcp.t = 1883\nlistener.tcp.t.allow_anonymus = true\nlistener.tcp.t.cerfile = c")
            == [
                "test.conf:2: listener.tcp.t.allow_anonymus: unknown key (did you mean 'listener.tcp.t.allow_anonymous'?)",
                "test.conf:3: listener.tcp.t.cerfile: unknown key",
            ])
    }

    @Test func sslSubkeyOnTCPListener() {
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.certfile = c.pem")
            == "test.conf:2: listener.tcp.t.certfile: unknown key (certfile is only valid for ssl listeners)")
    }

    @Test func misspelledListenerPrefix() {
        #expect(TestSupport.error("listner.tcp.edge = 1883")
            == "test.conf:1: listner.tcp.edge: unknown key (did you mean 'listener.tcp.edge'?)")
        #expect(TestSupport.error("listener.tcp = 1883") == "test.conf:1: listener.tcp: unknown key")
    }

    @Test func invalidListenerName() {
        #expect(TestSupport.error("listener.tcp.a b = 1883")
            == "test.conf:1: listener.tcp.a b: invalid listener name 'a b' (use letters, digits, '_' or '-')")
        #expect(TestSupport.error("listener.tcp..x = 1883")
            == "test.conf:1: listener.tcp..x: invalid listener name '' (use letters, digits, '_' or '-')")
    }

    // MARK: Value errors through whole files

    @Test func invalidDuration() {
        #expect(TestSupport.error("node.shutdown_timeout = abc")
            == "test.conf:1: node.shutdown_timeout: invalid duration 'abc' (use a number with a unit: ms, s, m, h, d; e.g. 15s)")
        #expect(TestSupport.error("node.shutdown_timeout = 15")
            == "test.conf:1: node.shutdown_timeout: invalid duration '15' (use a number with a unit: ms, s, m, h, d; e.g. 15s)")
    }

    @Test func durationsBelowTheirFloor() {
        #expect(TestSupport.error("crl_cache_refresh_interval = 500ms")
            == "test.conf:1: crl_cache_refresh_interval: '500ms' is too short (the minimum is 1s)")
        #expect(TestSupport.error(TestSupport.sslListener + "\nlistener.ssl.s.ocsp_refresh_interval = 0s")
            == "test.conf:4: listener.ssl.s.ocsp_refresh_interval: '0s' is too short (the minimum is 1s)")
        #expect(TestSupport.error("node.fetch_refresh_floor = 100ms")
            == "test.conf:1: node.fetch_refresh_floor: '100ms' is too short (the minimum is 1s)")
        #expect(TestSupport.error("crl_cache_http_timeout = 0s")
            == "test.conf:1: crl_cache_http_timeout: '0s' is too short (the minimum is 1ms)")
    }

    @Test func invalidSize() {
        #expect(TestSupport.error("mqtt.max_packet_size = big")
            == "test.conf:1: mqtt.max_packet_size: invalid size 'big' (use bytes or a number with a unit: B, KB, MB, GB; e.g. 64MB)")
        #expect(TestSupport.error("crl_cache_max_size = 99999999999GB")
            == "test.conf:1: crl_cache_max_size: size '99999999999GB' is too large")
        #expect(TestSupport.error("mqtt.max_packet_size = 1GB")
            == "test.conf:1: mqtt.max_packet_size: size '1GB' is out of range (1-268435455 bytes)")
        #expect(TestSupport.error("crl_cache_max_size = 0")
            == "test.conf:1: crl_cache_max_size: size '0' is out of range (1-1073741824 bytes)")
    }

    @Test func invalidBoolean() {
        #expect(TestSupport.error("allow_anonymous = yes")
            == "test.conf:1: allow_anonymous: invalid boolean 'yes' (use true, false, on or off)")
    }

    @Test func invalidIntegers() {
        #expect(TestSupport.errors("mqtt.max_inflight = many\nmqtt.max_topic_alias = 65536\nmqtt.max_queued_messages = -1")
            == [
                "test.conf:1: mqtt.max_inflight: invalid integer 'many'",
                "test.conf:2: mqtt.max_topic_alias: '65536' is out of range (0-65535)",
                "test.conf:3: mqtt.max_queued_messages: '-1' is out of range (0-10000000)",
            ])
        #expect(TestSupport.errors("node.worker_processes = 0\nnode.run_dir = x\nnode.data_dir = y\nmqtt.max_inflight = 0")
            == [
                "test.conf:1: node.worker_processes: '0' is out of range (1-256)",
                "test.conf:4: mqtt.max_inflight: '0' is out of range (1-65535)",
            ])
        #expect(TestSupport.error("node.worker_processes = lots")
            == "test.conf:1: node.worker_processes: invalid value 'lots' (use an integer 1-256 or auto)")
    }

    @Test func invalidChoices() {
        #expect(TestSupport.error("log.level = loud")
            == "test.conf:1: log.level: invalid value 'loud' (use one of: trace, debug, info, notice, warning, error, critical)")
        #expect(TestSupport.error("log.to = syslog")
            == "test.conf:1: log.to: invalid value 'syslog' (use one of: console, file, both)")
        #expect(TestSupport.errors(TestSupport.sslListener + """

            listener.ssl.s.verify = maybe
            listener.ssl.s.peer_cert_as_username = crt
            listener.ssl.s.crl_check_depth = all
            listener.ssl.s.crl_fail_policy = open
            """) == [
                "test.conf:4: listener.ssl.s.verify: invalid value 'maybe' (use one of: verify_peer, verify_none)",
                "test.conf:5: listener.ssl.s.peer_cert_as_username: invalid value 'crt' (use one of: cn, dn)",
                "test.conf:6: listener.ssl.s.crl_check_depth: invalid value 'all' (use one of: leaf, chain)",
                "test.conf:7: listener.ssl.s.crl_fail_policy: invalid value 'open' (use one of: closed, grace)",
            ])
    }

    @Test func invalidAddresses() {
        #expect(TestSupport.errors("""
            listener.tcp.a = 70000
            listener.tcp.b = example.com:1883
            listener.tcp.c = 1883/tcp
            node.metrics_listener = disabled
            """) == [
                "test.conf:1: listener.tcp.a: port out of range (1-65535)",
                "test.conf:2: listener.tcp.b: invalid host 'example.com' (use a literal IPv4 or IPv6 address, or localhost)",
                "test.conf:3: listener.tcp.c: invalid address '1883/tcp' (use PORT, IPv4:PORT or [IPv6]:PORT)",
                "test.conf:4: node.metrics_listener: invalid address 'disabled' (use PORT, IPv4:PORT or [IPv6]:PORT or off)",
            ])
    }

    @Test func twoListenersOnOneAddress() {
        #expect(TestSupport.errors("""
            listener.tcp.a = 1883
            listener.tcp.b = 0.0.0.0:1883
            listener.tcp.c = [::1]:1883
            listener.tcp.d = [0::1]:1883
            """) == [
                "test.conf:2: listener.tcp.b: address 0.0.0.0:1883 is already used by listener.tcp.a (line 1)",
                "test.conf:4: listener.tcp.d: address [::1]:1883 is already used by listener.tcp.c (line 3)",
            ])
    }

    @Test func listenerOnTheMetricsAddress() {
        #expect(TestSupport.error("listener.tcp.m = 127.0.0.1:9469")
            == "test.conf:1: listener.tcp.m: address 127.0.0.1:9469 is already used by node.metrics_listener (default)")
        #expect(TestSupport.error("listener.tcp.m = localhost:9000\nnode.metrics_listener = 127.0.0.1:9000")
            == "test.conf:1: listener.tcp.m: address 127.0.0.1:9000 is already used by node.metrics_listener (line 2)")
        #expect(TestSupport.errors("listener.tcp.m = 127.0.0.1:9469\nnode.metrics_listener = off").isEmpty)
    }

    @Test func invalidURLs() {
        #expect(TestSupport.errors(TestSupport.sslListener + """

            listener.ssl.s.crl_cache_urls = http://ok/ca.crl, ftp://ca.example/ca.crl
            listener.ssl.s.ocsp_responder_url = 127.0.0.1:9877
            """) == [
                "test.conf:4: listener.ssl.s.crl_cache_urls: invalid URL 'ftp://ca.example/ca.crl' (must start with http:// or https://)",
                "test.conf:5: listener.ssl.s.ocsp_responder_url: invalid URL '127.0.0.1:9877' (must start with http:// or https://)",
            ])
    }

    @Test func oldTLSVersions() {
        #expect(TestSupport.error(TestSupport.sslListener + "\nlistener.ssl.s.tls_versions = tlsv1.2,tlsv1.1,tlsv1")
            == "test.conf:4: listener.ssl.s.tls_versions: TLS versions below 1.2 are not supported")
    }

    // MARK: Listener rules

    @Test func subkeyWithoutListenerLine() {
        #expect(TestSupport.errors("listener.ssl.foo.certfile = c.pem\nlistener.ssl.foo.depth = 8") == [
            "test.conf:1: listener.ssl.foo.certfile: no 'listener.ssl.foo = <port>' line defines this listener",
            "test.conf:2: listener.ssl.foo.depth: no 'listener.ssl.foo = <port>' line defines this listener",
        ])
        // A refused key is refused for what it is, with or without its listener.
        #expect(TestSupport.errors("listener.ssl.foo.acceptors = 8") == [
            "test.conf:1: listener.ssl.foo.acceptors: not supported: Erlang VM tuning with no equivalent here "
                + "(each worker accepts on its own event loop)"
        ])
    }

    @Test func sslListenerNeedsKeyAndCertificate() {
        #expect(TestSupport.errors("listener.ssl.s = 8883") == [
            "test.conf:1: listener.ssl.s: keyfile is required for an ssl listener",
            "test.conf:1: listener.ssl.s: certfile is required for an ssl listener",
        ])
        #expect(TestSupport.error("listener.ssl.s = 8883\nlistener.ssl.s.keyfile = k.pem")
            == "test.conf:1: listener.ssl.s: certfile is required for an ssl listener")
    }

    @Test func verifyPeerNeedsCACertificates() {
        #expect(TestSupport.error(TestSupport.sslListener + "\nlistener.ssl.s.verify = verify_peer")
            == "test.conf:4: listener.ssl.s.verify: verify_peer requires listener.ssl.s.cacertfile")
    }

    @Test func peerCertificateChecksNeedVerifyPeer() {
        #expect(TestSupport.errors(TestSupport.sslListener + """

            listener.ssl.s.fail_if_no_peer_cert = true
            listener.ssl.s.enable_crl_check = true
            listener.ssl.s.verify = verify_none
            """) == [
                "test.conf:4: listener.ssl.s.fail_if_no_peer_cert: fail_if_no_peer_cert = true requires verify = verify_peer",
                "test.conf:5: listener.ssl.s.enable_crl_check: enable_crl_check = true requires verify = verify_peer",
            ])
        #expect(TestSupport.errors(TestSupport.sslListener + """

            listener.ssl.s.fail_if_no_peer_cert = false
            listener.ssl.s.enable_crl_check = off
            """).isEmpty)
    }

    @Test func ocspStaplingDefaultsResponderAndIssuer() throws {
        // The responder URL defaults to the certificate's AIA OCSP URL and the issuer to the one found in
        // certfile or cacertfile, so enabling stapling alone is a valid configuration.
        #expect(TestSupport.errors(TestSupport.sslListener + "\nlistener.ssl.s.enable_ocsp_stapling = true").isEmpty)
        let configuration = try TestSupport.parse(TestSupport.sslListener + "\nlistener.ssl.s.enable_ocsp_stapling = true")
        let tls = try #require(configuration.listeners.first?.tls)
        #expect(tls.enableOCSPStapling)
        #expect(tls.ocspResponderURL == nil)
        #expect(tls.ocspIssuerPEM == nil)
    }

    @Test func accessNeedsANumber() {
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.access.x = allow all")
            == "test.conf:2: listener.tcp.t.access.x: unknown key (did you mean 'listener.tcp.t.access.1'?)")
    }

    // MARK: Many errors at once

    @Test func allErrorsAreReportedInLineOrder() {
        #expect(TestSupport.errors("""
            listener.ssl.s = 8883
            log.levle = info
            mqtt.max_inflight = 0
            garbage
            log.level = loud
            log.level = info
            listener.ssl.other.verify = verify_peer
            """) == [
                "test.conf:1: listener.ssl.s: keyfile is required for an ssl listener",
                "test.conf:1: listener.ssl.s: certfile is required for an ssl listener",
                "test.conf:2: log.levle: unknown key (did you mean 'log.level'?)",
                "test.conf:3: mqtt.max_inflight: '0' is out of range (1-65535)",
                "test.conf:4: expected 'key = value'",
                "test.conf:5: log.level: invalid value 'loud' (use one of: trace, debug, info, notice, warning, error, critical)",
                "test.conf:6: log.level: duplicate key (first set on line 5)",
                "test.conf:7: listener.ssl.other.verify: no 'listener.ssl.other = <port>' line defines this listener",
            ])
    }

    @Test func thrownErrorsCarryTheirParts() throws {
        let error = try #require(throws: ConfigurationErrors.self) {
            try TestSupport.parse("log.to = x")
        }
        #expect(error.errors == [ConfigurationError(
            file: "test.conf", line: 1, key: "log.to", message: "invalid value 'x' (use one of: console, file, both)")])
    }

    // MARK: Files on disk

    @Test func referencedFilesMustExist() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["key.pem", "cert.pem", "crl1.pem"] {
            #expect(FileManager.default.createFile(atPath: directory + "/" + name, contents: Data("x".utf8)))
        }
        let text = """
            \(TestSupport.sslListener)
            listener.ssl.s.cacertfile = missing-ca.pem
            listener.ssl.s.crlfile = crl1.pem, crl2.pem, /nonexistent/crl3.pem
            listener.ssl.s.ocsp_issuer_pem = .
            acl_file = acl.conf
            password_file = ./sub/../passwords
            crl_cache_https_cacertfile = bundle.pem
            """
        #expect(TestSupport.errors(text, checkFiles: true, baseDirectory: directory) == [
            "test.conf:4: listener.ssl.s.cacertfile: file not found: \(directory)/missing-ca.pem",
            "test.conf:5: listener.ssl.s.crlfile: file not found: \(directory)/crl2.pem",
            "test.conf:5: listener.ssl.s.crlfile: file not found: /nonexistent/crl3.pem",
            "test.conf:6: listener.ssl.s.ocsp_issuer_pem: not a file: \(directory)",
            "test.conf:7: acl_file: file not found: \(directory)/acl.conf",
            "test.conf:8: password_file: file not found: \(directory)/passwords",
            "test.conf:9: crl_cache_https_cacertfile: file not found: \(directory)/bundle.pem",
        ])
        #expect(TestSupport.errors(text, checkFiles: false, baseDirectory: directory).isEmpty)
        #expect(TestSupport.errors(TestSupport.sslListener, checkFiles: true, baseDirectory: directory).isEmpty)
    }

    @Test func loadReadsAFileAndResolvesPathsAgainstIt() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/etc", withIntermediateDirectories: true)
        let path = directory + "/etc/gatehouse.conf"
        let text = TestSupport.sslListener + "\nlistener.ssl.s.cacertfile = ../var/pki/ca.pem\n"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        let configuration = try ConfigurationLoader.load(
            path: directory + "/etc/../etc/./gatehouse.conf", options: ConfigurationLoadOptions(checkFiles: false))
        #expect(configuration.sourcePath == path)
        #expect(configuration.node.dataDirectory == directory + "/var")
        #expect(configuration.listeners.first?.tls?.keyFile == directory + "/etc/key.pem")
        #expect(configuration.listeners.first?.tls?.caCertFile == directory + "/var/pki/ca.pem")
    }

    @Test func loadReportsErrorsWithThePathAsGiven() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/bad.conf"
        #expect(FileManager.default.createFile(atPath: path, contents: Data("log.level = loud\n".utf8)))
        let error = try #require(throws: ConfigurationErrors.self) {
            try ConfigurationLoader.load(path: path)
        }
        #expect(error.errors.map(\.description) == [
            "\(path):1: log.level: invalid value 'loud' (use one of: trace, debug, info, notice, warning, error, critical)"
        ])
    }

    @Test func unreadableConfigurationFile() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let missing = try #require(throws: ConfigurationErrors.self) {
            try ConfigurationLoader.load(path: directory + "/nope.conf")
        }
        #expect(missing.errors == [ConfigurationError(
            file: directory + "/nope.conf", line: nil, key: nil, message: "file not found: \(directory)/nope.conf")])
        #expect(missing.description == "\(directory)/nope.conf: file not found: \(directory)/nope.conf")

        let notAFile = try #require(throws: ConfigurationErrors.self) {
            try ConfigurationLoader.load(path: directory)
        }
        #expect(notAFile.errors.map(\.message) == ["not a file: \(directory)"])
        #expect(notAFile.errors.first?.line == nil)

        let binary = directory + "/binary.conf"
        #expect(FileManager.default.createFile(atPath: binary, contents: Data([0xff, 0xfe, 0x00, 0xc3])))
        let notText = try #require(throws: ConfigurationErrors.self) {
            try ConfigurationLoader.load(path: binary)
        }
        #expect(notText.errors.map(\.message) == ["file is not valid UTF-8: \(binary)"])
    }
}
