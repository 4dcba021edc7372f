import BrokerStore
import Foundation

/// A fresh directory under the system temp directory, removed by `remove()`; one per test.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "gatehouse-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    var database: String { path + "/gatehouse.db" }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Sample values that exercise every field, nil against empty included.
enum Samples {
    static func bytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    static let retained: [StoredMessage] = [
        StoredMessage(topic: "a", payload: [], qos: 0, retain: true, properties: [], expiresAt: nil),
        StoredMessage(topic: "b/c", payload: [0], qos: 1, retain: true, properties: [0x02, 0, 0, 0, 60], expiresAt: 0),
        StoredMessage(
            topic: "sensors/température/😀/日本", payload: Array("héllo".utf8), qos: 2, retain: false,
            properties: [0x01, 1], expiresAt: 1_900_000_000.25
        ),
        StoredMessage(topic: "big", payload: bytes(3 << 20), qos: 1, retain: true, properties: bytes(300, seed: 2)),
        StoredMessage(topic: "", payload: [0xFF], qos: 255, retain: true, expiresAt: -1.5),
    ]

    static func message(_ topic: String, size: Int = 16, seed: UInt64 = 1) -> StoredMessage {
        StoredMessage(topic: topic, payload: bytes(size, seed: seed), qos: 1, retain: false)
    }

    static let full = StoredSession(
        clientID: "client-ü-😀",
        owner: 3,
        protocolVersion: 5,
        username: "",
        expiryInterval: UInt32.max,
        disconnectedAt: 1_700_000_000.5,
        subscriptions: [
            StoredSubscription(filter: "a/+/c", options: 0xFF, identifier: nil),
            StoredSubscription(filter: "$share/group/x/#", options: 0x01, identifier: 268_435_455),
            StoredSubscription(filter: "a/+/c", options: 0x02, identifier: 1),
            StoredSubscription(filter: "温度/#", options: 0, identifier: 0),
        ],
        outbound: [
            StoredOutbound(
                stage: .queued, packetIdentifier: nil, qos: 0, retain: false, subscriptionIdentifiers: [],
                message: StoredMessage(topic: "q", payload: [], qos: 0, retain: false)
            ),
            StoredOutbound(
                stage: .published, packetIdentifier: 65535, qos: 1, retain: true,
                subscriptionIdentifiers: [1, 268_435_455, Int.max, Int.min, -1],
                message: StoredMessage(
                    topic: "p/ü", payload: bytes(70_000, seed: 9), qos: 2, retain: true, properties: [1, 2, 3],
                    expiresAt: 1_800_000_000
                )
            ),
            StoredOutbound(
                stage: .released, packetIdentifier: 1, qos: 2, retain: false, subscriptionIdentifiers: [7],
                message: StoredMessage(topic: "r", payload: [9], qos: 2, retain: false, expiresAt: 0.125)
            ),
            StoredOutbound(
                stage: .published, packetIdentifier: 0, qos: 1, retain: false,
                message: StoredMessage(topic: "q", payload: [], qos: 1, retain: false)
            ),
        ],
        inboundQoS2: [1, 65535, 0, 256]
    )

    static let minimal = StoredSession(
        clientID: "", owner: 0, protocolVersion: 4, username: nil, expiryInterval: 0, disconnectedAt: nil
    )

    static func session(_ clientID: String, owner: Int = 0, outbound: Int = 1, payload: Int = 64) -> StoredSession {
        StoredSession(
            clientID: clientID, owner: owner, protocolVersion: 5, username: "user", expiryInterval: 3600,
            subscriptions: [StoredSubscription(filter: "devices/\(clientID)/#", options: 1, identifier: 5)],
            outbound: (0..<outbound).map { index in
                StoredOutbound(
                    stage: .published, packetIdentifier: UInt16(index + 1), qos: 1, retain: false,
                    subscriptionIdentifiers: [5], message: message("devices/\(clientID)/\(index)", size: payload)
                )
            }
        )
    }
}

/// Polls `predicate` every 5 ms until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ predicate: () throws -> Bool) rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try predicate() { return true }
        usleep(5_000)
    }
    return try predicate()
}
