import BrokerCore
import Testing

@Suite struct TopicFilterTests {
    // MARK: Validation (§4.7.1)

    @Test(arguments: [
        "#", "+", "+/+", "/+", "+/", "sport/#", "sport/tennis/#", "sport/tennis/player1/#", "+/tennis/#",
        "sport/+/player1", "sport/tennis/+", "a//b", "/", "//", "$SYS/#", "$SYS/monitor/+", "a/+/+/+/#",
        "$share", "$sharex/g/a", "$SHARE/g/a", "ACCOUNTS/é",
    ])
    func acceptsValidFilters(_ string: String) throws {
        let parsed = try TopicFilter(string)
        #expect(parsed.string == string)
        #expect(!parsed.isShared)
        #expect(parsed.shareName == nil)
        #expect(parsed.matchFilter == Substring(string))
    }

    @Test(arguments: [
        ("", TopicValidationError.empty),
        ("sport/tennis#", .misplacedMultiLevelWildcard),
        ("sport/tennis/#/ranking", .misplacedMultiLevelWildcard),
        ("#/a", .misplacedMultiLevelWildcard),
        ("a/#b", .misplacedMultiLevelWildcard),
        ("##", .misplacedMultiLevelWildcard),
        ("a/#/", .misplacedMultiLevelWildcard),
        ("sport+", .misplacedSingleLevelWildcard),
        ("sport/+tennis", .misplacedSingleLevelWildcard),
        ("++", .misplacedSingleLevelWildcard),
        ("a/b+/c", .misplacedSingleLevelWildcard),
        ("a\u{0}", .containsNullCharacter),
        ("$share/g/a\u{0}", .containsNullCharacter),
    ])
    func rejectsInvalidFilters(_ string: String, _ error: TopicValidationError) {
        #expect(throws: error) { try TopicFilter(string) }
    }

    @Test func enforcesTheLengthLimit() throws {
        _ = try TopicFilter(String(repeating: "+/", count: 32_767) + "#")
        #expect(throws: TopicValidationError.tooLong(byteCount: 65_536)) {
            try TopicFilter(String(repeating: "a", count: 65_536))
        }
    }

    @Test func reportsWildcards() throws {
        #expect(try TopicFilter("a/+").hasWildcards)
        #expect(try TopicFilter("#").hasWildcards)
        #expect(try !TopicFilter("a/b").hasWildcards)
        #expect(try TopicFilter("+/a").startsWithWildcard)
        #expect(try TopicFilter("$share/g/#").startsWithWildcard)
        #expect(try !TopicFilter("a/#").startsWithWildcard)
    }

    // MARK: Shared subscriptions (MQTT 5 §4.8.2)

    @Test(arguments: [
        ("$share/g/a/b", "g", "a/b"),
        ("$share/group1/#", "group1", "#"),
        ("$share/g/+", "g", "+"),
        ("$share/g//", "g", "/"),
        ("$share/g/$SYS/#", "g", "$SYS/#"),
        ("$share/$share/$share/x", "$share", "$share/x"),
        ("$share/日本/a", "日本", "a"),
    ])
    func parsesSharedSubscriptions(_ string: String, _ shareName: String, _ matchFilter: String) throws {
        let parsed = try TopicFilter(string)
        #expect(parsed.isShared)
        #expect(parsed.shareName == shareName)
        #expect(parsed.matchFilter == Substring(matchFilter))
        #expect(parsed.string == string)
    }

    @Test(arguments: [
        ("$share/", TopicValidationError.invalidShareName),
        ("$share//a", .invalidShareName),
        ("$share/g+/a", .invalidShareName),
        ("$share/+/a", .invalidShareName),
        ("$share/#/a", .invalidShareName),
        ("$share/g#", .invalidShareName),
        ("$share/g", .missingSharedTopicFilter),
        ("$share/g/", .missingSharedTopicFilter),
        ("$share/g/a/#/b", .misplacedMultiLevelWildcard),
        ("$share/g/a+", .misplacedSingleLevelWildcard),
    ])
    func rejectsInvalidSharedSubscriptions(_ string: String, _ error: TopicValidationError) {
        #expect(throws: error) { try TopicFilter(string) }
    }

    @Test func treatsShareAsOrdinaryWithoutSharedSubscriptions() throws {
        let parsed = try TopicFilter("$share/g/a", sharedSubscriptions: false)
        #expect(!parsed.isShared)
        #expect(parsed.matchFilter == "$share/g/a")
        #expect(parsed.matches(try name("$share/g/a")))
        // Without shared subscriptions an empty share name is just an empty level.
        _ = try TopicFilter("$share//a", sharedSubscriptions: false)
    }

    @Test func comparesWholeFilterStringsByteWise() throws {
        #expect(try TopicFilter("$share/g/a") != TopicFilter("a"))
        #expect(try TopicFilter("$share/g/a") != TopicFilter("$share/h/a"))
        #expect(try TopicFilter("caf\u{E9}") != TopicFilter("cafe\u{301}"))
        #expect(try TopicFilter("a/+") == TopicFilter("a/+"))
    }

    // MARK: Matching (§4.7.1, §4.7.2)

    static let specCases: [(filter: String, topic: String, matches: Bool)] = [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/#", "sport", true),
        ("sport/tennis/#", "sport/tennis", true),
        ("sport/tennis/#", "sport/tennisx", false),
        ("#", "sport", true),
        ("#", "/", true),
        ("#", "a/b/c/d", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+", "sport", true),
        ("+", "/finance", false),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+/finance", "/finance", true),
        ("+", "", false),
        ("+/tennis/#", "sport/tennis/player1/ranking", true),
        ("+/tennis/#", "sport/tennis", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("sport/+/player1", "sport//player1", true),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("a/b", "a//b", false),
        ("a//b", "a/b", false),
        ("a/#", "a/", true),
        ("a/+", "a/", true),
        ("a/+/#", "a/", true),
        ("ACCOUNTS", "Accounts", false),
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("#", "$SYS", false),
        ("+", "$SYS", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+/Clients", "$SYS/monitor/Clients", true),
        ("a/$SYS", "a/$SYS", true),
        ("a/+", "a/$SYS", true),
        ("a/#", "a/$SYS/x", true),
        ("caf\u{E9}", "cafe\u{301}", false),
    ]

    @Test(arguments: specCases)
    func matchesLikeTheSpec(_ testCase: (filter: String, topic: String, matches: Bool)) throws {
        guard !testCase.topic.isEmpty else {
            // An empty topic is not a topic name at all.
            #expect(throws: TopicValidationError.empty) { try TopicName(testCase.topic) }
            return
        }
        let topic = try name(testCase.topic)
        #expect(try filter(testCase.filter).matches(topic) == testCase.matches)
        #expect(referenceMatches(filter: testCase.filter, topic: testCase.topic) == testCase.matches)
        #expect(try filter("$share/g/" + testCase.filter).matches(topic) == testCase.matches)
    }
}
