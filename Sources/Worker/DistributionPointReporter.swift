import Dispatch
import Logging
import RevocationCache
import Synchronization

/// Hands CRL distribution points of refused client certificates to the fetcher through the cache's request
/// area. Each URL is reported once per worker (and the fetcher fetches it once however many workers report it);
/// the file is written on a background queue, never on an event loop. Bounded: at most `limit` URLs per worker.
final class DistributionPointReporter: Sendable {
    private let layout: CacheLayout
    private let logger: Logger
    private let reported = Mutex(Set<String>())
    private let queue = DispatchQueue(label: "gatehouse.distribution-points", qos: .utility)
    static let limit = 1000

    init(layout: CacheLayout, logger: Logger) {
        self.layout = layout
        self.logger = logger
    }

    func report(_ urls: [String]) {
        let fresh = reported.withLock { reported -> [String] in
            var fresh: [String] = []
            for url in urls where DistributionPointRequests.isAcceptable(url) && reported.count < Self.limit {
                if reported.insert(url).inserted { fresh.append(url) }
            }
            return fresh
        }
        guard !fresh.isEmpty else { return }
        let layout = self.layout
        let logger = self.logger
        queue.async {
            for url in fresh {
                do {
                    try DistributionPointRequests.submit(url, layout: layout)
                    logger.info("CRL distribution point requested from the fetcher", metadata: ["fetch.url": "\(url)"])
                } catch {
                    logger.error(
                        "cannot request a CRL distribution point", metadata: ["fetch.url": "\(url)", "error": "\(error)"])
                }
            }
        }
    }
}
