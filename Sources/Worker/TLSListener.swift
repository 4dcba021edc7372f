#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import Dispatch
import Foundation
import Logging
import MQTTCodec
import NIOConcurrencyHelpers
import NIOCore
import OpenSSLTLS
import ProcessSupport
import RevocationCache

/// One `listener.ssl.<name>`: its gate (the TLS context in force, `TLSGate`) and everything a context is built
/// from, each kept as its last good version: the identity (`certfile` + `keyfile`), the CA bundle (`cacertfile`),
/// the CRLs (the cache's `crl/` and every `crlfile`, the newest per lineage in force) and the OCSP staple.
///
/// Every file is watched (`watchTargets`); a change rebuilds the context off the event loops (on the watcher
/// thread, or a retry thread) and installs it in the gate, which disconnects the clients a newer CRL revokes and
/// makes handshakes in flight decide against it. Rebuilds are serialized, each reading the files as they are when
/// it runs, so the newest files win. A file that does not load (a half-written certificate, a key that does not
/// match, a CRL that does not verify or is older than the one in force) is logged and its last good version stays;
/// it never holds up the rest: a new CRL is applied with the previous identity.
final class TLSListener: Sendable {
    let listener: ListenerConfiguration
    let settings: TLSSettings
    let refusals = TLSRefusalCounter()
    /// Where CRL distribution points of refused client certificates go (to the fetcher).
    let distributionPoints: DistributionPointReporter
    /// The context in force and the connections admitted through it.
    let gate: TLSGate
    /// Disconnects a connection that a newer CRL revokes (`revocationAction`); shared by every connection.
    let onRevoked: (@Sendable (any Channel, TLSGate.Revocation) -> Void)?
    let cacheLayout: CacheLayout
    let logger: Logger
    let state: NIOLockedValueBox<State>
    /// Held for a whole rebuild: one at a time.
    private let rebuildLock = NIOLock()

    struct State {
        var identity: LoadedIdentity
        var authorities: LoadedAuthorities
        /// What the stapling listener staples for (derived from `identity`); nil when stapling is off or impossible.
        var stapling: StaplingIdentity?
        /// path → the CRLs last loaded from it and the file identity they came from.
        var lastGood: [String: LoadedFile] = [:]
        /// The CRL in force per lineage and the file it came from.
        var inForce: [CRLLineage: CRLInForce] = [:]
        /// The CA certificates (DER) the CRLs in `lastGood` and `inForce` were verified against.
        var crlAuthorities: [[UInt8]] = []
        var staple: StapleState = .none
        /// Every file as it was when the context was last built (loaded or rejected), so that a reload with
        /// nothing new is a no-op.
        var seen: [String: FileIdentity] = [:]
        /// Problems already logged (so each is logged once while it lasts).
        var reported: Set<String> = []
        /// A retry of a file that did not load is scheduled.
        var retryPending = false
        var retryDelay: Double = 1
    }

    struct LoadedFile {
        var identity: FileIdentity
        var crls: [CertificateRevocationList]
        /// Where the file's CRLs come from: the URL the fetcher fetched it from, or `crlfile <path>`.
        var source: String
    }

    struct CRLInForce {
        var crl: CertificateRevocationList
        var path: String
        var source: String
    }

    /// Enough to tell that a file was replaced (a rename gives a new inode) or rewritten.
    struct FileIdentity: Equatable, Hashable {
        var inode: UInt64
        var size: Int64
        var modified: Int64

        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        }
    }

    /// `crl_cache_max_entries`: a CRL file with more revoked entries is refused.
    let maximumCRLEntries: Int

    /// Loads the identity, the CA bundle and every CRL that applies, and builds the first context. Blocking.
    init(
        listener: ListenerConfiguration, settings: TLSSettings, cacheLayout: CacheLayout,
        maximumCRLEntries: Int = CRLCacheSettings.defaultMaxEntries, logger: Logger
    ) throws {
        self.listener = listener
        self.settings = settings
        self.cacheLayout = cacheLayout
        self.maximumCRLEntries = maximumCRLEntries
        var logger = logger
        logger[metadataKey: "listener"] = "\(listener.identifier)"
        self.logger = logger
        distributionPoints = DistributionPointReporter(layout: cacheLayout, logger: logger)
        var state = State(
            identity: try LoadedIdentity.load(settings: settings),
            authorities: try LoadedAuthorities.load(settings: settings))
        state.stapling = try Self.staplingIdentity(
            settings: settings, identity: state.identity.identity, authorities: state.authorities.certificates,
            cacheLayout: cacheLayout, listenerName: listener.name, logger: logger)
        state.seen = Self.identities(of: Self.watchedFiles(settings: settings, cacheLayout: cacheLayout, listener: listener))
        let context = try Self.build(
            &state, settings: settings, listener: listener, cacheLayout: cacheLayout,
            maximumCRLEntries: maximumCRLEntries, logger: logger)
        self.state = NIOLockedValueBox(state)
        gate = TLSGate(context: context)
        onRevoked = Self.revocationAction(settings: settings, logger: logger)
        logStapleState(context: context, staple: state.staple, stapling: state.stapling)
    }

    /// The context for a new connection.
    var currentContext: TLSContext { gate.current }

    var generation: Int { gate.generation }

    /// What to watch: the cache's CRL directory and the local `crlfile`s, this listener's OCSP response, and the
    /// identity and CA files.
    var watchTargets: [CacheWatcher.Target] {
        var targets: [CacheWatcher.Target] = []
        if settings.enableCRLCheck {
            targets += [CacheWatcher.Target(directory: cacheLayout.crlDirectory)] + settings.crlFiles.map { .file($0) }
        }
        if settings.enableOCSPStapling {
            targets.append(.file(cacheLayout.ocspFile(listener: listener.name)))
        }
        targets += identityPaths.map { .file($0) }
        return targets
    }

    /// The files the identity, the CA bundle and the stapling issuer come from.
    var identityPaths: [String] {
        [settings.certFile, settings.keyFile] + [settings.caCertFile, settings.ocspIssuerPEM].compactMap { $0 }
    }

    /// Rebuilds the context from the current files and installs it, unless no file changed since the last build
    /// (`force`: a retry, rebuild anyway). Called on the watcher thread (and once right after the watcher started,
    /// to catch what changed between the first load and the first inotify watch), and on a retry thread.
    func reload(reason: String, force: Bool = false) {
        rebuildLock.withLock {
            rebuild(reason: reason, force: force)
        }
    }

    private func rebuild(reason: String, force: Bool) {
        var working = state.withLockedValue { $0 }
        let seen = Self.identities(of: Self.watchedFiles(settings: settings, cacheLayout: cacheLayout, listener: listener))
        guard force || seen != working.seen else { return }
        for path in working.lastGood.keys.sorted() where seen[path] == nil && working.seen[path] != nil {
            logger.warning(
                "CRL file removed, keeping what was loaded from it until a new one is published",
                metadata: ["revocation.file": "\(path)"])
        }
        working.retryPending = false
        let before = (working.identity.certificateFile, working.identity.keyFile, working.authorities.file)
        var needsRetry = refreshIdentity(&working)
        needsRetry = refreshAuthorities(&working) || needsRetry
        let after = (working.identity.certificateFile, working.identity.keyFile, working.authorities.file)
        if seen == working.seen && before == after {
            // A retry that found the same files still unusable: nothing to install (a new context would only
            // cost every handshake in flight a second verification and every client its ticket).
            if needsRetry { scheduleRetry(&working) }
            state.withLockedValue { $0 = working }
            return
        }
        refreshStapling(&working)
        let previousStaple = working.staple
        let context: TLSContext
        do {
            context = try Self.build(
                &working, settings: settings, listener: listener, cacheLayout: cacheLayout,
                maximumCRLEntries: maximumCRLEntries, logger: logger)
        } catch {
            logger.error("cannot rebuild the TLS context, keeping the previous one", metadata: ["error": "\(error)"])
            scheduleRetry(&working)
            state.withLockedValue { $0 = working }
            return
        }
        working.seen = seen
        if needsRetry {
            scheduleRetry(&working)
        } else {
            working.retryDelay = 1
        }
        state.withLockedValue { $0 = working }
        let (generation, revoked) = gate.install(context)
        if working.staple != previousStaple {
            logStapleState(context: context, staple: working.staple, stapling: working.stapling)
        }
        logger.info(
            "revocation data reloaded",
            metadata: [
                "tls.generation": "\(generation)", "revocation.crls": "\(context.crls.count)",
                "revocation.entries": "\(context.crls.reduce(0) { $0 + $1.revokedCount })",
                "tls.revoked_clients": "\(revoked.count)", "reason": "\(reason)",
            ])
    }

    /// A file that did not load is tried again after a while (1 s, doubling up to a minute), in case no further
    /// file event comes (a rotation that wrote the key before the certificate, say).
    private func scheduleRetry(_ working: inout State) {
        guard !working.retryPending else { return }
        working.retryPending = true
        let delay = working.retryDelay
        working.retryDelay = min(60, delay * 2)
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [self] in
            reload(reason: "retrying files that did not load", force: true)
        }
    }

    /// Logs `message` once while `key` stays a problem (`resolve` forgets it).
    func reportOnce(_ key: String, in working: inout State, _ log: () -> Void) {
        guard !working.reported.contains(key) else { return }
        working.reported.insert(key)
        log()
    }

    func resolve(_ prefix: String, in working: inout State) {
        working.reported = working.reported.filter { !$0.hasPrefix(prefix) }
    }

    /// One line for the refusals not logged one by one since the last call (more than
    /// `TLSRefusalCounter.logLinesPerSecond` a second), with their count by reason; nothing if there were none.
    func logSuppressedRefusals() {
        let suppressed = refusals.takeSuppressed()
        guard !suppressed.isEmpty else { return }
        logger.warning(
            "TLS handshake refusals not logged one by one (more than \(TLSRefusalCounter.logLinesPerSecond) a second)",
            metadata: [
                "tls.refused": "\(suppressed.values.reduce(0, +))",
                "tls.reasons": "\(suppressed.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))",
            ])
    }

    // MARK: Reporting

    /// What `status` and the metrics show of this listener's revocation data in force: every CRL in force and
    /// the staple.
    func reportInForce(into figures: inout ChildStatistics.Listener, now: Int64) {
        let working = state.withLockedValue { $0 }
        let grace = settings.crlFailPolicy == .grace ? settings.crlStaleGrace.components.seconds : 0
        figures.crlsInForce = working.inForce.values.sorted { $0.crl.issuerDN < $1.crl.issuerDN }.map { held in
            ChildStatistics.CRLInForce(
                issuer: held.crl.issuerDN, source: held.source, crlNumber: held.crl.crlNumber,
                thisUpdate: held.crl.thisUpdate, nextUpdate: held.crl.nextUpdate, entries: held.crl.revokedCount,
                refusesFrom: held.crl.nextUpdate.map { $0 + grace })
        }
        guard settings.enableOCSPStapling else { return }
        let serial = working.identity.identity.certificate.serialHex
        switch working.staple {
        case .stapled(let staple):
            let expiry = staple.response.staplingExpiry
            figures.staple = ChildStatistics.Staple(
                state: expiry > now ? "stapled" : "expired", certificateSerial: serial,
                thisUpdate: staple.response.thisUpdate, nextUpdate: expiry, detail: nil)
        case .withdrawn(_, _, let reason):
            figures.staple = ChildStatistics.Staple(
                state: "withdrawn", certificateSerial: serial, thisUpdate: nil, nextUpdate: nil, detail: reason)
        case .none:
            figures.staple = ChildStatistics.Staple(
                state: "none", certificateSerial: serial, thisUpdate: nil, nextUpdate: nil,
                detail: working.stapling == nil ? "no issuer certificate or no OCSP URL" : "no valid response yet")
        }
    }

    // MARK: Live revocation

    /// What a connection registers in the gate to be disconnected when a newer CRL revokes it; nil when this
    /// listener leaves connected clients alone (`disconnect_revoked = false`, or no CRL checking).
    static func revocationAction(
        settings: TLSSettings, logger: Logger
    ) -> (@Sendable (any Channel, TLSGate.Revocation) -> Void)? {
        guard settings.enableCRLCheck && settings.disconnectRevoked else { return nil }
        return { channel, revocation in
            logger.warning(
                "client disconnected: certificate revoked",
                metadata: [
                    "tls.subject": "\(revocation.peer.subjectDN)", "tls.serial": "\(revocation.peer.serialHex)",
                    "tls.issuer": "\(revocation.peer.issuerDN)",
                    "tls.revoked_subject": "\(revocation.subject.subjectDN)",
                    "tls.revoked_serial": "\(revocation.subject.serialHex)",
                    "revocation.crl_number": "\(revocation.crlNumber ?? "-")",
                    "mqtt.reason": "administrative action (0x98)",
                ])
            channel.eventLoop.execute {
                if let handler = try? channel.pipeline.syncOperations.handler(type: MQTTServerHandler.self) {
                    handler.disconnect(reason: .administrativeAction)
                } else {
                    channel.close(promise: nil)
                }
            }
        }
    }

    // MARK: Building

    /// Every file a build reads: the CRL files that apply, the staple, the identity and CA files.
    private static func watchedFiles(
        settings: TLSSettings, cacheLayout: CacheLayout, listener: ListenerConfiguration
    ) -> [String] {
        var paths = settings.enableCRLCheck ? crlPaths(settings: settings, cacheLayout: cacheLayout) : []
        if settings.enableOCSPStapling {
            paths.append(cacheLayout.ocspFile(listener: listener.name))
        }
        paths += [settings.certFile, settings.keyFile] + [settings.caCertFile, settings.ocspIssuerPEM].compactMap { $0 }
        return paths
    }

    private static func identities(of paths: [String]) -> [String: FileIdentity] {
        var result: [String: FileIdentity] = [:]
        for path in paths {
            if let identity = FileIdentity(path: path) { result[path] = identity }
        }
        return result
    }

    /// Loads what changed of the CRLs and the staple into `working` and builds a context from it.
    private static func build(
        _ working: inout State, settings: TLSSettings, listener: ListenerConfiguration, cacheLayout: CacheLayout,
        maximumCRLEntries: Int, logger: Logger
    ) throws -> TLSContext {
        let identity = working.identity.identity
        let authorities = working.authorities.certificates
        let crls = settings.enableCRLCheck
            ? refreshCRLs(
                &working, settings: settings, cacheLayout: cacheLayout, cas: authorities,
                maximumEntries: maximumCRLEntries, logger: logger)
            : []
        working.staple = loadStaple(working.stapling, previous: working.staple, logger: logger)
        let staple = working.staple.stapled
        var configuration = TLSContextConfiguration(
            identity: identity,
            certificateAuthorities: authorities,
            verifyPeer: settings.verify == .verifyPeer,
            failIfNoPeerCertificate: settings.failIfNoPeerCert,
            versions: Set(settings.tlsVersions.map { $0 == .tlsv1_2 ? .tls1_2 : .tls1_3 }),
            ciphers: settings.ciphers,
            sessionIDContext: "gatehouse:\(listener.name)",
            isCRLCheckEnabled: settings.enableCRLCheck,
            crlCheckDepth: settings.crlCheckDepth == .chain ? .chain : .leaf,
            crls: crls,
            ocspResponseDER: staple?.derBytes)
        configuration.verifyDepth = settings.verifyDepth
        configuration.reuseSessions = settings.reuseSessions
        configuration.honorCipherOrder = settings.honorCipherOrder
        configuration.ocspNextUpdate = staple?.staplingExpiry
        configuration.crlStaleGrace = settings.crlFailPolicy == .grace ? settings.crlStaleGrace : nil
        configuration.requiresStaple = identity.certificate.isMustStaple
        if let nextUpdate = configuration.ocspNextUpdate {
            let requiresStaple = configuration.requiresStaple
            configuration.onStapleExpired = {
                logger.warning(
                    "OCSP staple expired, no longer stapled",
                    metadata: [
                        "ocsp.next_update": "\(Timestamp.iso8601(nextUpdate))",
                        "ocsp.must_staple": "\(requiresStaple)",
                    ])
            }
        }
        return try TLSContext(configuration: configuration)
    }

    /// Local `crlfile`s first, then what the fetcher published (`crl/*.der`, `*.pem`, `*.crl`).
    static func crlPaths(settings: TLSSettings, cacheLayout: CacheLayout) -> [String] {
        let published = ((try? FileManager.default.contentsOfDirectory(atPath: cacheLayout.crlDirectory)) ?? [])
            .filter { name in
                !CacheWatcher.isTemporary(name)
                    && (name.hasSuffix(".der") || name.hasSuffix(".pem") || name.hasSuffix(".crl"))
            }
            .sorted()
            .map { cacheLayout.crlDirectory + "/" + $0 }
        return settings.crlFiles + published
    }
}
