#if canImport(Glibc)
import Glibc
#endif
import ProcessSupport

/// The shared cache directory (`node.cache_dir`): the only channel from the fetcher to the workers.
///
/// Defined once here; the fetcher writes and workers read. Files appear only by rename of a complete temp file
/// in the same directory (`FileDescriptor.writeAtomically`), so a reader never sees a torn file.
/// ```
/// <cache_dir>/            mode 0700
///   crl/                  one validated CRL per source, DER
///   ocsp/                 one validated OCSP response per stapling listener, DER
///   requests/             distribution points reported by workers, for the fetcher
/// ```
public struct CacheLayout: Sendable, Equatable {
    public var root: String

    public init(root: String) {
        self.root = root
    }

    public var crlDirectory: String { root + "/crl" }
    public var ocspDirectory: String { root + "/ocsp" }
    public var requestDirectory: String { root + "/requests" }

    /// Creates the directory tree with mode 0700 (the root is tightened to 0700 even if it existed).
    public func create() throws(SystemError) {
        try FileDescriptor.makeDirectory(root, mode: 0o700, enforceMode: true)
        for directory in [crlDirectory, ocspDirectory, requestDirectory] {
            try FileDescriptor.makeDirectory(directory, mode: 0o700)
        }
    }
}
