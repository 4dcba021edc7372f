import Foundation
import RevocationCache
import Testing

@Suite struct CacheItemMetadataTests {
    static let allKeys: Set<String> = [
        "kind", "source_url", "origin", "listener", "file", "fetched_at", "published_at", "this_update",
        "next_update", "crl_number", "etag", "last_modified", "sha256", "last_attempt", "last_error",
        "consecutive_failures", "next_attempt", "issuer", "entries", "certificate", "cert_status", "produced_at",
        "revoked_at", "revocation_reason",
    ]

    func full() -> CacheItemMetadata {
        var metadata = CacheItemMetadata(
            kind: .ocsp, sourceURL: "http://127.0.0.1:8080/ocsp/", origin: .stapling, listener: "external",
            file: "ocsp/external.der")
        metadata.fetchedAt = 1_764_400_000.25
        metadata.publishedAt = 1_764_400_000.5
        metadata.thisUpdate = 1_764_399_000
        metadata.nextUpdate = 1_764_485_400
        metadata.crlNumber = "340282366920938463463374607431768211456"
        metadata.etag = "\"abc\""
        metadata.lastModified = "Wed, 01 Jan 2025 00:00:00 GMT"
        metadata.sha256 = String(repeating: "ab", count: 32)
        metadata.lastAttempt = 1_764_400_000
        metadata.lastError = "HTTP 500 \"quoted\" / ü"
        metadata.consecutiveFailures = 3
        metadata.nextAttempt = 1_764_400_060.125
        metadata.issuer = "CN=Root,O=Example"
        metadata.entries = 1_000_000
        metadata.certificate = "CN=localhost serial 1F"
        metadata.certStatus = "revoked"
        metadata.revokedAt = 1_764_398_000
        metadata.revocationReason = "keyCompromise"
        metadata.producedAt = 1_764_399_500
        return metadata
    }

    func object(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func everyFieldRoundTripsThroughTheFile() throws {
        let directory = try TestFiles.makeDirectory("gatehouse-metadata")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/ocsp-external.json"
        let metadata = full()
        try metadata.write(path)
        #expect(CacheItemMetadata.read(path) == metadata)

        let json = try object(path)
        #expect(Set(json.keys) == Self.allKeys)
        #expect(json["kind"] as? String == "ocsp")
        #expect(json["origin"] as? String == "stapling")
        #expect(json["source_url"] as? String == "http://127.0.0.1:8080/ocsp/")
        #expect(json["crl_number"] as? String == "340282366920938463463374607431768211456")
        #expect((json["consecutive_failures"] as? NSNumber)?.intValue == 3)
        #expect((json["fetched_at"] as? NSNumber)?.doubleValue == 1_764_400_000.25)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        // Slashes unescaped, one trailing newline, no temp file left.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\"file\":\"ocsp/external.der\""), "\(text)")
        #expect(text.hasSuffix("}\n"))
        #expect(TestFiles.names(in: directory) == ["ocsp-external.json"])
    }

    @Test func absentValuesAreExplicitNulls() throws {
        let directory = try TestFiles.makeDirectory("gatehouse-metadata")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/crl.json"
        let metadata = CacheItemMetadata(kind: .crl, sourceURL: "http://ca.example/root.crl", origin: .reported,
                                         listener: nil, file: "crl/0123456789abcdef.der")
        try metadata.write(path)
        let json = try object(path)
        #expect(Set(json.keys) == Self.allKeys)
        let nulls = Set(json.filter { $0.value is NSNull }.keys)
        #expect(nulls == [
            "listener", "fetched_at", "published_at", "this_update", "next_update", "crl_number", "etag",
            "last_modified", "sha256", "last_attempt", "last_error", "next_attempt", "issuer", "entries", "certificate",
            "cert_status", "produced_at", "revoked_at", "revocation_reason",
        ])
        #expect((json["consecutive_failures"] as? NSNumber)?.intValue == 0)
        #expect(CacheItemMetadata.read(path) == metadata)
    }

    @Test func theContractsExampleDecodes() throws {
        let directory = try TestFiles.makeDirectory("gatehouse-metadata")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/crl.json"
        let text = """
            {"kind": "crl", "source_url": "http://127.0.0.1:9/a.crl", "origin": "configured",
             "listener": null, "file": "crl/0123456789abcdef.der",
             "fetched_at": 1.7e9, "published_at": 1700000001, "this_update": null, "next_update": 1700086400,
             "crl_number": "4096", "etag": "\\"v1\\"", "last_modified": null, "sha256": "00",
             "last_attempt": 1.7e9, "last_error": null, "consecutive_failures": 0, "next_attempt": 1700000060}
            """
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let metadata = try #require(CacheItemMetadata.read(path))
        #expect(metadata.kind == .crl)
        #expect(metadata.origin == .configured)
        #expect(metadata.listener == nil)
        #expect(metadata.fetchedAt == 1.7e9)
        #expect(metadata.publishedAt == 1_700_000_001)
        #expect(metadata.thisUpdate == nil)
        #expect(metadata.crlNumber == "4096")
        #expect(metadata.etag == "\"v1\"")
        #expect(metadata.nextAttempt == 1_700_000_060)
    }

    @Test func missingOrForeignFilesReadAsNil() throws {
        let directory = try TestFiles.makeDirectory("gatehouse-metadata")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(CacheItemMetadata.read(directory + "/missing.json") == nil)
        let cases = [
            "not json",
            "{}",
            // An unknown kind or origin.
            #"{"kind": "tar", "source_url": "u", "origin": "configured", "file": "f", "consecutive_failures": 0}"#,
            #"{"kind": "crl", "source_url": "u", "origin": "elsewhere", "file": "f", "consecutive_failures": 0}"#,
            // A required field missing.
            #"{"kind": "crl", "source_url": "u", "origin": "configured", "file": "f"}"#,
        ]
        for (index, text) in cases.enumerated() {
            let path = directory + "/\(index).json"
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            #expect(CacheItemMetadata.read(path) == nil, "\(text)")
        }
        // Optional fields may be absent altogether.
        let minimal = directory + "/minimal.json"
        try Data(#"{"kind": "crl", "source_url": "u", "origin": "ca", "file": "f", "consecutive_failures": 2}"#.utf8)
            .write(to: URL(fileURLWithPath: minimal))
        let metadata = try #require(CacheItemMetadata.read(minimal))
        #expect(metadata.origin == .ca)
        #expect(metadata.consecutiveFailures == 2)
        #expect(metadata.sha256 == nil)
    }

    @Test func cacheLayoutNamesFilesByURLIdentifier() throws {
        let layout = CacheLayout(root: "/var/cache/gatehouse")
        let url = "http://127.0.0.1:8080/a.crl"
        let identifier = CacheLayout.identifier(forURL: url)
        // The first 16 hex digits of SHA-256 of the URL as written (`printf %s URL | sha256sum`).
        #expect(identifier == "a6be43fc2008f5b6")
        #expect(CacheLayout.identifier(forURL: url + "/") != identifier)
        #expect(layout.crlFile(forURL: url) == "/var/cache/gatehouse/crl/\(identifier).der")
        #expect(layout.crlMetadataFile(forURL: url) == "/var/cache/gatehouse/meta/crl-\(identifier).json")
        #expect(layout.requestFile(forURL: url) == "/var/cache/gatehouse/requests/\(identifier).url")
        #expect(layout.ocspFile(listener: "external") == "/var/cache/gatehouse/ocsp/external.der")
        #expect(layout.ocspMetadataFile(listener: "external") == "/var/cache/gatehouse/meta/ocsp-external.json")
        #expect(Digest.sha256Hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func cacheLayoutCreatesPrivateDirectories() throws {
        let parent = try TestFiles.makeDirectory("gatehouse-layout")
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let layout = CacheLayout(root: parent + "/cache")
        try FileManager.default.createDirectory(atPath: layout.root, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        try layout.create()
        try layout.create()
        for directory in [layout.root, layout.crlDirectory, layout.ocspDirectory, layout.metadataDirectory,
                          layout.requestDirectory] {
            let mode = try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? NSNumber
            #expect(mode?.intValue == 0o700, "\(directory)")
        }
    }
}
