import NIOCore
import Testing

@testable import Worker

/// `ProxyProtocolHeader`: HAProxy's PROXY protocol v1 (text) and v2 (binary), complete, partial and invalid.
@Suite struct ProxyProtocolHeaderTests {
    private func parse(_ bytes: [UInt8]) -> ProxyProtocolHeader.Outcome {
        ProxyProtocolHeader.parse(ByteBuffer(bytes: bytes))
    }

    private func parse(_ text: String) -> ProxyProtocolHeader.Outcome {
        parse(Array(text.utf8))
    }

    private func address(_ ip: String, _ port: Int) throws -> SocketAddress {
        try SocketAddress(ipAddress: ip, port: port)
    }

    /// A v2 header: signature, version 2 and `command`, `family`, length, then `body`.
    private func v2(command: UInt8 = 1, family: UInt8, body: [UInt8]) -> [UInt8] {
        ProxyProtocolHeader.v2Signature + [0x20 | command, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)]
            + body
    }

    @Test func v1TCP4() throws {
        let header = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\r\n"
        #expect(parse(header + "MQTT bytes") == .header(length: header.utf8.count, source: try address("192.0.2.7", 56324)))
    }

    @Test func v1TCP6AndUnknown() throws {
        let header = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 8883\r\n"
        #expect(parse(header) == .header(length: header.utf8.count, source: try address("2001:db8::7", 65535)))
        #expect(parse("PROXY UNKNOWN\r\n") == .header(length: 15, source: nil))
        #expect(parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest") == .header(length: 35, source: nil))
    }

    @Test func v1ArrivingByteByByteNeedsMore() {
        let header = Array("PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\r\n".utf8)
        for end in 1..<header.count {
            #expect(parse(Array(header[..<end])) == .needMoreBytes, "after \(end) bytes")
        }
    }

    @Test(arguments: [
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\n", "PROXY TCP4 192.0.2.7 198.51.100.1 99999 1883\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 0123 1883\r\n", "PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
        "PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
        "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n", "PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 host.example 198.51.100.1 1 2\r\n", "PROXY\r\n",
    ])
    func invalidV1(text: String) {
        guard case .invalid = parse(text) else {
            Issue.record("\(text.debugDescription) was not refused: \(parse(text))")
            return
        }
    }

    @Test func v1LongerThanTheLimitIsRefusedWithoutItsEnd() {
        let tooLong = "PROXY TCP4 " + String(repeating: "1", count: 200)
        #expect(parse(tooLong) == .invalid("v1 header longer than 107 bytes"))
    }

    @Test func otherProtocolsAreRefusedAtOnce() {
        // An MQTT CONNECT, a TLS ClientHello, HTTP: refused from their first bytes, without waiting for more.
        #expect(parse([0x10]) == .invalid("not a PROXY protocol header"))
        #expect(parse([0x16, 0x03, 0x01]) == .invalid("not a PROXY protocol header"))
        #expect(parse("GET") == .invalid("not a PROXY protocol header"))
        #expect(parse("PROX") == .needMoreBytes)
        #expect(parse([0x0D, 0x0A, 0x0D]) == .needMoreBytes)
        #expect(parse([0x0D, 0x0A, 0x0A]) == .invalid("not a PROXY protocol header"))
        #expect(parse([]) == .needMoreBytes)
    }

    @Test func v2IPv4AndIPv6() throws {
        let four = v2(family: 0x11, body: [192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x07, 0x5B])
        #expect(parse(four + [0x10, 0x00]) == .header(length: 28, source: try address("192.0.2.7", 56324)))
        let source: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [7]
        let destination: [UInt8] = [UInt8](repeating: 0, count: 15) + [1]
        let six = v2(family: 0x21, body: source + destination + [0x01, 0xBB, 0x22, 0xB3] + [0x04, 0x00, 0x01, 0x61])
        #expect(parse(six) == .header(length: 16 + 36 + 4, source: try address("2001:db8::7", 443)))
    }

    @Test func v2LocalUnspecAndUnixUseTheRealAddress() {
        #expect(parse(v2(command: 0, family: 0x00, body: [])) == .header(length: 16, source: nil))
        #expect(parse(v2(command: 0, family: 0x11, body: [UInt8](repeating: 0, count: 12))) == .header(length: 28, source: nil))
        #expect(parse(v2(family: 0x00, body: [])) == .header(length: 16, source: nil))
        #expect(parse(v2(family: 0x31, body: [UInt8](repeating: 0, count: 216))) == .header(length: 232, source: nil))
    }

    @Test func v2Partial() {
        let header = v2(family: 0x11, body: [192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x07, 0x5B])
        for end in 1..<header.count {
            #expect(parse(Array(header[..<end])) == .needMoreBytes, "after \(end) bytes")
        }
    }

    @Test func invalidV2() {
        var badVersion = v2(family: 0x11, body: [UInt8](repeating: 1, count: 12))
        badVersion[12] = 0x31
        #expect(parse(badVersion) == .invalid("v2 header with version 3"))
        #expect(parse(v2(command: 2, family: 0x11, body: [])) == .invalid("v2 header with unknown command 2"))
        #expect(parse(v2(family: 0x11, body: [1, 2, 3, 4])) == .invalid("v2 header shorter than its addresses"))
        #expect(parse(v2(family: 0x12, body: [UInt8](repeating: 1, count: 12)))
            == .invalid("v2 header for a transport other than TCP"))
        #expect(parse(v2(family: 0x41, body: [])) == .invalid("v2 header with unknown address family 4"))
        let tooLong = ProxyProtocolHeader.v2Signature + [0x21, 0x11, 0x08, 0x01]
        #expect(parse(tooLong) == .invalid("v2 header longer than 2064 bytes"))
    }
}
