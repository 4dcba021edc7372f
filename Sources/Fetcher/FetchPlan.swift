import BrokerConfiguration
import OpenSSLTLS
import RevocationCache

/// One thing the fetcher keeps fresh.
struct FetchSource: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        /// A CRL from a URL.
        case crl
        /// The OCSP response for a stapling listener's server certificate.
        case ocsp(listener: String)
    }

    var kind: Kind
    var url: String
    var origin: CacheItemMetadata.Origin

    /// The item's identity in the fetcher and the cache: CRLs by URL, OCSP responses by listener.
    var key: String {
        switch kind {
        case .crl: return "crl:" + url
        case .ocsp(let listener): return "ocsp:" + listener
        }
    }

    var listener: String? {
        if case .ocsp(let listener) = kind { return listener }
        return nil
    }

    /// Where the item's published file lives in `layout`.
    func dataPath(in layout: CacheLayout) -> String {
        switch kind {
        case .crl: return layout.crlFile(forURL: url)
        case .ocsp(let listener): return layout.ocspFile(listener: listener)
        }
    }

    /// Where the item's metadata sidecar lives in `layout`.
    func metadataPath(in layout: CacheLayout) -> String {
        switch kind {
        case .crl: return layout.crlMetadataFile(forURL: url)
        case .ocsp(let listener): return layout.ocspMetadataFile(listener: listener)
        }
    }
}

/// A stapling listener as configured: where its server certificate, issuer and responder come from. The files are
/// read again for every OCSP fetch (`resolve`), so that a replaced certfile is the one asked about.
struct StaplingTarget: Sendable {
    var listener: String
    /// `certfile`: the server certificate first, then the chain the server sends.
    var certificatePath: String
    /// `ocsp_issuer_pem`.
    var issuerPath: String?
    /// `cacertfile`, where the issuer may be found otherwise.
    var caBundlePath: String?
    /// `ocsp_responder_url`.
    var configuredResponderURL: String?
    /// The responder as the plan found it (the item's URL); "" when the certificate could not be read then.
    var responderURL: String
    var schedule: FetchSchedule
    var httpTimeout: Duration

    /// The files whose change makes the OCSP response due at once.
    var watchedFiles: [String] {
        [certificatePath] + [issuerPath ?? caBundlePath].compactMap { $0 }
    }

    /// The certificate, issuer and responder as the files say now. Blocking reads.
    func resolve() -> Result<ResolvedStapling, FetchFailure> {
        let identity: OCSP.StapledIdentity
        do {
            identity = try OCSP.stapledIdentity(
                certificateChainPath: certificatePath, issuerPath: issuerPath, caBundlePath: caBundlePath,
                configuredResponderURL: configuredResponderURL)
        } catch {
            return .failure(.invalid("cannot read the server certificate for OCSP stapling: \(error)"))
        }
        guard let issuer = identity.issuer else {
            return .failure(.invalid(
                "no issuer certificate for \(identity.certificate.subjectDN) "
                    + "(set ocsp_issuer_pem, or put the issuer in certfile or cacertfile)"))
        }
        guard let url = identity.responderURL else {
            return .failure(.invalid(
                "the server certificate has no OCSP URL and ocsp_responder_url is not set"))
        }
        return .success(ResolvedStapling(
            chain: identity.chain, certificate: identity.certificate, issuer: issuer, responderURL: url))
    }

    /// How the metadata names the certificate a response is about.
    static func label(of certificate: X509Certificate) -> String {
        "\(certificate.subjectDN) serial \(certificate.serialHex)"
    }
}

/// What one OCSP fetch asks about: the server certificate now in certfile, its issuer and its responder.
struct ResolvedStapling: Sendable {
    var chain: [X509Certificate]
    var certificate: X509Certificate
    var issuer: X509Certificate
    var responderURL: String
}

/// Everything the configuration asks the fetcher to keep fresh, worked out once per (re)load: the CRL URLs, the CA
/// certificates that may sign them, and the stapling targets. Reading certificate files is blocking; done on the
/// fetcher's main thread at start and reload only.
struct FetchPlan: Sendable {
    var crlSources: [FetchSource] = []
    /// The union of every CRL-checking listener's CA certificates: a downloaded CRL must verify against one.
    var crlAuthorities: [X509Certificate] = []
    var crlSchedule: FetchSchedule
    var stapling: [String: StaplingTarget] = [:]
    /// Per stapling listener, the certificate its certfile held when the plan was made (`StaplingTarget.label`).
    var certificates: [String: String] = [:]
    /// Problems worth one log line each (a stapling listener without an OCSP URL, an unreadable file).
    var notes: [(level: Note, message: String, listener: String)] = []

    enum Note: Sendable {
        case info, error
    }

    init(configuration: GatehouseConfiguration) {
        let floor = configuration.node.fetchRefreshFloor
        crlSchedule = FetchSchedule(interval: configuration.crlCache.refreshInterval, floor: floor)
        var seenURLs = Set<String>()
        var seenAuthorities = Set<[UInt8]>()
        func addCRL(_ url: String, origin: CacheItemMetadata.Origin) {
            guard DistributionPointRequests.isAcceptable(url), seenURLs.insert(url).inserted else { return }
            crlSources.append(FetchSource(kind: .crl, url: url, origin: origin))
        }
        for listener in configuration.listeners {
            guard let tls = listener.tls else { continue }
            if tls.enableCRLCheck {
                for url in tls.crlCacheURLs {
                    addCRL(url, origin: .configured)
                }
                let authorities = (tls.caCertFile.flatMap { try? X509Certificate.load(file: $0) }) ?? []
                for authority in authorities where seenAuthorities.insert(authority.derBytes).inserted {
                    crlAuthorities.append(authority)
                }
                for authority in authorities {
                    for url in authority.crlDistributionPointURLs {
                        addCRL(url, origin: .ca)
                    }
                }
            }
            if tls.enableOCSPStapling {
                addStapling(listener: listener, tls: tls, floor: floor)
            }
        }
    }

    /// A stapling listener becomes an item unless its certificate (as the files are now) has no OCSP URL or no
    /// issuer: then stapling is off, said once. A certificate that cannot be read now (being replaced) still makes
    /// an item: its fetches fail until the file is whole again, and the last good response stays.
    private mutating func addStapling(listener: ListenerConfiguration, tls: TLSSettings, floor: Duration) {
        var target = StaplingTarget(
            listener: listener.name, certificatePath: tls.certFile, issuerPath: tls.ocspIssuerPEM,
            caBundlePath: tls.caCertFile, configuredResponderURL: tls.ocspResponderURL,
            responderURL: tls.ocspResponderURL ?? "",
            schedule: FetchSchedule(interval: tls.ocspRefreshInterval, floor: floor),
            httpTimeout: tls.ocspRefreshHTTPTimeout)
        let resolved: OCSP.StapledIdentity
        do {
            resolved = try OCSP.stapledIdentity(
                certificateChainPath: tls.certFile, issuerPath: tls.ocspIssuerPEM, caBundlePath: tls.caCertFile,
                configuredResponderURL: tls.ocspResponderURL)
        } catch {
            notes.append((.error, "cannot read the server certificate for OCSP stapling: \(error)", listener.name))
            stapling[listener.name] = target
            return
        }
        let certificate = resolved.certificate
        guard resolved.issuer != nil else {
            notes.append((
                .error,
                "OCSP stapling is off: no issuer certificate for \(certificate.subjectDN) "
                    + "(set ocsp_issuer_pem, or put the issuer in certfile or cacertfile)",
                listener.name))
            return
        }
        guard let url = resolved.responderURL else {
            notes.append((
                .info,
                "OCSP stapling is off: the server certificate has no OCSP URL and ocsp_responder_url is not set",
                listener.name))
            return
        }
        target.responderURL = url
        stapling[listener.name] = target
        certificates[listener.name] = StaplingTarget.label(of: certificate)
    }

    var staplingSources: [FetchSource] {
        stapling.values.sorted { $0.listener < $1.listener }.map {
            FetchSource(kind: .ocsp(listener: $0.listener), url: $0.responderURL, origin: .stapling)
        }
    }
}
