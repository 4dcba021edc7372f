import Testing

@testable import BrokerConfiguration

/// The value parsers on their own; `ConfigurationLoaderTests` checks them again through whole files.
@Suite struct ConfigurationValueParsingTests {
    // MARK: Durations

    @Test(arguments: [
        ("15s", Duration.seconds(15)), ("5m", .seconds(300)), ("2h", .seconds(7200)), ("1d", .seconds(86_400)),
        ("500ms", .milliseconds(500)), ("1h30m", .seconds(5400)), ("1m30s500ms", .milliseconds(90_500)),
        ("0s", .zero), ("90s", .seconds(90)),
    ])
    func durations(text: String, expected: Duration) throws {
        #expect(try ConfigurationValue.parseDuration(text, maximum: .seconds(86_400)) == expected)
    }

    @Test(arguments: ["abc", "15", "15 s", "s", "1x", "-5s", "1.5s", "15S", "1h30", "ms", ""])
    func invalidDurations(text: String) {
        #expect(throws: ValueError(
            message: "invalid duration '\(text)' (use a number with a unit: ms, s, m, h, d; e.g. 15s)"
        )) {
            try ConfigurationValue.parseDuration(text, maximum: .seconds(86_400))
        }
    }

    @Test(arguments: ["99999999999999999999d", "9999999999999999d", "9223372036854775807ms1ms", "1d1ms", "25h"])
    func durationsAboveTheMaximum(text: String) {
        #expect(throws: ValueError(message: "'\(text)' is too long (the maximum is 1d)")) {
            try ConfigurationValue.parseDuration(text, maximum: .seconds(86_400))
        }
    }

    @Test(arguments: [
        (Duration.zero, "0s"), (.milliseconds(1), "1ms"), (.seconds(60), "1m"), (.seconds(5400), "1h30m"),
        (.milliseconds(90_500), "1m30s500ms"), (.seconds(86_400 + 1), "1d1s"),
    ])
    func formattedDurations(duration: Duration, text: String) {
        #expect(ConfigurationValue.format(duration) == text)
    }

    // MARK: Sizes

    @Test(arguments: [
        ("100", 100), ("100B", 100), ("100b", 100), ("512KB", 524_288), ("2k", 2048), ("10MB", 10_485_760),
        ("64mb", 67_108_864), ("1GB", 1_073_741_824), ("1g", 1_073_741_824), ("0", 0),
    ])
    func sizes(text: String, expected: Int) throws {
        #expect(try ConfigurationValue.parseSize(text) == expected)
    }

    @Test(arguments: ["abc", "10TB", "MB", "1.5MB", "-1", "10 MB", ""])
    func invalidSizes(text: String) {
        #expect(throws: ValueError(
            message: "invalid size '\(text)' (use bytes or a number with a unit: B, KB, MB, GB; e.g. 64MB)"
        )) {
            try ConfigurationValue.parseSize(text)
        }
    }

    @Test(arguments: ["9223372036854775807GB", "99999999999999999999", "9007199254740992KB"])
    func sizeOverflow(text: String) {
        #expect(throws: ValueError(message: "size '\(text)' is too large")) {
            try ConfigurationValue.parseSize(text)
        }
    }

    // MARK: Booleans and integers

    @Test func booleans() throws {
        #expect(try ConfigurationValue.parseBoolean("true"))
        #expect(try ConfigurationValue.parseBoolean("on"))
        #expect(try !ConfigurationValue.parseBoolean("false"))
        #expect(try !ConfigurationValue.parseBoolean("off"))
        for text in ["yes", "no", "TRUE", "1", "0"] {
            #expect(throws: ValueError(message: "invalid boolean '\(text)' (use true, false, on or off)")) {
                try ConfigurationValue.parseBoolean(text)
            }
        }
    }

    @Test func integers() throws {
        #expect(try ConfigurationValue.parseInteger("32", in: 1...65535) == 32)
        #expect(try ConfigurationValue.parseInteger("0", in: 0...5) == 0)
        #expect(throws: ValueError(message: "invalid integer 'abc'")) {
            try ConfigurationValue.parseInteger("abc", in: 1...10)
        }
        #expect(throws: ValueError(message: "invalid integer '1.5'")) {
            try ConfigurationValue.parseInteger("1.5", in: 1...10)
        }
        #expect(throws: ValueError(message: "'-1' is out of range (1-10)")) {
            try ConfigurationValue.parseInteger("-1", in: 1...10)
        }
        #expect(throws: ValueError(message: "'99999999999999999999' is out of range (1-10)")) {
            try ConfigurationValue.parseInteger("99999999999999999999", in: 1...10)
        }
    }

    // MARK: Addresses

    @Test(arguments: [
        ("1883", "0.0.0.0", 1883), ("127.0.0.1:1883", "127.0.0.1", 1883), ("localhost:8883", "127.0.0.1", 8883),
        ("[::1]:8883", "::1", 8883), ("[::]:1", "::", 1), ("[0:0:0:0:0:0:0:1]:65535", "::1", 65535),
        ("[fe80::1]:1883", "fe80::1", 1883), ("10.0.0.7:1", "10.0.0.7", 1),
    ])
    func addresses(text: String, host: String, port: Int) throws {
        #expect(try ConfigurationValue.parseAddress(text) == ListenAddress(host: host, port: port))
    }

    @Test(arguments: ["0", "65536", "127.0.0.1:0", "[::1]:70000"])
    func portsOutOfRange(text: String) {
        #expect(throws: ValueError(message: "port out of range (1-65535)")) {
            try ConfigurationValue.parseAddress(text)
        }
    }

    @Test(arguments: ["abc", "1883x", "::1:1883", "[::1]", "[::1]:", "127.0.0.1:", "[::1:1883", ":", "-1"])
    func invalidAddresses(text: String) {
        #expect(throws: ValueError(message: "invalid address '\(text)' (use PORT, IPv4:PORT or [IPv6]:PORT)")) {
            try ConfigurationValue.parseAddress(text)
        }
    }

    @Test(arguments: ["example.com", "256.1.1.1", "1.2.3", "", "01.2.3.4"])
    func invalidHosts(host: String) {
        #expect(throws: ValueError(
            message: "invalid host '\(host)' (use a literal IPv4 or IPv6 address, or localhost)"
        )) {
            try ConfigurationValue.parseAddress("\(host):1883")
        }
    }

    @Test func bracketsAreOnlyForIPv6() {
        #expect(throws: ValueError(message: "invalid host '127.0.0.1' (only IPv6 addresses go in brackets)")) {
            try ConfigurationValue.parseAddress("[127.0.0.1]:1883")
        }
    }

    @Test func listenAddressDescription() {
        #expect(ListenAddress(host: "::1", port: 8883).description == "[::1]:8883")
        #expect(ListenAddress(host: "0.0.0.0", port: 1883).description == "0.0.0.0:1883")
    }

    // MARK: Lists, URLs, TLS versions

    @Test func lists() {
        #expect(ConfigurationValue.parseList(" a, b ,,c, ") == ["a", "b", "c"])
        #expect(ConfigurationValue.parseList("single") == ["single"])
        #expect(ConfigurationValue.parseList(" , ,") == [])
    }

    @Test func urls() throws {
        #expect(try ConfigurationValue.parseURL("http://127.0.0.1:8080/ca.crl") == "http://127.0.0.1:8080/ca.crl")
        #expect(try ConfigurationValue.parseURL("HTTPS://ca.example/x#y") == "HTTPS://ca.example/x#y")
        for text in ["ftp://x", "http://", "127.0.0.1/ca.crl", "httpx://a"] {
            #expect(throws: ValueError(message: "invalid URL '\(text)' (must start with http:// or https://)")) {
                try ConfigurationValue.parseURL(text)
            }
        }
    }

    @Test func tlsVersions() throws {
        #expect(try ConfigurationValue.parseTLSVersions("tlsv1.2") == [.tlsv1_2])
        #expect(try ConfigurationValue.parseTLSVersions("tlsv1.3, tlsv1.2") == [.tlsv1_3, .tlsv1_2])
        #expect(try ConfigurationValue.parseTLSVersions("TLSv1.3,tlsv1.3") == [.tlsv1_3])
        for text in ["tlsv1", "tlsv1.1", "tlsv1.3,tlsv1.1", "sslv3"] {
            #expect(throws: ValueError(message: "TLS versions below 1.2 are not supported")) {
                try ConfigurationValue.parseTLSVersions(text)
            }
        }
        #expect(throws: ValueError(message: "invalid TLS version 'tlsv2' (use tlsv1.2, tlsv1.3)")) {
            try ConfigurationValue.parseTLSVersions("tlsv2")
        }
        #expect(throws: ValueError(message: "at least one TLS version is required (tlsv1.2, tlsv1.3)")) {
            try ConfigurationValue.parseTLSVersions(" , ")
        }
    }
}
