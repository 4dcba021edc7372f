// Measures SubscriptionTree matching throughput on a broker-sized subscription set.
// Run: swift run -c release SubscriptionTreeBenchmark [seconds]
import BrokerCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct BenchmarkOptions: SubscriptionDeliveryOptions, Sendable {
    var maximumQoS: UInt8
    var subscriptionIdentifier: Int?
    var noLocal = false
    var retainAsPublished = false
    var retainHandling: UInt8 = 0
}

/// Deterministic generator (SplitMix64), so runs are comparable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Resident set size in kB from /proc/self/status, 0 where unavailable.
func residentKilobytes() -> Int {
    guard let file = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("VmRSS:") {
            return Int(text.dropFirst(6).filter { $0.isNumber }) ?? 0
        }
    }
    return 0
}

func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}

func format(_ value: Double) -> String {
    let rounded = (value * 100).rounded() / 100
    return "\(rounded)"
}

enum BenchmarkError: Error {
    case invalid(String, TopicValidationError)
}

func filter(_ string: String) throws -> TopicFilter {
    do { return try TopicFilter(string) } catch { throw BenchmarkError.invalid(string, error) }
}

func topic(_ string: String) throws -> TopicName {
    do { return try TopicName(string) } catch { throw BenchmarkError.invalid(string, error) }
}

let duration = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 3.0
var random = SplitMix64(state: 2024)
let clock = ContinuousClock()

// MARK: Build 100,000 subscriptions

let rssBefore = residentKilobytes()
var filters: [(TopicFilter, Int)] = []
filters.reserveCapacity(100_000)
// 60,000 exact: each device's session follows its own four telemetry channels.
for device in 0..<15_000 {
    for channel in 0..<4 {
        filters.append((try filter("devices/\(device)/telemetry/\(channel)"), device))
    }
}
// 10,000 single-level wildcards: dashboards following one channel of every device.
for index in 0..<10_000 {
    filters.append((try filter("devices/+/telemetry/\(index % 5_000)"), 20_000 + index))
}
// 10,000 multi-level: per-device debug sessions.
for device in 0..<10_000 {
    filters.append((try filter("devices/\(device)/#"), 30_000 + device))
}
// 10,000 deep wildcards: `a/+/+/+/+/+/#` with about two levels in three pinned to one of 20 values.
for index in 0..<10_000 {
    var levels = ["a"]
    for depth in 0..<6 {
        levels.append(Int.random(in: 0..<3, using: &random) == 0 ? "+" : "\(Int.random(in: 0..<20, using: &random))")
        if depth == 5 { levels.append("#") }
    }
    filters.append((try filter(levels.joined(separator: "/")), 40_000 + index))
}
// 10,000 shared: 200 job queues, each consumed by a group of 50 workers.
for index in 0..<10_000 {
    filters.append((try filter("$share/workers\(index % 50)/jobs/\(index % 200)/#"), 50_000 + index))
}

var tree = SubscriptionTree<Int, BenchmarkOptions>()
let buildStart = clock.now
for (index, (topicFilter, subscriber)) in filters.enumerated() {
    tree.subscribe(
        topicFilter,
        subscriber: subscriber,
        options: BenchmarkOptions(maximumQoS: UInt8(index % 3), subscriptionIdentifier: index % 7 == 0 ? index : nil)
    )
}
let buildTime = seconds(clock.now - buildStart)
let rssAfter = residentKilobytes()

// MARK: Topic mix

var topics: [TopicName] = []
for _ in 0..<100_000 {
    let roll = Int.random(in: 0..<100, using: &random)
    let string: String
    switch roll {
    case 0..<70:
        // Telemetry from devices, some of which nobody follows individually.
        string =
            "devices/\(Int.random(in: 0..<20_000, using: &random))/telemetry/\(Int.random(in: 0..<8, using: &random))"
    case 70..<85:
        string = (["a"] + (0..<7).map { _ in "\(Int.random(in: 0..<20, using: &random))" }).joined(separator: "/")
    case 85..<95:
        string = "jobs/\(Int.random(in: 0..<250, using: &random))/submit/\(Int.random(in: 0..<1_000, using: &random))"
    default:
        string = "$SYS/broker/clients/\(Int.random(in: 0..<5, using: &random))"
    }
    topics.append(try topic(string))
}

// MARK: Match

typealias Tree = SubscriptionTree<Int, BenchmarkOptions>

print("SubscriptionTree benchmark")
print("  subscriptions: \(tree.count) (\(tree.subscriberCount) subscribers), trie nodes: \(tree.nodeCount)")
print("  build: \(format(buildTime * 1000)) ms (\(Int(Double(tree.count) / buildTime)) subscribes/s)")
print("  RSS: \(rssBefore) kB before, \(rssAfter) kB after build (+\(rssAfter - rssBefore) kB incl. filter strings)")

/// Times `body` over `topics` for `duration` seconds and prints the rate.
func measure(_ label: String, topics: [TopicName], duration: Double, _ body: (TopicName) -> Int) {
    let clock = ContinuousClock()
    var operations = 0
    var results = 0
    let start = clock.now
    var elapsed = 0.0
    while elapsed < duration {
        for name in topics {
            results += body(name)
        }
        operations += topics.count
        elapsed = seconds(clock.now - start)
    }
    let perSecond = Double(operations) / elapsed
    print(
        "  \(label): \(Int(perSecond)) matches/s, \(format(1e9 / perSecond)) ns/match, "
            + "\(format(Double(results) / Double(operations))) results/topic"
    )
}

/// `match(topic:into:)` with the tree borrowed as a parameter, the way a broker's hot path should
/// call it (reading it out of a class property first copies the struct: a few retains per call).
func measureMatch(_ label: String, tree: Tree, topics: [TopicName], duration: Double) {
    var matches = Tree.Matches()
    measure(label, topics: topics, duration: duration) { name in
        tree.match(topic: name, into: &matches)
        return matches.subscriptions.count + matches.sharedGroups.count
    }
}

func measureAllocatingMatch(_ label: String, tree: Tree, topics: [TopicName], duration: Double) {
    measure(label, topics: topics, duration: duration) { name in
        let result = tree.match(topic: name)
        return result.subscriptions.count + result.sharedGroups.count
    }
}

/// The whole 3.1.1-style delivery decision: match, merge per subscriber, pick one member per shared group.
func measureDelivery(_ label: String, tree: inout Tree, topics: [TopicName], duration: Double) {
    var matches = Tree.Matches()
    measure(label, topics: topics, duration: duration) { name in
        tree.match(topic: name, into: &matches)
        var count = matches.mergedPerSubscriber().count
        for group in matches.sharedGroups where tree.nextSharedMember(of: group) != nil {
            count += 1
        }
        return count
    }
}

measureMatch("warm-up", tree: tree, topics: Array(topics.prefix(20_000)), duration: 0.2)
measureMatch("match(topic:into:), mixed topics", tree: tree, topics: topics, duration: duration)
measureAllocatingMatch("match(topic:), mixed topics", tree: tree, topics: topics, duration: duration)
measureDelivery("match + mergedPerSubscriber + nextSharedMember", tree: &tree, topics: topics, duration: duration)
for (label, prefix) in [
    ("devices/<n>/telemetry/<k>", "devices/"), ("a/<7 levels>", "a/"), ("jobs/<j>/submit/<k>", "jobs/"),
    ("$SYS/broker/clients/<k>", "$SYS/"),
] {
    let subset = topics.filter { $0.string.hasPrefix(prefix) }
    measureMatch("  only \(label)", tree: tree, topics: subset, duration: duration / 3)
}

// MARK: Churn

let removeStart = clock.now
var removed = 0
for subscriber in 0..<15_000 {
    removed += tree.removeAll(subscriber: subscriber)
}
let removeTime = seconds(clock.now - removeStart)
print("  removeAll: \(removed) subscriptions of 15,000 sessions in \(format(removeTime * 1000)) ms")
var resubscribed = 0
let churnStart = clock.now
for (index, (topicFilter, subscriber)) in filters.enumerated() where subscriber < 15_000 {
    if tree.subscribe(topicFilter, subscriber: subscriber, options: BenchmarkOptions(maximumQoS: UInt8(index % 3))) {
        resubscribed += 1
    }
}
print("  resubscribe: \(resubscribed) in \(format(seconds(clock.now - churnStart) * 1000)) ms, nodes \(tree.nodeCount)")

// MARK: Retained store

struct RetainedPayload: RetainedMessageSizing {
    var retainedByteCount: Int
}

var retained = RetainedStore<RetainedPayload>()
let retainedStart = clock.now
for device in 0..<20_000 {
    for channel in 0..<5 {
        retained.set(
            topic: try topic("devices/\(device)/telemetry/\(channel)"),
            message: RetainedPayload(retainedByteCount: 64)
        )
    }
}
let retainedBuild = seconds(clock.now - retainedStart)
let lookups: [(String, TopicFilter)] = [
    ("devices/123/telemetry/4", try filter("devices/123/telemetry/4")),
    ("devices/123/#", try filter("devices/123/#")),
    ("devices/+/telemetry/3", try filter("devices/+/telemetry/3")),
    ("#", try filter("#")),
]
print(
    "  retained: \(retained.count) messages, \(retained.totalByteCount) bytes, "
        + "stored in \(format(retainedBuild * 1000)) ms"
)
for (label, retainedFilter) in lookups {
    let start = clock.now
    var iterations = 0
    var found = 0
    while seconds(clock.now - start) < 0.3 {
        found = retained.matching(filter: retainedFilter).count
        iterations += 1
    }
    let each = seconds(clock.now - start) / Double(iterations)
    print("    matching(\(label)): \(found) messages in \(format(each * 1e6)) µs")
}
print("  RSS at end: \(residentKilobytes()) kB")
