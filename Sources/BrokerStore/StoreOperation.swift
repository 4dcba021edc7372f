/// What a pending write is about. Two operations with the same key coalesce in a batch: the later one wins.
enum StoreKey: Hashable, Sendable {
    case retained(topic: String)
    case session(clientID: String)
}

/// One write waiting in the `WriteBatcher`; each replaces the whole stored state of its key.
enum StoreOperation: Sendable {
    case setRetained(StoredMessage)
    case removeRetained(topic: String)
    case saveSession(StoredSession)
    case deleteSession(clientID: String)

    var key: StoreKey {
        switch self {
        case .setRetained(let message): .retained(topic: message.topic)
        case .removeRetained(let topic): .retained(topic: topic)
        case .saveSession(let session): .session(clientID: session.clientID)
        case .deleteSession(let clientID): .session(clientID: clientID)
        }
    }
}
