#if canImport(Glibc)
import Glibc
#endif
internal import COpenSSL
import ProcessSupport

/// The shared cache directory (`node.cache_dir`): the only channel from the fetcher to the workers.
///
/// Defined once here; the fetcher writes and workers read. Files appear only by rename of a complete temp file
/// in the same directory (`FileDescriptor.writeAtomically`), so a reader never sees a torn file.
/// ```
/// <cache_dir>/                     mode 0700
///   crl/<id>.der                   one validated CRL per source URL, DER (id: `identifier(forURL:)`)
///   ocsp/<listener>.der            one validated OCSP response per stapling listener, DER
///   meta/crl-<id>.json             what the fetcher knows about each published file (`CacheItemMetadata`)
///   meta/ocsp-<listener>.json
///   requests/<id>.url              CRL distribution points reported by workers, taken by the fetcher
/// ```
/// Workers read `crl/` and `ocsp/` only; the metadata lives apart so that writing it never wakes a worker.
public struct CacheLayout: Sendable, Equatable {
    public var root: String

    public init(root: String) {
        self.root = root
    }

    public var crlDirectory: String { root + "/crl" }
    public var ocspDirectory: String { root + "/ocsp" }
    public var metadataDirectory: String { root + "/meta" }
    public var requestDirectory: String { root + "/requests" }

    /// The root and every directory in it.
    public var directories: [String] { [root, crlDirectory, ocspDirectory, metadataDirectory, requestDirectory] }

    /// Creates the directory tree with mode 0700 (the root is tightened to 0700 even if it existed).
    public func create() throws(SystemError) {
        try FileDescriptor.makeDirectory(root, mode: 0o700, enforceMode: true)
        for directory in directories.dropFirst() {
            try FileDescriptor.makeDirectory(directory, mode: 0o700)
        }
    }

    /// The published CRL fetched from `url`.
    public func crlFile(forURL url: String) -> String {
        "\(crlDirectory)/\(Self.identifier(forURL: url)).der"
    }

    public func crlMetadataFile(forURL url: String) -> String {
        "\(metadataDirectory)/crl-\(Self.identifier(forURL: url)).json"
    }

    /// The metadata of a published CRL file (`crl/<id>.der`), or nil for a path that is not one.
    public func crlMetadataFile(forDataFile path: String) -> String? {
        let prefix = crlDirectory + "/"
        guard path.hasPrefix(prefix), path.hasSuffix(".der") else { return nil }
        let identifier = path.dropFirst(prefix.count).dropLast(4)
        guard !identifier.isEmpty, !identifier.contains("/") else { return nil }
        return "\(metadataDirectory)/crl-\(identifier).json"
    }

    /// The published OCSP response of `listener.ssl.<listener>`.
    public func ocspFile(listener: String) -> String {
        "\(ocspDirectory)/\(listener).der"
    }

    public func ocspMetadataFile(listener: String) -> String {
        "\(metadataDirectory)/ocsp-\(listener).json"
    }

    public func requestFile(forURL url: String) -> String {
        "\(requestDirectory)/\(Self.identifier(forURL: url)).url"
    }

    /// The first 16 hex digits of SHA-256 of the URL as written: stable across restarts and processes.
    public static func identifier(forURL url: String) -> String {
        Digest.sha256Hex(Array(url.utf8)).prefix(16).description
    }
}

/// SHA-256 for file names and the metadata's checksum.
public enum Digest {
    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { output in
                _ = SHA256(input.baseAddress, input.count, output.baseAddress)
            }
        }
        let hex: [Character] = Array("0123456789abcdef")
        var text = ""
        text.reserveCapacity(64)
        for byte in digest {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0f)])
        }
        return text
    }
}
