#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import CurlClient
import Foundation
import Logging
import OpenSSLTLS
import ProcessSupport
import RevocationCache
import Synchronization

/// The fetcher process: the only one that talks to CAs. It keeps every CRL and OCSP response the configuration
/// asks for fresh in the cache directory (see `CacheLayout`), downloading with libcurl, validating with OpenSSL
/// and publishing atomically; workers pick the files up with inotify.
///
/// The main thread runs a poll loop (supervisor channel, signalfd, a wake-up socket) and owns all scheduling
/// state. Each download runs on a thread of its own at low priority, at most one per item (single flight) and at
/// most `maximumConcurrentJobs` at once, and hands its result back through the wake-up socket.
public final class FetcherService {
    private var configuration: GatehouseConfiguration
    private let logger: Logger
    private let signals: SignalDescriptor
    private let link: Int32
    private var decoder = ChildMessageDecoder()
    private let layout: CacheLayout
    private let wakeup: (read: Int32, write: Int32)
    private let inbox = Inbox()

    private var plan: FetchPlan
    private var items: [String: Item] = [:]
    private var inFlight = 0
    private var watcher: CacheWatcher?
    /// The files the watcher watches besides `requests/` (stapling listeners' certfile and issuer).
    private var watchedFiles: [String] = []
    private var floors: CRLFloors
    /// The last error saving the floors, logged once per distinct error.
    private var floorSaveError: String?
    private var counters = ChildStatistics()
    private var lastStatisticsAt = MonotonicInstant.now()
    /// Why the cache tree could not be recreated, logged once per distinct error.
    private var cacheTreeError: String?

    static let maximumConcurrentJobs = 4
    /// Reported distribution points kept at most (a bound on what client certificates can make us fetch).
    static let maximumReportedSources = 1000

    private struct Item {
        var source: FetchSource
        var metadata: CacheItemMetadata
        var due: Double
        var isRunning = false
        /// A file it depends on changed while it ran: due again as soon as it finishes.
        var isDueAgain = false
    }

    /// What job threads and the watcher hand to the main thread.
    private final class Inbox: Sendable {
        private let state = Mutex(State())

        struct State {
            var results: [FetchResult] = []
            var requestsChanged = false
            /// Watched files (certfile, issuer) that changed.
            var changedFiles: Set<String> = []
        }

        func post(_ result: FetchResult) {
            state.withLock { $0.results.append(result) }
        }

        func noteRequests() {
            state.withLock { $0.requestsChanged = true }
        }

        func noteChanged(_ files: [String]) {
            state.withLock { $0.changedFiles.formUnion(files) }
        }

        func take() -> State {
            state.withLock { state in
                let taken = state
                state = State()
                return taken
            }
        }
    }

    /// Create on the main thread before any other thread starts (the signal mask is per thread).
    public init(configuration: GatehouseConfiguration, logger: Logger, supervisorChannel: Int32) throws(SystemError) {
        self.configuration = configuration
        self.logger = logger
        self.link = supervisorChannel
        self.layout = CacheLayout(root: configuration.node.cacheDirectory)
        signal(SIGPIPE, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        self.signals = try SignalDescriptor(signals: [SIGTERM])
        try FileDescriptor.setNonBlocking(supervisorChannel)
        let pair = try FileDescriptor.socketPair()
        try FileDescriptor.setNonBlocking(pair.0)
        try FileDescriptor.setNonBlocking(pair.1)
        wakeup = (pair.0, pair.1)
        CurlGlobal.initializeOnce()
        plan = FetchPlan(configuration: configuration)
        floors = CRLFloors.empty(path: Self.floorsPath(configuration))
    }

    /// `<node.data_dir>/crl-floors.json`: outside the cache, which may be lost.
    static func floorsPath(_ configuration: GatehouseConfiguration) -> String {
        configuration.node.dataDirectory + "/crl-floors.json"
    }

    /// Runs until told to quit; returns the exit code.
    public func run() -> Int32 {
        do {
            try layout.create()
        } catch {
            logger.critical("cannot prepare the cache directory", metadata: ["error": "\(error)"])
            return 1
        }
        removeLeftoverTemporaryFiles()
        loadFloors()
        apply(plan: plan, now: WallClock.seconds)
        // Watch first, then take what is waiting: a request dropped in between is seen either way.
        startWatching()
        takeRequests(now: WallClock.seconds)
        logger.info(
            "fetcher running",
            metadata: [
                "cache_dir": "\(layout.root)", "curl": "\(CurlVersion.description)",
                "fetch.items": "\(items.count)",
            ])
        try? FileDescriptor.writeAll(link, ChildMessage.ready.encoded())

        while true {
            let now = WallClock.seconds
            startDueJobs(now: now)
            var descriptors = [
                pollfd(fd: link, events: Int16(POLLIN), revents: 0),
                pollfd(fd: signals.fileDescriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeup.read, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&descriptors, 3, pollTimeout(now: WallClock.seconds))
            if ready < 0 && errno != EINTR {
                logger.error("poll failed", metadata: ["errno": "\(errno)"])
                return 1
            }
            if descriptors[1].revents != 0, signals.drain().contains(SIGTERM) {
                logger.info("fetcher quitting", metadata: ["reason": "SIGTERM"])
                return 0
            }
            if descriptors[0].revents != 0 {
                if let code = readSupervisor() { return code }
            }
            if descriptors[2].revents != 0 {
                _ = try? FileDescriptor.readAvailable(wakeup.read, limit: 4096)
            }
            let delivered = inbox.take()
            for result in delivered.results {
                finish(result, now: WallClock.seconds)
            }
            if delivered.requestsChanged {
                takeRequests(now: WallClock.seconds)
            }
            if !delivered.changedFiles.isEmpty {
                filesChanged(delivered.changedFiles)
            }
            // Once a second: the cache tree still there, and the counters to the supervisor.
            if MonotonicInstant.now().duration(since: lastStatisticsAt) >= .seconds(1) {
                lastStatisticsAt = .now()
                checkCacheTree(now: WallClock.seconds)
                try? FileDescriptor.writeAll(link, ChildMessage.statistics(json: counters.encodedJSON()).encoded())
            }
        }
    }

    // MARK: Items

    /// Brings `items` in line with a plan: new sources start from their metadata (or now), sources no longer
    /// configured are dropped with their files, reported distribution points found on disk are kept.
    private func apply(plan: FetchPlan, now: Double) {
        for note in plan.notes {
            let metadata: Logger.Metadata = ["listener": "ssl:\(note.listener)"]
            switch note.level {
            case .info: logger.info("\(note.message)", metadata: metadata)
            case .error: logger.error("\(note.message)", metadata: metadata)
            }
        }
        var wanted: [String: FetchSource] = [:]
        for source in plan.crlSources + plan.staplingSources {
            wanted[source.key] = source
        }
        let stored = CacheItemMetadata.readAll(in: layout)
        for metadata in stored where metadata.kind == .crl && metadata.origin == .reported {
            let source = FetchSource(kind: .crl, url: metadata.sourceURL, origin: .reported)
            if wanted[source.key] == nil && DistributionPointRequests.isAcceptable(source.url) {
                wanted[source.key] = source
            }
        }
        for (key, item) in items where wanted[key] == nil {
            items[key] = nil
            if !item.isRunning {
                removeFiles(of: item.source, reason: "no longer configured")
            }
        }
        for metadata in stored {
            let source = FetchSource(
                kind: metadata.kind == .crl ? .crl : .ocsp(listener: metadata.listener ?? ""),
                url: metadata.sourceURL, origin: metadata.origin)
            if wanted[source.key] == nil && items[source.key] == nil {
                removeFiles(of: source, reason: "no longer configured")
            }
        }
        for (key, source) in wanted.sorted(by: { $0.key < $1.key }) {
            if var existing = items[key] {
                if !(source.url.isEmpty && source.listener != nil) {
                    existing.source = source
                    existing.metadata.sourceURL = source.url
                }
                items[key] = existing
            } else {
                items[key] = resume(source, now: now)
            }
            // The certfile holds another certificate than the published response is about: due now.
            if let listener = source.listener, let item = items[key], let current = plan.certificates[listener],
               item.metadata.sha256 != nil, item.metadata.certificate != current
            {
                dueNow(key, now: now)
            }
        }
    }

    /// Makes an item due now, or as soon as the job running it finishes.
    private func dueNow(_ key: String, now: Double) {
        guard var item = items[key] else { return }
        if item.isRunning {
            item.isDueAgain = true
        } else {
            item.due = now
        }
        items[key] = item
    }

    /// An item as the previous fetcher left it: due when its metadata says, or now if it has none or its
    /// published file is not the one described.
    private func resume(_ source: FetchSource, now: Double) -> Item {
        let fresh = CacheItemMetadata(
            kind: source.kind == .crl ? .crl : .ocsp, sourceURL: source.url, origin: source.origin,
            listener: source.listener, file: relativeFile(of: source))
        guard var metadata = CacheItemMetadata.read(metadataPath(of: source)), metadata.sourceURL == source.url
        else {
            return Item(source: source, metadata: fresh, due: now)
        }
        metadata.origin = source.origin
        guard let bytes = FileDescriptor.readFile(dataPath(of: source), limit: configuration.crlCache.maxSize + 1),
              Digest.sha256Hex(bytes) == metadata.sha256
        else {
            // A crash between the two renames, or a file removed by hand: fetch now, unconditionally.
            metadata.sha256 = nil
            metadata.etag = nil
            metadata.lastModified = nil
            return Item(source: source, metadata: metadata, due: now)
        }
        let due: Double
        if metadata.consecutiveFailures > 0 {
            due = metadata.nextAttempt ?? now
        } else if let fetchedAt = metadata.fetchedAt {
            due = fetchedAt + schedule(of: source).delayAfterSuccess(
                now: fetchedAt, thisUpdate: metadata.thisUpdate, nextUpdate: metadata.nextUpdate)
        } else {
            due = now
        }
        logger.debug(
            "cache item resumed",
            metadata: ["fetch.url": "\(source.url)", "fetch.due_in": "\(Self.rounded(max(0, due - now)))"])
        return Item(source: source, metadata: metadata, due: min(due, now + schedule(of: source).interval))
    }

    private func startDueJobs(now: Double) {
        let due = items.values
            .filter { !$0.isRunning && $0.due <= now }
            .sorted { $0.due < $1.due }
        for item in due where inFlight < Self.maximumConcurrentJobs {
            start(item.source.key)
        }
    }

    private func start(_ key: String) {
        guard var item = items[key] else { return }
        item.isRunning = true
        items[key] = item
        inFlight += 1
        let job = FetchJob(
            source: item.source, metadata: item.metadata, layout: layout,
            settings: FetchSettings(
                crlTimeout: configuration.crlCache.httpTimeout, maximumSize: configuration.crlCache.maxSize,
                httpsCABundle: configuration.crlCache.httpsCACertFile,
                maximumEntries: configuration.crlCache.maxEntries,
                redirects: RedirectPolicy(rawValue: configuration.node.fetchRedirects.rawValue) ?? .sameHost),
            authorities: plan.crlAuthorities, stapling: item.source.listener.flatMap { plan.stapling[$0] },
            floors: floors)
        let inbox = self.inbox
        let wakeWrite = wakeup.write
        let thread = Thread {
            ParentWatch.lowerCurrentThreadPriority()
            inbox.post(job.run())
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
        thread.name = "gatehouse-fetch"
        thread.start()
    }

    private func finish(_ result: FetchResult, now: Double) {
        inFlight -= 1
        let key = result.source.key
        guard var item = items[key] else {
            // Dropped by a reload while it ran.
            removeFiles(of: result.source, reason: "no longer configured")
            return
        }
        item.isRunning = false
        // What the published response said before, about the same certificate (an episode of revoked or unknown
        // is logged loudly once, on the way in).
        let previousStatus = item.metadata.certificate == result.metadata.certificate ? item.metadata.certStatus : nil
        item.metadata = result.metadata
        if item.source.listener != nil && !result.metadata.sourceURL.isEmpty {
            item.source.url = result.metadata.sourceURL
        }
        let schedule = schedule(of: item.source)
        if let error = result.floorSaveError, error != floorSaveError {
            logger.error(
                "cannot save the CRL rollback floors; they hold until the fetcher stops",
                metadata: ["path": "\(floors.path)", "error": "\(error)"])
        }
        if result.floorSaveError != nil || result.outcome.isPublished {
            floorSaveError = result.floorSaveError
        }
        // Logged after the metadata is written, so that whoever reads the log line finds the sidecar current.
        var report: (Logger) -> Void = { _ in }
        var fields: Logger.Metadata = ["fetch.url": "\(item.source.url)"]
        if let listener = item.source.listener {
            fields["fetch.listener"] = "\(listener)"
        }
        switch result.outcome {
        case .published(let details):
            counters.fetchPublished += 1
            item.due = now + schedule.delayAfterSuccess(
                now: now, thisUpdate: item.metadata.thisUpdate, nextUpdate: item.metadata.nextUpdate)
            fields["fetch.file"] = "\(details.path)"
            fields["fetch.bytes"] = "\(details.bytes)"
            fields["fetch.download_ms"] = "\(details.downloadMilliseconds)"
            fields["fetch.validate_ms"] = "\(details.validateMilliseconds)"
            fields["fetch.publish_ms"] = "\(details.publishMilliseconds)"
            fields["revocation.this_update"] = "\(Self.timestamp(item.metadata.thisUpdate))"
            fields["revocation.next_update"] = "\(Self.timestamp(item.metadata.nextUpdate))"
            fields["fetch.next_in"] = "\(Self.rounded(item.due - now))"
            switch item.source.kind {
            case .crl:
                fields["revocation.crl_number"] = "\(item.metadata.crlNumber ?? "-")"
                fields["revocation.entries"] = "\(details.entries ?? 0)"
                fields["fetch.origin"] = "\(item.source.origin.rawValue)"
                report = { $0.info("CRL published", metadata: fields) }
            case .ocsp:
                report = ocspReport(details.certificateStatus ?? .good, previous: previousStatus, fields: fields)
            }
        case .notModified(let status):
            counters.fetchNotModified += 1
            item.due = now + schedule.delayAfterSuccess(
                now: now, thisUpdate: item.metadata.thisUpdate, nextUpdate: item.metadata.nextUpdate)
            fields["fetch.http_status"] = "\(status)"
            fields["fetch.next_in"] = "\(Self.rounded(item.due - now))"
            switch item.source.kind {
            case .crl: report = { $0.info("CRL not modified", metadata: fields) }
            case .ocsp: report = { $0.info("OCSP response not modified", metadata: fields) }
            }
        case .failed(let failure):
            counters.fetchFailed += 1
            let delay = schedule.delayAfterFailure(
                failures: item.metadata.consecutiveFailures, jitter: Double.random(in: -1...1))
            item.due = now + delay
            let kept = FileDescriptor.fileExists(dataPath(of: item.source))
            fields["fetch.kind"] = "\(item.source.kind == .crl ? "crl" : "ocsp")"
            fields["fetch.error"] = "\(failure.description)"
            fields["fetch.kept"] = "\(kept)"
            fields["fetch.retry_in"] = "\(Self.rounded(delay))"
            fields["fetch.failures"] = "\(item.metadata.consecutiveFailures)"
            switch (item.source.kind, failure) {
            case (.ocsp, .invalid):
                report = { $0.error("fetch failed", metadata: fields) }
            default:
                report = { $0.warning("fetch failed", metadata: fields) }
            }
        }
        if item.isDueAgain {
            item.isDueAgain = false
            item.due = now
        }
        item.metadata.nextAttempt = item.due
        items[key] = item
        do {
            try item.metadata.write(metadataPath(of: item.source))
        } catch {
            logger.error(
                "cannot write cache metadata",
                metadata: ["path": "\(metadataPath(of: item.source))", "error": "\(error)"])
        }
        report(logger)
    }

    /// The log lines for a published OCSP response: info when good; when revoked or unknown, a warning, and on
    /// the way into that state one loud line (the workers stop stapling: a must-staple server refuses handshakes).
    private func ocspReport(
        _ status: OCSPCertificateStatus, previous: String?, fields: Logger.Metadata
    ) -> (Logger) -> Void {
        var fields = fields
        fields["ocsp.cert_status"] = "\(status.name)"
        switch status {
        case .good:
            return { $0.info("OCSP response published", metadata: fields) }
        case .revoked(let at, let reason):
            if let at { fields["ocsp.revoked_at"] = "\(Timestamp.iso8601(at))" }
            if let reason { fields["ocsp.revocation_reason"] = "\(reason)" }
            let fresh = previous != status.name
            return { [fields] logger in
                if fresh {
                    logger.critical("server certificate revoked by its OCSP responder", metadata: fields)
                }
                logger.warning("OCSP response published", metadata: fields)
            }
        case .unknown:
            let fresh = previous != status.name
            return { [fields] logger in
                if fresh {
                    logger.error("server certificate unknown to its OCSP responder", metadata: fields)
                }
                logger.warning("OCSP response published", metadata: fields)
            }
        }
    }

    // MARK: Watching: reported distribution points, stapled certificates

    /// Watches `requests/` and the stapling listeners' certfile and issuer files; replaces a running watcher
    /// (after a reload).
    private func startWatching() {
        watcher?.stop()
        watcher = nil
        let files = Array(Set(plan.stapling.values.flatMap(\.watchedFiles))).sorted()
        watchedFiles = files
        let targets = [CacheWatcher.Target(directory: layout.requestDirectory)] + files.map(CacheWatcher.Target.file)
        do {
            let watcher = try CacheWatcher(targets: targets)
            let inbox = self.inbox
            let wakeWrite = wakeup.write
            let requestDirectory = layout.requestDirectory + "/"
            watcher.start { changed in
                let requests = changed.filter { $0.hasPrefix(requestDirectory) }
                if !requests.isEmpty {
                    inbox.noteRequests()
                }
                if requests.count < changed.count {
                    inbox.noteChanged(changed.filter { !$0.hasPrefix(requestDirectory) })
                }
                var byte: UInt8 = 1
                _ = write(wakeWrite, &byte, 1)
            }
            self.watcher = watcher
        } catch {
            logger.error(
                """
                cannot watch the request directory and the server certificates; reported distribution points \
                are taken at restart only, a replaced certfile at the next OCSP refresh
                """,
                metadata: ["error": "\(error)"])
        }
    }

    /// A stapling listener's certfile or issuer changed: its OCSP response is due now, for whatever certificate
    /// the file holds (a half-written one fails the fetch; the next write is another event).
    private func filesChanged(_ files: Set<String>) {
        let now = WallClock.seconds
        for target in plan.stapling.values where !files.isDisjoint(with: target.watchedFiles) {
            let key = FetchSource(kind: .ocsp(listener: target.listener), url: "", origin: .stapling).key
            logger.info(
                "server certificate file changed, fetching its OCSP response",
                metadata: [
                    "listener": "ssl:\(target.listener)",
                    "path": "\(files.intersection(target.watchedFiles).sorted().joined(separator: ","))",
                ])
            dueNow(key, now: now)
        }
    }

    /// Takes every waiting request: a new URL becomes an item due now (once, however often it was reported);
    /// a known one costs nothing. Request files are removed either way.
    private func takeRequests(now: Double) {
        for request in DistributionPointRequests.pending(layout: layout) {
            unlink(request.path)
            let source = FetchSource(kind: .crl, url: request.url, origin: .reported)
            guard items[source.key] == nil else { continue }
            let reported = items.values.filter { $0.source.origin == .reported }.count
            guard reported < Self.maximumReportedSources else {
                logger.warning(
                    "CRL distribution point ignored: too many reported",
                    metadata: ["fetch.url": "\(request.url)", "fetch.limit": "\(Self.maximumReportedSources)"])
                continue
            }
            items[source.key] = resume(source, now: now)
            logger.info("CRL distribution point reported", metadata: ["fetch.url": "\(request.url)"])
        }
    }

    // MARK: Rollback floors

    /// Reads `crl-floors.json`. When it is missing (first start) or corrupt (set aside, logged), the floors are
    /// seeded from the CRLs the cache holds, which this fetcher validated before publishing them: what a corrupt
    /// file loses is then only the history the cache no longer shows. Refusing to start instead would stop every
    /// CRL refresh (new revocations never arrive, and every CRL eventually expires) to guard against a replay that
    /// also needs the cache to be lost at the same time.
    private func loadFloors() {
        let (loaded, outcome) = CRLFloors.load(path: floors.path)
        floors = loaded
        switch outcome {
        case .loaded(let count):
            logger.debug("CRL rollback floors loaded", metadata: ["path": "\(floors.path)", "floors": "\(count)"])
            return
        case .missing:
            break
        case .corrupt(let reason, let keptAs):
            logger.error(
                "CRL rollback floors unreadable; set aside and seeded again from the cached CRLs",
                metadata: [
                    "path": "\(floors.path)", "error": "\(reason)", "kept_as": "\(keptAs ?? "-")",
                ])
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: layout.crlDirectory)) ?? []
        let files = names.sorted().filter { $0.hasSuffix(".der") && !CacheWatcher.isTemporary($0) }
            .map { layout.crlDirectory + "/" + $0 }
        guard !files.isEmpty else { return }
        let seeded = floors.seed(
            crlFiles: files, authorities: plan.crlAuthorities, maximumSize: configuration.crlCache.maxSize,
            maximumEntries: configuration.crlCache.maxEntries, now: WallClock.seconds)
        logger.info(
            "CRL rollback floors seeded from the cache",
            metadata: ["path": "\(floors.path)", "floors": "\(floors.count)", "files": "\(seeded)"])
    }

    // MARK: Files

    private func dataPath(of source: FetchSource) -> String {
        source.dataPath(in: layout)
    }

    private func metadataPath(of source: FetchSource) -> String {
        source.metadataPath(in: layout)
    }

    private func relativeFile(of source: FetchSource) -> String {
        let path = dataPath(of: source)
        return path.hasPrefix(layout.root + "/") ? String(path.dropFirst(layout.root.count + 1)) : path
    }

    private func schedule(of source: FetchSource) -> FetchSchedule {
        switch source.kind {
        case .crl: return plan.crlSchedule
        case .ocsp(let listener): return plan.stapling[listener]?.schedule ?? plan.crlSchedule
        }
    }

    /// The cache tree removed while running (by hand, by a cleaner): it is recreated and everything is fetched
    /// again, unconditionally, since what was published is gone. Workers keep what they loaded meanwhile.
    private func checkCacheTree(now: Double) {
        guard layout.directories.contains(where: { !FileDescriptor.isDirectory($0) }) else {
            cacheTreeError = nil
            return
        }
        do {
            try layout.create()
        } catch {
            if cacheTreeError != error.description {
                logger.error(
                    "the cache directory is gone and cannot be recreated; nothing can be published",
                    metadata: ["cache_dir": "\(layout.root)", "error": "\(error)"])
            }
            cacheTreeError = error.description
            return
        }
        cacheTreeError = nil
        logger.warning(
            "the cache directory was removed; recreated it, fetching everything again",
            metadata: ["cache_dir": "\(layout.root)", "fetch.items": "\(items.count)"])
        for (key, var item) in items where !item.isRunning {
            item.metadata.sha256 = nil
            item.metadata.etag = nil
            item.metadata.lastModified = nil
            item.due = now
            items[key] = item
        }
    }

    private func removeFiles(of source: FetchSource, reason: String) {
        let data = dataPath(of: source)
        let existed = FileDescriptor.fileExists(data)
        unlink(data)
        unlink(metadataPath(of: source))
        if existed {
            logger.info(
                "cached item removed",
                metadata: ["fetch.url": "\(source.url)", "fetch.file": "\(data)", "reason": "\(reason)"])
        }
    }


    /// Temp files of a fetcher that died mid-write (only the fetcher writes these directories, and only one
    /// fetcher runs at a time).
    private func removeLeftoverTemporaryFiles() {
        for directory in [layout.crlDirectory, layout.ocspDirectory, layout.metadataDirectory] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for name in names where CacheWatcher.isTemporary(name) {
                unlink(directory + "/" + name)
                logger.info("removed an unfinished temp file", metadata: ["path": "\(directory)/\(name)"])
            }
        }
    }

    private func pollTimeout(now: Double) -> Int32 {
        let next = items.values.filter { !$0.isRunning }.map(\.due).min() ?? (now + 60)
        let milliseconds = (next - now) * 1000
        return Int32(max(0, min(1000, milliseconds.rounded(.up))))
    }

    private static func rounded(_ seconds: Double) -> String {
        String(format: "%.1f", seconds)
    }

    private static func timestamp(_ seconds: Double?) -> String {
        seconds.map { Timestamp.iso8601(Int64($0)) } ?? "-"
    }

    // MARK: Supervisor

    /// Handles supervisor messages; returns an exit code when the fetcher must stop.
    private func readSupervisor() -> Int32? {
        while true {
            let bytes: [UInt8]
            do {
                bytes = try FileDescriptor.readAvailable(link, limit: 4096)
            } catch {
                if error.errno == EAGAIN || error.errno == EWOULDBLOCK { return nil }
                logger.info("fetcher quitting", metadata: ["reason": "supervisor channel error"])
                return 0
            }
            if bytes.isEmpty {
                logger.info("fetcher quitting", metadata: ["reason": "supervisor channel closed"])
                return 0
            }
            decoder.append(bytes)
            do {
                while let message = try decoder.next() {
                    switch message {
                    case .quit:
                        logger.info("fetcher quitting", metadata: ["reason": "asked by the supervisor"])
                        return 0
                    case .reload(let snapshot):
                        reload(snapshot: snapshot)
                    case .refresh:
                        refreshAll()
                    case .ready, .fatal, .statistics:
                        break
                    }
                }
            } catch {
                logger.error("malformed message from the supervisor", metadata: ["error": "\(error)"])
                return 1
            }
        }
    }

    /// `gatehouse refresh`: every item is due now (one already downloading is not started twice).
    private func refreshAll() {
        let now = WallClock.seconds
        for key in items.keys {
            items[key]?.due = now
        }
        logger.info("refresh requested: fetching everything now", metadata: ["fetch.items": "\(items.count)"])
    }

    private func reload(snapshot: String) {
        guard let bytes = FileDescriptor.readFile(snapshot) else {
            logger.error("cannot read the configuration snapshot", metadata: ["path": "\(snapshot)"])
            return
        }
        do {
            configuration = try ConfigurationLoader.parseSnapshot(
                String(decoding: bytes, as: UTF8.self), originalPath: configuration.sourcePath)
        } catch {
            logger.error("configuration snapshot rejected", metadata: ["error": "\(error)"])
            return
        }
        plan = FetchPlan(configuration: configuration)
        apply(plan: plan, now: WallClock.seconds)
        if Array(Set(plan.stapling.values.flatMap(\.watchedFiles))).sorted() != watchedFiles {
            startWatching()
        }
        logger.info("configuration reloaded", metadata: ["fetch.items": "\(items.count)"])
    }
}
