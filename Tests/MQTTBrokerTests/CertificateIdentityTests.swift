import Logging
import MQTTBroker
import MQTTCodec
import NIOCore
import Testing

/// `peer_cert_as_username` / `peer_cert_as_clientid`: a configured field the client certificate lacks (or a
/// missing certificate) refuses CONNECT; the CONNECT's own username and client id are never used instead.
@MainActor
@Suite struct CertificateIdentityTests {
    private func connect(
        _ h: Harness, identity: ConnectionController.CertificateIdentity, version: MQTTProtocolVersion,
        clientID: String = "victim", username: String? = "admin"
    ) -> RecordingConnection {
        let connection = RecordingConnection()
        let controller = ConnectionController(
            broker: h.broker, connection: connection, listenerAllowsAnonymous: true, certificateIdentity: identity,
            logger: Logger(label: "test"))
        controller.start()
        controller.received(
            .connect(
                ConnectPacket(
                    protocolVersion: version, clientIdentifier: clientID, cleanStart: true, keepAlive: 0,
                    username: username)))
        h.broker.flushPending()
        return connection
    }

    @Test(arguments: [MQTTProtocolVersion.v5, .v3_1_1])
    func missingFieldRefusesTheConnect(version: MQTTProtocolVersion) {
        let h = Harness()
        let victim = h.connect("victim", version: version)
        let connection = connect(
            h, identity: .init(username: nil, clientID: nil, missing: ["peer_cert_as_clientid = cn (no client certificate)"]),
            version: version)
        #expect(connection.sent == [.connack(ConnAckPacket(sessionPresent: false, reasonCode: .notAuthorized))])
        #expect(connection.isClosed)
        #expect(!victim.connection.isClosed, "the session of the client id it claimed was taken over")
        // On the wire 3.1.1 gets return code 5 (not authorized), MQTT 5 reason 0x87.
        var bytes = ByteBuffer()
        connection.sent[0].encode(version: version, into: &bytes)
        #expect(Array(bytes.readableBytesView) == [0x20, version == .v5 ? 0x03 : 0x02, 0x00, version == .v5 ? 0x87 : 0x05]
            + (version == .v5 ? [0x00] : []))
    }

    @Test func presentFieldsAreTheIdentity() {
        let h = Harness()
        let connection = connect(h, identity: .init(username: "alice", clientID: "alice-cert"), version: .v5)
        guard case .connack(let connack)? = connection.sent.first else {
            Issue.record("no CONNACK: \(connection.sent)")
            return
        }
        #expect(connack.reasonCode == .success)
        #expect(!connection.isClosed)
    }
}
