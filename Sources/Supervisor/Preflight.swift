#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import BrokerStore
import MQTTBroker
import OpenSSLTLS
import ProcessSupport
import RevocationCache

/// Checks made before any child starts, shared by `gatehouse start` (so errors reach the terminal before it
/// daemonizes) and the supervisor itself.
public enum Preflight {
    /// A startup problem, phrased for the operator.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Creates the data, run, cache and log directories (run and cache: mode 0700).
    public static func prepareDirectories(_ configuration: GatehouseConfiguration) throws(Failure) {
        let node = configuration.node
        do {
            try FileDescriptor.makeDirectory(node.dataDirectory, mode: 0o755)
            try FileDescriptor.makeDirectory(node.runDirectory, mode: 0o700, enforceMode: true)
            try CacheLayout(root: node.cacheDirectory).create()
            if configuration.log.destination != .console {
                try FileDescriptor.makeDirectory(configuration.log.directory, mode: 0o755)
            }
        } catch {
            throw Failure("cannot prepare directories: \(error)")
        }
    }

    /// The password and ACL files must parse: a bad line is reported with its file and line, before any worker
    /// would trip over it.
    public static func checkAccessFiles(_ configuration: GatehouseConfiguration) throws(Failure) {
        do {
            _ = try AccessPolicy.load(configuration)
        } catch {
            throw Failure("\(error)")
        }
    }

    /// Every TLS listener's certificate chain, key, CA bundle, versions and ciphers must load into an OpenSSL
    /// context: a bad file or cipher name is one clear error at start, not a worker crash loop.
    public static func checkTLSListeners(_ configuration: GatehouseConfiguration) throws(Failure) {
        var problems: [String] = []
        for listener in configuration.listeners {
            guard let tls = listener.tls else { continue }
            do {
                let check = try TLSContextConfiguration.loading(
                    certificateChainPath: tls.certFile, privateKeyPath: tls.keyFile, caBundlePath: tls.caCertFile,
                    verifyPeer: tls.verify == .verifyPeer, failIfNoPeerCertificate: tls.failIfNoPeerCert,
                    versions: Set(tls.tlsVersions.map { $0 == .tlsv1_2 ? .tls1_2 : .tls1_3 }), ciphers: tls.ciphers,
                    isCRLCheckEnabled: false)
                _ = try TLSContext(configuration: check)
            } catch {
                problems.append(
                    "\(configuration.sourcePath):\(listener.line): listener.ssl.\(listener.name): \(error)")
                continue
            }
            // RFC 7633: a must-staple certificate served without a staple fails every client that honours it.
            if !tls.enableOCSPStapling,
               let certificate = (try? X509Certificate.load(file: tls.certFile))?.first, certificate.isMustStaple
            {
                problems.append(
                    "\(configuration.sourcePath):\(listener.line): listener.ssl.\(listener.name): the certificate "
                        + "\(tls.certFile) is must-staple (TLS feature status_request) but enable_ocsp_stapling is "
                        + "false; set listener.ssl.\(listener.name).enable_ocsp_stapling = true")
            }
        }
        if !problems.isEmpty { throw Failure(problems.joined(separator: "\n")) }
    }

    /// The message store (`<node.data_dir>/gatehouse.db`) must open: a corrupt, foreign or newer file is one clear
    /// error at start, and is left exactly as it is (never recreated: it holds retained messages and sessions).
    public static func checkStore(_ configuration: GatehouseConfiguration) throws(Failure) {
        let path = configuration.node.dataDirectory + "/gatehouse.db"
        do {
            let store = try BrokerStore(path: path)
            store.close()
        } catch {
            throw Failure("\(configuration.sourcePath): node.data_dir: the message store cannot be used: \(error)")
        }
    }

    /// Fails when a supervisor already runs on this configuration's run directory.
    public static func checkNotRunning(_ configuration: GatehouseConfiguration) throws(Failure) {
        let paths = RunPaths(configuration)
        if PidFile.isLocked(paths.pidFile) {
            let pid = PidFile.readPid(paths.pidFile).map { " (pid \($0))" } ?? ""
            throw Failure("Gatehouse is already running\(pid) with run directory \(configuration.node.runDirectory)")
        }
    }

    /// Every listener address must be free: one clear error naming the listener, not a crash loop of workers.
    public static func checkListeners(
        _ listeners: [ListenerConfiguration], in configuration: GatehouseConfiguration
    ) throws(Failure) {
        var problems: [String] = []
        for listener in listeners {
            do {
                try ListenProbe.check(host: listener.address.host, port: listener.address.port)
            } catch {
                let reason = String(cString: strerror(error.errno)).lowercased()
                problems.append(
                    "\(configuration.sourcePath):\(listener.line): listener.\(listener.kind.rawValue).\(listener.name): "
                        + "cannot listen on \(listener.address) (\(listener.identifier)): \(reason)"
                )
            }
        }
        if !problems.isEmpty { throw Failure(problems.joined(separator: "\n")) }
    }
}

/// Files in `node.run_dir`.
public struct RunPaths: Sendable {
    public var controlSocket: String
    public var pidFile: String
    /// The validated configuration text children read, so a file edited after validation never reaches them.
    public var configurationSnapshot: String

    public init(_ configuration: GatehouseConfiguration) {
        self.init(runDirectory: configuration.node.runDirectory)
    }

    public init(runDirectory run: String) {
        controlSocket = run + "/gatehouse.sock"
        pidFile = run + "/gatehouse.pid"
        configurationSnapshot = run + "/gatehouse.conf.active"
    }
}
