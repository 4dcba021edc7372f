/// A message on the socketpair between the supervisor and one child.
///
/// Wire form: a 4-byte big-endian length of what follows, one type byte, then a UTF-8 payload.
/// EOF on the channel means the other side is gone: a child then quits gracefully.
public enum ChildMessage: Sendable, Equatable {
    // Supervisor → child.
    /// Stop accepting, close clients, exit. `deadlineSeconds` is when the supervisor will SIGKILL.
    case quit(deadlineSeconds: Int)
    /// Re-read the configuration snapshot at this path.
    case reload(configurationSnapshot: String)
    /// Fetcher: fetch every CRL and OCSP response now (`gatehouse refresh`).
    case refresh

    // Child → supervisor.
    /// The child is serving: a worker has bound every listener, a fetcher has started its loop.
    case ready
    /// A child could not start and should not be respawned quickly (e.g. a listener address is unusable).
    case fatal(reason: String)
    /// The child's counters (JSON of `ChildStatistics`), about once a second, for `status` and the metrics.
    case statistics(json: String)

    enum Kind: UInt8 {
        case quit = 1
        case reload = 2
        case ready = 3
        case fatal = 4
        case refresh = 5
        case statistics = 6
    }

    /// The largest frame either side accepts; the channel carries commands, not data.
    public static let maximumFrameSize = 64 * 1024

    public func encoded() -> [UInt8] {
        let kind: Kind
        let payload: [UInt8]
        switch self {
        case .quit(let deadline):
            kind = .quit
            payload = Array(String(deadline).utf8)
        case .reload(let path):
            kind = .reload
            payload = Array(path.utf8)
        case .ready:
            kind = .ready
            payload = []
        case .refresh:
            kind = .refresh
            payload = []
        case .statistics(let json):
            kind = .statistics
            payload = Array(json.utf8.prefix(Self.maximumFrameSize - 1))
        case .fatal(let reason):
            kind = .fatal
            payload = Array(reason.utf8.prefix(Self.maximumFrameSize - 1))
        }
        let length = UInt32(payload.count + 1)
        return [
            UInt8(truncatingIfNeeded: length >> 24), UInt8(truncatingIfNeeded: length >> 16),
            UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length),
            kind.rawValue,
        ] + payload
    }
}

/// Errors reading the child channel; any of them ends the channel.
public enum ChildMessageDecodingError: Error, Sendable, Equatable {
    case frameTooLarge(Int)
    case emptyFrame
    case unknownKind(UInt8)
    case invalidPayload(kind: UInt8)
}

/// Accumulates bytes from the channel and yields whole messages; split reads are fine.
public struct ChildMessageDecoder: Sendable {
    private var buffer: [UInt8] = []

    public init() {}

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete message, or nil when more bytes are needed.
    public mutating func next() throws(ChildMessageDecodingError) -> ChildMessage? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
        guard length > 0 else { throw .emptyFrame }
        guard length <= ChildMessage.maximumFrameSize else { throw .frameTooLarge(length) }
        guard buffer.count >= 4 + length else { return nil }
        let kindByte = buffer[4]
        let payload = Array(buffer[5..<(4 + length)])
        buffer.removeFirst(4 + length)
        guard let kind = ChildMessage.Kind(rawValue: kindByte) else { throw .unknownKind(kindByte) }
        let text = String(decoding: payload, as: UTF8.self)
        switch kind {
        case .quit:
            guard let deadline = Int(text), deadline >= 0 else { throw .invalidPayload(kind: kindByte) }
            return .quit(deadlineSeconds: deadline)
        case .reload:
            guard !text.isEmpty else { throw .invalidPayload(kind: kindByte) }
            return .reload(configurationSnapshot: text)
        case .ready:
            guard payload.isEmpty else { throw .invalidPayload(kind: kindByte) }
            return .ready
        case .fatal:
            return .fatal(reason: text)
        case .refresh:
            guard payload.isEmpty else { throw .invalidPayload(kind: kindByte) }
            return .refresh
        case .statistics:
            return .statistics(json: text)
        }
    }
}
