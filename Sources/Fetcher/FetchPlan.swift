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

/// What a stapling listener needs for its OCSP request.
struct StaplingTarget: Sendable {
    var listener: String
    var certificate: X509Certificate
    var issuer: X509Certificate
    var responderURL: String
    var schedule: FetchSchedule
    var httpTimeout: Duration
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

    private mutating func addStapling(listener: ListenerConfiguration, tls: TLSSettings, floor: Duration) {
        let resolved: OCSP.StapledIdentity
        do {
            resolved = try OCSP.stapledIdentity(
                certificateChainPath: tls.certFile, issuerPath: tls.ocspIssuerPEM, caBundlePath: tls.caCertFile,
                configuredResponderURL: tls.ocspResponderURL)
        } catch {
            notes.append((.error, "cannot read the server certificate for OCSP stapling: \(error)", listener.name))
            return
        }
        let certificate = resolved.certificate
        guard let issuer = resolved.issuer else {
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
        stapling[listener.name] = StaplingTarget(
            listener: listener.name, certificate: certificate, issuer: issuer, responderURL: url,
            schedule: FetchSchedule(interval: tls.ocspRefreshInterval, floor: floor),
            httpTimeout: tls.ocspRefreshHTTPTimeout)
    }

    var staplingSources: [FetchSource] {
        stapling.values.sorted { $0.listener < $1.listener }.map {
            FetchSource(kind: .ocsp(listener: $0.listener), url: $0.responderURL, origin: .stapling)
        }
    }
}
