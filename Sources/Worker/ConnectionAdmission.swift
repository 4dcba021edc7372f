import BrokerConfiguration
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ProcessSupport

/// The accept-time gate of one listener in one worker: `access.<N>` rules, `max_connections`, `max_conn_rate` and
/// `max_connections_per_address` (node-wide, through `SharedListenerCounters`), decided on the client's address (the socket's
/// peer, or the one a PROXY protocol header named) before any TLS work. Refusals are counted per reason for
/// `gatehouse status` and the metrics.
///
/// Created by `WorkerService` per listener; `admit` runs on the event loop, the counts are read from the
/// statistics task, so it is Sendable (the counts behind a lock, the limits immutable).
final class ConnectionAdmission: Sendable {
    /// Why a connection was closed at accept; the raw value is the `reason` label of
    /// `gatehouse_connections_refused_total` and the key in `gatehouse status`.
    enum Refusal: String, Sendable, CaseIterable {
        case accessDenied = "access_denied"
        case maxConnections = "max_connections"
        case maxConnectionRate = "max_conn_rate"
        case maxConnectionsPerAddress = "max_connections_per_address"
        case proxyHeaderInvalid = "proxy_header_invalid"
        case proxyHeaderTimeout = "proxy_header_timeout"
    }

    enum Decision: Sendable, Equatable {
        /// Serve it; what it counts towards until `release(_:)`.
        case admitted(Reservation)
        case refused(Refusal)
    }

    /// The places an admitted connection holds in the node-wide counters.
    struct Reservation: Sendable, Equatable {
        /// Counted towards `max_connections`.
        var connection = false
        /// Counted towards `max_connections_per_address`, in this bucket.
        var addressBucket: Int?

        /// Whether `release(_:)` must be called when the connection closes.
        var holdsPlace: Bool { connection || addressBucket != nil }
    }

    let listener: String
    let settings: AcceptSettings
    private let counters: SharedListenerCounters?
    private let refusals = NIOLockedValueBox<[Refusal: Int]>([:])

    /// Opens the shared counters when the listener has a connection limit or rate.
    init(listener: ListenerConfiguration, runDirectory: String) throws(SystemError) {
        self.listener = listener.identifier
        self.settings = listener.accept
        if settings.maxConnections != nil || settings.maxConnectionRate != nil
            || settings.maxConnectionsPerAddress != nil
        {
            counters = try SharedListenerCounters(runDirectory: runDirectory, listener: listener.identifier)
        } else {
            counters = nil
        }
    }

    /// Decides for a client at `address`; counts the refusal. An admitted connection whose reservation
    /// `holdsPlace` must be released when it closes.
    func admit(_ address: SocketAddress?) -> Decision {
        let bytes = address.flatMap(Self.addressBytes)
        if !settings.access.isEmpty, !settings.access.allows(bytes) {
            return refuse(.accessDenied)
        }
        if let rate = settings.maxConnectionRate, let counters, !counters.takeRateToken(rate: rate) {
            return refuse(.maxConnectionRate)
        }
        var reservation = Reservation()
        if let limit = settings.maxConnectionsPerAddress, let counters, let bytes {
            guard let bucket = counters.reserveAddress(SharedListenerCounters.addressKey(bytes), limit: limit) else {
                return refuse(.maxConnectionsPerAddress)
            }
            reservation.addressBucket = bucket
        }
        if let limit = settings.maxConnections, let counters {
            guard counters.reserveConnection(limit: limit) else {
                release(reservation)
                return refuse(.maxConnections)
            }
            reservation.connection = true
        }
        return .admitted(reservation)
    }

    /// A connection admitted with `reservation` closed.
    func release(_ reservation: Reservation) {
        if reservation.connection { counters?.releaseConnection() }
        if let bucket = reservation.addressBucket { counters?.releaseAddress(bucket: bucket) }
    }

    /// Counts a refusal decided elsewhere (the PROXY protocol handler).
    @discardableResult
    func refuse(_ refusal: Refusal) -> Decision {
        refusals.withLockedValue { $0[refusal, default: 0] += 1 }
        return .refused(refusal)
    }

    /// Refusals since the worker started, by reason.
    var refusalCounts: [String: Int] {
        refusals.withLockedValue { counts in
            Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) })
        }
    }

    /// The 4 or 16 bytes of an IP socket address.
    static func addressBytes(_ address: SocketAddress) -> [UInt8]? {
        switch address {
        case .v4(let v4):
            return withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
        case .v6(let v6):
            return withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        case .unixDomainSocket:
            return nil
        }
    }
}
