import BrokerConfiguration
import Logging
import OpenSSLTLS
import ProcessSupport
import RevocationCache

/// Which CRLs are in force: every file's CRLs as last loaded (a file that no longer loads or verifies keeps its last
/// good CRLs; one that vanished too), and of those, per lineage (issuer, signing key, scope) the newest, whatever
/// the file. A CRL in force is only ever replaced by a newer one of its lineage: a file that goes back to an older
/// CRL (a replay) is refused and logged, and the newer one stays.
extension TLSListener {
    /// Loads the changed CRL files into `working.lastGood`, updates `working.inForce` and returns the CRLs in
    /// force. Blocking (parsing and verifying big CRLs): on the reload thread.
    static func refreshCRLs(
        _ working: inout State, settings: TLSSettings, cacheLayout: CacheLayout, cas: [X509Certificate],
        maximumEntries: Int, logger: Logger
    ) -> [CertificateRevocationList] {
        let authorities = cas.map(\.derBytes)
        if authorities != working.crlAuthorities {
            // A new CA bundle: every file is verified again against it, and a CRL in force whose signer is no
            // longer trusted goes.
            working.crlAuthorities = authorities
            working.lastGood = [:]
            working.inForce = working.inForce.filter { _, held in
                held.crl.verifiedIssuer.map { signer in authorities.contains(signer.derBytes) } ?? false
            }
        }
        let previous = working.lastGood
        let present = crlPaths(settings: settings, cacheLayout: cacheLayout)
        let listed = Set(present)
        var lastGood: [String: LoadedFile] = [:]
        var changed: Set<String> = []
        // A file that vanished (the cache directory removed, a crlfile moved away) keeps what was loaded from
        // it: revocation data is replaced by newer data, never dropped because a file is gone.
        for path in present + previous.keys.filter({ !listed.contains($0) }).sorted() {
            guard let identity = FileIdentity(path: path) else {
                if let known = previous[path] { lastGood[path] = known }
                continue
            }
            if let known = previous[path], known.identity == identity {
                lastGood[path] = known
                continue
            }
            let isLocal = settings.crlFiles.contains(path)
            switch load(path, cas: cas, requireIssuerMatch: !isLocal, maximumEntries: maximumEntries) {
            case .success(let loaded):
                if !loaded.isEmpty || isLocal {
                    let source = isLocal ? "crlfile \(path)" : publishedSource(of: path, cacheLayout: cacheLayout)
                    lastGood[path] = LoadedFile(identity: identity, crls: loaded, source: source)
                    changed.insert(path)
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
                if let known = previous[path] { lastGood[path] = known }
            }
        }
        working.lastGood = lastGood
        working.inForce = selectInForce(
            files: lastGood, changed: changed, previous: working.inForce, logger: logger)
        let crls = working.inForce.values.sorted { $0.path < $1.path }.map(\.crl)
        if crls.isEmpty {
            logger.warning(
                "CRL checking is on but no CRL is loaded: every client certificate will be refused until one arrives",
                metadata: ["revocation.cache": "\(cacheLayout.crlDirectory)"])
        }
        return crls
    }

    /// Per lineage, the newest of the CRLs in force before and those the files hold now (on a tie, the one just
    /// loaded). A CRL in a file that just changed and is older than the one in force for its lineage is refused and
    /// logged (a rollback); one that is merely older than another source's is superseded quietly.
    static func selectInForce(
        files: [String: LoadedFile], changed: Set<String>, previous: [CRLLineage: CRLInForce], logger: Logger
    ) -> [CRLLineage: CRLInForce] {
        var inForce = previous
        for (path, file) in files.sorted(by: { $0.key < $1.key }) {
            for crl in file.crls {
                guard let lineage = crl.lineage else { continue }
                guard let held = inForce[lineage] else {
                    inForce[lineage] = CRLInForce(crl: crl, path: path, source: file.source)
                    continue
                }
                // As new (same cRLNumber, or none and the same thisUpdate: CRLs issued within one second) and just
                // loaded: the arrival replaces what it is as new as.
                let isTie = !crl.isNewer(than: held.crl) && !held.crl.isNewer(than: crl)
                if crl.isNewer(than: held.crl) || (isTie && changed.contains(path) && crl !== held.crl) {
                    inForce[lineage] = CRLInForce(crl: crl, path: path, source: file.source)
                } else if held.crl.isNewer(than: crl), changed.contains(path),
                          previous[lineage].map({ $0.crl.isNewer(than: crl) }) ?? false
                {
                    let reason = "older than the CRL in force for \(lineage): cRLNumber \(crl.crlNumber ?? "-"), "
                        + "thisUpdate \(crl.thisUpdate.map { Timestamp.iso8601($0) } ?? "-"); in force: "
                        + "cRLNumber \(held.crl.crlNumber ?? "-") from \(held.path)"
                    logger.warning(
                        "CRL rejected, keeping the last good one",
                        metadata: ["revocation.file": "\(path)", "error": "\(reason)", "revocation.kept": "true"])
                }
            }
        }
        return inForce
    }

    /// The URL a published CRL file was fetched from (its metadata), else the path.
    static func publishedSource(of path: String, cacheLayout: CacheLayout) -> String {
        cacheLayout.crlMetadataFile(forDataFile: path).flatMap { CacheItemMetadata.read($0)?.sourceURL } ?? path
    }

    /// Parses one file and verifies each CRL in it against the listener's CAs. CRLs in the shared cache that
    /// belong to another listener's CA are skipped quietly; anything else that fails rejects the file, as does a
    /// CRL with more than `maximumEntries` revoked entries (`crl_cache_max_entries`, counted before OpenSSL
    /// parses anything, so a huge `crlfile` cannot make the worker allocate without bound). Internal, not
    /// private, for the revocation fuzz tests.
    static func load(
        _ path: String, cas: [X509Certificate], requireIssuerMatch: Bool,
        maximumEntries: Int = CRLCacheSettings.defaultMaxEntries
    ) -> Result<[CertificateRevocationList], CRLRejectionError> {
        let parsed: [CertificateRevocationList]
        guard let bytes = FileDescriptor.readFile(path, limit: 1 << 30) else {
            return .failure(CRLRejectionError(reason: "cannot read \(path)"))
        }
        do {
            for der in try CRLEnvelope.derEncodings(bytes) {
                let entries = try CRLEnvelope.revokedEntryCount(der: der)
                guard entries <= maximumEntries else {
                    return .failure(CRLRejectionError(
                        reason: "\(entries) revoked entries, more than crl_cache_max_entries (\(maximumEntries))"))
                }
            }
            parsed = try CertificateRevocationList.parse(bytes)
        } catch {
            return .failure(CRLRejectionError(reason: "\(path): \(error)"))
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
