import Logging
import MQTTCodec
import NIOConcurrencyHelpers
import NIOCore
import OpenSSLTLS

/// The verified client certificates of a TLS listener's open connections, so that a CRL loaded later can find
/// the clients it revokes and disconnect them (MQTT 5: DISCONNECT 0x98 Administrative action; 3.1.1: close).
/// Sendable: handshakes register on the event loop, reloads look on the watcher thread.
final class LiveCertificates: Sendable {
    private struct Entry {
        var channel: any Channel
        var peer: PeerCertificate
    }

    private let entries = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])
    /// Clients disconnected because a new CRL revoked their certificate.
    let disconnectedCount = NIOLockedValueBox(0)

    func add(_ channel: any Channel, peer: PeerCertificate) {
        let key = ObjectIdentifier(channel)
        entries.withLockedValue { $0[key] = Entry(channel: channel, peer: peer) }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.entries.withLockedValue { _ = $0.removeValue(forKey: key) }
        }
    }

    var count: Int { entries.withLockedValue { $0.count } }

    /// Disconnects every open connection whose certificate one of `crls` revokes (issuer name and serial); returns
    /// how many. The disconnect itself runs on each connection's event loop.
    @discardableResult
    func disconnectRevoked(by crls: [CertificateRevocationList], logger: Logger) -> Int {
        guard !crls.isEmpty else { return 0 }
        let byIssuer = Dictionary(grouping: crls, by: \.issuerDN)
        let revoked = entries.withLockedValue { entries in
            entries.values.compactMap { entry -> (entry: Entry, crl: CertificateRevocationList)? in
                let crl = byIssuer[entry.peer.issuerDN]?.first { $0.isRevoked(serialHex: entry.peer.serialHex) }
                return crl.map { (entry, $0) }
            }
        }
        for (entry, crl) in revoked {
            logger.warning(
                "client disconnected: certificate revoked",
                metadata: [
                    "tls.subject": "\(entry.peer.subjectDN)", "tls.serial": "\(entry.peer.serialHex)",
                    "tls.issuer": "\(entry.peer.issuerDN)", "revocation.crl_number": "\(crl.crlNumber ?? "-")",
                    "mqtt.reason": "administrative action (0x98)",
                ])
            let channel = entry.channel
            channel.eventLoop.execute {
                if let handler = try? channel.pipeline.syncOperations.handler(type: MQTTServerHandler.self) {
                    handler.disconnect(reason: .administrativeAction)
                } else {
                    channel.close(promise: nil)
                }
            }
        }
        if !revoked.isEmpty {
            disconnectedCount.withLockedValue { $0 += revoked.count }
        }
        return revoked.count
    }
}

/// Registers a TLS connection's verified client certificate in its listener's `LiveCertificates`.
final class LiveCertificateHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private let live: LiveCertificates

    init(live: LiveCertificates) {
        self.live = live
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted, let peer = completed.peer {
            live.add(context.channel, peer: peer)
        }
        context.fireUserInboundEventTriggered(event)
    }
}
