#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ProcessSupport

/// The request area (`<cache>/requests/`): workers drop the CRL distribution point URLs of client certificates
/// whose CRL they lack, the fetcher takes them. One small file per URL, written atomically, named by the URL's
/// identifier, so a URL reported by many connections or workers is one file.
public enum DistributionPointRequests {
    /// Only http and https URLs of sane length are ever requested or taken.
    public static func isAcceptable(_ url: String) -> Bool {
        guard url.utf8.count <= 2048, let scheme = url.split(separator: ":", maxSplits: 1).first else {
            return false
        }
        let lower = scheme.lowercased()
        guard lower == "http" || lower == "https", url.lowercased().hasPrefix(lower + "://") else { return false }
        let afterScheme = url.dropFirst(lower.count + 3)
        guard let first = afterScheme.first, first != "/", first != "?", first != "#" else { return false }
        return !url.utf8.contains { $0 <= 0x20 || $0 == 0x7f }
    }

    /// Drops a request for `url` unless one is already waiting.
    public static func submit(_ url: String, layout: CacheLayout) throws(SystemError) {
        let path = layout.requestFile(forURL: url)
        guard !FileDescriptor.fileExists(path) else { return }
        try FileDescriptor.writeAtomically(Array((url + "\n").utf8), to: path, mode: 0o600)
    }

    /// The waiting requests: (file, URL). Temp files and unreadable or unacceptable entries are skipped (the
    /// latter are removed).
    public static func pending(layout: CacheLayout) -> [(path: String, url: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: layout.requestDirectory)) ?? []
        var result: [(path: String, url: String)] = []
        for name in names.sorted() where name.hasSuffix(".url") && !CacheWatcher.isTemporary(name) {
            let path = layout.requestDirectory + "/" + name
            guard let bytes = FileDescriptor.readFile(path, limit: 4096) else { continue }
            let url = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard isAcceptable(url) else {
                unlink(path)
                continue
            }
            result.append((path, url))
        }
        return result
    }
}
