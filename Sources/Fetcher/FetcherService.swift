#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import CurlClient
import Logging
import ProcessSupport
import RevocationCache

/// The fetcher process: the only one that talks to CAs. Downloading, validating and publishing CRLs and OCSP
/// responses into the cache directory come with the fetcher issue; this is its long-running loop and its link to
/// the supervisor. Single-threaded; signals arrive through a signalfd.
public final class FetcherService {
    private var configuration: GatehouseConfiguration
    private let logger: Logger
    private let signals: SignalDescriptor
    private let link: Int32
    private var decoder = ChildMessageDecoder()

    /// Create on the main thread before any other thread starts (the signal mask is per thread).
    public init(configuration: GatehouseConfiguration, logger: Logger, supervisorChannel: Int32) throws(SystemError) {
        self.configuration = configuration
        self.logger = logger
        self.link = supervisorChannel
        signal(SIGPIPE, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        self.signals = try SignalDescriptor(signals: [SIGTERM])
        try FileDescriptor.setNonBlocking(supervisorChannel)
    }

    /// Runs until told to quit; returns the exit code.
    public func run() -> Int32 {
        let cache = CacheLayout(root: configuration.node.cacheDirectory)
        do {
            try cache.create()
        } catch {
            logger.critical("cannot prepare the cache directory", metadata: ["error": "\(error)"])
            return 1
        }
        logger.info(
            "fetcher running",
            metadata: ["cache_dir": "\(cache.root)", "curl": "\(CurlVersion.description)"])
        try? FileDescriptor.writeAll(link, ChildMessage.ready.encoded())

        while true {
            var descriptors = [
                pollfd(fd: link, events: Int16(POLLIN), revents: 0),
                pollfd(fd: signals.fileDescriptor, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&descriptors, 2, 60_000)
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
        }
    }

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
                    case .ready, .fatal:
                        break
                    }
                }
            } catch {
                logger.error("malformed message from the supervisor", metadata: ["error": "\(error)"])
                return 1
            }
        }
    }

    private func reload(snapshot: String) {
        guard let bytes = FileDescriptor.readFile(snapshot) else {
            logger.error("cannot read the configuration snapshot", metadata: ["path": "\(snapshot)"])
            return
        }
        do {
            configuration = try ConfigurationLoader.parseSnapshot(
                String(decoding: bytes, as: UTF8.self), originalPath: configuration.sourcePath)
            logger.info("configuration reloaded")
        } catch {
            logger.error("configuration snapshot rejected", metadata: ["error": "\(error)"])
        }
    }
}
