import MQTTCodec
import NIOCore
import ProcessSupport

extension ConnectionController {
    /// CONNECT (§3.1): authenticate, pick or assign the client id, attach the session, answer CONNACK, then
    /// resend what a resumed session still owes the client.
    func handleConnect(_ connect: ConnectPacket) {
        connectTimer?.cancel()
        connectTimer = nil
        protocolVersion = connect.protocolVersion
        let isV5 = protocolVersion == .v5

        if isV5, connect.properties.authenticationMethod != nil {
            refuse(.badAuthenticationMethod, "enhanced authentication is not supported")
            return
        }
        if let missing = certificateIdentity?.missing, !missing.isEmpty {
            logger.warning(
                "connection refused: the client certificate lacks the identity field",
                metadata: ["mqtt.missing": "\(missing.joined(separator: "; "))"])
            refuse(.notAuthorized, "certificate field missing", logged: true)
            return
        }
        let certificateUsername = certificateIdentity?.username
        let verdict = broker.access.authenticate(
            username: connect.username, password: connect.password,
            listenerAllowsAnonymous: listenerAllowsAnonymous, certificateUsername: certificateUsername)
        guard verdict == .success else {
            refuse(verdict, verdict == .notAuthorized ? "anonymous clients are not allowed" : "bad username or password")
            return
        }
        username = certificateUsername ?? connect.username

        var assignedIdentifier: String?
        var identifier = certificateIdentity?.clientID ?? connect.clientIdentifier
        if identifier.isEmpty {
            switch protocolVersion {
            case .v5:
                identifier = broker.assignClientIdentifier()
                assignedIdentifier = identifier
            case .v3_1_1 where connect.cleanStart:
                identifier = broker.assignClientIdentifier()
            case .v3_1_1, .v3_1:
                refuse(.clientIdentifierNotValid, "empty client identifier without a clean session")
                return
            }
        } else if protocolVersion == .v3_1 && identifier.utf8.count > 23 {
            refuse(.clientIdentifierNotValid, "MQTT 3.1 client identifiers are at most 23 bytes")
            return
        }
        clientID = identifier
        logger[metadataKey: "mqtt.client_id"] = "\(identifier)"

        // Limits the client announced (MQTT 5).
        if isV5 {
            clientReceiveMaximum = Int(connect.properties.receiveMaximum ?? UInt16.max)
            clientMaximumPacketSize = Int(connect.properties.maximumPacketSize ?? UInt32.max)
            clientTopicAliasMaximum = connect.properties.topicAliasMaximum ?? 0
        }
        keepAlive = connect.keepAlive

        // Session lifetime: MQTT 5 asks for one; a 3.x persistent session lives as long as the broker allows.
        let maximumExpiry = broker.settings.maximumSessionExpiryInterval
        let requestedExpiry: UInt32
        if isV5 {
            requestedExpiry = connect.properties.sessionExpiryInterval ?? 0
        } else {
            requestedExpiry = connect.cleanStart ? 0 : UInt32.max
        }
        let expiry = min(requestedExpiry, maximumExpiry)

        // Client ids are unique across the node's workers: another worker holding this one gives it up (and
        // hands its session over) before this connection attaches.
        state = .claiming(buffered: [])
        broker.claimSession(clientID: identifier, cleanStart: connect.cleanStart) { [weak self] in
            guard let self, case .claiming(let buffered) = self.state else { return }
            self.completeConnect(
                connect, identifier: identifier, assignedIdentifier: assignedIdentifier,
                requestedExpiry: requestedExpiry, expiry: expiry)
            for packet in buffered {
                self.received(packet)
            }
            self.broker.flushPending()
            if self.acceptsInput { self.connection.resumeInput() }
        }
    }

    private func completeConnect(
        _ connect: ConnectPacket, identifier: String, assignedIdentifier: String?, requestedExpiry: UInt32,
        expiry: UInt32
    ) {
        let isV5 = protocolVersion == .v5
        let (session, sessionPresent) = broker.attach(
            self, clientID: identifier, cleanStart: connect.cleanStart, version: protocolVersion,
            expiryInterval: expiry, username: username)
        state = .connected(session)
        if let will = connect.will {
            var message = ApplicationMessage(
                topic: will.topic, payload: ByteBuffer(bytes: will.payload.readableBytesView), qos: will.qos,
                retain: will.retain, publisher: identifier)
            if isV5 {
                message.properties.payloadFormatIndicator = will.properties.payloadFormatIndicator
                message.properties.contentType = will.properties.contentType
                message.properties.responseTopic = will.properties.responseTopic
                message.properties.correlationData = will.properties.correlationData
                message.properties.userProperties = will.properties.userProperties
                message.expiresAt = will.properties.messageExpiryInterval.map { broker.scheduler.now + .seconds(Int64($0)) }
            }
            session.will = Session.PendingWill(message: message, delay: isV5 ? (will.properties.willDelayInterval ?? 0) : 0)
        }

        var properties = MQTTProperties()
        if isV5 {
            properties.receiveMaximum = UInt16(clamping: broker.settings.maximumInflight)
            properties.maximumPacketSize = UInt32(clamping: broker.settings.maximumPacketSize)
            if broker.settings.maximumTopicAlias > 0 {
                properties.topicAliasMaximum = broker.settings.maximumTopicAlias
            }
            if !broker.settings.retainAvailable { properties.retainAvailable = false }
            if !broker.settings.sharedSubscriptionAvailable { properties.sharedSubscriptionAvailable = false }
            if let assignedIdentifier { properties.assignedClientIdentifier = assignedIdentifier }
            if requestedExpiry != expiry { properties.sessionExpiryInterval = expiry }
        }
        send(.connack(ConnAckPacket(sessionPresent: sessionPresent, reasonCode: .success, properties: properties)))
        logger.info(
            "client connected",
            metadata: [
                "tls.peer": "\(peerDescription)", "mqtt.version": "\(protocolVersion)",
                "mqtt.clean_start": "\(connect.cleanStart)", "mqtt.keep_alive": "\(keepAlive)",
                "mqtt.session_present": "\(sessionPresent)",
            ])
        armKeepAlive()
        if sessionPresent {
            write(session.outbound.resume(now: broker.scheduler.now), now: broker.scheduler.now)
        }
    }

    /// CONNACK with a failure, then close (§3.2.2.2). `logged`: the caller already logged why.
    private func refuse(_ reason: ReasonCode, _ message: String, logged: Bool = false) {
        if !logged {
            logger.info(
                "connection refused",
                metadata: ["tls.peer": "\(peerDescription)", "mqtt.reason": "\(reason)", "error": "\(message)"])
        }
        // The encoder maps MQTT 5 reason codes to 3.x return codes (0x86 → 4, 0x87 → 5, …).
        connection.send(.connack(ConnAckPacket(sessionPresent: false, reasonCode: reason)))
        closeConnection(publishWill: false)
    }
}
