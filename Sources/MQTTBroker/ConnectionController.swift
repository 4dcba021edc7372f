import Logging
import MQTTCodec
import NIOCore
import ProcessSupport

/// One client connection's MQTT protocol logic: CONNECT and authentication, keep-alive, topic aliases, flow
/// control, the inbound QoS flows, and writing what the broker routes to it. The NIO handler feeds it decoded
/// packets and closes; everything else lives here, on the broker's event loop.
public final class ConnectionController {
    enum State {
        case awaitingConnect
        /// CONNECT accepted; other workers are giving up the client id's session. Packets the client sends
        /// meanwhile wait here (in order) and are handled once connected.
        case claiming(buffered: [MQTTPacket])
        case connected(Session)
        case closed
    }

    /// Packets a connection may hand in while `acceptsInput` is false (its client id claimed, or a SUBACK waiting
    /// for the routes). The worker's connections stop reading instead, so none normally arrive; one that does not
    /// is disconnected past this many, with a reason code and a log line.
    static let maximumPacketsWhileClaiming = 1000
    /// While a SUBACK waits for the other workers to learn the new routes, later packets wait here, in order.
    var heldPackets: [MQTTPacket]?
    /// Topic bytes held by `inboundTopicAliases` and `outboundTopicAliases` (`mqtt.max_topic_alias_bytes` each).
    var inboundTopicAliasBytes = 0
    var outboundTopicAliasBytes = 0

    /// What the TLS layer learned from a verified client certificate (`peer_cert_as_username/clientid`).
    public struct CertificateIdentity: Sendable, Equatable {
        public var username: String?
        public var clientID: String?
        /// The configured certificate fields the client did not present (`peer_cert_as_username = cn (the
        /// certificate has no CN)`): CONNECT is refused rather than falling back to its own username or client
        /// id, which would let a client claim another's identity.
        public var missing: [String]

        public init(username: String?, clientID: String?, missing: [String] = []) {
            self.username = username
            self.clientID = clientID
            self.missing = missing
        }
    }

    let broker: Broker
    let connection: any MQTTClientConnection
    let listenerAllowsAnonymous: Bool?
    var certificateIdentity: CertificateIdentity?
    var logger: Logger
    var state: State = .awaitingConnect
    public internal(set) var protocolVersion: MQTTProtocolVersion = .v3_1_1
    var clientID = ""
    var username: String?

    // Negotiated at CONNECT.
    var keepAlive: UInt16 = 0
    var clientReceiveMaximum = Int(UInt16.max)
    var clientMaximumPacketSize = Int.max
    var clientTopicAliasMaximum: UInt16 = 0
    var inboundTopicAliases: [UInt16: String] = [:]
    var outboundTopicAliases: [String: UInt16] = [:]
    var lastActivity: MonotonicInstant
    var keepAliveTimer: (any ScheduledWork)?
    var connectTimer: (any ScheduledWork)?
    var hasPendingWrites = false

    public init(
        broker: Broker, connection: any MQTTClientConnection, listenerAllowsAnonymous: Bool?,
        certificateIdentity: CertificateIdentity? = nil, logger: Logger
    ) {
        self.broker = broker
        self.connection = connection
        self.listenerAllowsAnonymous = listenerAllowsAnonymous
        self.certificateIdentity = certificateIdentity
        self.logger = logger
        self.lastActivity = broker.scheduler.now
    }

    public var peerDescription: String { connection.peerDescription }

    /// The TLS handshake finished with a verified client certificate: its identity counts for CONNECT.
    public func setCertificateIdentity(_ identity: CertificateIdentity?) {
        guard case .awaitingConnect = state else { return }
        certificateIdentity = identity
    }

    var session: Session? {
        if case .connected(let session) = state { return session }
        return nil
    }

    /// Whether the connection should hand in more packets now. Not while the client id is claimed from other
    /// workers or a SUBACK waits for the routes: the connection stops reading meanwhile, and `resumeInput()` on it
    /// says when to go on, so what a client sends behind such a packet waits in its socket, not in the worker.
    public var acceptsInput: Bool {
        switch state {
        case .claiming: return false
        case .connected: return heldPackets == nil
        case .awaitingConnect, .closed: return true
        }
    }

    /// The largest packet to accept next: `mqtt.max_connect_packet_size` until a CONNECT is accepted (a client
    /// that never authenticates cannot make the worker buffer a large packet), then `mqtt.max_packet_size`.
    public var maximumInboundPacketSize: Int {
        if case .awaitingConnect = state {
            return min(broker.settings.maximumConnectPacketSize, broker.settings.maximumPacketSize)
        }
        return broker.settings.maximumPacketSize
    }

    /// The connection holds more than its listener's `high_watermark` unwritten (see `MQTTClientConnection`).
    var isBusy: Bool { connection.isBusy }

    /// The connection is open: CONNECT must follow within the connect timeout.
    public func start() {
        broker.connectionOpened()
        connectTimer = broker.scheduler.schedule(after: broker.settings.connectTimeout) { [weak self] in
            guard let self, case .awaitingConnect = self.state else { return }
            self.logger.info("no CONNECT in time, closing", metadata: ["tls.peer": "\(self.peerDescription)"])
            self.closeConnection(publishWill: false)
        }
    }

    // MARK: Input

    /// One decoded packet.
    public func received(_ packet: MQTTPacket) {
        lastActivity = broker.scheduler.now
        switch state {
        case .closed:
            return
        case .awaitingConnect:
            guard case .connect(let connect) = packet else {
                // The decoder only lets CONNECT through first; anything else is a protocol violation.
                closeConnection(publishWill: false)
                return
            }
            handleConnect(connect)
        case .claiming(var buffered):
            guard buffered.count < Self.maximumPacketsWhileClaiming else {
                inputOverflow(while: "its client id is claimed from the other workers")
                return
            }
            buffered.append(packet)
            state = .claiming(buffered: buffered)
        case .connected(let session):
            if heldPackets != nil {
                guard heldPackets?.count ?? 0 < Self.maximumPacketsWhileClaiming else {
                    inputOverflow(while: "a SUBACK waits for the other workers to learn the routes")
                    return
                }
                heldPackets?.append(packet)
                return
            }
            handle(packet, session: session)
        }
    }

    /// Holds input until `work` decides to release it (see `heldPackets`), then asks the connection to read on.
    func holdInput(until wait: (@escaping () -> Void) -> Void, then work: @escaping () -> Void) {
        heldPackets = []
        wait { [weak self] in
            guard let self else { return }
            work()
            let held = self.heldPackets ?? []
            self.heldPackets = nil
            for packet in held {
                self.received(packet)
            }
            self.broker.flushPending()
            if self.acceptsInput { self.connection.resumeInput() }
        }
    }

    /// More packets arrived while input should have paused than may wait: the connection did not stop reading.
    /// Never a silent close: MQTT 5 clients get 0x97 (Quota exceeded), in a CONNACK before it was sent.
    private func inputOverflow(while reason: String) {
        logger.warning(
            "too many packets while input waits, closing",
            metadata: [
                "tls.peer": "\(peerDescription)", "mqtt.reason": "\(ReasonCode.quotaExceeded)", "error": "\(reason)",
                "mqtt.packets": "\(Self.maximumPacketsWhileClaiming)",
            ])
        if case .claiming = state {
            connection.send(.connack(ConnAckPacket(sessionPresent: false, reasonCode: .quotaExceeded)))
            closeConnection(publishWill: false)
        } else {
            disconnect(reason: .quotaExceeded, publishWill: true)
        }
    }

    /// The decoder rejected the input: answer as the spec allows, then close this connection only.
    public func decodingFailed(_ error: MQTTDecodingError) {
        if error.reasonCode == .packetTooLarge, case .awaitingConnect = state,
            maximumInboundPacketSize < broker.settings.maximumPacketSize
        {
            broker.count(.connectPacketSizeRefused)
            logger.info(
                "CONNECT larger than mqtt.max_connect_packet_size, closing",
                metadata: [
                    "tls.peer": "\(peerDescription)", "mqtt.reason": "\(error.reasonCode)", "error": "\(error.message)",
                ])
        } else {
            logger.info(
                "malformed MQTT input, closing",
                metadata: [
                    "tls.peer": "\(peerDescription)", "mqtt.reason": "\(error.reasonCode)", "error": "\(error.message)",
                ])
        }
        if case .closed = state { return }
        if let response = error.suggestedResponse {
            if case .connack = response.packet, case .awaitingConnect = state {
                protocolVersion = response.version
                connection.send(response.packet)
            } else if case .disconnect = response.packet, protocolVersion == .v5, case .connected = state {
                connection.send(response.packet)
            }
        }
        closeConnection(publishWill: true)
    }

    /// The network connection is gone (peer closed, I/O error, or we closed it).
    public func connectionClosed() {
        if case .closed = state { return }
        finish(publishWill: true)
    }

    private func handle(_ packet: MQTTPacket, session: Session) {
        defer {
            // Acknowledgements and QoS 2 receipts change what a persistent session must keep.
            switch packet {
            case .publish(let publish) where publish.qos == .exactlyOnce: broker.sessionChanged(session)
            case .puback, .pubrec, .pubcomp, .pubrel: broker.sessionChanged(session)
            default: break
            }
        }
        switch packet {
        case .publish(let publish):
            handlePublish(publish, session: session)
        case .puback(let ack):
            write(session.outbound.acknowledged(ack.packetIdentifier, now: broker.scheduler.now), now: broker.scheduler.now)
        case .pubrec(let rec):
            write(
                session.outbound.received(rec.packetIdentifier, failed: rec.reasonCode.isFailure, now: broker.scheduler.now),
                now: broker.scheduler.now)
        case .pubcomp(let comp):
            write(session.outbound.completed(comp.packetIdentifier, now: broker.scheduler.now), now: broker.scheduler.now)
        case .pubrel(let rel):
            let known = session.inboundQoS2.remove(rel.packetIdentifier) != nil
            send(
                .pubcomp(
                    PubCompPacket(
                        packetIdentifier: rel.packetIdentifier,
                        reasonCode: known || protocolVersion != .v5 ? .success : .packetIdentifierNotFound)))
        case .subscribe(let subscribe):
            handleSubscribe(subscribe, session: session)
        case .unsubscribe(let unsubscribe):
            handleUnsubscribe(unsubscribe, session: session)
        case .pingreq:
            send(.pingresp)
        case .disconnect(let disconnect):
            handleDisconnect(disconnect, session: session)
        case .connect:
            protocolViolation(.protocolError, "second CONNECT on one connection")
        case .auth:
            protocolViolation(.protocolError, "AUTH without an authentication method")
        case .connack, .suback, .unsuback, .pingresp:
            protocolViolation(.protocolError, "a server-to-client packet sent by the client")
        }
    }

    private func handleDisconnect(_ disconnect: DisconnectPacket, session: Session) {
        if protocolVersion == .v5, let expiry = disconnect.properties.sessionExpiryInterval {
            if session.expiryInterval == 0 && expiry != 0 {
                protocolViolation(.protocolError, "DISCONNECT sets a session expiry on a session that had none")
                return
            }
            session.expiryInterval = min(expiry, broker.settings.maximumSessionExpiryInterval)
        }
        let withWill = disconnect.reasonCode == .disconnectWithWillMessage
        logger.debug(
            "client disconnected", metadata: ["mqtt.client_id": "\(clientID)", "mqtt.reason": "\(disconnect.reasonCode)"])
        closeConnection(publishWill: withWill)
    }

    // MARK: Closing

    /// A protocol error after CONNECT: v5 clients get a DISCONNECT with the reason, then the connection closes
    /// (and the will is published, §3.1.2.5).
    func protocolViolation(_ reason: ReasonCode, _ message: String) {
        logger.info(
            "protocol violation, closing",
            metadata: ["mqtt.client_id": "\(clientID)", "mqtt.reason": "\(reason)", "error": "\(message)"])
        if protocolVersion == .v5, case .connected = state {
            connection.send(.disconnect(DisconnectPacket(reasonCode: reason)))
        }
        closeConnection(publishWill: true)
    }

    /// Server-initiated disconnect with a reason (shutdown, administrative action); no will for a shutdown.
    public func disconnect(reason: ReasonCode, publishWill: Bool) {
        if protocolVersion == .v5, case .connected = state {
            connection.send(.disconnect(DisconnectPacket(reasonCode: reason)))
        }
        closeConnection(publishWill: publishWill)
    }

    /// Another connection took this client id.
    func takenOver() {
        if protocolVersion == .v5 {
            connection.send(.disconnect(DisconnectPacket(reasonCode: .sessionTakenOver)))
        }
        // The broker has already moved the session; detach is a no-op for it.
        state = .closed
        stopTimers()
        connection.close()
        broker.connectionClosed()
    }

    func closeConnection(publishWill: Bool) {
        if case .closed = state { return }
        finish(publishWill: publishWill)
        connection.close()
    }

    private func finish(publishWill: Bool) {
        let previous = state
        state = .closed
        stopTimers()
        broker.connectionClosed()
        if case .connected(let session) = previous {
            broker.detach(session, controller: self, publishWill: publishWill)
            broker.flushPending()
        }
    }

    private func stopTimers() {
        keepAliveTimer?.cancel()
        keepAliveTimer = nil
        connectTimer?.cancel()
        connectTimer = nil
    }

    // MARK: Back-pressure

    /// The connection is below its high watermark again: what waited in the session queue goes out, as far as
    /// the window allows.
    public func outboundWritable() {
        guard case .connected(let session) = state, session.outbound.queuedCount > 0, !isBusy else { return }
        let now = broker.scheduler.now
        let outputs = session.outbound.release(now: now)
        guard !outputs.isEmpty else { return }
        write(outputs, now: now)
        broker.sessionChanged(session)
    }

    /// The connection stayed over its high watermark for `send_timeout`: closed (`send_timeout_close`; the will
    /// is published, as for a keep-alive timeout) or kept, with one log line either way.
    public func sendTimedOut(after timeout: Duration, closing: Bool, bytesWaiting: Int) {
        if case .closed = state { return }
        let metadata: Logger.Metadata = [
            "tls.peer": "\(peerDescription)", "mqtt.send_timeout": "\(timeout)", "mqtt.bytes_waiting": "\(bytesWaiting)",
        ]
        guard closing else {
            broker.count(.sendTimeoutKept)
            logger.info("send timeout: the client has not read for send_timeout, kept (send_timeout_close = off)",
                metadata: metadata)
            return
        }
        broker.count(.sendTimeoutClosed)
        logger.warning(
            "send timeout: the client has not read for send_timeout, closing",
            metadata: metadata.merging(["mqtt.reason": "\(ReasonCode.quotaExceeded)"]) { $1 })
        disconnect(reason: .quotaExceeded, publishWill: true)
    }

    // MARK: Keep alive

    /// Checks at 1.5 × keep alive after the last packet (§3.1.2.10); rescheduled rather than reset per packet.
    func armKeepAlive() {
        guard keepAlive > 0 else { return }
        let limit = Duration.milliseconds(Int64(keepAlive) * 1500)
        let due = lastActivity + limit
        let wait = due.duration(since: broker.scheduler.now)
        keepAliveTimer = broker.scheduler.schedule(after: max(wait, .milliseconds(10))) { [weak self] in
            guard let self, case .connected = self.state else { return }
            if self.broker.scheduler.now.duration(since: self.lastActivity) >= limit {
                self.logger.info(
                    "keep alive expired, closing",
                    metadata: ["mqtt.client_id": "\(self.clientID)", "mqtt.keep_alive": "\(self.keepAlive)"])
                if self.protocolVersion == .v5 {
                    self.connection.send(.disconnect(DisconnectPacket(reasonCode: .keepAliveTimeout)))
                }
                self.closeConnection(publishWill: true)
            } else {
                self.armKeepAlive()
            }
        }
    }

    // MARK: Output

    func send(_ packet: MQTTPacket) {
        connection.send(packet)
        markPending()
    }

    func markPending() {
        if !hasPendingWrites {
            hasPendingWrites = true
            broker.needsFlush(self)
        }
    }

    func flushNow() {
        guard hasPendingWrites else { return }
        hasPendingWrites = false
        connection.flush()
    }
}
