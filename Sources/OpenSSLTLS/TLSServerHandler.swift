internal import COpenSSL
import Logging
import NIOCore

/// The server side of TLS for one accepted connection: ciphertext `ByteBuffer`s in from the socket become plaintext
/// `ByteBuffer`s for the next handler, and plaintext writes become ciphertext, with OpenSSL driven over memory BIOs
/// (`TLSConnection`). Lives in one channel pipeline on that channel's event loop; not Sendable.
///
/// - Writes made before the handshake completes are buffered and sent after it.
/// - On success it fires `TLSHandshakeCompleted`; on failure (verification, protocol error, timeout, peer close) it
///   logs one line (warning, except a silent peer close at debug), counts the reason in `refusals`, fires
///   `TLSHandshakeFailure`, flushes the pending alert (e.g. certificate_revoked) and then closes.
/// - `close(mode: .all)` sends close_notify first; a received close_notify is answered and the channel closed.
/// - Reads are held back (`read` not passed on) while more than `bufferLimit` bytes wait in either direction:
///   unconsumed ciphertext, pre-handshake writes, or the channel's unwritten outbound bytes.
public final class TLSServerHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        /// Added, channel not active yet.
        case idle
        case handshaking
        case active
        /// close_notify sent (or being sent) on our close; waiting for the channel to close.
        case closing
        /// Failed or closed; every further input is dropped.
        case closed
    }

    /// Largest plaintext chunk decrypted per `SSL_read` (one TLS record).
    private static let readChunk = 16 * 1024

    private let tlsContext: TLSContext
    private let gate: TLSGate
    private let onRevoked: (@Sendable (any Channel, TLSGate.Revocation) -> Void)?
    /// This connection's registration in `gate`, while it is open.
    private var admission: TLSGate.Ticket?
    private let listener: String
    private var logger: Logger
    private let refusals: TLSRefusalCounter
    private let onMissingCRL: (@Sendable ([String]) -> Void)?
    private let handshakeTimeout: TimeAmount
    private let bufferLimit: Int

    private var state = State.idle
    private var connection: TLSConnection?
    private var peerAddress = "unknown"
    /// The client address to log instead of the socket's peer (a PROXY protocol header named it).
    private let proxiedPeerAddress: String?
    private var timeoutTask: Scheduled<Void>?
    /// Plaintext written before the handshake completed, and whether a flush was requested for it.
    private var bufferedWrites: [(data: ByteBuffer, promise: EventLoopPromise<Void>?)] = []
    private var bufferedWriteBytes = 0
    /// Promises of plaintext already encrypted into the write BIO, completed with the ciphertext write.
    private var encryptedPromises: [EventLoopPromise<Void>] = []
    /// A `read` held back by the buffer limit.
    private var isReadPending = false
    /// Whether `channelRead` produced plaintext since the last `channelReadComplete`.
    private var hasFiredRead = false

    /// - Parameters:
    ///   - gate: the listener's gate; the connection starts with its current context (and keeps it alive for its
    ///     lifetime), and its handshake is decided against the context in force when the handshake completes.
    ///   - onRevoked: when set, the connection's client certificate is registered in `gate` for its lifetime, and
    ///     this runs (on the thread that installed the new context) if a newer CRL revokes it.
    ///   - listener: the listener name for log lines (`tls.listener`).
    ///   - logger: a connection logger; this handler adds `tls.listener` and `tls.peer`.
    ///   - refusals: the worker's counter of failed handshakes per reason.
    ///   - handshakeTimeout: how long a handshake may take from channel activation (default 15 s).
    ///   - bufferLimit: the backpressure threshold in bytes, per direction (default 1 MiB).
    ///   - onMissingCRL: called with the CRL distribution points of a trusted-CA-issued client certificate
    ///     refused because its issuer's CRL is missing (on the event loop: hand it off, do not block).
    ///   - peerAddress: the client address for `tls.peer` when it is not the socket's peer (PROXY protocol).
    public init(
        gate: TLSGate,
        listener: String,
        logger: Logger,
        refusals: TLSRefusalCounter,
        handshakeTimeout: TimeAmount = .seconds(15),
        bufferLimit: Int = 1 << 20,
        onMissingCRL: (@Sendable ([String]) -> Void)? = nil,
        onRevoked: (@Sendable (any Channel, TLSGate.Revocation) -> Void)? = nil,
        peerAddress: String? = nil
    ) {
        self.proxiedPeerAddress = peerAddress
        self.onMissingCRL = onMissingCRL
        self.gate = gate
        self.onRevoked = onRevoked
        tlsContext = gate.current
        self.listener = listener
        self.logger = logger
        self.refusals = refusals
        self.handshakeTimeout = handshakeTimeout
        self.bufferLimit = bufferLimit
        self.logger[metadataKey: "tls.listener"] = "\(listener)"
    }

    /// A handler on a fixed context (a gate of its own), for tests and tools.
    public convenience init(
        context: TLSContext,
        listener: String,
        logger: Logger,
        refusals: TLSRefusalCounter,
        handshakeTimeout: TimeAmount = .seconds(15),
        bufferLimit: Int = 1 << 20,
        onMissingCRL: (@Sendable ([String]) -> Void)? = nil
    ) {
        self.init(
            gate: TLSGate(context: context), listener: listener, logger: logger, refusals: refusals,
            handshakeTimeout: handshakeTimeout, bufferLimit: bufferLimit, onMissingCRL: onMissingCRL)
    }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        do {
            connection = try TLSConnection(context: tlsContext, gate: gate)
        } catch {
            logger.error("cannot create TLS connection", metadata: ["tls.error": "\(error)"])
            state = .closed
            context.close(promise: nil)
            return
        }
        if context.channel.isActive {
            startHandshake(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimeout()
        releaseAdmission()
        failBufferedWrites(ChannelError.ioOnClosedChannel)
    }

    private func releaseAdmission() {
        if let admission {
            gate.release(admission)
            self.admission = nil
        }
    }

    public func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let wasHandshaking = state == .handshaking
        state = .closed
        cancelTimeout()
        releaseAdmission()
        failBufferedWrites(ChannelError.ioOnClosedChannel)
        if wasHandshaking {
            report(
                TLSHandshakeFailure(kind: .closedByPeer, reason: "connection closed during handshake"),
                context: context
            )
        }
        context.fireChannelInactive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle, connection != nil else {
            return
        }
        state = .handshaking
        if let proxiedPeerAddress {
            peerAddress = proxiedPeerAddress
        } else if let address = context.channel.remoteAddress {
            peerAddress = Self.describe(address)
        }
        logger[metadataKey: "tls.peer"] = "\(peerAddress)"
        let loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            loopBoundSelf.value.handshakeTimedOut(context: loopBoundContext.value)
        }
    }

    /// "127.0.0.1:5555" / "[::1]:5555" rather than NIO's "[IPv4]127.0.0.1/127.0.0.1:5555".
    private static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else {
            return "\(address)"
        }
        if case .v6 = address {
            return "[\(ip)]:\(port)"
        }
        return "\(ip):\(port)"
    }

    private func handshakeTimedOut(context: ChannelHandlerContext) {
        guard state == .handshaking else {
            return
        }
        timeoutTask = nil
        failHandshake(
            TLSHandshakeFailure(kind: .timedOut, reason: "handshake timeout"),
            context: context
        )
    }

    private func cancelTimeout() {
        timeoutTask?.cancel()
        timeoutTask = nil
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let ciphertext = unwrapInboundIn(data)
        guard let connection, state == .handshaking || state == .active else {
            return
        }
        connection.receive(ciphertext)
        process(context: context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        flushCiphertext(context: context)
        if state == .active {
            connection?.releaseBuffersIfIdle()
        }
        if hasFiredRead {
            hasFiredRead = false
            context.fireChannelReadComplete()
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfPossible(context: context)
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed, state != .closed {
            // The peer half-closed without close_notify: nothing more can arrive.
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Feeds whatever the read BIO holds through the current state.
    private func process(context: ChannelHandlerContext) {
        if state == .handshaking {
            runHandshake(context: context)
        }
        if state == .active {
            readPlaintext(context: context)
        }
        flushCiphertext(context: context)
    }

    private func runHandshake(context: ChannelHandlerContext) {
        guard let connection else {
            return
        }
        switch connection.doHandshake() {
        case .incomplete:
            flushCiphertext(context: context)
        case .complete:
            logRefusedResumption(connection)
            let verdict = admit(connection, context: context)
            guard verdict == X509_V_OK else {
                refuseAtCompletion(connection, verifyError: verdict, context: context)
                return
            }
            state = .active
            cancelTimeout()
            var event = TLSHandshakeCompleted(
                protocolVersion: connection.negotiatedVersion,
                cipher: connection.negotiatedCipher,
                peer: connection.peerCertificate?.peerCertificate,
                isSessionResumed: connection.isSessionResumed
            )
            refusals.countCompleted(onStaleCRL: connection.verification.staleCRL != nil)
            if let stale = connection.verification.staleCRL {
                event.staleCRL = stale
                logger.warning("client accepted on a CRL past its nextUpdate (crl_fail_policy = grace)", metadata: [
                    "tls.subject": "\(event.peer?.subjectDN ?? "")", "tls.serial": "\(event.peer?.serialHex ?? "")",
                    "tls.crl_issuer": "\(stale.issuerDN)", "revocation.next_update": "\(Timestamp.iso8601(stale.nextUpdate))",
                    "revocation.stale_seconds": "\(stale.secondsPast)",
                ])
            }
            logger.debug("TLS handshake completed", metadata: [
                "tls.version": "\(event.protocolVersion)",
                "tls.cipher": "\(event.cipher)",
                "tls.subject": "\(event.peer?.subjectDN ?? "")",
                "tls.resumed": "\(event.isSessionResumed)",
            ])
            flushCiphertext(context: context)
            context.fireUserInboundEventTriggered(event)
            writeBufferedPlaintext(context: context)
        case .failed(let firstReason, let openSSLErrors):
            logRefusedResumption(connection)
            failHandshake(failure(from: connection, firstReason: firstReason, openSSLErrors: openSSLErrors),
                          context: context)
        }
    }

    // MARK: - Completion

    /// The verdict at completion: registers the connection in the gate and, in the same step, reads the context in
    /// force; if that is not the one the client chain was verified against (a reload during the handshake), the
    /// chain is verified again against it, until the two agree. Returns X509_V_OK or the refusal's verify error.
    private func admit(_ connection: TLSConnection, context: ChannelHandlerContext) -> Int32 {
        defer { connection.releaseHandshakeState() }
        let record = connection.verification
        let channel = context.channel
        for _ in 0..<Self.maximumCompletionChecks {
            var registration: TLSGate.Admission?
            if let onRevoked, let peer = connection.peerCertificate?.peerCertificate, !record.subjects.isEmpty {
                registration = TLSGate.Admission(peer: peer, subjects: record.subjects) { revocation in
                    onRevoked(channel, revocation)
                }
            }
            let (inForce, ticket) = gate.admit(registration)
            if record.verifiedAgainst === inForce || (record.verifiedAgainst == nil && record.peerChain.isEmpty
                && connection.peerCertificate == nil)
            {
                admission = ticket
                return X509_V_OK
            }
            if let ticket { gate.release(ticket) }
            let result = connection.recheck(against: inForce)
            guard result == X509_V_OK else {
                return result
            }
        }
        // The revocation data changed at every step: refuse rather than admit on data no longer in force.
        return X509_V_ERR_UNSPECIFIED
    }

    /// A handshake OpenSSL finished that the completion check refuses: nothing OpenSSL queued goes out (its
    /// Finished, the session tickets). In a full TLS 1.2 handshake the client is still waiting for our
    /// ChangeCipherSpec, so a plaintext fatal alert is still what it expects and it is sent; in TLS 1.3 (and
    /// after a resumption) the client already has our Finished and only an encrypted alert would do, which OpenSSL
    /// cannot send after its handshake: the connection is closed.
    private func refuseAtCompletion(_ connection: TLSConnection, verifyError: Int32, context: ChannelHandlerContext) {
        connection.discardCiphertext()
        if connection.negotiatedVersion == "TLSv1.2" && !connection.isSessionResumed {
            var alert = context.channel.allocator.buffer(capacity: 7)
            alert.writeBytes([21, 3, 3, 0, 2, 2, TLSConnection.alert(for: verifyError)])
            context.write(wrapOutboundOut(alert), promise: nil)
        }
        var refusal = failure(from: connection, firstReason: nil, openSSLErrors: [])
        if refusal.verifyResult == X509_V_OK {
            refusal.verifyResult = verifyError
            refusal.reason = "revocation data changed during the handshake"
        }
        refusal.detail = "decided at handshake completion, against the revocation data loaded during the handshake"
        failHandshake(refusal, context: context)
    }

    /// At most this many completion checks in a row (each after a reload that happened during the previous one).
    private static let maximumCompletionChecks = 8

    /// One line when a ticket was not honoured because a full handshake with its certificate would fail now (the
    /// handshake then went on in full and was decided on its own).
    private func logRefusedResumption(_ connection: TLSConnection) {
        guard let (error, peer) = connection.verification.refusedResumption else { return }
        connection.verification.refusedResumption = nil
        let reason = X509_verify_cert_error_string(Int(error)).map { String(cString: $0) } ?? "verify error \(error)"
        refusals.countRefusedResumption()
        guard refusals.admitLogLine(reason: "resumption: " + reason) else { return }
        logger.info("TLS resumption refused, full handshake required", metadata: [
            "tls.reason": "\(reason)", "tls.subject": "\(peer.subjectDN)", "tls.serial": "\(peer.serialHex)",
            "tls.issuer": "\(peer.issuerDN)",
        ])
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let connection else {
            return
        }
        while state == .active {
            var buffer = context.channel.allocator.buffer(capacity: Self.readChunk)
            switch connection.read(into: &buffer, minimum: Self.readChunk) {
            case .bytes:
                hasFiredRead = true
                context.fireChannelRead(wrapInboundOut(buffer))
            case .wantMoreCiphertext:
                return
            case .closeNotify:
                logger.debug("TLS close_notify received")
                sendCloseNotifyAndClose(context: context, promise: nil)
                return
            case .failed(let openSSLErrors):
                logger.debug("TLS read failed", metadata: ["tls.openssl_errors": "\(openSSLErrors)"])
                state = .closed
                flushCiphertext(context: context)
                context.close(promise: nil)
                return
            }
        }
    }

    // MARK: - Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            bufferedWrites.append((plaintext, promise))
            bufferedWriteBytes += plaintext.readableBytes
        case .active:
            encrypt(plaintext, promise: promise, context: context)
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        // Before the handshake, buffered writes are flushed when it completes.
        if state == .active {
            flushCiphertext(context: context)
        }
    }

    public func read(context: ChannelHandlerContext) {
        if isOverBufferLimit(context: context) {
            isReadPending = true
        } else {
            context.read()
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch state {
        case .active:
            sendCloseNotifyAndClose(context: context, promise: promise)
        case .idle, .handshaking:
            state = .closed
            cancelTimeout()
            failBufferedWrites(ChannelError.ioOnClosedChannel)
            context.close(mode: mode, promise: promise)
        case .closing, .closed:
            context.close(mode: mode, promise: promise)
        }
    }

    private func encrypt(_ plaintext: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        guard let connection else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if let errors = connection.write(plaintext) {
            logger.debug("TLS write failed", metadata: ["tls.openssl_errors": "\(errors)"])
            promise?.fail(OpenSSLError(operation: "SSL_write", message: "cannot encrypt", openSSLErrors: errors))
            return
        }
        if let promise {
            encryptedPromises.append(promise)
        }
    }

    private func writeBufferedPlaintext(context: ChannelHandlerContext) {
        let writes = bufferedWrites
        bufferedWrites = []
        bufferedWriteBytes = 0
        for write in writes {
            encrypt(write.data, promise: write.promise, context: context)
        }
        flushCiphertext(context: context)
        resumeReadingIfPossible(context: context)
    }

    /// Writes and flushes everything in the write BIO, attaching the promises of the plaintext it carries.
    private func flushCiphertext(context: ChannelHandlerContext) {
        guard let connection else {
            return
        }
        let promises = encryptedPromises
        encryptedPromises = []
        guard let ciphertext = connection.takeCiphertext(allocator: context.channel.allocator) else {
            for promise in promises {
                promise.succeed()
            }
            return
        }
        context.writeAndFlush(wrapOutboundOut(ciphertext), promise: Self.combine(promises, on: context.eventLoop))
    }

    private static func combine(_ promises: [EventLoopPromise<Void>], on eventLoop: EventLoop)
        -> EventLoopPromise<Void>?
    {
        switch promises.count {
        case 0:
            return nil
        case 1:
            return promises[0]
        default:
            let combined = eventLoop.makePromise(of: Void.self)
            for promise in promises {
                combined.futureResult.cascade(to: promise)
            }
            return combined
        }
    }

    private func sendCloseNotifyAndClose(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard let connection else {
            context.close(promise: promise)
            return
        }
        state = .closing
        connection.shutdown()
        flushCiphertext(context: context)
        failBufferedWrites(ChannelError.ioOnClosedChannel)
        closeAfterPendingWrites(context: context, promise: promise)
    }

    /// Closes once what was just flushed (an alert or close_notify) has reached the socket, or at once if the
    /// channel cannot take more writes (then it would never drain).
    private func closeAfterPendingWrites(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard context.channel.isActive, context.channel.isWritable else {
            context.close(promise: promise)
            return
        }
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let emptyWrite = context.channel.allocator.buffer(capacity: 0)
        context.writeAndFlush(wrapOutboundOut(emptyWrite)).whenComplete { _ in
            loopBoundContext.value.close(promise: promise)
        }
    }

    private func failBufferedWrites(_ error: Error) {
        let writes = bufferedWrites
        let promises = encryptedPromises
        bufferedWrites = []
        bufferedWriteBytes = 0
        encryptedPromises = []
        for write in writes {
            write.promise?.fail(error)
        }
        for promise in promises {
            promise.fail(error)
        }
    }

    // MARK: - Backpressure

    private func isOverBufferLimit(context: ChannelHandlerContext) -> Bool {
        let inbound = connection?.bufferedCiphertextIn ?? 0
        var outbound = bufferedWriteBytes + (connection?.bufferedCiphertextOut ?? 0)
        if let unwritten = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes) {
            outbound += unwritten
        }
        return inbound > bufferLimit || outbound > bufferLimit
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        guard isReadPending, !isOverBufferLimit(context: context) else {
            return
        }
        isReadPending = false
        context.read()
    }

    // MARK: - Failure

    private func failure(
        from connection: TLSConnection,
        firstReason: String?,
        openSSLErrors: [String]
    ) -> TLSHandshakeFailure {
        let record = connection.verification
        let verifyResult = record.error != 0 ? record.error : Int32(truncatingIfNeeded: connection.verifyResult)
        let verifyText = X509_verify_cert_error_string(Int(verifyResult)).map { String(cString: $0) } ?? ""
        let peer = (record.leafCertificate ?? connection.peerCertificate)?.peerCertificate
        if verifyResult == X509_V_OK, let refusal = tlsContext.handshakeRefusal(inForce: gate.current) {
            // The ClientHello callback refused it (must-staple without a valid staple).
            return TLSHandshakeFailure(kind: .unavailable, reason: refusal, peer: peer, openSSLErrors: openSSLErrors)
        }
        guard verifyResult != X509_V_OK else {
            return TLSHandshakeFailure(
                kind: .protocolError,
                reason: firstReason ?? "handshake failed",
                verifyResult: verifyResult,
                verifyResultDescription: verifyText,
                peer: peer,
                openSSLErrors: openSSLErrors
            )
        }
        let errorCertificate = record.errorCertificate?.peerCertificate
        return TLSHandshakeFailure(
            kind: .verificationFailed,
            reason: verifyText,
            verifyResult: verifyResult,
            verifyResultDescription: verifyText,
            errorDepth: record.errorDepth,
            errorCertificate: errorCertificate,
            crlIssuerDN: Self.isCRLError(verifyResult) ? errorCertificate?.issuerDN : nil,
            peer: peer,
            openSSLErrors: openSSLErrors,
            missingCRLDistributionPoints: record.missingCRLDistributionPoints
        )
    }

    private static func isCRLError(_ code: Int32) -> Bool {
        [
            X509_V_ERR_UNABLE_TO_GET_CRL, X509_V_ERR_CRL_HAS_EXPIRED, X509_V_ERR_CRL_NOT_YET_VALID,
            X509_V_ERR_CRL_SIGNATURE_FAILURE, X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE,
            X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD, X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD,
            X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER, X509_V_ERR_KEYUSAGE_NO_CRL_SIGN, X509_V_ERR_DIFFERENT_CRL_SCOPE,
            X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION,
        ].contains(code)
    }

    /// Reports the failure, sends the pending alert, then closes.
    private func failHandshake(_ failure: TLSHandshakeFailure, context: ChannelHandlerContext) {
        state = .closed
        cancelTimeout()
        report(failure, context: context)
        failBufferedWrites(failure)
        flushCiphertext(context: context)
        closeAfterPendingWrites(context: context, promise: nil)
    }

    private func report(_ failure: TLSHandshakeFailure, context: ChannelHandlerContext) {
        refusals.increment(reason: failure.reason)
        if !failure.missingCRLDistributionPoints.isEmpty {
            onMissingCRL?(failure.missingCRLDistributionPoints)
        }
        var metadata: Logger.Metadata = [
            "tls.reason": "\(failure.reason)",
            "tls.kind": "\(failure.kind.rawValue)",
            "tls.subject": "\(failure.peer?.subjectDN ?? "")",
            "tls.issuer": "\(failure.peer?.issuerDN ?? "")",
            "tls.serial": "\(failure.peer?.serialHex ?? "")",
        ]
        if failure.verifyResult != X509_V_OK {
            metadata["tls.verify_result"] = "\(failure.verifyResult)"
        }
        if let depth = failure.errorDepth {
            metadata["tls.error_depth"] = "\(depth)"
            if depth > 0, let certificate = failure.errorCertificate {
                metadata["tls.error_subject"] = "\(certificate.subjectDN)"
                metadata["tls.error_serial"] = "\(certificate.serialHex)"
            }
        }
        if let issuer = failure.crlIssuerDN {
            metadata["tls.crl_issuer"] = "\(issuer)"
        }
        if !failure.missingCRLDistributionPoints.isEmpty {
            metadata["tls.crl_distribution_points"] = "\(failure.missingCRLDistributionPoints.joined(separator: ","))"
        }
        if !failure.openSSLErrors.isEmpty {
            metadata["tls.openssl_errors"] = "\(failure.openSSLErrors.joined(separator: "; "))"
        }
        if let detail = failure.detail {
            metadata["tls.decided"] = "\(detail)"
        }
        if failure.kind == .closedByPeer {
            logger.debug("TLS handshake refused", metadata: metadata)
        } else if refusals.admitLogLine(reason: failure.reason) {
            logger.warning("TLS handshake refused", metadata: metadata)
        }
        context.fireUserInboundEventTriggered(failure)
    }
}

@available(*, unavailable)
extension TLSServerHandler: Sendable {}
