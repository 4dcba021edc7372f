import NIOConcurrencyHelpers
import NIOCore

/// The worker's open client connections, so a graceful quit can close them all and wait for them.
/// Sendable: touched from the accept path on the event loops and from the shutdown path.
final class ConnectionRegistry: Sendable {
    private let channels = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLockedValue { $0[key] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.channels.withLockedValue { _ = $0.removeValue(forKey: key) }
        }
    }

    var count: Int { channels.withLockedValue { $0.count } }

    var all: [any Channel] { channels.withLockedValue { Array($0.values) } }
}
