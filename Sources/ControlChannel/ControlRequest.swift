import Foundation

/// One command from `bin/gatehouse` to a running supervisor over its control socket (`<run_dir>/gatehouse.sock`).
/// One JSON object per line each way; the supervisor answers with one `ControlResponse` and closes.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable, CaseIterable {
        case status
        case stop
        case reload
        case restartFetcher = "restart-fetcher"
        case restartWorkers = "restart-workers"
        case refresh
    }

    public var command: Command

    public init(command: Command) {
        self.command = command
    }
}

/// The supervisor's answer to a `ControlRequest`.
public struct ControlResponse: Codable, Sendable, Equatable {
    public var ok: Bool
    /// What happened, or why not (for `reload`: every configuration error, one per line).
    public var message: String?
    public var status: StatusReport?

    public init(ok: Bool, message: String? = nil, status: StatusReport? = nil) {
        self.ok = ok
        self.message = message
        self.status = status
    }
}

/// What `gatehouse status --json` prints.
public struct StatusReport: Codable, Sendable, Equatable {
    public struct Process: Codable, Sendable, Equatable {
        public var role: String
        public var slot: Int
        public var pid: Int32
        /// supervisor: `running`; fetcher: `starting`/`running`; worker: `starting`/`ready`; any retiring child: `draining`;
        /// a slot waiting out its respawn backoff: `respawning` (pid 0).
        public var state: String
        public var uptimeSeconds: Double
        public var restarts: Int
        public var lastExit: String?
        /// What the child last reported (workers and the fetcher), if anything yet.
        public var statistics: ChildStatistics?

        public init(
            role: String, slot: Int, pid: Int32, state: String, uptimeSeconds: Double, restarts: Int,
            lastExit: String?
        ) {
            self.role = role
            self.slot = slot
            self.pid = pid
            self.state = state
            self.uptimeSeconds = uptimeSeconds
            self.restarts = restarts
            self.lastExit = lastExit
        }

        enum CodingKeys: String, CodingKey {
            case role, slot, pid, state, restarts, statistics
            case uptimeSeconds = "uptime_seconds"
            case lastExit = "last_exit"
        }

        // Always emit last_exit, as null when there is none, so the JSON shape is stable.
        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(role, forKey: .role)
            try container.encode(slot, forKey: .slot)
            try container.encode(pid, forKey: .pid)
            try container.encode(state, forKey: .state)
            try container.encode(uptimeSeconds, forKey: .uptimeSeconds)
            try container.encode(restarts, forKey: .restarts)
            try container.encode(lastExit, forKey: .lastExit)
            try container.encodeIfPresent(statistics, forKey: .statistics)
        }
    }

    /// One CRL or OCSP response the fetcher keeps in the cache, from its metadata.
    public struct CacheItem: Codable, Sendable, Equatable {
        /// `crl` or `ocsp`.
        public var kind: String
        public var url: String
        /// `configured`, `ca`, `reported` or `stapling`.
        public var origin: String
        public var listener: String?
        /// Whether a validated file is published.
        public var published: Bool
        /// Unix seconds.
        public var fetchedAt: Double?
        public var nextUpdate: Double?
        public var nextAttempt: Double?
        public var crlNumber: String?
        public var lastError: String?
        public var consecutiveFailures: Int
        public var thisUpdate: Double?
        /// CRL: issuer and revoked entries. OCSP: certificate, status, producedAt.
        public var issuer: String?
        public var entries: Int?
        public var certificate: String?
        public var certStatus: String?
        public var producedAt: Double?

        public init(
            kind: String, url: String, origin: String, listener: String?, published: Bool, fetchedAt: Double?,
            nextUpdate: Double?, nextAttempt: Double?, crlNumber: String?, lastError: String?,
            consecutiveFailures: Int
        ) {
            self.kind = kind
            self.url = url
            self.origin = origin
            self.listener = listener
            self.published = published
            self.fetchedAt = fetchedAt
            self.nextUpdate = nextUpdate
            self.nextAttempt = nextAttempt
            self.crlNumber = crlNumber
            self.lastError = lastError
            self.consecutiveFailures = consecutiveFailures
        }

        enum CodingKeys: String, CodingKey {
            case kind, url, origin, listener, published
            case fetchedAt = "fetched_at"
            case nextUpdate = "next_update"
            case nextAttempt = "next_attempt"
            case crlNumber = "crl_number"
            case lastError = "last_error"
            case consecutiveFailures = "consecutive_failures"
            case thisUpdate = "this_update"
            case issuer, entries, certificate
            case certStatus = "cert_status"
            case producedAt = "produced_at"
        }
    }

    /// OCSP stapling of one TLS listener.
    public struct Stapling: Codable, Sendable, Equatable {
        public var listener: String
        /// `stapled`, `unstapled`, `withdrawn` (the responder says the certificate is revoked or unknown) or `off`.
        public var state: String
        /// Why, in words ("expired at …", "no OCSP URL", "no response yet: <last error>").
        public var detail: String
        /// The server certificate is must-staple (RFC 7633): while unstapled, handshakes are refused.
        public var mustStaple: Bool
        public var nextUpdate: Double?

        public init(listener: String, state: String, detail: String, mustStaple: Bool, nextUpdate: Double?) {
            self.listener = listener
            self.state = state
            self.detail = detail
            self.mustStaple = mustStaple
            self.nextUpdate = nextUpdate
        }

        enum CodingKeys: String, CodingKey {
            case listener, state, detail
            case mustStaple = "must_staple"
            case nextUpdate = "next_update"
        }
    }

    public var supervisorPid: Int32
    public var config: String
    public var workerProcesses: Int
    public var processes: [Process]
    public var cache: [CacheItem]
    public var stapling: [Stapling]

    public init(
        supervisorPid: Int32, config: String, workerProcesses: Int, processes: [Process], cache: [CacheItem] = [],
        stapling: [Stapling] = []
    ) {
        self.supervisorPid = supervisorPid
        self.config = config
        self.workerProcesses = workerProcesses
        self.processes = processes
        self.cache = cache
        self.stapling = stapling
    }

    enum CodingKeys: String, CodingKey {
        case config, processes, cache, stapling
        case supervisorPid = "supervisor_pid"
        case workerProcesses = "worker_processes"
    }
}

extension ControlRequest {
    public func encodedLine() throws -> [UInt8] {
        Array(try JSONEncoder().encode(self)) + [UInt8(ascii: "\n")]
    }
}

extension ControlResponse {
    public func encodedLine() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }
}
