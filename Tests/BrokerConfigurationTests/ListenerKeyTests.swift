import Testing

@testable import BrokerConfiguration

/// The EMQX listener keys that used to be accepted and ignored: each now takes effect (parsed into the model) or
/// is refused with file:line:key and why.
@Suite struct ListenerKeyTests {
    @Test func acceptDefaults() throws {
        let configuration = try TestSupport.parse("listener.tcp.t = 1883")
        let accept = try #require(configuration.listeners.first?.accept)
        #expect(accept == AcceptSettings())
        #expect(accept.access.isEmpty)
        #expect(accept.maxConnections == nil)
        #expect(accept.maxConnectionRate == nil)
        #expect(accept.backlog == 1024)
        #expect(accept.noDelay)
        #expect(accept.reuseAddress)
        #expect(!accept.proxyProtocol)
        #expect(accept.proxyProtocolTimeout == .seconds(3))
        #expect(accept.maxConnectionsPerAddress == nil)
        #expect(configuration.listeners.first?.backPressure == BackPressureSettings())
        #expect(BackPressureSettings() == BackPressureSettings(
            highWatermark: 1_048_576, sendTimeout: .seconds(15), sendTimeoutClose: true))
    }

    @Test(arguments: [ListenerConfiguration.Kind.tcp, .ssl])
    func backPressureKeysParse(kind: ListenerConfiguration.Kind) throws {
        let listener = kind == .tcp ? "listener.tcp.s = 1883" : TestSupport.sslListener
        let p = "listener.\(kind.rawValue).s"
        let configuration = try TestSupport.parse("""
            \(listener)
            \(p).high_watermark = 256KB
            \(p).send_timeout = 5s
            \(p).send_timeout_close = off
            \(p).max_connections_per_address = 20
            """)
        let listenerConfiguration = try #require(configuration.listeners.first)
        #expect(listenerConfiguration.backPressure == BackPressureSettings(
            highWatermark: 256 * 1024, sendTimeout: .seconds(5), sendTimeoutClose: false))
        #expect(listenerConfiguration.accept.maxConnectionsPerAddress == 20)
    }

    @Test func connectionLimitsOfMQTTParse() throws {
        let mqtt = try TestSupport.parse("mqtt.max_topic_alias_bytes = 1MB\nmqtt.max_connect_packet_size = 8KB").mqtt
        #expect(mqtt.maxTopicAliasBytes == 1 << 20)
        #expect(mqtt.maxConnectPacketSize == 8 << 10)
        #expect(mqtt.maxTopicAlias == 10)
    }

    @Test(arguments: [ListenerConfiguration.Kind.tcp, .ssl])
    func acceptKeysParse(kind: ListenerConfiguration.Kind) throws {
        let listener = kind == .tcp ? "listener.tcp.s = 1883" : TestSupport.sslListener
        let p = "listener.\(kind.rawValue).s"
        let configuration = try TestSupport.parse("""
            \(listener)
            \(p).access.10 = allow all
            \(p).access.2 = deny 10.0.0.0/8
            \(p).access.1 = allow 10.1.0.0/16
            \(p).max_connections = 1024000
            \(p).max_conn_rate = 1000
            \(p).backlog = 512
            \(p).nodelay = false
            \(p).reuseaddr = off
            \(p).proxy_protocol = on
            \(p).proxy_protocol_timeout = 5s
            """)
        let accept = try #require(configuration.listeners.first?.accept)
        #expect(accept.access.rules.map(\.number) == [1, 2, 10])
        #expect(accept.access.rules.map(\.description) == ["allow 10.1.0.0/16", "deny 10.0.0.0/8", "allow all"])
        #expect(accept.maxConnections == 1_024_000)
        #expect(accept.maxConnectionRate == 1000)
        #expect(accept.backlog == 512)
        #expect(!accept.noDelay)
        #expect(!accept.reuseAddress)
        #expect(accept.proxyProtocol)
        #expect(accept.proxyProtocolTimeout == .seconds(5))
    }

    @Test func tlsKeysParse() throws {
        let tls = try TestSupport.tls("""
            listener.ssl.s.depth = 3
            listener.ssl.s.reuse_sessions = false
            listener.ssl.s.honor_cipher_order = off
            listener.ssl.s.secure_renegotiate = on
            """)
        #expect(tls.verifyDepth == 3)
        #expect(!tls.reuseSessions)
        #expect(!tls.honorCipherOrder)
        let defaults = try TestSupport.tls("")
        #expect(defaults.verifyDepth == 10)
        #expect(defaults.reuseSessions)
        #expect(defaults.honorCipherOrder)
    }

    @Test func insecureRenegotiationIsRefused() {
        #expect(TestSupport.error(TestSupport.sslListener + "\nlistener.ssl.s.secure_renegotiate = false")
            == "test.conf:4: listener.ssl.s.secure_renegotiate: false is not supported: renegotiation is disabled "
                + "entirely, so no insecure renegotiation can happen (remove the line or set true)")
    }

    @Test func tlsKeysAreOnlyForSSLListeners() {
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.depth = 3")
            == "test.conf:2: listener.tcp.t.depth: unknown key (depth is only valid for ssl listeners)")
    }

    @Test(arguments: [
        ("acceptors", "16", "not supported: Erlang VM tuning with no equivalent here (each worker accepts on its own event loop)"),
        ("active_n", "100", "not supported: Erlang VM tuning with no equivalent here (each worker accepts on its own event loop)"),
        ("zone", "external", "not supported: Gatehouse has no zones; set the MQTT limits with the mqtt.* keys"),
        ("rate_limit", "100KB,10s", "not supported: there is no byte-rate limit per connection (high_watermark, send_timeout and send_timeout_close bound what a client that does not read can cost)"),
        ("dhfile", "etc/certs/dh-params.pem", "not supported: only ECDHE key exchange is offered, so Diffie-Hellman parameters are never used"),
    ])
    func refusedKeys(subkey: String, value: String, reason: String) {
        #expect(TestSupport.error(TestSupport.sslListener + "\nlistener.ssl.s.\(subkey) = \(value)")
            == "test.conf:4: listener.ssl.s.\(subkey): \(reason)")
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.\(subkey) = \(value)")
            == "test.conf:2: listener.tcp.t.\(subkey): \(reason)")
    }

    @Test func noKeyIsAcceptedWithoutEffect() {
        // The refused keys and the keys that act are disjoint, and together cover every EMQX key that used to be
        // accepted and ignored.
        let acting = Set(KnownKeys.listenerSubkeys.map(\.name))
        let refused = Set(ConfigurationLoader.refusedListenerSubkeys)
        #expect(acting.isDisjoint(with: refused))
        let formerlyIgnored: Set = [
            "acceptors", "max_connections", "max_conn_rate", "zone", "backlog", "nodelay", "reuseaddr",
            "send_timeout", "send_timeout_close", "active_n", "rate_limit", "proxy_protocol",
            "proxy_protocol_timeout", "depth", "dhfile", "secure_renegotiate", "reuse_sessions", "honor_cipher_order",
        ]
        #expect(formerlyIgnored.isSubset(of: acting.union(refused)))
    }

    @Test func proxyProtocolTimeoutNeedsProxyProtocol() {
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.proxy_protocol_timeout = 5s")
            == "test.conf:2: listener.tcp.t.proxy_protocol_timeout: has no effect without "
                + "listener.tcp.t.proxy_protocol = true")
        #expect(TestSupport.error(
            "listener.tcp.t = 1883\nlistener.tcp.t.proxy_protocol = false\nlistener.tcp.t.proxy_protocol_timeout = 5s")
            == "test.conf:3: listener.tcp.t.proxy_protocol_timeout: has no effect without "
                + "listener.tcp.t.proxy_protocol = true")
    }

    @Test func badAccessRules() {
        let listener = "listener.tcp.t = 1883\n"
        #expect(TestSupport.error(listener + "listener.tcp.t.access.1 = permit all")
            == "test.conf:2: listener.tcp.t.access.1: invalid access rule 'permit all' (use allow or deny, then all "
                + "or an IPv4/IPv6 CIDR; e.g. deny 10.0.0.0/8)")
        #expect(TestSupport.error(listener + "listener.tcp.t.access.1 = deny")
            == "test.conf:2: listener.tcp.t.access.1: invalid access rule 'deny' (use allow or deny, then all "
                + "or an IPv4/IPv6 CIDR; e.g. deny 10.0.0.0/8)")
        for network in ["10.0.0.0/33", "10.0.0/8", "host.example", "::1/129", "10.0.0.0/", "10.0.0.0/-1", "1.2.3.4/8/8"] {
            #expect(TestSupport.error(listener + "listener.tcp.t.access.1 = deny \(network)")
                == "test.conf:2: listener.tcp.t.access.1: invalid network '\(network)' in access rule (use all, an IP "
                    + "address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32)")
        }
        #expect(TestSupport.error(listener + "listener.tcp.t.access.1 = deny all\nlistener.tcp.t.access.01 = allow all")
            == "test.conf:3: listener.tcp.t.access.01: duplicate access rule 1 (first set on line 2)")
        #expect(TestSupport.error("listener.tcp.t.access.1 = deny all")
            == "test.conf:1: listener.tcp.t.access.1: no 'listener.tcp.t = <port>' line defines this listener")
    }

    @Test func peerCertIdentityNeedsVerifyPeer() {
        #expect(TestSupport.error(TestSupport.sslListener + "\nlistener.ssl.s.peer_cert_as_username = cn")
            == "test.conf:4: listener.ssl.s.peer_cert_as_username: requires verify = verify_peer")
        #expect(TestSupport.errors(TestSupport.sslListener + """

            listener.ssl.s.cacertfile = ca.pem
            listener.ssl.s.verify = verify_peer
            listener.ssl.s.peer_cert_as_clientid = dn
            """).isEmpty)
    }
}
