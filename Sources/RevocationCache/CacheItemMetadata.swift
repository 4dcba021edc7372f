import Foundation
import ProcessSupport

/// The sidecar the fetcher keeps next to every published file (`meta/*.json`): where it came from, what it
/// holds, the validators for the next conditional request, and how the last attempt went. A restarted fetcher
/// resumes from it; `sha256` tells whether the published file is the one described (a crash between the two
/// renames leaves a newer file with an older sidecar).
public struct CacheItemMetadata: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case crl, ocsp
    }

    /// Why the fetcher has this item.
    public enum Origin: String, Codable, Sendable {
        /// A listener's `crl_cache_urls`.
        case configured
        /// A CRL distribution point of a listener's CA certificate.
        case ca
        /// A distribution point a worker reported from a client certificate.
        case reported
        /// The OCSP response a listener staples.
        case stapling
    }

    public var kind: Kind
    public var sourceURL: String
    public var origin: Origin
    public var listener: String?
    /// Relative to the cache root, e.g. `crl/0123456789abcdef.der`.
    public var file: String
    /// Unix seconds of the last successful download (200 or 304).
    public var fetchedAt: Double?
    /// Unix seconds of the last publish.
    public var publishedAt: Double?
    public var thisUpdate: Double?
    public var nextUpdate: Double?
    /// Decimal.
    public var crlNumber: String?
    public var etag: String?
    public var lastModified: String?
    /// Of the published file.
    public var sha256: String?
    public var lastAttempt: Double?
    public var lastError: String?
    /// CRL: its issuer and revoked-entry count. OCSP: the certificate it is about (subject, serial), its status
    /// (`good`, `revoked` or `unknown`: the published response says so, and workers do not staple it unless good),
    /// when and why it was revoked (if the responder said), and producedAt.
    public var issuer: String?
    public var entries: Int?
    public var certificate: String?
    public var certStatus: String?
    public var revokedAt: Double?
    public var revocationReason: String?
    public var producedAt: Double?
    public var consecutiveFailures: Int
    public var nextAttempt: Double?

    public init(kind: Kind, sourceURL: String, origin: Origin, listener: String?, file: String) {
        self.kind = kind
        self.sourceURL = sourceURL
        self.origin = origin
        self.listener = listener
        self.file = file
        self.consecutiveFailures = 0
    }

    enum CodingKeys: String, CodingKey {
        case kind, origin, listener, file, etag, sha256
        case sourceURL = "source_url"
        case fetchedAt = "fetched_at"
        case publishedAt = "published_at"
        case thisUpdate = "this_update"
        case nextUpdate = "next_update"
        case crlNumber = "crl_number"
        case lastModified = "last_modified"
        case lastAttempt = "last_attempt"
        case lastError = "last_error"
        case consecutiveFailures = "consecutive_failures"
        case nextAttempt = "next_attempt"
        case issuer, entries, certificate
        case certStatus = "cert_status"
        case revokedAt = "revoked_at"
        case revocationReason = "revocation_reason"
        case producedAt = "produced_at"
    }

    public func encode(to encoder: any Encoder) throws {
        // Explicit nulls, so that the file always shows every field.
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try container.encode(sourceURL, forKey: .sourceURL)
        try container.encode(origin, forKey: .origin)
        try container.encode(listener, forKey: .listener)
        try container.encode(file, forKey: .file)
        try container.encode(fetchedAt, forKey: .fetchedAt)
        try container.encode(publishedAt, forKey: .publishedAt)
        try container.encode(thisUpdate, forKey: .thisUpdate)
        try container.encode(nextUpdate, forKey: .nextUpdate)
        try container.encode(crlNumber, forKey: .crlNumber)
        try container.encode(etag, forKey: .etag)
        try container.encode(lastModified, forKey: .lastModified)
        try container.encode(sha256, forKey: .sha256)
        try container.encode(lastAttempt, forKey: .lastAttempt)
        try container.encode(lastError, forKey: .lastError)
        try container.encode(consecutiveFailures, forKey: .consecutiveFailures)
        try container.encode(nextAttempt, forKey: .nextAttempt)
        try container.encode(issuer, forKey: .issuer)
        try container.encode(entries, forKey: .entries)
        try container.encode(certificate, forKey: .certificate)
        try container.encode(certStatus, forKey: .certStatus)
        try container.encode(revokedAt, forKey: .revokedAt)
        try container.encode(revocationReason, forKey: .revocationReason)
        try container.encode(producedAt, forKey: .producedAt)
    }

    /// Reads a sidecar; nil when it is missing or not ours.
    public static func read(_ path: String) -> CacheItemMetadata? {
        guard let bytes = FileDescriptor.readFile(path, limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(CacheItemMetadata.self, from: Data(bytes))
    }

    /// Every sidecar in the cache's metadata directory, in file-name order (temp files and unreadable ones skipped).
    public static func readAll(in layout: CacheLayout) -> [CacheItemMetadata] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: layout.metadataDirectory)) ?? []
        return names.sorted()
            .filter { $0.hasSuffix(".json") && !CacheWatcher.isTemporary($0) }
            .compactMap { read(layout.metadataDirectory + "/" + $0) }
    }

    /// Writes atomically (temp, fsync, rename).
    public func write(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(self)
        try FileDescriptor.writeAtomically(Array(data) + [0x0a], to: path, mode: 0o600)
    }
}
