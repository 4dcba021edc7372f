import BrokerCore
import Testing

@Suite struct RetainedStoreTests {
    @Test func storesReplacesAndRemoves() throws {
        var store = RetainedStore<TestMessage>()
        #expect(store.isEmpty)
        let replaced = store.set(topic: try name("a/b"), message: TestMessage("one", size: 10))
        #expect(replaced == nil)
        let replaced2 = store.set(topic: try name("a/b/c"), message: TestMessage("two", size: 5))
        #expect(replaced2 == nil)
        #expect(store.count == 2)
        #expect(store.totalByteCount == 15)
        let replaced3 = store.set(topic: try name("a/b"), message: TestMessage("three", size: 1))
        #expect(replaced3 == TestMessage("one", size: 10))
        #expect(store.count == 2)
        #expect(store.totalByteCount == 6)
        #expect(store.message(for: try name("a/b")) == TestMessage("three", size: 1))
        #expect(store.message(for: try name("a")) == nil)
        #expect(store.message(for: try name("a/b/c/d")) == nil)
        let removed = store.remove(topic: try name("a"))
        #expect(removed == nil)
        let removed2 = store.remove(topic: try name("a/x"))
        #expect(removed2 == nil)
        let removed3 = store.remove(topic: try name("a/b"))
        #expect(removed3 == TestMessage("three", size: 1))
        let removed4 = store.remove(topic: try name("a/b"))
        #expect(removed4 == nil)
        #expect(store.message(for: try name("a/b/c")) == TestMessage("two", size: 5))
        #expect(store.count == 1)
        #expect(store.totalByteCount == 5)
        let removed5 = store.remove(topic: try name("a/b/c"))
        #expect(removed5 != nil)
        #expect(store.isEmpty)
        #expect(store.totalByteCount == 0)
        #expect(store.nodeCount == 1)
    }

    @Test func removalLeavesNoGarbageNodes() throws {
        var store = RetainedStore<TestMessage>()
        store.set(topic: try name("keep/this"), message: TestMessage("k"))
        let baseline = store.nodeCount
        for topic in ["a/b/c/d", "a/b", "a//b", "/", "$SYS/x/y", "keep/this/too", "keep"] {
            store.set(topic: try name(topic), message: TestMessage(topic))
        }
        for topic in ["keep", "a/b", "/", "a/b/c/d", "keep/this/too", "$SYS/x/y", "a//b"] {
            let removed6 = store.remove(topic: try name(topic))
            #expect(removed6 != nil)
        }
        #expect(store.nodeCount == baseline)
        store.removeAll()
        #expect(store.nodeCount == 1)
        #expect(store.isEmpty)
    }

    static let topics = [
        "sport", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/football",
        "/finance", "finance", "a//b", "a/b", "a/", "$SYS", "$SYS/broker/uptime", "$SYS/broker/clients",
        "$other/x", "x/$SYS",
    ]

    @Test(arguments: [
        (
            "#",
            [
                "sport", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/football",
                "/finance", "finance", "a//b", "a/b", "a/", "x/$SYS",
            ]
        ),
        (
            "sport/#",
            ["sport", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/football"]
        ),
        ("sport/tennis/#", ["sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking"]),
        ("sport/+", ["sport/tennis", "sport/football"]),
        ("sport/tennis/+", ["sport/tennis/player1"]),
        ("+", ["sport", "finance"]),
        ("+/+", ["sport/tennis", "sport/football", "/finance", "a/b", "a/", "x/$SYS"]),
        ("/+", ["/finance"]),
        ("+/finance", ["/finance"]),
        ("a/+/b", ["a//b"]),
        ("a/+", ["a/b", "a/"]),
        ("a/#", ["a//b", "a/b", "a/"]),
        ("$SYS/#", ["$SYS", "$SYS/broker/uptime", "$SYS/broker/clients"]),
        ("$SYS/+/uptime", ["$SYS/broker/uptime"]),
        ("+/broker/uptime", []),
        ("+/$SYS", ["x/$SYS"]),
        ("$SYS", ["$SYS"]),
        ("sport/tennis/player1", ["sport/tennis/player1"]),
        ("sport/tennis/player2", []),
        ("nothing/#", []),
        ("$share/g/#", []),
    ])
    func matchesFiltersLikeTheSpec(_ filterString: String, _ expected: [String]) throws {
        var store = RetainedStore<TestMessage>()
        for topic in Self.topics {
            store.set(topic: try name(topic), message: TestMessage(topic))
        }
        let found = store.matching(filter: try filter(filterString))
        #expect(found.map(\.topic.string).sorted() == expected.sorted())
        #expect(found.allSatisfy { $0.message.label == $0.topic.string })
    }

    @Test func matchesByteWise() throws {
        var store = RetainedStore<TestMessage>()
        store.set(topic: try name("caf\u{E9}"), message: TestMessage("composed"))
        #expect(store.matching(filter: try filter("cafe\u{301}")).isEmpty)
        #expect(store.message(for: try name("cafe\u{301}")) == nil)
        #expect(store.matching(filter: try filter("caf\u{E9}")).map(\.message.label) == ["composed"])
    }

    @Test func randomizedCrossCheckAgainstReference() throws {
        var random = SeededGenerator(seed: 7)
        var store = RetainedStore<TestMessage>()
        // `TopicName` hashes bytes, so `é` and `e\u{301}` stay two topics, as in the store.
        var stored: Set<TopicName> = []
        for _ in 0..<1_500 {
            let topic = try name(randomTopic(using: &random))
            store.set(topic: topic, message: TestMessage(topic.string))
            stored.insert(topic)
        }
        let ordered = stored.sorted { escaped($0.string) < escaped($1.string) }
        for topic in ordered.shuffled(using: &random).prefix(200) {
            let removed = store.remove(topic: topic)
            #expect(removed.map { escaped($0.label) } == escaped(topic.string))
            stored.remove(topic)
        }
        #expect(store.count == stored.count)
        for _ in 0..<2_000 {
            let string = randomFilter(using: &random)
            let parsed = try filter(string)
            let found = store.matching(filter: parsed).map { escaped($0.topic.string) }.sorted()
            let expected =
                stored
                .filter { !parsed.isShared && referenceMatches(filter: string, topic: $0.string) }
                .map { escaped($0.string) }
                .sorted()
            #expect(found == expected, "filter \(string)")
        }
    }

    @Test func handlesDeepTopics() throws {
        var store = RetainedStore<TestMessage>()
        let deep = String(repeating: "a/", count: 30_000) + "a"
        store.set(topic: try name(deep), message: TestMessage("deep"))
        #expect(store.matching(filter: try filter("#")).count == 1)
        #expect(store.matching(filter: try filter(String(repeating: "+/", count: 30_000) + "+")).count == 1)
        let removed8 = store.remove(topic: try name(deep))
        #expect(removed8 != nil)
        #expect(store.nodeCount == 1)
    }
}
