import BrokerConfiguration
import Logging
import OpenSSLTLS
import RevocationCache

/// The identity (`certfile` + `keyfile`) and the CA bundle (`cacertfile`) as last loaded, and their rotation:
/// a new pair is adopted only if it loads and the key matches the certificate; otherwise the previous identity
/// stays in force, the problem is logged once and the files are tried again.
extension TLSListener {
    /// The identity in force and the files it came from.
    struct LoadedIdentity {
        var identity: TLSIdentity
        var certificateFile: FileIdentity?
        var keyFile: FileIdentity?

        /// Loads `certfile` and `keyfile`. Blocking.
        static func load(settings: TLSSettings) throws -> LoadedIdentity {
            let certificateFile = FileIdentity(path: settings.certFile)
            let keyFile = FileIdentity(path: settings.keyFile)
            let identity = try TLSIdentity.load(certificateChainPath: settings.certFile, privateKeyPath: settings.keyFile)
            return LoadedIdentity(identity: identity, certificateFile: certificateFile, keyFile: keyFile)
        }
    }

    /// The CA bundle in force and the file it came from.
    struct LoadedAuthorities {
        var certificates: [X509Certificate]
        var file: FileIdentity?

        static func load(settings: TLSSettings) throws -> LoadedAuthorities {
            guard let path = settings.caCertFile else {
                return LoadedAuthorities(certificates: [], file: nil)
            }
            let file = FileIdentity(path: path)
            return LoadedAuthorities(certificates: try X509Certificate.load(file: path), file: file)
        }
    }

    /// Adopts a changed `certfile` / `keyfile` pair if it is consistent. Returns whether the files on disk are not
    /// the identity in force (to be tried again).
    func refreshIdentity(_ working: inout State) -> Bool {
        let certificateFile = FileIdentity(path: settings.certFile)
        let keyFile = FileIdentity(path: settings.keyFile)
        guard certificateFile != working.identity.certificateFile || keyFile != working.identity.keyFile else {
            return false
        }
        do {
            let loaded = try LoadedIdentity.load(settings: settings)
            let previous = working.identity.identity.certificate
            working.identity = loaded
            resolve("identity:", in: &working)
            let certificate = loaded.identity.certificate
            logger.info(
                "TLS identity loaded",
                metadata: [
                    "tls.certificate_subject": "\(certificate.subjectDN)",
                    "tls.certificate_serial": "\(certificate.serialHex)",
                    "tls.certificate_not_after": "\(certificate.notAfter.map { Timestamp.iso8601($0) } ?? "-")",
                    "tls.previous_serial": "\(previous.serialHex)",
                ])
            return false
        } catch {
            let current = working.identity.identity.certificate
            reportOnce("identity:\(String(describing: certificateFile)):\(String(describing: keyFile))", in: &working) {
                logger.error(
                    "new certificate and key not usable together, keeping the previous identity",
                    metadata: [
                        "tls.certfile": "\(settings.certFile)", "tls.keyfile": "\(settings.keyFile)",
                        "error": "\(error)", "tls.certificate_serial": "\(current.serialHex)",
                    ])
            }
            return true
        }
    }

    /// Adopts a changed `cacertfile` if it parses. Returns whether the file on disk is not the bundle in force.
    func refreshAuthorities(_ working: inout State) -> Bool {
        guard let path = settings.caCertFile else { return false }
        let file = FileIdentity(path: path)
        guard file != working.authorities.file else { return false }
        do {
            let loaded = try LoadedAuthorities.load(settings: settings)
            guard !loaded.certificates.isEmpty else {
                throw OpenSSLError(operation: "PEM_read", message: "no certificate in \(path)")
            }
            working.authorities = loaded
            resolve("authorities:", in: &working)
            logger.info(
                "CA certificates loaded",
                metadata: [
                    "tls.cacertfile": "\(path)",
                    "tls.ca_subjects": "\(loaded.certificates.map(\.subjectDN).joined(separator: "; "))",
                ])
            return false
        } catch {
            reportOnce("authorities:\(String(describing: file))", in: &working) {
                logger.error(
                    "new CA certificates not usable, keeping the previous ones",
                    metadata: ["tls.cacertfile": "\(path)", "error": "\(error)"])
            }
            return true
        }
    }

    /// Recomputes what the listener staples for from the identity in force (after a rotation the staple of the
    /// old certificate is no longer served: the fetcher fetches one for the new certificate).
    func refreshStapling(_ working: inout State) {
        do throws(OpenSSLError) {
            working.stapling = try Self.staplingIdentity(
                settings: settings, identity: working.identity.identity,
                authorities: working.authorities.certificates, cacheLayout: cacheLayout, listenerName: listener.name,
                logger: logger)
        } catch {
            // ocsp_issuer_pem unreadable right now: keep stapling for the same certificate only.
            if let stapling = working.stapling,
               stapling.certificate.derBytes != working.identity.identity.certificate.derBytes
            {
                working.stapling = nil
            }
            reportOnce("stapling:\(error)", in: &working) {
                logger.error("cannot work out the OCSP issuer, keeping the previous one", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Works out what this listener staples for; nil when stapling is off or impossible (no issuer, no OCSP URL:
    /// the fetcher logs that once).
    static func staplingIdentity(
        settings: TLSSettings, identity: TLSIdentity, authorities: [X509Certificate], cacheLayout: CacheLayout,
        listenerName: String, logger: Logger
    ) throws(OpenSSLError) -> StaplingIdentity? {
        guard settings.enableOCSPStapling else { return nil }
        let resolved = try OCSP.stapledIdentity(
            chain: identity.chain, issuerPath: settings.ocspIssuerPEM, authorities: authorities,
            configuredResponderURL: settings.ocspResponderURL)
        guard let issuer = resolved.issuer, resolved.responderURL != nil else {
            logger.debug("OCSP stapling off: no issuer certificate or no OCSP URL")
            return nil
        }
        return StaplingIdentity(
            certificate: resolved.certificate, issuer: issuer, path: cacheLayout.ocspFile(listener: listenerName))
    }
}
