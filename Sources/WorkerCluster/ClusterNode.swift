#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import MQTTBroker
import NIOCore
import NIOPosix
import ProcessSupport

/// This worker's place in the node: a Unix socket server other workers connect to, one connection per peer
/// worker, and the `BrokerCluster` the broker talks to.
///
/// Discovery is the socket directory: each worker binds `w<slot>-<pid>.sock` there, then connects to every other
/// socket it finds (a worker that starts later connects to it in turn), so every pair has a connection; if both
/// connected at once, both keep the one opened by the smaller id. After `hello`, each side sends its routes and
/// its retained messages, then `syncDone`; a worker accepts clients only after every peer it found finished
/// (or 3 s passed). A peer whose connection closes (it exited, or was killed) loses its routes at once.
///
/// Confined to the worker's event loop, like the broker.
public final class ClusterNode: BrokerCluster {
    public let id: String
    let loop: any EventLoop
    let broker: Broker
    let directory: String
    var logger: Logger
    private var server: (any Channel)?
    private var links: [ObjectIdentifier: PeerLink] = [:]
    private var peers: [String: PeerLink] = [:]
    private var claims: [UInt32: PendingClaim] = [:]
    private var barriers: [UInt32: PendingBarrier] = [:]
    private var nextRequestID: UInt32 = 0
    private var dirty: [ObjectIdentifier: PeerLink] = [:]
    private var isFlushScheduled = false
    private var initialSync: InitialSync?
    /// Peers that vanished without saying goodbye (killed), by slot: their routes stay and publishes for them
    /// wait here until a worker of the same slot (the respawned one) has synced, or `orphanGrace` passes.
    private var orphans: [String: Orphan] = [:]

    /// How long the routes of a killed worker are kept for its respawned successor.
    static let orphanGrace = TimeAmount.seconds(10)
    /// The most publishes kept for one killed worker's successor.
    static let orphanBufferLimit = 100_000

    /// `node.max_peer_buffered_bytes`: the most message bytes kept for one peer, sent and not yet acknowledged
    /// (or, for a vanished peer, kept for its successor). A link past half of it drops QoS 0 publishes for the
    /// peer; a link past all of it is reset (the peer's routes stay, what it had not acknowledged waits for it
    /// as for a killed worker's successor, and the link is opened again); beyond it for a peer that is away,
    /// publishes are dropped. Every drop is counted.
    public var maxBufferedBytes = 64 << 20
    /// Publishes dropped for a peer at `maxBufferedBytes`, and links reset at it, since start.
    public private(set) var droppedPublishes = 0
    public private(set) var linkResets = 0

    /// Message bytes held for all peers now (sent and not acknowledged, and kept for vanished ones).
    public var bufferedBytes: Int {
        peers.values.reduce(0) { $0 + $1.unacknowledgedBytes } + orphans.values.reduce(0) { $0 + $1.bufferedBytes }
    }

    private struct Orphan {
        var peerID: String
        var buffered: [ForwardedPublish] = []
        var bufferedBytes = 0
        var dropped = 0
        var timeout: Scheduled<Void>?
    }

    static func slot(of peerID: String) -> String {
        String(peerID.prefix { $0 != "-" })
    }

    /// How long a claim waits for every peer; a peer that does not answer is logged.
    static let claimTimeout = TimeAmount.seconds(3)
    static let syncTimeout = TimeAmount.seconds(3)

    final class PeerLink {
        let channel: any Channel
        let isOutbound: Bool
        var peerID: String?
        var isSynced = false
        var isSuperseded = false
        var saidGoodbye = false
        /// Publishes sent and not yet acknowledged as durable by the peer, oldest first: replayed to the slot's
        /// successor if the peer is killed.
        var unacknowledged: [(sequence: UInt64, publish: ForwardedPublish)] = []
        var unacknowledgedHead = 0
        /// The message bytes of `pendingAcknowledgement`.
        var unacknowledgedBytes = 0
        var lastSentSequence: UInt64 = 0
        /// The highest publish sequence received from the peer, and whether an acknowledgement is on its way.
        var lastReceivedSequence: UInt64 = 0
        var isAcknowledgementPending = false

        var pendingAcknowledgement: ArraySlice<(sequence: UInt64, publish: ForwardedPublish)> {
            unacknowledged[unacknowledgedHead...]
        }

        init(channel: any Channel, isOutbound: Bool) {
            self.channel = channel
            self.isOutbound = isOutbound
        }
    }

    private struct PendingClaim {
        var waiting: Set<String>
        var handoff: SessionHandoff?
        var completion: (SessionHandoff?) -> Void
        var timeout: Scheduled<Void>?
        var clientID: String
    }

    private struct PendingBarrier {
        var waiting: Set<String>
        var completion: () -> Void
        var timeout: Scheduled<Void>?
    }

    private struct InitialSync {
        var waiting: Set<ObjectIdentifier>
        /// Connection attempts not finished yet.
        var connecting: Int
        var promise: EventLoopPromise<Void>
        var timeout: Scheduled<Void>?
    }

    /// The socket directory for a run directory: `<run_dir>/cluster`, or a short private directory under /tmp
    /// when that path would be too long for a Unix socket address (108 bytes).
    public static func socketDirectory(runDirectory: String) -> String {
        let preferred = runDirectory + "/cluster"
        if (preferred + "/w9999-4194304.sock").utf8.count <= 100 {
            return preferred
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in runDirectory.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return "/tmp/gatehouse-\(getuid())-\(String(hash, radix: 16))"
    }

    public init(broker: Broker, loop: any EventLoop, directory: String, slot: Int, logger: Logger) {
        self.id = "\(slot)-\(getpid())"
        self.broker = broker
        self.loop = loop
        self.directory = directory
        var logger = logger
        logger[metadataKey: "cluster.node"] = "\(id)"
        self.logger = logger
    }

    var socketPath: String { directory + "/w\(id).sock" }

    // MARK: Start and stop

    /// Binds this worker's socket, connects to every peer found, and succeeds once they all sent their
    /// snapshot (or after `syncTimeout`). On the loop.
    public func start() -> EventLoopFuture<Void> {
        do {
            try FileDescriptor.makeDirectory(directory, mode: 0o700, enforceMode: true)
            var info = stat()
            guard stat(directory, &info) == 0, info.st_uid == getuid() else {
                return loop.makeFailedFuture(ClusterFrameError(message: "\(directory) is not owned by this user"))
            }
        } catch {
            return loop.makeFailedFuture(error)
        }
        let bound = NIOLoopBound(self, eventLoop: loop)
        let promise = loop.makePromise(of: Void.self)
        ServerBootstrap(group: loop, childGroup: loop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try bound.value.install(on: channel, isOutbound: false)
                }
            }
            .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true)
            .hop(to: loop)
            .whenComplete { result in
                let node = bound.value
                switch result {
                case .success(let channel):
                    node.server = channel
                    node.connectToPeers(promise: promise)
                case .failure(let error):
                    promise.fail(error)
                }
            }
        return promise.futureResult
    }

    private func connectToPeers(promise: EventLoopPromise<Void>) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("w") && $0.hasSuffix(".sock") && $0 != "w\(id).sock" }
        guard !names.isEmpty else {
            promise.succeed(())
            return
        }
        let bound = NIOLoopBound(self, eventLoop: loop)
        var sync = InitialSync(waiting: [], connecting: names.count, promise: promise, timeout: nil)
        sync.timeout = loop.assumeIsolated().scheduleTask(in: Self.syncTimeout) {
            bound.value.finishInitialSync(timedOut: true)
        }
        initialSync = sync
        for name in names {
            let path = directory + "/" + name
            connect(to: path)
                .whenComplete { result in
                    let node = bound.value
                    node.initialSync?.connecting -= 1
                    switch result {
                    case .success(let channel):
                        // Unless it already synced (or closed) before this completion ran.
                        if let link = node.links[ObjectIdentifier(channel)], !link.isSynced {
                            node.initialSync?.waiting.insert(ObjectIdentifier(channel))
                        }
                    case .failure:
                        node.removeIfStale(name: name, path: path)
                    }
                    node.finishInitialSyncIfDone()
                }
        }
    }

    /// Opens a connection to a peer's socket; it says hello once active. Completes on the loop.
    private func connect(to path: String) -> EventLoopFuture<any Channel> {
        let bound = NIOLoopBound(self, eventLoop: loop)
        return ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try bound.value.install(on: channel, isOutbound: true)
                }
            }
            .connect(unixDomainSocketPath: path)
            .hop(to: loop)
    }

    /// A socket whose worker is gone (killed before it could remove it).
    private func removeIfStale(name: String, path: String) {
        let parts = name.dropFirst().dropLast(5).split(separator: "-")
        guard parts.count == 2, let pid = Int32(parts[1]) else { return }
        if kill(pid, 0) != 0 && errno == ESRCH {
            unlink(path)
            logger.debug("removed the socket of a worker that is gone", metadata: ["cluster.socket": "\(path)"])
        }
    }

    private func finishInitialSyncIfDone() {
        guard let sync = initialSync, sync.waiting.isEmpty, sync.connecting <= 0 else { return }
        finishInitialSync(timedOut: false)
    }

    private func finishInitialSync(timedOut: Bool) {
        guard let sync = initialSync else { return }
        initialSync = nil
        sync.timeout?.cancel()
        if timedOut {
            logger.warning("not every peer worker sent its state in time; accepting clients anyway")
        }
        logger.info(
            "cluster joined",
            metadata: ["cluster.peers": "\(peers.keys.sorted().joined(separator: ","))", "cluster.socket": "\(socketPath)"])
        sync.promise.succeed(())
    }

    /// Closes every connection and removes this worker's socket.
    public func stop() {
        server?.close(promise: nil)
        server = nil
        for link in links.values {
            link.channel.close(promise: nil)
        }
        unlink(socketPath)
    }

    // MARK: Links

    private func install(on channel: any Channel, isOutbound: Bool) throws {
        let link = PeerLink(channel: channel, isOutbound: isOutbound)
        links[ObjectIdentifier(channel)] = link
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ClusterFrameDecoder()))
        try channel.pipeline.syncOperations.addHandler(ClusterPeerHandler(node: self, link: link))
    }

    func linkActive(_ link: PeerLink) {
        write(.hello(peerID: id), to: link)
        flush()
    }

    func linkClosed(_ link: PeerLink) {
        links.removeValue(forKey: ObjectIdentifier(link.channel))
        dirty.removeValue(forKey: ObjectIdentifier(link.channel))
        if initialSync?.waiting.remove(ObjectIdentifier(link.channel)) != nil {
            finishInitialSyncIfDone()
        }
        guard let peer = link.peerID, peers[peer] === link else { return }
        peerLost(link, peer: peer)
    }

    /// `peer`'s link is gone (closed, or reset for not keeping up): a goodbye or a superseded link takes its
    /// routes; otherwise they stay, and what it had not acknowledged waits for it (or its slot's successor).
    private func peerLost(_ link: PeerLink, peer: String) {
        peers.removeValue(forKey: peer)
        for (requestID, var claim) in claims where claim.waiting.remove(peer) != nil {
            claims[requestID] = claim
            completeIfAnswered(requestID)
        }
        for (requestID, var barrier) in barriers where barrier.waiting.remove(peer) != nil {
            barriers[requestID] = barrier
            completeBarrierIfAnswered(requestID)
        }
        if link.saidGoodbye || link.isSuperseded {
            broker.removePeer(peer)
            if !link.isSuperseded { logger.info("peer worker left", metadata: ["cluster.peer": "\(peer)"]) }
            return
        }
        // Killed: keep its routes and what is published for them until its slot's successor has synced.
        let slot = Self.slot(of: peer)
        if let previous = orphans.removeValue(forKey: slot) {
            dropOrphan(previous, reason: "a second worker of the slot vanished")
        }
        let bound = NIOLoopBound(self, eventLoop: loop)
        var orphan = Orphan(peerID: peer)
        // What it had not confirmed as durable may be lost with it: its successor gets it again.
        orphan.buffered = link.pendingAcknowledgement.map(\.publish)
        orphan.bufferedBytes = link.unacknowledgedBytes
        orphan.timeout = loop.assumeIsolated().scheduleTask(in: Self.orphanGrace) {
            let node = bound.value
            guard let orphan = node.orphans[slot], orphan.peerID == peer else { return }
            node.orphans.removeValue(forKey: slot)
            node.dropOrphan(orphan, reason: "no worker took its slot in time")
        }
        orphans[slot] = orphan
        logger.warning(
            "peer worker vanished; keeping its routes for its successor",
            metadata: ["cluster.peer": "\(peer)", "cluster.grace": "\(Self.orphanGrace)"])
        reconnectIfAlive(peer)
    }

    /// The connection to a live peer broke (not an exit): connect again; the replay goes to the same peer.
    private func reconnectIfAlive(_ peer: String) {
        let path = directory + "/w\(peer).sock"
        let parts = peer.split(separator: "-")
        guard parts.count == 2, let pid = Int32(parts[1]), kill(pid, 0) == 0, FileDescriptor.fileExists(path) else {
            return
        }
        let bound = NIOLoopBound(self, eventLoop: loop)
        loop.assumeIsolated().scheduleTask(in: .milliseconds(200)) {
            let node = bound.value
            guard node.server != nil, node.peers[peer] == nil else { return }
            node.connect(to: path)
                .whenFailure { error in
                    bound.value.logger.warning(
                        "cannot reconnect to a peer worker", metadata: ["cluster.peer": "\(peer)", "error": "\(error)"])
                }
        }
    }

    private func dropOrphan(_ orphan: Orphan, reason: String) {
        orphan.timeout?.cancel()
        broker.removePeer(orphan.peerID)
        let lost = orphan.buffered.count + orphan.dropped
        if lost > 0 {
            logger.warning(
                "dropped publishes kept for a vanished worker",
                metadata: ["cluster.peer": "\(orphan.peerID)", "cluster.dropped": "\(lost)", "reason": "\(reason)"])
        }
    }

    /// The successor of a killed worker has synced (its routes are in): replay what was kept for it.
    private func handOverOrphan(to link: PeerLink, peer: String) {
        let slot = Self.slot(of: peer)
        guard let orphan = orphans[slot] else { return }
        orphans.removeValue(forKey: slot)
        orphan.timeout?.cancel()
        if orphan.peerID != peer {
            broker.removePeer(orphan.peerID)
        }
        for publish in orphan.buffered {
            writePublish(publish, to: link)
        }
        flush()
        logger.info(
            "replayed publishes kept for a vanished worker to its successor",
            metadata: [
                "cluster.peer": "\(peer)", "cluster.previous": "\(orphan.peerID)",
                "cluster.replayed": "\(orphan.buffered.count)", "cluster.dropped": "\(orphan.dropped)",
            ])
    }

    func received(_ frame: ClusterFrame, on link: PeerLink) {
        if case .hello(let peerID) = frame {
            register(link, as: peerID)
            return
        }
        guard let peer = link.peerID, peers[peer] === link else {
            logger.warning("frame from an unregistered peer connection; closing it")
            link.channel.close(promise: nil)
            return
        }
        switch frame {
        case .hello:
            break
        case .routeAdded(let filter):
            broker.addRoute(filter, peer: peer)
        case .routeRemoved(let filter):
            broker.removeRoute(filter, peer: peer)
        case .publish(let publish, let sequence):
            broker.receive(publish)
            link.lastReceivedSequence = max(link.lastReceivedSequence, sequence)
            acknowledgeWhenDurable(link)
        case .acknowledged(let sequence):
            var head = link.unacknowledgedHead
            while head < link.unacknowledged.count && link.unacknowledged[head].sequence <= sequence {
                link.unacknowledgedBytes -= link.unacknowledged[head].publish.message.byteCount
                head += 1
            }
            if head == link.unacknowledged.count {
                link.unacknowledged.removeAll(keepingCapacity: true)
                link.unacknowledgedHead = 0
            } else if head > 1024 && head * 2 > link.unacknowledged.count {
                link.unacknowledged.removeFirst(head)
                link.unacknowledgedHead = 0
            } else {
                link.unacknowledgedHead = head
            }
        case .syncDone:
            link.isSynced = true
            if initialSync?.waiting.remove(ObjectIdentifier(link.channel)) != nil {
                finishInitialSyncIfDone()
            }
            handOverOrphan(to: link, peer: peer)
        case .adopt(let clientID, let handoff):
            broker.adoptDeparted(handoff, clientID: clientID)
        case .goodbye:
            link.saidGoodbye = true
        case .ping(let requestID):
            write(.pong(requestID: requestID), to: link)
            flush()
        case .pong(let requestID):
            guard var barrier = barriers[requestID] else { return }
            barrier.waiting.remove(peer)
            barriers[requestID] = barrier
            completeBarrierIfAnswered(requestID)
        case .claim(let requestID, let clientID, let cleanStart):
            let handoff = broker.release(clientID: clientID, cleanStart: cleanStart)
            write(.release(requestID: requestID, handoff: handoff), to: link)
            flush()
        case .release(let requestID, let handoff):
            guard var claim = claims[requestID] else { return }
            claim.waiting.remove(peer)
            if let handoff { claim.handoff = handoff }
            claims[requestID] = claim
            completeIfAnswered(requestID)
        }
    }

    private func register(_ link: PeerLink, as peerID: String) {
        guard link.peerID == nil, peerID != id else {
            link.channel.close(promise: nil)
            return
        }
        link.peerID = peerID
        if let existing = peers[peerID], existing !== link {
            // Both connected at once: keep the connection opened by the smaller id, on both sides.
            let opener = link.isOutbound ? id : peerID
            guard opener == min(id, peerID) else {
                link.isSuperseded = true
                link.channel.close(promise: nil)
                return
            }
            existing.isSuperseded = true
            peers.removeValue(forKey: peerID)
            broker.removePeer(peerID)
            if initialSync?.waiting.remove(ObjectIdentifier(existing.channel)) != nil {
                initialSync?.waiting.insert(ObjectIdentifier(link.channel))
            }
            existing.channel.close(promise: nil)
        }
        peers[peerID] = link
        logger.info("peer worker joined", metadata: ["cluster.peer": "\(peerID)"])
        for filter in broker.localRoutes {
            write(.routeAdded(filter: filter), to: link)
        }
        // Not kept for replay: a successor gets the snapshot anew when it syncs.
        for retained in broker.retainedSnapshot {
            writePublish(retained, to: link, keep: false)
        }
        write(.syncDone, to: link)
        flush()
    }

    // MARK: BrokerCluster

    public var peerIDs: [String] { Array(peers.keys) + orphans.values.map(\.peerID) }

    public func routeAdded(_ filter: String) {
        for link in peers.values { write(.routeAdded(filter: filter), to: link) }
        scheduleFlush()
    }

    public func routeRemoved(_ filter: String) {
        for link in peers.values { write(.routeRemoved(filter: filter), to: link) }
        scheduleFlush()
    }

    public func send(_ publish: ForwardedPublish, to peer: String) {
        let size = publish.message.byteCount
        guard let link = peers[peer] else {
            let slot = Self.slot(of: peer)
            guard var orphan = orphans[slot], orphan.peerID == peer else { return }
            orphans[slot] = nil
            if orphan.buffered.count < Self.orphanBufferLimit && orphan.bufferedBytes + size <= maxBufferedBytes {
                orphan.buffered.append(publish)
                orphan.bufferedBytes += size
            } else {
                orphan.dropped += 1
                droppedPublishes += 1
            }
            orphans[slot] = orphan
            return
        }
        // Back-pressure: a peer that lags behind loses QoS 0 deliveries first (never retained-store changes).
        let droppable = publish.message.qos == .atMostOnce && publish.retainStamp == nil
        if droppable && link.unacknowledgedBytes + size > maxBufferedBytes / 2 {
            droppedPublishes += 1
            return
        }
        if link.unacknowledgedBytes + size > maxBufferedBytes {
            resetLink(link, peer: peer)
            send(publish, to: peer)
            return
        }
        writePublish(publish, to: link)
        scheduleFlush()
    }

    /// A peer that holds `maxBufferedBytes` unacknowledged (stopped, or far behind) is treated as vanished: what
    /// it had not acknowledged waits for it, bounded, its routes stay, and the link is opened again; the peer sees
    /// the link close and does the same. Nothing grows for it beyond the bound meanwhile.
    private func resetLink(_ link: PeerLink, peer: String) {
        linkResets += 1
        logger.warning(
            "peer worker is not keeping up; resetting the link to it",
            metadata: [
                "cluster.peer": "\(peer)", "cluster.buffered_bytes": "\(link.unacknowledgedBytes)",
                "cluster.limit": "\(maxBufferedBytes)",
            ])
        peerLost(link, peer: peer)
        dirty.removeValue(forKey: ObjectIdentifier(link.channel))
        link.channel.close(promise: nil)
    }

    /// Numbers the publish and, with `keep`, keeps it until the peer says it is durable there.
    private func writePublish(_ publish: ForwardedPublish, to link: PeerLink, keep: Bool = true) {
        link.lastSentSequence += 1
        if keep && link.pendingAcknowledgement.count < Self.orphanBufferLimit {
            link.unacknowledged.append((link.lastSentSequence, publish))
            link.unacknowledgedBytes += publish.message.byteCount
        }
        let parts = ClusterFrame.publishParts(publish, sequence: link.lastSentSequence, allocator: link.channel.allocator)
        link.channel.write(parts.head, promise: nil)
        if parts.payload.readableBytes > 0 {
            link.channel.write(parts.payload, promise: nil)
        }
        link.channel.write(parts.tail, promise: nil)
        dirty[ObjectIdentifier(link.channel)] = link
    }

    /// One acknowledgement per link in flight: sent when what was received so far is durable (delivered into
    /// sessions that the store has committed), covering everything received until then.
    private func acknowledgeWhenDurable(_ link: PeerLink) {
        guard !link.isAcknowledgementPending else { return }
        link.isAcknowledgementPending = true
        let bound = NIOLoopBound(self, eventLoop: loop)
        let loop = self.loop
        let linkID = ObjectIdentifier(link.channel)
        loop.assumeIsolated().execute {
            let node = bound.value
            guard let link = node.links[linkID] else { return }
            let sequence = link.lastReceivedSequence
            node.broker.whenDurable {
                loop.execute {
                    let node = bound.value
                    guard let link = node.links[linkID] else { return }
                    link.isAcknowledgementPending = false
                    node.write(.acknowledged(sequence: sequence), to: link)
                    node.scheduleFlush()
                    if link.lastReceivedSequence > sequence {
                        node.acknowledgeWhenDurable(link)
                    }
                }
            }
        }
    }

    /// Leaving gracefully: the persistent sessions go to the other workers (round robin), then goodbye, so they
    /// drop this worker's routes at once instead of waiting for a successor.
    /// Succeeds once everything is written to the peers.
    public func depart() -> EventLoopFuture<Void> {
        let receivers = peers.values.sorted { ($0.peerID ?? "") < ($1.peerID ?? "") }
        guard !receivers.isEmpty else { return loop.makeSucceededVoidFuture() }
        let departing = broker.departingSessions()
        for (index, session) in departing.enumerated() {
            write(.adopt(clientID: session.clientID, handoff: session.state), to: receivers[index % receivers.count])
        }
        var written: [EventLoopFuture<Void>] = []
        for link in receivers {
            var buffer = link.channel.allocator.buffer(capacity: 8)
            buffer.writeClusterFrame(.goodbye)
            written.append(link.channel.writeAndFlush(buffer))
            dirty.removeValue(forKey: ObjectIdentifier(link.channel))
        }
        if !departing.isEmpty {
            logger.info("persistent sessions handed to the other workers", metadata: ["cluster.sessions": "\(departing.count)"])
        }
        return EventLoopFuture.whenAllComplete(written, on: loop).map { _ in }
    }

    public func claim(clientID: String, cleanStart: Bool, completion: @escaping (SessionHandoff?) -> Void) {
        guard !peers.isEmpty else {
            completion(nil)
            return
        }
        nextRequestID &+= 1
        let requestID = nextRequestID
        let bound = NIOLoopBound(self, eventLoop: loop)
        let timeout = loop.assumeIsolated().scheduleTask(in: Self.claimTimeout) {
            bound.value.claimTimedOut(requestID)
        }
        claims[requestID] = PendingClaim(
            waiting: Set(peers.keys), handoff: nil, completion: completion, timeout: timeout, clientID: clientID)
        for link in peers.values {
            write(.claim(requestID: requestID, clientID: clientID, cleanStart: cleanStart), to: link)
        }
        flush()
    }

    public func barrier(completion: @escaping () -> Void) {
        guard !peers.isEmpty else {
            completion()
            return
        }
        nextRequestID &+= 1
        let requestID = nextRequestID
        let bound = NIOLoopBound(self, eventLoop: loop)
        let timeout = loop.assumeIsolated().scheduleTask(in: Self.claimTimeout) {
            let node = bound.value
            guard let barrier = node.barriers.removeValue(forKey: requestID) else { return }
            node.logger.warning(
                "peer workers did not confirm route changes in time",
                metadata: ["cluster.silent": "\(barrier.waiting.sorted().joined(separator: ","))"])
            barrier.completion()
        }
        barriers[requestID] = PendingBarrier(waiting: Set(peers.keys), completion: completion, timeout: timeout)
        for link in peers.values {
            write(.ping(requestID: requestID), to: link)
        }
        flush()
    }

    private func completeBarrierIfAnswered(_ requestID: UInt32) {
        guard let barrier = barriers[requestID], barrier.waiting.isEmpty else { return }
        barriers.removeValue(forKey: requestID)
        barrier.timeout?.cancel()
        barrier.completion()
    }

    private func claimTimedOut(_ requestID: UInt32) {
        guard let claim = claims.removeValue(forKey: requestID) else { return }
        logger.warning(
            "peer workers did not answer a session claim in time",
            metadata: ["mqtt.client_id": "\(claim.clientID)", "cluster.silent": "\(claim.waiting.sorted().joined(separator: ","))"])
        claim.completion(claim.handoff)
    }

    private func completeIfAnswered(_ requestID: UInt32) {
        guard let claim = claims[requestID], claim.waiting.isEmpty else { return }
        claims.removeValue(forKey: requestID)
        claim.timeout?.cancel()
        claim.completion(claim.handoff)
    }

    // MARK: Writing

    private func write(_ frame: ClusterFrame, to link: PeerLink) {
        var buffer = link.channel.allocator.buffer(capacity: 64)
        buffer.writeClusterFrame(frame)
        link.channel.write(buffer, promise: nil)
        dirty[ObjectIdentifier(link.channel)] = link
    }

    /// One flush per peer per event-loop turn, however many frames were written to it: batching under load.
    private func scheduleFlush() {
        guard !isFlushScheduled else { return }
        isFlushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: loop)
        loop.assumeIsolated().execute {
            bound.value.isFlushScheduled = false
            bound.value.flush()
        }
    }

    private func flush() {
        let links = dirty.values
        dirty.removeAll(keepingCapacity: true)
        for link in links { link.channel.flush() }
    }
}

/// Feeds a peer connection's frames to the node.
final class ClusterPeerHandler: ChannelInboundHandler {
    typealias InboundIn = ClusterFrame

    private let node: ClusterNode
    private let link: ClusterNode.PeerLink

    init(node: ClusterNode, link: ClusterNode.PeerLink) {
        self.node = node
        self.link = link
    }

    func channelActive(context: ChannelHandlerContext) {
        node.linkActive(link)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        node.received(unwrapInboundIn(data), on: link)
    }

    func channelInactive(context: ChannelHandlerContext) {
        node.linkClosed(link)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        node.logger.error("peer connection failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
