import BrokerCore
import Testing

@Suite struct SubscriptionTreeTests {
    // MARK: Matching rules

    @Test(arguments: TopicFilterTests.specCases.filter { !$0.topic.isEmpty })
    func matchesLikeTheSpec(_ testCase: (filter: String, topic: String, matches: Bool)) throws {
        var tree = TestTree()
        tree.subscribe(try filter(testCase.filter), subscriber: "c", options: TestOptions())
        let matches = tree.match(topic: try name(testCase.topic))
        #expect(matches.subscriptions.count == (testCase.matches ? 1 : 0))
        #expect(matches.sharedGroups.isEmpty)

        var shared = TestTree()
        shared.subscribe(try filter("$share/g/" + testCase.filter), subscriber: "c", options: TestOptions())
        let sharedMatches = shared.match(topic: try name(testCase.topic))
        #expect(sharedMatches.subscriptions.isEmpty)
        #expect(sharedMatches.sharedGroups.count == (testCase.matches ? 1 : 0))
    }

    @Test func matchesManyFiltersAtOnce() throws {
        var tree = TestTree()
        let filters = [
            "sport/tennis/player1/#", "sport/#", "#", "+/tennis/#", "sport/+/player1", "sport/tennis/+",
            "sport/tennis/player1", "sport/+", "+/+/+", "+", "$SYS/#", "a//b", "a/+/b", "/+", "+/+",
        ]
        for (index, string) in filters.enumerated() {
            tree.subscribe(try filter(string), subscriber: "s\(index)", options: TestOptions())
        }
        for topic in [
            "sport/tennis/player1", "sport", "sport/", "$SYS/x", "/finance", "a//b", "x", "sport/tennis/player1/r",
        ] {
            let expected = filters.enumerated()
                .filter { referenceMatches(filter: $0.element, topic: topic) }
                .map { "s\($0.offset) \($0.element)" }
                .sorted()
            #expect(describe(tree.match(topic: try name(topic))) == expected, "topic \(topic)")
        }
    }

    @Test func dollarTopicsOnlyMatchFiltersThatSpellTheDollar() throws {
        var tree = TestTree()
        for string in ["#", "+/#", "+/monitor/Clients", "$SYS/#", "$SYS/monitor/+", "+"] {
            tree.subscribe(try filter(string), subscriber: string, options: TestOptions())
        }
        #expect(
            describe(tree.match(topic: try name("$SYS/monitor/Clients"))) == [
                "$SYS/# $SYS/#", "$SYS/monitor/+ $SYS/monitor/+",
            ]
        )
        #expect(describe(tree.match(topic: try name("$SYS"))) == ["$SYS/# $SYS/#"])
        #expect(
            describe(tree.match(topic: try name("SYS/monitor/Clients"))) == [
                "# #", "+/# +/#", "+/monitor/Clients +/monitor/Clients",
            ]
        )
    }

    @Test func comparesLevelsByteWise() throws {
        var tree = TestTree()
        tree.subscribe(try filter("caf\u{E9}/+"), subscriber: "a", options: TestOptions())
        #expect(tree.match(topic: try name("cafe\u{301}/x")).isEmpty)
        #expect(tree.match(topic: try name("caf\u{E9}/x")).subscriptions.count == 1)
        #expect(tree.match(topic: try name("CAF\u{C9}/x")).isEmpty)
    }

    // MARK: Subscribing and options

    @Test func reportsNewSubscriptionsAndReplacesOptions() throws {
        var tree = TestTree()
        let sportFilter = try filter("sport/#")
        let isNew = tree.subscribe(sportFilter, subscriber: "a", options: TestOptions(qos: 0))
        #expect(isNew)
        let isNew2 = tree.subscribe(sportFilter, subscriber: "a", options: TestOptions(qos: 2, identifier: 7))
        #expect(!isNew2)
        #expect(tree.count == 1)
        #expect(tree.options(for: sportFilter, subscriber: "a") == TestOptions(qos: 2, identifier: 7))
        let matches = tree.match(topic: try name("sport/tennis"))
        #expect(matches.subscriptions.map(\.options) == [TestOptions(qos: 2, identifier: 7)])
        let isNew3 = tree.subscribe(sportFilter, subscriber: "b", options: TestOptions(qos: 1))
        #expect(isNew3)
        #expect(tree.count == 2)
        #expect(tree.subscriberCount == 2)
    }

    @Test func overlappingSubscriptionsMatchOncePerFilter() throws {
        var tree = TestTree()
        tree.subscribe(try filter("a/#"), subscriber: "x", options: TestOptions(qos: 0, identifier: 1))
        tree.subscribe(try filter("a/+"), subscriber: "x", options: TestOptions(qos: 2, identifier: 2))
        tree.subscribe(try filter("a/b"), subscriber: "x", options: TestOptions(qos: 1))
        tree.subscribe(try filter("a/b"), subscriber: "y", options: TestOptions(qos: 1, identifier: 9))
        tree.subscribe(try filter("#"), subscriber: "z", options: TestOptions(qos: 0))
        let matches = tree.match(topic: try name("a/b"))
        #expect(describe(matches) == ["x a/#", "x a/+", "x a/b", "y a/b", "z #"])
        #expect(
            matches.subscriptions.first { $0.subscriber == "x" && $0.filter.string == "a/+" }?.options.maximumQoS == 2
        )

        let merged = matches.mergedPerSubscriber().sorted { $0.subscriber < $1.subscriber }
        #expect(merged.map(\.subscriber) == ["x", "y", "z"])
        #expect(merged.map(\.maximumQoS) == [2, 1, 0])
        #expect(merged.map(\.subscriptionCount) == [3, 1, 1])
        #expect(merged[0].subscriptionIdentifiers.sorted() == [1, 2])
        #expect(merged[1].subscriptionIdentifiers == [9])
        #expect(merged[2].subscriptionIdentifiers.isEmpty)

        // No Local: the publisher's own subscriptions are dropped before merging.
        let withoutX = matches.mergedPerSubscriber { $0.subscriber != "x" }
        #expect(withoutX.map(\.subscriber).sorted() == ["y", "z"])
    }

    @Test func listsFiltersAndSubscriptionsOfASubscriber() throws {
        var tree = TestTree()
        tree.subscribe(try filter("a/#"), subscriber: "x", options: TestOptions(qos: 1))
        tree.subscribe(try filter("$share/g/a/#"), subscriber: "x", options: TestOptions(qos: 2))
        tree.subscribe(try filter("b"), subscriber: "y", options: TestOptions())
        #expect(tree.filters(of: "x").map(\.string).sorted() == ["$share/g/a/#", "a/#"])
        #expect(tree.filters(of: "nobody").isEmpty)
        let subscriptions = tree.subscriptions(of: "x").sorted { $0.filter.string < $1.filter.string }
        #expect(subscriptions.map(\.options.maximumQoS) == [2, 1])
        #expect(tree.options(for: try filter("$share/g/a/#"), subscriber: "x")?.maximumQoS == 2)
        #expect(tree.options(for: try filter("$share/h/a/#"), subscriber: "x") == nil)
        #expect(tree.options(for: try filter("b"), subscriber: "x") == nil)
    }

    // MARK: Removal leaves no garbage

    @Test func unsubscribeRemovesOnlyThatSubscription() throws {
        var tree = TestTree()
        let wasSubscribed = tree.unsubscribe(try filter("a"), subscriber: "x")
        #expect(!wasSubscribed)
        tree.subscribe(try filter("a/b/c"), subscriber: "x", options: TestOptions())
        let nodesWithOne = tree.nodeCount
        tree.subscribe(try filter("a/b/c/d/e"), subscriber: "x", options: TestOptions())
        tree.subscribe(try filter("a/b/c"), subscriber: "y", options: TestOptions())
        let wasSubscribed2 = tree.unsubscribe(try filter("a/b"), subscriber: "x")
        #expect(!wasSubscribed2)
        let wasSubscribed3 = tree.unsubscribe(try filter("$share/g/a/b/c"), subscriber: "x")
        #expect(!wasSubscribed3)
        let wasSubscribed4 = tree.unsubscribe(try filter("a/b/c/d/e"), subscriber: "x")
        #expect(wasSubscribed4)
        let wasSubscribed5 = tree.unsubscribe(try filter("a/b/c/d/e"), subscriber: "x")
        #expect(!wasSubscribed5)
        #expect(tree.nodeCount == nodesWithOne)
        let wasSubscribed6 = tree.unsubscribe(try filter("a/b/c"), subscriber: "y")
        #expect(wasSubscribed6)
        #expect(describe(tree.match(topic: try name("a/b/c"))) == ["x a/b/c"])
        let wasSubscribed7 = tree.unsubscribe(try filter("a/b/c"), subscriber: "x")
        #expect(wasSubscribed7)
        #expect(tree.isEmpty)
        #expect(tree.subscriberCount == 0)
        #expect(tree.nodeCount == 1)
        #expect(tree.match(topic: try name("a/b/c")).isEmpty)
    }

    @Test func removeAllDropsEverySubscriptionOfASession() throws {
        var tree = TestTree()
        tree.subscribe(try filter("keep/#"), subscriber: "keeper", options: TestOptions())
        let baseline = tree.nodeCount
        for string in ["a/#", "a/+/c", "$share/g/a/b", "$share/h/+", "x//y", "keep/#", "#"] {
            tree.subscribe(try filter(string), subscriber: "gone", options: TestOptions())
        }
        #expect(tree.count == 8)
        let removedCount = tree.removeAll(subscriber: "gone")
        #expect(removedCount == 7)
        let removedCount2 = tree.removeAll(subscriber: "gone")
        #expect(removedCount2 == 0)
        #expect(tree.count == 1)
        #expect(tree.nodeCount == baseline)
        #expect(tree.filters(of: "gone").isEmpty)
        #expect(describe(tree.match(topic: try name("keep/a"))) == ["keeper keep/#"])
        #expect(tree.match(topic: try name("a/b")).isEmpty)
    }

    @Test func randomChurnReturnsToTheInitialNodeCount() throws {
        var random = SeededGenerator(seed: 42)
        var tree = TestTree()
        let initial = tree.nodeCount
        var live: [(TopicFilter, String)] = []
        for round in 0..<3 {
            for _ in 0..<2_000 {
                let string = randomFilter(using: &random)
                let subscriber = "c\(Int.random(in: 0..<50, using: &random))"
                let parsed = try filter(string)
                if tree.subscribe(parsed, subscriber: subscriber, options: TestOptions()) {
                    live.append((parsed, subscriber))
                }
            }
            #expect(tree.count == live.count)
            live.shuffle(using: &random)
            let keep = round == 2 ? 0 : live.count / 3
            while live.count > keep, let (parsed, subscriber) = live.popLast() {
                let wasSubscribed8 = tree.unsubscribe(parsed, subscriber: subscriber)
                #expect(wasSubscribed8)
            }
            #expect(tree.count == live.count)
        }
        #expect(tree.nodeCount == initial)
        #expect(tree.subscriberCount == 0)
    }

    @Test func longLevelsSurviveLabelCompaction() throws {
        // Labels over 8 bytes live in a shared arena that is compacted once half of it is unused.
        var tree = TestTree()
        let filters = try (0..<3_000).map { try filter("a-rather-long-level-name-\($0)/and-another-long-one/+") }
        for (index, parsed) in filters.enumerated() {
            tree.subscribe(parsed, subscriber: "c\(index % 10)", options: TestOptions())
        }
        for (index, parsed) in filters.enumerated() where index % 10 != 0 {
            let wasSubscribed = tree.unsubscribe(parsed, subscriber: "c\(index % 10)")
            #expect(wasSubscribed)
        }
        for index in stride(from: 0, to: 3_000, by: 10) {
            let topic = try name("a-rather-long-level-name-\(index)/and-another-long-one/x")
            #expect(
                describe(tree.match(topic: topic)) == ["c0 a-rather-long-level-name-\(index)/and-another-long-one/+"]
            )
        }
        #expect(tree.match(topic: try name("a-rather-long-level-name-11/and-another-long-one/x")).isEmpty)
        let removedCount = tree.removeAll(subscriber: "c0")
        #expect(removedCount == 300)
        #expect(tree.nodeCount == 1)
    }

    @Test func manySubscribersOnOneFilter() throws {
        var tree = TestTree()
        let shared = try filter("alerts/#")
        for index in 0..<100 {
            tree.subscribe(shared, subscriber: "c\(index)", options: TestOptions(qos: UInt8(index % 3)))
        }
        for index in stride(from: 0, to: 100, by: 3) {
            let wasSubscribed9 = tree.unsubscribe(shared, subscriber: "c\(index)")
            #expect(wasSubscribed9)
        }
        tree.subscribe(shared, subscriber: "c1", options: TestOptions(qos: 0, identifier: 5))
        let matches = tree.match(topic: try name("alerts/fire"))
        let expected = (0..<100).filter { $0 % 3 != 0 }.map { "c\($0) alerts/#" }.sorted()
        #expect(describe(matches) == expected)
        #expect(matches.subscriptions.first { $0.subscriber == "c1" }?.options == TestOptions(qos: 0, identifier: 5))
        for index in 0..<100 {
            tree.unsubscribe(shared, subscriber: "c\(index)")
        }
        #expect(tree.isEmpty)
        #expect(tree.nodeCount == 1)
    }

    // MARK: Shared subscriptions

    @Test func groupsSharedSubscriptionsByShareNameAndFilter() throws {
        var tree = TestTree()
        let groupG = try filter("$share/g/sensors/+")
        let groupH = try filter("$share/h/sensors/+")
        let groupGOther = try filter("$share/g/sensors/#")
        tree.subscribe(groupG, subscriber: "a", options: TestOptions(qos: 1))
        tree.subscribe(groupG, subscriber: "b", options: TestOptions(qos: 2))
        tree.subscribe(groupH, subscriber: "a", options: TestOptions())
        tree.subscribe(groupGOther, subscriber: "c", options: TestOptions())
        tree.subscribe(try filter("sensors/+"), subscriber: "a", options: TestOptions())
        #expect(tree.count == 5)

        let matches = tree.match(topic: try name("sensors/t1"))
        #expect(describe(matches) == ["a sensors/+"])
        let groups = matches.sharedGroups.map { "\($0.filter.string) \($0.members.map(\.subscriber))" }.sorted()
        #expect(
            groups == ["$share/g/sensors/# [\"c\"]", "$share/g/sensors/+ [\"a\", \"b\"]", "$share/h/sensors/+ [\"a\"]"]
        )
        let g = try #require(matches.sharedGroups.first { $0.filter == groupG })
        #expect(g.shareName == "g")
        #expect(g.members.map(\.options.maximumQoS) == [1, 2])
        #expect(tree.sharedGroupMembers(of: groupG)?.map(\.subscriber) == ["a", "b"])
        #expect(tree.sharedGroupMembers(of: try filter("$share/zz/sensors/+")) == nil)
        #expect(tree.sharedGroupMembers(of: try filter("sensors/+")) == nil)

        #expect(tree.match(topic: try name("sensors/t1/deep")).sharedGroups.map(\.filter) == [groupGOther])
    }

    @Test func picksSharedMembersRoundRobin() throws {
        var tree = TestTree()
        let group = try filter("$share/workers/jobs/#")
        for member in ["a", "b", "c"] {
            tree.subscribe(group, subscriber: member, options: TestOptions())
        }
        let match = try #require(tree.match(topic: try name("jobs/1")).sharedGroups.first)
        var picks: [String] = []
        for _ in 0..<6 {
            let picked = tree.nextSharedMember(of: match)
            picks.append(try #require(picked).subscriber)
        }
        #expect(picks == ["a", "b", "c", "a", "b", "c"])

        // Offline members are skipped.
        picks = []
        for _ in 0..<4 {
            let picked2 = tree.nextSharedMember(of: match) { $0.subscriber != "b" }
            picks.append(try #require(picked2).subscriber)
        }
        #expect(picks == ["a", "c", "a", "c"])
        let picked3 = tree.nextSharedMember(of: match) { _ in false }
        #expect(picked3 == nil)

        // Membership changes are seen even through an older match.
        tree.unsubscribe(group, subscriber: "a")
        picks = []
        for _ in 0..<4 {
            let picked4 = tree.nextSharedMember(of: match)
            picks.append(try #require(picked4).subscriber)
        }
        #expect(Set(picks) == ["b", "c"])
        #expect(picks[0] != picks[1])

        tree.unsubscribe(group, subscriber: "b")
        tree.unsubscribe(group, subscriber: "c")
        let picked5 = tree.nextSharedMember(of: match)
        #expect(picked5 == nil)
        #expect(tree.nodeCount == 1)
    }

    @Test func sharedAndOrdinarySubscriptionsAreDistinct() throws {
        var tree = TestTree()
        let isNew4 = tree.subscribe(try filter("a/b"), subscriber: "x", options: TestOptions())
        #expect(isNew4)
        let isNew5 = tree.subscribe(try filter("$share/g/a/b"), subscriber: "x", options: TestOptions())
        #expect(isNew5)
        let isNew6 = tree.subscribe(try filter("$share/h/a/b"), subscriber: "x", options: TestOptions())
        #expect(isNew6)
        #expect(tree.count == 3)
        let wasSubscribed10 = tree.unsubscribe(try filter("$share/g/a/b"), subscriber: "x")
        #expect(wasSubscribed10)
        let matches = tree.match(topic: try name("a/b"))
        #expect(describe(matches) == ["x a/b"])
        #expect(matches.sharedGroups.map(\.shareName) == ["h"])
    }

    // MARK: Limits

    @Test func handlesVeryDeepTopicsWithoutRecursion() throws {
        var tree = TestTree()
        let depth = 30_000
        let deepFilter = String(repeating: "+/", count: depth - 1) + "#"
        let deepTopic = String(repeating: "a/", count: depth - 1) + "a"
        tree.subscribe(try filter(deepFilter), subscriber: "deep", options: TestOptions())
        tree.subscribe(try filter(deepTopic), subscriber: "exact", options: TestOptions())
        tree.subscribe(try filter("#"), subscriber: "all", options: TestOptions())
        tree.subscribe(try filter("a/#"), subscriber: "prefix", options: TestOptions())
        let matches = tree.match(topic: try name(deepTopic))
        #expect(matches.subscriptions.map(\.subscriber).sorted() == ["all", "deep", "exact", "prefix"])
        let slashes = try name(String(repeating: "/", count: 65_534))
        // `+` matches empty levels, so the deep wildcard filter matches a topic of empty levels too.
        #expect(tree.match(topic: slashes).subscriptions.map(\.subscriber).sorted() == ["all", "deep"])
        tree.removeAll(subscriber: "deep")
        tree.removeAll(subscriber: "exact")
        tree.removeAll(subscriber: "all")
        tree.removeAll(subscriber: "prefix")
        #expect(tree.nodeCount == 1)
    }

    // MARK: Cross-check against the reference matcher

    @Test func randomizedCrossCheckAgainstReference() throws {
        var random = SeededGenerator(seed: 0xC0FFEE)
        var tree = TestTree()
        var subscriptions: [(filter: String, subscriber: String)] = []
        for index in 0..<1_500 {
            let string = randomFilter(using: &random)
            let subscriber = "c\(index % 97)"
            if tree.subscribe(try filter(string), subscriber: subscriber, options: TestOptions()) {
                subscriptions.append((string, subscriber))
            }
        }
        // Some churn, so the check also covers a tree that has lost nodes.
        subscriptions.shuffle(using: &random)
        for _ in 0..<300 {
            guard let (string, subscriber) = subscriptions.popLast() else { break }
            let wasSubscribed11 = tree.unsubscribe(try filter(string), subscriber: subscriber)
            #expect(wasSubscribed11)
        }
        let references = try subscriptions.map { string, subscriber in
            let parsed = try filter(string)
            return (
                levels: levels(of: String(parsed.matchFilter)), isShared: parsed.isShared, string: string,
                subscriber: subscriber
            )
        }
        var matches = TestTree.Matches()
        var checked = 0
        var matched = 0
        for _ in 0..<4_000 {
            let topic = randomTopic(using: &random)
            tree.match(topic: try name(topic), into: &matches)
            var expectedOrdinary: [String] = []
            var expectedShared: [String] = []
            let topicLevels = levels(of: topic)
            for reference in references where referenceMatches(filterLevels: reference.levels, topicLevels: topicLevels)
            {
                if reference.isShared {
                    expectedShared.append(escaped("\(reference.string) \(reference.subscriber)"))
                } else {
                    expectedOrdinary.append(escaped("\(reference.subscriber) \(reference.string)"))
                }
            }
            let actualShared = matches.sharedGroups.flatMap { group in
                group.members.map { escaped("\(group.filter.string) \($0.subscriber)") }
            }
            #expect(describe(matches) == expectedOrdinary.sorted(), "topic \(topic)")
            #expect(actualShared.sorted() == expectedShared.sorted(), "topic \(topic)")
            // No group is reported twice.
            #expect(Set(matches.sharedGroups.map(\.filter)).count == matches.sharedGroups.count)
            checked += 1
            matched += expectedOrdinary.count
        }
        #expect(checked == 4_000)
        #expect(matched > 4_000)  // the generator produces real overlap, not just misses
    }
}

private let levelAlphabet = ["a", "b", "c", "", "$SYS", "$x", "ab", "é", "e\u{301}"]

func randomFilter(using random: inout SeededGenerator) -> String {
    var levels: [String] = []
    let count = Int.random(in: 1...5, using: &random)
    for index in 0..<count {
        let roll = Int.random(in: 0..<10, using: &random)
        if index == count - 1, roll == 0 {
            levels.append("#")
        } else if roll < 3 {
            levels.append("+")
        } else {
            levels.append(levelAlphabet.randomElement(using: &random) ?? "a")
        }
    }
    // A lone empty level would be an empty filter.
    let body = levels == [""] ? "+" : levels.joined(separator: "/")
    switch Int.random(in: 0..<10, using: &random) {
    case 0: return "$share/g/" + body
    case 1: return "$share/h/" + body
    default: return body
    }
}

func randomTopic(using random: inout SeededGenerator) -> String {
    let count = Int.random(in: 1...6, using: &random)
    let topic = (0..<count).map { _ in levelAlphabet.randomElement(using: &random) ?? "a" }.joined(separator: "/")
    return topic.isEmpty ? "a" : topic
}
