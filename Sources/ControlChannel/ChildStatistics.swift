import Foundation

/// What a child reports about itself about once a second (`ChildMessage.statistics`): a worker's connections,
/// messages and per-listener TLS figures; the fetcher's fetch results. Counters are totals since the child started.
public struct ChildStatistics: Codable, Sendable, Equatable {
    public struct Listener: Codable, Sendable, Equatable {
        /// `ssl:<name>`.
        public var listener: String
        /// How many times the revocation data was (re)loaded into a new TLS context (1 at start).
        public var revocationGeneration: Int
        public var crls: Int
        public var revokedEntries: Int
        /// Refused handshakes by reason ("certificate revoked", "CRL has expired", …).
        public var refusals: [String: Int]
        /// Connected clients disconnected because a new CRL revoked them.
        public var revokedDisconnected: Int
        /// Open connections with a verified client certificate.
        public var liveCertificates: Int
        /// Completed handshakes, and those decided on a CRL past its nextUpdate (`crl_fail_policy = grace`).
        public var handshakes = 0
        public var acceptedOnStaleCRL = 0

        public init(
            listener: String, revocationGeneration: Int, crls: Int, revokedEntries: Int, refusals: [String: Int],
            revokedDisconnected: Int, liveCertificates: Int
        ) {
            self.listener = listener
            self.revocationGeneration = revocationGeneration
            self.crls = crls
            self.revokedEntries = revokedEntries
            self.refusals = refusals
            self.revokedDisconnected = revokedDisconnected
            self.liveCertificates = liveCertificates
        }

        enum CodingKeys: String, CodingKey {
            case listener, crls, refusals
            case revocationGeneration = "revocation_generation"
            case revokedEntries = "revoked_entries"
            case revokedDisconnected = "revoked_disconnected"
            case liveCertificates = "live_certificates"
            case handshakes
            case acceptedOnStaleCRL = "accepted_on_stale_crl"
        }
    }

    public var connections = 0
    public var messagesReceived = 0
    public var messagesSent = 0
    public var messagesDropped = 0
    /// Connections closed at accept, before any TLS or MQTT work, by listener (`tcp:external`) and reason
    /// (`access_denied`, `max_connections`, `max_conn_rate`, `proxy_header_invalid`, `proxy_header_timeout`).
    public var connectionsRefused: [String: [String: Int]] = [:]
    public var listeners: [Listener] = []
    /// Fetcher: fetches that published something new, that found nothing new, that failed.
    public var fetchPublished = 0
    public var fetchNotModified = 0
    public var fetchFailed = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case connections, listeners
        case messagesReceived = "messages_received"
        case messagesSent = "messages_sent"
        case messagesDropped = "messages_dropped"
        case connectionsRefused = "connections_refused"
        case fetchPublished = "fetch_published"
        case fetchNotModified = "fetch_not_modified"
        case fetchFailed = "fetch_failed"
    }

    public func encodedJSON() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    public static func decode(json: String) -> ChildStatistics? {
        try? JSONDecoder().decode(ChildStatistics.self, from: Data(json.utf8))
    }
}
