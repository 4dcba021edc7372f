#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import Foundation
import Logging
import NIOConcurrencyHelpers
import OpenSSLTLS
import ProcessSupport
import RevocationCache

/// One `listener.ssl.<name>`: its current TLS context and the revocation data behind it.
///
/// The context is immutable; a reload builds a new one off the event loops (on the cache watcher's thread) and
/// swaps it in, so new handshakes use the new CRLs while handshakes in flight and established connections keep
/// the old context. A CRL file that no longer parses or verifies is logged and its last good version stays.
final class TLSListener: Sendable {
    let listener: ListenerConfiguration
    let settings: TLSSettings
    let refusals = TLSRefusalCounter()
    /// Where CRL distribution points of refused client certificates go (to the fetcher).
    let distributionPoints: DistributionPointReporter
    /// The client certificates of open connections, checked against every newly loaded CRL.
    let liveCertificates = LiveCertificates()
    private let cacheLayout: CacheLayout
    private let logger: Logger
    private let state: NIOLockedValueBox<State>
    private let stapling: StaplingIdentity?
    /// RFC 7633: the server certificate promises a staple; no handshake without a valid one.
    let requiresStaple: Bool

    private struct State {
        var context: TLSContext
        var generation: Int
        /// path → the CRLs last loaded from it and the file identity they came from.
        var lastGood: [String: LoadedFile]
        /// The OCSP response last accepted for stapling.
        var staple: LoadedStaple?
        /// Every revocation file as it was when the context was last built (loaded or rejected), so that a
        /// reload with nothing new is a no-op.
        var seen: [String: FileIdentity]
    }

    /// A validated OCSP response and the file identity it came from.
    struct LoadedStaple {
        var identity: FileIdentity
        var response: OCSPVerifiedResponse
    }

    /// The server certificate and its issuer, when this listener staples.
    struct StaplingIdentity {
        var certificate: X509Certificate
        var issuer: X509Certificate
        var path: String
    }

    struct LoadedFile {
        var identity: FileIdentity
        var crls: [CertificateRevocationList]
    }

    /// Enough to tell that a file was replaced (a rename gives a new inode) or rewritten.
    struct FileIdentity: Equatable {
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

    /// Loads the CA bundle and every CRL that applies, and builds the first context. Blocking.
    init(listener: ListenerConfiguration, settings: TLSSettings, cacheLayout: CacheLayout, logger: Logger) throws {
        self.listener = listener
        self.settings = settings
        self.cacheLayout = cacheLayout
        var logger = logger
        logger[metadataKey: "listener"] = "\(listener.identifier)"
        self.logger = logger
        distributionPoints = DistributionPointReporter(layout: cacheLayout, logger: logger)
        (stapling, requiresStaple) = try Self.staplingIdentity(
            listener: listener, settings: settings, cacheLayout: cacheLayout, logger: logger)
        let seen = Self.identities(settings: settings, cacheLayout: cacheLayout, stapling: stapling)
        let staple = Self.loadStaple(stapling, previous: nil, logger: logger)
        let (context, lastGood) = try Self.build(
            listener: listener, settings: settings, cacheLayout: cacheLayout, previous: [:], staple: staple,
            requiresStaple: requiresStaple, logger: logger)
        state = NIOLockedValueBox(
            State(context: context, generation: 1, lastGood: lastGood, staple: staple, seen: seen))
        logStapleState(context: context, staple: staple)
    }

    /// The context for a new connection.
    var currentContext: TLSContext { state.withLockedValue { $0.context } }

    var generation: Int { state.withLockedValue { $0.generation } }

    /// What to watch: the cache's CRL directory and the local `crlfile`s, and this listener's OCSP response.
    var watchTargets: [CacheWatcher.Target] {
        var targets: [CacheWatcher.Target] = []
        if settings.enableCRLCheck {
            targets += [CacheWatcher.Target(directory: cacheLayout.crlDirectory)] + settings.crlFiles.map { .file($0) }
        }
        if let stapling {
            targets.append(.file(stapling.path))
        }
        return targets
    }

    /// Rebuilds the context from the current files and swaps it in, unless no revocation file changed since the
    /// last build. Called on the watcher thread (and once right after the watcher started, to catch what changed
    /// between the first load and the first inotify watch).
    func reload(reason: String) {
        let seen = Self.identities(settings: settings, cacheLayout: cacheLayout, stapling: stapling)
        let (previous, previousStaple, previousSeen) = state.withLockedValue { ($0.lastGood, $0.staple, $0.seen) }
        guard seen != previousSeen else { return }
        for path in previous.keys.sorted() where seen[path] == nil && previousSeen[path] != nil {
            logger.warning(
                "CRL file removed, keeping what was loaded from it until a new one is published",
                metadata: ["revocation.file": "\(path)"])
        }
        do {
            let staple = Self.loadStaple(stapling, previous: previousStaple, logger: logger)
            let (context, lastGood) = try Self.build(
                listener: listener, settings: settings, cacheLayout: cacheLayout, previous: previous, staple: staple,
                requiresStaple: requiresStaple, logger: logger)
            let generation = state.withLockedValue { state -> Int in
                state.context = context
                state.lastGood = lastGood
                state.staple = staple
                state.seen = seen
                state.generation += 1
                return state.generation
            }
            if let staple, staple.identity != previousStaple?.identity {
                logStapleState(context: context, staple: staple)
            }
            if settings.enableCRLCheck && settings.disconnectRevoked {
                liveCertificates.disconnectRevoked(by: context.crls, logger: logger)
            }
            logger.info(
                "revocation data reloaded",
                metadata: [
                    "tls.generation": "\(generation)", "revocation.crls": "\(context.crls.count)",
                    "revocation.entries": "\(context.crls.reduce(0) { $0 + $1.revokedCount })", "reason": "\(reason)",
                ])
        } catch {
            logger.error(
                "cannot rebuild the TLS context, keeping the previous one", metadata: ["error": "\(error)"])
        }
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

    // MARK: Building

    /// The identity of every file a build reads: the CRL files that apply and the staple.
    private static func identities(
        settings: TLSSettings, cacheLayout: CacheLayout, stapling: StaplingIdentity?
    ) -> [String: FileIdentity] {
        var paths = settings.enableCRLCheck ? crlPaths(settings: settings, cacheLayout: cacheLayout) : []
        if let stapling { paths.append(stapling.path) }
        var result: [String: FileIdentity] = [:]
        for path in paths {
            if let identity = FileIdentity(path: path) { result[path] = identity }
        }
        return result
    }

    private static func build(
        listener: ListenerConfiguration, settings: TLSSettings, cacheLayout: CacheLayout,
        previous: [String: LoadedFile], staple: LoadedStaple?, requiresStaple: Bool, logger: Logger
    ) throws -> (TLSContext, [String: LoadedFile]) {
        var crls: [CertificateRevocationList] = []
        var lastGood: [String: LoadedFile] = [:]
        if settings.enableCRLCheck {
            let cas = try settings.caCertFile.map { try X509Certificate.load(file: $0) } ?? []
            let present = crlPaths(settings: settings, cacheLayout: cacheLayout)
            let listed = Set(present)
            // A file that vanished (the cache directory removed, a crlfile moved away) keeps what was loaded from
            // it: revocation data is replaced by newer data, never dropped because a file is gone.
            for path in present + previous.keys.filter({ !listed.contains($0) }).sorted() {
                guard let identity = FileIdentity(path: path) else {
                    if let known = previous[path] {
                        lastGood[path] = known
                        crls += known.crls
                    }
                    continue
                }
                if let known = previous[path], known.identity == identity {
                    lastGood[path] = known
                    crls += known.crls
                    continue
                }
                let isLocal = settings.crlFiles.contains(path)
                switch load(path, cas: cas, requireIssuerMatch: !isLocal) {
                case .success(let loaded):
                    if !loaded.isEmpty || isLocal {
                        lastGood[path] = LoadedFile(identity: identity, crls: loaded)
                        crls += loaded
                        for crl in loaded {
                            logger.debug(
                                "CRL loaded",
                                metadata: [
                                    "revocation.file": "\(path)", "revocation.issuer": "\(crl.issuerDN)",
                                    "revocation.crl_number": "\(crl.crlNumber ?? "-")",
                                    "revocation.entries": "\(crl.revokedCount)",
                                ])
                        }
                    }
                case .failure(let reason):
                    logger.warning(
                        "CRL rejected, keeping the last good one",
                        metadata: [
                            "revocation.file": "\(path)", "error": "\(reason)",
                            "revocation.kept": "\(previous[path] != nil)",
                        ])
                    if let known = previous[path] {
                        lastGood[path] = known
                        crls += known.crls
                    }
                }
            }
            if crls.isEmpty {
                logger.warning(
                    "CRL checking is on but no CRL is loaded: every client certificate will be refused until one arrives",
                    metadata: ["revocation.cache": "\(cacheLayout.crlDirectory)"])
            }
        }
        var configuration = TLSContextConfiguration(
            certificateChainPath: settings.certFile,
            privateKeyPath: settings.keyFile,
            caBundlePath: settings.caCertFile,
            verifyPeer: settings.verify == .verifyPeer,
            failIfNoPeerCertificate: settings.failIfNoPeerCert,
            versions: Set(settings.tlsVersions.map { $0 == .tlsv1_2 ? .tls1_2 : .tls1_3 }),
            ciphers: settings.ciphers,
            sessionIDContext: "gatehouse:\(listener.name)",
            isCRLCheckEnabled: settings.enableCRLCheck,
            crlCheckDepth: settings.crlCheckDepth == .chain ? .chain : .leaf,
            crls: crls,
            ocspResponseDER: staple?.response.derBytes)
        configuration.ocspNextUpdate = staple?.response.staplingExpiry
        configuration.crlStaleGrace = settings.crlFailPolicy == .grace ? settings.crlStaleGrace : nil
        configuration.requiresStaple = requiresStaple
        if let nextUpdate = configuration.ocspNextUpdate {
            configuration.onStapleExpired = {
                logger.warning(
                    "OCSP staple expired, no longer stapled",
                    metadata: [
                        "ocsp.next_update": "\(Timestamp.iso8601(nextUpdate))",
                        "ocsp.must_staple": "\(requiresStaple)",
                    ])
            }
        }
        return (try TLSContext(configuration: configuration), lastGood)
    }

    // MARK: Stapling

    /// Works out what this listener staples for; nil when stapling is off or impossible (no issuer, no OCSP URL:
    /// the fetcher logs that once).
    private static func staplingIdentity(
        listener: ListenerConfiguration, settings: TLSSettings, cacheLayout: CacheLayout, logger: Logger
    ) throws -> (StaplingIdentity?, Bool) {
        guard settings.enableOCSPStapling else { return (nil, false) }
        let resolved = try OCSP.stapledIdentity(
            certificateChainPath: settings.certFile, issuerPath: settings.ocspIssuerPEM,
            caBundlePath: settings.caCertFile, configuredResponderURL: settings.ocspResponderURL)
        let certificate = resolved.certificate
        guard let issuer = resolved.issuer, resolved.responderURL != nil else {
            logger.debug("OCSP stapling off: no issuer certificate or no OCSP URL")
            return (nil, certificate.isMustStaple)
        }
        let identity = StaplingIdentity(
            certificate: certificate, issuer: issuer, path: cacheLayout.ocspFile(listener: listener.name))
        return (identity, certificate.isMustStaple)
    }

    /// Loads the published response if it changed, checking it again (signature, CertID, good, window): the
    /// worker does not trust the file alone. A bad new file keeps the previous response. Internal, not private,
    /// so that the revocation fuzz tests reach the worker's own path for a file in the cache directory.
    static func loadStaple(
        _ stapling: StaplingIdentity?, previous: LoadedStaple?, logger: Logger
    ) -> LoadedStaple? {
        guard let stapling, let identity = FileIdentity(path: stapling.path) else {
            return previous
        }
        if let previous, previous.identity == identity {
            return previous
        }
        guard let bytes = FileDescriptor.readFile(stapling.path, limit: 1 << 20) else {
            return previous
        }
        switch OCSP.validate(
            bytes, certificate: stapling.certificate, issuer: stapling.issuer, now: Int64(time(nil)))
        {
        case .success(let response):
            return LoadedStaple(identity: identity, response: response)
        case .failure(let error):
            logger.warning(
                "OCSP response rejected, keeping the last good one",
                metadata: ["ocsp.file": "\(stapling.path)", "error": "\(error)", "ocsp.kept": "\(previous != nil)"])
            return previous
        }
    }

    private func logStapleState(context: TLSContext, staple: LoadedStaple?) {
        guard stapling != nil else {
            if requiresStaple {
                logger.error(
                    "the server certificate is must-staple but OCSP stapling is not set up: every handshake is refused")
            }
            return
        }
        if let staple, context.hasValidStaple() {
            logger.info(
                "OCSP staple loaded",
                metadata: [
                    "ocsp.this_update": "\(Timestamp.iso8601(staple.response.thisUpdate))",
                    "ocsp.next_update": "\(staple.response.nextUpdate.map { Timestamp.iso8601($0) } ?? "-")",
                    "ocsp.must_staple": "\(requiresStaple)",
                ])
        } else if requiresStaple {
            logger.error(
                "must-staple certificate without a valid OCSP response: handshakes are refused until one arrives")
        } else {
            logger.info("no valid OCSP response to staple yet; handshakes go unstapled until one arrives")
        }
    }

    /// Local `crlfile`s first, then what the fetcher published (`crl/*.der`, `*.pem`, `*.crl`).
    private static func crlPaths(settings: TLSSettings, cacheLayout: CacheLayout) -> [String] {
        let published = ((try? FileManager.default.contentsOfDirectory(atPath: cacheLayout.crlDirectory)) ?? [])
            .filter { name in
                !CacheWatcher.isTemporary(name)
                    && (name.hasSuffix(".der") || name.hasSuffix(".pem") || name.hasSuffix(".crl"))
            }
            .sorted()
            .map { cacheLayout.crlDirectory + "/" + $0 }
        return settings.crlFiles + published
    }

    /// Parses one file and verifies each CRL in it against the listener's CAs. CRLs in the shared cache that
    /// belong to another listener's CA are skipped quietly; anything else that fails rejects the file. Internal,
    /// not private, for the revocation fuzz tests.
    static func load(
        _ path: String, cas: [X509Certificate], requireIssuerMatch: Bool
    ) -> Result<[CertificateRevocationList], CRLRejectionError> {
        let parsed: [CertificateRevocationList]
        do {
            parsed = try CertificateRevocationList.load(file: path)
        } catch {
            return .failure(CRLRejectionError(reason: "\(error)"))
        }
        var usable: [CertificateRevocationList] = []
        for crl in parsed {
            if requireIssuerMatch && !cas.contains(where: { crl.isIssuerNameMatching($0) }) { continue }
            switch CRLSet.validate(crl, cas: cas) {
            case .success(let verified): usable.append(verified)
            case .failure(let error): return .failure(error)
            }
        }
        return .success(usable)
    }
}
