import BrokerCore
import Testing

@Suite struct TopicNameTests {
    @Test(arguments: [
        "a", "/", "//", "a//b", "/finance", "finance/", "$SYS/broker/uptime", "sport/tennis/player1",
        " ", "ACCOUNTS", "Ümlaut/é/日本", "$", "a b/c",
    ])
    func acceptsValidNames(_ string: String) throws {
        let topic = try TopicName(string)
        #expect(topic.string == string)
    }

    @Test(arguments: [
        ("", TopicValidationError.empty),
        ("a\u{0}b", .containsNullCharacter),
        ("\u{0}", .containsNullCharacter),
        ("sport/+", .wildcardInTopicName),
        ("sport/#", .wildcardInTopicName),
        ("#", .wildcardInTopicName),
        ("+", .wildcardInTopicName),
        ("a+b", .wildcardInTopicName),
        ("a#b", .wildcardInTopicName),
    ])
    func rejectsInvalidNames(_ string: String, _ error: TopicValidationError) {
        #expect(throws: error) { try TopicName(string) }
    }

    @Test func enforcesTheLengthLimitInUTF8Bytes() throws {
        _ = try TopicName(String(repeating: "a", count: 65_535))
        #expect(throws: TopicValidationError.tooLong(byteCount: 65_536)) {
            try TopicName(String(repeating: "a", count: 65_536))
        }
        // 21,846 two-byte characters are 43,692 bytes: fine; 32,768 of them are 65,536 bytes: too long.
        _ = try TopicName(String(repeating: "é", count: 21_846))
        #expect(throws: TopicValidationError.tooLong(byteCount: 65_536)) {
            try TopicName(String(repeating: "é", count: 32_768))
        }
    }

    @Test func comparesBytesWithoutUnicodeNormalisation() throws {
        let composed = try TopicName("caf\u{E9}")
        let decomposed = try TopicName("cafe\u{301}")
        #expect(composed.string == decomposed.string)  // Swift's canonical equivalence…
        #expect(composed != decomposed)  // …is not MQTT's comparison (MQTT-4.7.3-4).
        #expect(Set([composed, decomposed]).count == 2)
        #expect(try TopicName("Accounts") != TopicName("ACCOUNTS"))
    }

    @Test func reportsDollarTopicsAndLevels() throws {
        #expect(try TopicName("$SYS/x").isDollarTopic)
        #expect(try !TopicName("a/$SYS").isDollarTopic)
        #expect(try TopicName("/finance").levelCount == 2)
        #expect(try TopicName("a//b").levelCount == 3)
        #expect(try TopicName("/").levelCount == 2)
        #expect(try TopicName("a").levelCount == 1)
    }
}
