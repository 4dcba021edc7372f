import NIOCore

/// Parses the PROXY protocol header (HAProxy's spec, versions 1 and 2) at the start of a connection.
///
/// Stateless and pure: given the bytes received so far, it says whether they hold a complete header (how long it
/// is and which client it names), need more bytes, or cannot be one. Bytes that cannot start a header are refused
/// at once, without waiting for more.
enum ProxyProtocolHeader {
    enum Outcome: Equatable {
        case needMoreBytes
        /// A complete header of `length` bytes. `source` is the client it names; `nil` when the header says the
        /// connection is the proxy's own (v1 `UNKNOWN`, v2 `LOCAL`, or an address family we do not carry), in
        /// which case the socket's own peer address counts.
        case header(length: Int, source: SocketAddress?)
        case invalid(String)
    }

    /// v1 headers are at most 107 bytes, CRLF included (spec 2.1).
    static let maximumV1Length = 107
    /// v2: the 16-byte fixed part plus at most this many bytes of addresses and TLVs (the spec allows 65535;
    /// real proxies send well under 1 KiB).
    static let maximumV2PayloadLength = 2048
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    private static let v1Prefix = Array("PROXY ".utf8)

    static func parse(_ bytes: ByteBuffer) -> Outcome {
        let view = Array(bytes.readableBytesView.prefix(16 + maximumV2PayloadLength))
        if view.isEmpty { return .needMoreBytes }
        if view[0] == v2Signature[0] {
            let known = min(view.count, v2Signature.count)
            guard Array(view.prefix(known)) == Array(v2Signature.prefix(known)) else {
                return .invalid("not a PROXY protocol header")
            }
            return known < v2Signature.count ? .needMoreBytes : parseV2(view)
        }
        let known = min(view.count, v1Prefix.count)
        guard Array(view.prefix(known)) == Array(v1Prefix.prefix(known)) else {
            return .invalid("not a PROXY protocol header")
        }
        return parseV1(view)
    }

    // MARK: Version 1

    private static func parseV1(_ bytes: [UInt8]) -> Outcome {
        guard let newline = bytes.prefix(maximumV1Length).firstIndex(of: 0x0A) else {
            return bytes.count >= maximumV1Length ? .invalid("v1 header longer than 107 bytes") : .needMoreBytes
        }
        guard newline > 0, bytes[newline - 1] == 0x0D else { return .invalid("v1 header does not end in CRLF") }
        let line = String(decoding: bytes[..<(newline - 1)], as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        let length = newline + 1
        guard fields.count >= 2 else { return .invalid("v1 header without a protocol") }
        if fields[1] == "UNKNOWN" {
            return .header(length: length, source: nil)
        }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6" else {
            return .invalid("v1 header is not 'PROXY TCP4|TCP6 src dst sport dport'")
        }
        let isIPv6 = fields[1] == "TCP6"
        guard fields[2].contains(":") == isIPv6, fields[3].contains(":") == isIPv6,
            let sourcePort = port(fields[4]), port(fields[5]) != nil,
            let source = try? SocketAddress(ipAddress: fields[2], port: sourcePort),
            (try? SocketAddress(ipAddress: fields[3], port: 0)) != nil
        else {
            return .invalid("v1 header with an invalid address or port")
        }
        return .header(length: length, source: source)
    }

    /// A decimal port 0-65535 without sign or leading zeros.
    private static func port(_ text: String) -> Int? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
            text == "0" || !text.hasPrefix("0"), let value = Int(text), value <= 65535
        else { return nil }
        return value
    }

    // MARK: Version 2

    private static func parseV2(_ bytes: [UInt8]) -> Outcome {
        guard bytes.count >= 16 else { return .needMoreBytes }
        let versionAndCommand = bytes[12]
        let familyAndProtocol = bytes[13]
        let payloadLength = Int(bytes[14]) << 8 | Int(bytes[15])
        guard versionAndCommand >> 4 == 2 else { return .invalid("v2 header with version \(versionAndCommand >> 4)") }
        let command = versionAndCommand & 0x0F
        guard command <= 1 else { return .invalid("v2 header with unknown command \(command)") }
        guard payloadLength <= maximumV2PayloadLength else {
            return .invalid("v2 header longer than \(16 + maximumV2PayloadLength) bytes")
        }
        guard bytes.count >= 16 + payloadLength else { return .needMoreBytes }
        let length = 16 + payloadLength
        // LOCAL: the proxy's own connection (a health check); the real addresses count.
        if command == 0 { return .header(length: length, source: nil) }
        let family = familyAndProtocol >> 4
        let transport = familyAndProtocol & 0x0F
        let payload = Array(bytes[16..<length])
        switch family {
        case 0x1, 0x2:
            guard transport == 0x1 else { return .invalid("v2 header for a transport other than TCP") }
            let addressLength = family == 0x1 ? 4 : 16
            guard payload.count >= 2 * addressLength + 4 else { return .invalid("v2 header shorter than its addresses") }
            let portOffset = 2 * addressLength
            let sourcePort = Int(payload[portOffset]) << 8 | Int(payload[portOffset + 1])
            let packed = ByteBuffer(bytes: payload[0..<addressLength])
            guard let source = try? SocketAddress(packedIPAddress: packed, port: sourcePort) else {
                return .invalid("v2 header with an invalid source address")
            }
            return .header(length: length, source: source)
        case 0x0, 0x3:
            // UNSPEC or a Unix socket on the proxy's side: nothing we can use, the real address counts.
            return .header(length: length, source: nil)
        default:
            return .invalid("v2 header with unknown address family \(family)")
        }
    }
}
