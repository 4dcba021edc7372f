import Foundation
import Testing

@testable import BrokerConfiguration

/// Checks the shipped `etc/gatehouse.conf`: it loads, it has the documented listeners, and it documents every key.
@Suite struct ReferenceConfigurationTests {
    /// `etc/gatehouse.conf` of the repository holding this test file; symlinks in `#filePath` are resolved so the
    /// file is found when the test target is linked into another package.
    static func referenceFilePath(filePath: String = #filePath) throws -> String {
        var candidates: [String] = []
        for start in [filePath, URL(fileURLWithPath: filePath).resolvingSymlinksInPath().path, realPath(filePath)] {
            var directory = URL(fileURLWithPath: start).deletingLastPathComponent()
            for _ in 0..<4 {
                candidates.append(directory.appendingPathComponent("etc/gatehouse.conf").path)
                directory.deleteLastPathComponent()
            }
        }
        return try #require(
            candidates.first { FileManager.default.isReadableFile(atPath: $0) },
            "etc/gatehouse.conf not found from \(filePath)")
    }

    private static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The keys of every `key = value` line, commented out or not.
    static func documentedKeys(in text: String) -> Set<String> {
        var keys: Set<String> = []
        for line in text.split(whereSeparator: \.isNewline) {
            let uncommented = line.drop { $0 == "#" || $0 == " " }
            guard let equals = uncommented.firstIndex(of: "=") else { continue }
            keys.insert(uncommented[..<equals].trimmingCharacters(in: .whitespaces))
        }
        return keys
    }

    @Test func referenceFileLoads() throws {
        let path = try Self.referenceFilePath()
        let configuration = try ConfigurationLoader.load(
            path: path, options: ConfigurationLoadOptions(checkFiles: false, cpuCount: 3))
        let repository = PathNormalizer.parent(of: PathNormalizer.parent(of: configuration.sourcePath))
        // `auto`: one worker per core (3 here), all forming one broker.
        #expect(configuration.node.workerProcesses == 3)
        #expect(configuration.node.dataDirectory == repository + "/var")
        #expect(configuration.listeners.count == 2)

        let tcp = try #require(configuration.listeners.first { $0.kind == .tcp })
        #expect(tcp.name == "external")
        #expect(tcp.address == ListenAddress(host: "0.0.0.0", port: 1883))
        #expect(tcp.allowAnonymous == true)
        #expect(tcp.tls == nil)

        let ssl = try #require(configuration.listeners.first { $0.kind == .ssl })
        #expect(ssl.name == "external")
        #expect(ssl.address == ListenAddress(host: "0.0.0.0", port: 8883))
        let tls = try #require(ssl.tls)
        #expect(tls.keyFile == repository + "/var/pki/server.key")
        #expect(tls.certFile == repository + "/var/pki/server.pem")
        #expect(tls.caCertFile == repository + "/var/pki/ca.pem")
        #expect(tls.verify == .verifyPeer)
        #expect(tls.failIfNoPeerCert)
        #expect(tls.enableCRLCheck)
        #expect(tls.crlFiles == [repository + "/var/pki/crl.pem"])
        #expect(tls.crlCacheURLs.isEmpty)
        #expect(!tls.enableOCSPStapling)
    }

    @Test func referenceFileDocumentsEveryKey() throws {
        let text = try String(contentsOfFile: Self.referenceFilePath(), encoding: .utf8)
        let keys = Self.documentedKeys(in: text)
        for key in ConfigurationLoader.knownGlobalKeys {
            #expect(keys.contains(key), "\(key) is not documented in etc/gatehouse.conf")
        }
        for kind in [ListenerConfiguration.Kind.tcp, .ssl] {
            for subkey in ConfigurationLoader.knownListenerSubkeys(for: kind) {
                #expect(
                    keys.contains("listener.\(kind.rawValue).external.\(subkey)"),
                    "listener.\(kind.rawValue).<name>.\(subkey) is not documented in etc/gatehouse.conf")
            }
        }
        for documented in ["crl_cache_http_timeout = 15s", "crl_cache_refresh_interval = 15m",
                           "listener.ssl.external.crl_cache_urls = http://127.0.0.1:8080/ca.crl",
                           "listener.ssl.external.enable_ocsp_stapling = true",
                           "listener.ssl.external.ocsp_refresh_interval = 5m",
                           "listener.ssl.external.ocsp_refresh_http_timeout = 15s",
                           "node.fetch_refresh_floor = 1m",
                           "listener.tcp.external.access.3 = allow all",
                           "listener.ssl.external.access.3 = allow all"] {
            #expect(text.contains("#" + documented), "missing commented line '#\(documented)'")
        }
    }

    /// Every commented-out example, switched on together with the active lines, must still be a valid file.
    @Test func commentedExamplesAreValid() throws {
        let text = try String(contentsOfFile: Self.referenceFilePath(), encoding: .utf8)
        let uncommented = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasPrefix("#") && !line.hasPrefix("##") ? line.dropFirst() : line
        }.joined(separator: "\n")
        #expect(uncommented != text)
        #expect(TestSupport.errors(uncommented).isEmpty)
    }

    @Test func knownKeyListsAreComplete() {
        #expect(ConfigurationLoader.knownGlobalKeys.count == 35)
        for key in StorageLimits.Key.allCases where key != .maxQueuedMessages {
            #expect(ConfigurationLoader.knownGlobalKeys.contains(key.rawValue))
        }
        #expect(ConfigurationLoader.knownGlobalKeys.contains("mqtt.max_topic_alias_bytes"))
        #expect(ConfigurationLoader.knownGlobalKeys.contains("mqtt.max_connect_packet_size"))
        #expect(ConfigurationLoader.knownGlobalKeys.contains("node.fetch_refresh_floor"))
        #expect(ConfigurationLoader.knownGlobalKeys.contains("node.fetch_redirects"))
        #expect(ConfigurationLoader.knownGlobalKeys.contains("crl_cache_max_entries"))
        #expect(ConfigurationLoader.knownListenerSubkeys(for: .tcp) == [
            "allow_anonymous", "max_connections", "max_conn_rate", "max_connections_per_address", "backlog", "nodelay",
            "reuseaddr", "proxy_protocol", "proxy_protocol_timeout", "high_watermark", "send_timeout",
            "send_timeout_close",
        ])
        #expect(ConfigurationLoader.knownListenerSubkeys(for: .ssl).count == 38)
        #expect(ConfigurationLoader.knownListenerSubkeys(for: .ssl).contains("verify"))
    }
}
