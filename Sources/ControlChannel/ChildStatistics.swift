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
        /// Tickets not honoured because a full handshake with their certificate would have failed.
        public var resumptionsRefused = 0
        /// Every CRL in force on this worker for this listener, whatever its source.
        public var crlsInForce: [CRLInForce] = []
        /// The OCSP staple this worker serves for the listener (nil: stapling off).
        public var staple: Staple?

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
            case resumptionsRefused = "resumptions_refused"
            case crlsInForce = "crls_in_force"
            case staple
        }
    }

    /// One CRL in force (the newest of its lineage).
    public struct CRLInForce: Codable, Sendable, Equatable {
        public var issuer: String
        /// The URL it was fetched from, or `crlfile <path>`.
        public var source: String
        public var crlNumber: String?
        /// Unix seconds.
        public var thisUpdate: Int64?
        public var nextUpdate: Int64?
        public var entries: Int
        /// From when its issuer's clients are refused for want of a fresh CRL: nextUpdate, plus `crl_stale_grace`
        /// under `crl_fail_policy = grace`; nil when the CRL has no nextUpdate.
        public var refusesFrom: Int64?

        public init(
            issuer: String, source: String, crlNumber: String?, thisUpdate: Int64?, nextUpdate: Int64?, entries: Int,
            refusesFrom: Int64?
        ) {
            self.issuer = issuer
            self.source = source
            self.crlNumber = crlNumber
            self.thisUpdate = thisUpdate
            self.nextUpdate = nextUpdate
            self.entries = entries
            self.refusesFrom = refusesFrom
        }

        enum CodingKeys: String, CodingKey {
            case issuer, source, entries
            case crlNumber = "crl_number"
            case thisUpdate = "this_update"
            case nextUpdate = "next_update"
            case refusesFrom = "refuses_from"
        }
    }

    /// The staple a worker serves for a listener.
    public struct Staple: Codable, Sendable, Equatable {
        /// `stapled`, `expired` (past its nextUpdate, no longer sent), `withdrawn` (the responder no longer says
        /// good) or `none` (no valid response yet).
        public var state: String
        /// The certificate served (upper-case hex serial).
        public var certificateSerial: String
        public var thisUpdate: Int64?
        /// Until when it is stapled.
        public var nextUpdate: Int64?
        public var detail: String?

        public init(state: String, certificateSerial: String, thisUpdate: Int64?, nextUpdate: Int64?, detail: String?) {
            self.state = state
            self.certificateSerial = certificateSerial
            self.thisUpdate = thisUpdate
            self.nextUpdate = nextUpdate
            self.detail = detail
        }

        enum CodingKeys: String, CodingKey {
            case state, detail
            case certificateSerial = "certificate_serial"
            case thisUpdate = "this_update"
            case nextUpdate = "next_update"
        }
    }

    /// What a worker holds now for its sessions and peers (issue 15), against the storage limits.
    public struct Storage: Codable, Sendable, Equatable {
        /// Messages queued for sessions (beyond those in flight), and their bytes (each session's copy counted).
        public var queuedMessages = 0
        public var queuedBytes = 0
        /// Retained messages and their bytes (every worker holds them all).
        public var retainedMessages = 0
        public var retainedBytes = 0
        /// Subscriptions in the worker's tree: its sessions' and the routes of the other workers.
        public var subscriptions = 0
        /// Message bytes kept for other workers (sent and not acknowledged, or kept for a vanished one).
        public var peerBufferedBytes = 0
        /// The node's database file and its WAL, as this worker sees them.
        public var databaseBytes = 0
        public var walBytes = 0

        public init() {}

        enum CodingKeys: String, CodingKey {
            case subscriptions
            case queuedMessages = "queued_messages"
            case queuedBytes = "queued_bytes"
            case retainedMessages = "retained_messages"
            case retainedBytes = "retained_bytes"
            case peerBufferedBytes = "peer_buffered_bytes"
            case databaseBytes = "database_bytes"
            case walBytes = "wal_bytes"
        }
    }

    public var connections = 0
    public var messagesReceived = 0
    public var messagesSent = 0
    public var messagesDropped = 0
    /// Worker: how often each limit held since start: messages dropped and requests refused at each storage
    /// limit, by the limit's key (`mqtt.max_queued_bytes`, `mqtt.max_subscriptions`,
    /// `node.max_peer_buffered_bytes`, …), and the connection limits' events (`high_watermark_qos0_dropped`,
    /// `send_timeout_closed`, …; see `LimitEvent` in MQTTBroker). Optional, so that the figures of a child without
    /// it still decode.
    public var limitHits: [String: Int]?
    /// Worker: what it holds now.
    public var storage: Storage?
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
        case limitHits = "limit_hits"
        case storage
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
