import Testing

@testable import BrokerConfiguration

/// Every numeric key (integers, sizes, durations) has a sane range: the lowest and highest values load, one step
/// beyond either is refused with file:line:key and why. `crl_cache_max_size = 9223372036854775807` used to load
/// and crash-loop the fetcher (`maxSize + 1` overflowed).
@Suite struct NumericRangeTests {
    /// One key's boundaries: the values at both ends load, the ones past them are refused with `tooLow`/`tooHigh`.
    struct Boundary: Sendable, CustomTestStringConvertible {
        var key: String
        var lowest: String
        var belowLowest: String?
        var tooLow: String?
        var highest: String
        var aboveHighest: String
        var tooHigh: String

        var testDescription: String { key }
    }

    static let boundaries: [Boundary] = [
        Boundary(
            key: "node.worker_processes", lowest: "1", belowLowest: "0", tooLow: "'0' is out of range (1-256)",
            highest: "256", aboveHighest: "257", tooHigh: "'257' is out of range (1-256)"),
        Boundary(
            key: "node.shutdown_timeout", lowest: "0s", belowLowest: nil, tooLow: nil,
            highest: "1h", aboveHighest: "1h1ms", tooHigh: "'1h1ms' is too long (the maximum is 1h)"),
        Boundary(
            key: "node.fetch_refresh_floor", lowest: "1s", belowLowest: "999ms",
            tooLow: "'999ms' is too short (the minimum is 1s)",
            highest: "1d", aboveHighest: "1d1s", tooHigh: "'1d1s' is too long (the maximum is 1d)"),
        Boundary(
            key: "mqtt.max_packet_size", lowest: "1", belowLowest: "0",
            tooLow: "size '0' is out of range (1-268435455 bytes)",
            highest: "268435455", aboveHighest: "256MB",
            tooHigh: "size '256MB' is out of range (1-268435455 bytes)"),
        Boundary(
            key: "mqtt.max_inflight", lowest: "1", belowLowest: "0", tooLow: "'0' is out of range (1-65535)",
            highest: "65535", aboveHighest: "65536", tooHigh: "'65536' is out of range (1-65535)"),
        Boundary(
            key: "mqtt.max_queued_messages", lowest: "0", belowLowest: "-1",
            tooLow: "'-1' is out of range (0-10000000)",
            highest: "10000000", aboveHighest: "10000001", tooHigh: "'10000001' is out of range (0-10000000)"),
        Boundary(
            key: "mqtt.max_session_expiry_interval", lowest: "0s", belowLowest: nil, tooLow: nil,
            highest: "4294967295s", aboveHighest: "4294967296s",
            tooHigh: "'4294967296s' is too long (the maximum is 49710d6h28m15s)"),
        Boundary(
            key: "mqtt.max_topic_alias", lowest: "0", belowLowest: "-1", tooLow: "'-1' is out of range (0-65535)",
            highest: "65535", aboveHighest: "65536", tooHigh: "'65536' is out of range (0-65535)"),
        Boundary(
            key: "mqtt.max_queued_bytes", lowest: "1KB", belowLowest: "1023",
            tooLow: "size '1023' is out of range (1024-1073741824 bytes)",
            highest: "1GB", aboveHighest: "1073741825",
            tooHigh: "size '1073741825' is out of range (1024-1073741824 bytes)"),
        Boundary(
            key: "mqtt.max_node_queued_bytes", lowest: "1MB", belowLowest: "1048575",
            tooLow: "size '1048575' is out of range (1048576-1073741824 bytes)",
            highest: "1GB", aboveHighest: "2GB", tooHigh: "size '2GB' is out of range (1048576-1073741824 bytes)"),
        Boundary(
            key: "mqtt.max_retained_messages", lowest: "1", belowLowest: "0",
            tooLow: "'0' is out of range (1-100000000)",
            highest: "100000000", aboveHighest: "100000001", tooHigh: "'100000001' is out of range (1-100000000)"),
        Boundary(
            key: "mqtt.max_retained_bytes", lowest: "1024", belowLowest: "1000",
            tooLow: "size '1000' is out of range (1024-1073741824 bytes)",
            highest: "1073741824", aboveHighest: "1025MB",
            tooHigh: "size '1025MB' is out of range (1024-1073741824 bytes)"),
        Boundary(
            key: "mqtt.max_subscriptions", lowest: "1", belowLowest: "0", tooLow: "'0' is out of range (1-10000000)",
            highest: "10000000", aboveHighest: "10000001", tooHigh: "'10000001' is out of range (1-10000000)"),
        Boundary(
            key: "mqtt.max_topic_levels", lowest: "1", belowLowest: "0", tooLow: "'0' is out of range (1-65535)",
            highest: "65535", aboveHighest: "65536", tooHigh: "'65536' is out of range (1-65535)"),
        Boundary(
            key: "node.max_peer_buffered_bytes", lowest: "1MB", belowLowest: "1KB",
            tooLow: "size '1KB' is out of range (1048576-1073741824 bytes)",
            highest: "1GB", aboveHighest: "1073741825",
            tooHigh: "size '1073741825' is out of range (1048576-1073741824 bytes)"),
        Boundary(
            key: "mqtt.max_topic_alias_bytes", lowest: "1", belowLowest: "0",
            tooLow: "size '0' is out of range (1-67108864 bytes)",
            highest: "64MB", aboveHighest: "67108865", tooHigh: "size '67108865' is out of range (1-67108864 bytes)"),
        Boundary(
            key: "mqtt.max_connect_packet_size", lowest: "64", belowLowest: "63",
            tooLow: "size '63' is out of range (64-268435455 bytes)",
            highest: "268435455", aboveHighest: "256MB",
            tooHigh: "size '256MB' is out of range (64-268435455 bytes)"),
        Boundary(
            key: "crl_cache_http_timeout", lowest: "1ms", belowLowest: "0ms",
            tooLow: "'0ms' is too short (the minimum is 1ms)",
            highest: "1h", aboveHighest: "61m", tooHigh: "'61m' is too long (the maximum is 1h)"),
        Boundary(
            key: "crl_cache_refresh_interval", lowest: "1s", belowLowest: "999ms",
            tooLow: "'999ms' is too short (the minimum is 1s)",
            highest: "30d", aboveHighest: "30d1ms", tooHigh: "'30d1ms' is too long (the maximum is 30d)"),
        Boundary(
            key: "crl_cache_max_size", lowest: "1", belowLowest: "0",
            tooLow: "size '0' is out of range (1-1073741824 bytes)",
            highest: "1GB", aboveHighest: "9223372036854775807",
            tooHigh: "size '9223372036854775807' is out of range (1-1073741824 bytes)"),
    ]

    static let listenerBoundaries: [Boundary] = [
        Boundary(
            key: "max_connections", lowest: "1", belowLowest: "0", tooLow: "'0' is out of range (1-10000000)",
            highest: "10000000", aboveHighest: "10000001", tooHigh: "'10000001' is out of range (1-10000000)"),
        Boundary(
            key: "max_conn_rate", lowest: "1", belowLowest: "0", tooLow: "'0' is out of range (1-1000000)",
            highest: "1000000", aboveHighest: "9223372036854775807",
            tooHigh: "'9223372036854775807' is out of range (1-1000000)"),
        Boundary(
            key: "max_connections_per_address", lowest: "1", belowLowest: "0",
            tooLow: "'0' is out of range (1-10000000)",
            highest: "10000000", aboveHighest: "10000001", tooHigh: "'10000001' is out of range (1-10000000)"),
        Boundary(
            key: "high_watermark", lowest: "1KB", belowLowest: "1023",
            tooLow: "size '1023' is out of range (1024-1073741824 bytes)",
            highest: "1GB", aboveHighest: "1073741825", tooHigh: "size '1073741825' is out of range (1024-1073741824 bytes)"),
        Boundary(
            key: "send_timeout", lowest: "1ms", belowLowest: "0s", tooLow: "'0s' is too short (the minimum is 1ms)",
            highest: "1h", aboveHighest: "61m", tooHigh: "'61m' is too long (the maximum is 1h)"),
        Boundary(
            key: "backlog", lowest: "1", belowLowest: "0", tooLow: "'0' is out of range (1-65535)",
            highest: "65535", aboveHighest: "65536", tooHigh: "'65536' is out of range (1-65535)"),
        Boundary(
            key: "depth", lowest: "0", belowLowest: "-1", tooLow: "'-1' is out of range (0-100)",
            highest: "100", aboveHighest: "101", tooHigh: "'101' is out of range (0-100)"),
        Boundary(
            key: "handshake_timeout", lowest: "1ms", belowLowest: "0s", tooLow: "'0s' is too short (the minimum is 1ms)",
            highest: "1h", aboveHighest: "106751991167d", tooHigh: "'106751991167d' is too long (the maximum is 1h)"),
        Boundary(
            key: "crl_stale_grace", lowest: "0s", belowLowest: nil, tooLow: nil,
            highest: "30d", aboveHighest: "31d", tooHigh: "'31d' is too long (the maximum is 30d)"),
        Boundary(
            key: "ocsp_refresh_interval", lowest: "1s", belowLowest: "0s",
            tooLow: "'0s' is too short (the minimum is 1s)",
            highest: "30d", aboveHighest: "720h1s", tooHigh: "'720h1s' is too long (the maximum is 30d)"),
        Boundary(
            key: "ocsp_refresh_http_timeout", lowest: "1ms", belowLowest: "0ms",
            tooLow: "'0ms' is too short (the minimum is 1ms)",
            highest: "1h", aboveHighest: "2h", tooHigh: "'2h' is too long (the maximum is 1h)"),
    ]

    @Test(arguments: boundaries)
    func globalKeyBoundaries(_ boundary: Boundary) {
        check(boundary, prefix: "", key: boundary.key, line: 1)
    }

    @Test(arguments: listenerBoundaries)
    func listenerKeyBoundaries(_ boundary: Boundary) {
        check(boundary, prefix: TestSupport.sslListener + "\n", key: "listener.ssl.s." + boundary.key, line: 4)
    }

    @Test func proxyProtocolTimeoutBoundaries() {
        let prefix = "listener.tcp.t = 1883\nlistener.tcp.t.proxy_protocol = true\n"
        check(
            Boundary(
                key: "proxy_protocol_timeout", lowest: "1ms", belowLowest: "0s",
                tooLow: "'0s' is too short (the minimum is 1ms)",
                highest: "1h", aboveHighest: "3601s", tooHigh: "'3601s' is too long (the maximum is 1h)"),
            prefix: prefix, key: "listener.tcp.t.proxy_protocol_timeout", line: 3)
    }

    @Test func accessRuleNumbersAreBounded() {
        #expect(TestSupport.errors("listener.tcp.t = 1883\nlistener.tcp.t.access.0 = deny all").isEmpty)
        #expect(TestSupport.errors("listener.tcp.t = 1883\nlistener.tcp.t.access.1000000 = deny all").isEmpty)
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.access.1000001 = deny all")
            == "test.conf:2: listener.tcp.t.access.1000001: access rule number out of range (0-1000000)")
        #expect(TestSupport.error("listener.tcp.t = 1883\nlistener.tcp.t.access.99999999999999999999 = deny all")
            == "test.conf:2: listener.tcp.t.access.99999999999999999999: access rule number out of range (0-1000000)")
    }

    /// Every numeric key of the schema has an upper bound far from the 64-bit limits, so a new key cannot be
    /// added without one.
    @Test func everyNumericKeyIsBounded() {
        for specification in KnownKeys.global + KnownKeys.listenerSubkeys {
            switch specification.kind {
            case .integer(let range), .integerOrAuto(let range), .size(let range):
                #expect(range.upperBound <= 1 << 30, "\(specification.name) has no sane upper bound")
            case .duration(_, let maximum):
                #expect(maximum <= .seconds(Int64(UInt32.max)), "\(specification.name) has no sane upper bound")
            default:
                break
            }
        }
    }

    private func check(
        _ boundary: Boundary, prefix: String, key: String, line: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(
            TestSupport.errors(prefix + "\(key) = \(boundary.lowest)").isEmpty, "\(key) = \(boundary.lowest)",
            sourceLocation: sourceLocation)
        #expect(
            TestSupport.errors(prefix + "\(key) = \(boundary.highest)").isEmpty, "\(key) = \(boundary.highest)",
            sourceLocation: sourceLocation)
        #expect(
            TestSupport.errors(prefix + "\(key) = \(boundary.aboveHighest)")
                == ["test.conf:\(line): \(key): \(boundary.tooHigh)"], sourceLocation: sourceLocation)
        if let below = boundary.belowLowest, let tooLow = boundary.tooLow {
            #expect(
                TestSupport.errors(prefix + "\(key) = \(below)") == ["test.conf:\(line): \(key): \(tooLow)"],
                sourceLocation: sourceLocation)
        }
    }
}
