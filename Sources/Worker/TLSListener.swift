#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import Foundation
import Logging
import NIOConcurrencyHelpers
import OpenSSLTLS
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
    private let cacheLayout: CacheLayout
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    private struct State {
        var context: TLSContext
        var generation: Int
        /// path → the CRLs last loaded from it and the file identity they came from.
        var lastGood: [String: LoadedFile]
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
        let (context, lastGood) = try Self.build(
            listener: listener, settings: settings, cacheLayout: cacheLayout, previous: [:], logger: logger)
        state = NIOLockedValueBox(State(context: context, generation: 1, lastGood: lastGood))
    }

    /// The context for a new connection.
    var currentContext: TLSContext { state.withLockedValue { $0.context } }

    var generation: Int { state.withLockedValue { $0.generation } }

    /// What to watch: the cache's CRL directory and the local `crlfile`s.
    var watchTargets: [CacheWatcher.Target] {
        guard settings.enableCRLCheck else { return [] }
        return [CacheWatcher.Target(directory: cacheLayout.crlDirectory)] + settings.crlFiles.map { .file($0) }
    }

    /// Rebuilds the context from the current files and swaps it in. Called on the watcher thread.
    func reload(reason: String) {
        let previous = state.withLockedValue { $0.lastGood }
        do {
            let (context, lastGood) = try Self.build(
                listener: listener, settings: settings, cacheLayout: cacheLayout, previous: previous, logger: logger)
            let generation = state.withLockedValue { state -> Int in
                state.context = context
                state.lastGood = lastGood
                state.generation += 1
                return state.generation
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

    // MARK: Building

    private static func build(
        listener: ListenerConfiguration, settings: TLSSettings, cacheLayout: CacheLayout,
        previous: [String: LoadedFile], logger: Logger
    ) throws -> (TLSContext, [String: LoadedFile]) {
        var crls: [CertificateRevocationList] = []
        var lastGood: [String: LoadedFile] = [:]
        if settings.enableCRLCheck {
            let cas = try settings.caCertFile.map { try X509Certificate.load(file: $0) } ?? []
            for path in crlPaths(settings: settings, cacheLayout: cacheLayout) {
                guard let identity = FileIdentity(path: path) else { continue }
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
        let configuration = TLSContextConfiguration(
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
            crls: crls)
        return (try TLSContext(configuration: configuration), lastGood)
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
    /// belong to another listener's CA are skipped quietly; anything else that fails rejects the file.
    private static func load(
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
