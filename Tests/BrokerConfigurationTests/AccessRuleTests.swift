import Testing

@testable import BrokerConfiguration

/// The `access.<N>` rule matcher: first match in `N` order wins, no match allows (EMQX/esockd), IPv4 and IPv6,
/// IPv4-mapped IPv6 addresses matched as IPv4.
@Suite struct AccessRuleTests {
    private func rules(_ lines: [(Int, String)]) throws -> AccessRules {
        var parsed: [AccessRule] = []
        for (number, text) in lines {
            parsed.append(try AccessRule.parse(text, number: number))
        }
        return AccessRules(parsed)
    }

    private func bytes(_ text: String) throws -> [UInt8] {
        try #require(IPNetwork.addressBytes(text))
    }

    @Test func firstMatchInNumberOrderWins() throws {
        // Written out of order: access.2 (deny 127.0.0.2) is evaluated before access.10 (allow all).
        let access = try rules([(10, "allow all"), (2, "deny 127.0.0.2"), (1, "allow 127.0.0.0/30")])
        #expect(try access.allows(bytes("127.0.0.1")))
        // 127.0.0.2 is inside access.1's 127.0.0.0/30 (allow), which comes first.
        #expect(try access.allows(bytes("127.0.0.2")))
        #expect(try access.decidingRule(for: bytes("127.0.0.2"))?.number == 1)
        let strict = try rules([(1, "deny 127.0.0.2"), (2, "allow all")])
        #expect(try !strict.allows(bytes("127.0.0.2")))
        #expect(try strict.allows(bytes("127.0.0.1")))
    }

    @Test func noMatchAllows() throws {
        let access = try rules([(1, "deny 10.0.0.0/8")])
        #expect(try access.allows(bytes("192.168.1.1")))
        #expect(try access.decidingRule(for: bytes("192.168.1.1")) == nil)
        #expect(try !access.allows(bytes("10.200.3.4")))
        #expect(AccessRules([]).allows([127, 0, 0, 1]))
    }

    @Test func anUnknownAddressMatchesOnlyAllRules() throws {
        #expect(try rules([(1, "allow 10.0.0.0/8"), (2, "deny all")]).allows(nil) == false)
        #expect(try rules([(1, "deny 10.0.0.0/8")]).allows(nil))
        #expect(try rules([(1, "allow all")]).allows(nil))
    }

    @Test func denyAllAtTheEndAdmitsOnlyTheListed() throws {
        let access = try rules([(1, "allow 192.168.0.0/16"), (2, "allow ::1"), (3, "deny all")])
        #expect(try access.allows(bytes("192.168.7.7")))
        #expect(try access.allows(bytes("::1")))
        #expect(try !access.allows(bytes("192.169.0.1")))
        #expect(try !access.allows(bytes("::2")))
    }

    @Test func ipv6Networks() throws {
        let access = try rules([(1, "deny 2001:db8::/32"), (2, "allow all")])
        #expect(try !access.allows(bytes("2001:db8:1234::1")))
        #expect(try access.allows(bytes("2001:db9::1")))
        // An IPv4 rule never matches an IPv6 address and the other way round.
        let v4 = try rules([(1, "deny 0.0.0.0/0")])
        #expect(try v4.allows(bytes("2001:db8::1")))
        #expect(try !v4.allows(bytes("8.8.8.8")))
    }

    @Test func ipv4MappedAddressesMatchIPv4Rules() throws {
        let access = try rules([(1, "deny 127.0.0.2/32")])
        #expect(try !access.allows(bytes("::ffff:127.0.0.2")))
        #expect(try access.allows(bytes("::ffff:127.0.0.1")))
    }

    @Test func networksAreNormalized() throws {
        let network = try #require(IPNetwork(parsing: "10.1.2.3/8"))
        #expect(network.description == "10.0.0.0/8")
        #expect(IPNetwork(parsing: "10.1.2.3")?.description == "10.1.2.3/32")
        #expect(IPNetwork(parsing: "2001:db8::1/33")?.description == "2001:db8::/33")
        #expect(IPNetwork(parsing: "0.0.0.0/0")?.contains([1, 2, 3, 4]) == true)
        #expect(IPNetwork(parsing: "10.0.0.0/9")?.contains([10, 127, 255, 255]) == true)
        #expect(IPNetwork(parsing: "10.0.0.0/9")?.contains([10, 128, 0, 0]) == false)
        #expect(IPNetwork(parsing: "1.2.3.4/33") == nil)
        #expect(IPNetwork(parsing: "::/129") == nil)
        #expect(IPNetwork(parsing: "1.2.3/8") == nil)
    }
}
