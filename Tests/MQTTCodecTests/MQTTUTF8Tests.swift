import Testing

@testable import MQTTCodec

@Suite struct MQTTUTF8Tests {
    private func validity(_ bytes: [UInt8]) -> MQTTUTF8.Validity {
        bytes.withUnsafeBytes { MQTTUTF8.validate($0) }
    }

    @Test func wellFormed() {
        let samples = [
            "", "a", "hello world, long enough for the fast path", "ü", "€", "𝄞", "日本語/テスト",
            "\u{FFFF}", "\u{10FFFF}",
        ]
        for sample in samples {
            #expect(validity(Array(sample.utf8)) == .valid, "\(sample)")
        }
    }

    @Test func nullIsRejected() {
        #expect(validity([0x00]) == .containsNull)
        #expect(validity(Array("abcdefgh".utf8) + [0x00] + Array("ijklmnop".utf8)) == .containsNull)
        #expect(validity(Array("abcdefg".utf8) + [0x00]) == .containsNull)
    }

    @Test func illFormedIsRejected() {
        let samples: [[UInt8]] = [
            [0x80],  // lone continuation
            [0xC0, 0x80],  // overlong NUL
            [0xC1, 0xBF],  // overlong
            [0xE0, 0x80, 0x80],  // overlong three-byte
            [0xF0, 0x80, 0x80, 0x80],  // overlong four-byte
            [0xED, 0xA0, 0x80],  // U+D800
            [0xED, 0xBF, 0xBF],  // U+DFFF
            [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
            [0xF5, 0x80, 0x80, 0x80],
            [0xFF],
            [0xE2, 0x82],  // truncated
            [0xE2, 0x28, 0xA1],  // bad continuation
            Array("abcdefgh".utf8) + [0xC3],
        ]
        for sample in samples {
            #expect(validity(sample) == .illFormed, "\(sample)")
        }
    }

    @Test func agreesWithTheStandardLibrary() {
        var generator = PacketGenerator(seed: 42)
        for _ in 0..<20_000 {
            let count = generator.int(0...12)
            let bytes = (0..<count).map { _ in
                generator.pick([UInt8(0x41), 0x00, 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xA0, 0x90, 0x8F, 0x9F])
            }
            let standard = String(validating: bytes, as: UTF8.self)
            let expected: MQTTUTF8.Validity =
                standard == nil ? .illFormed : (bytes.contains(0) ? .containsNull : .valid)
            let actual = validity(bytes)
            if expected == .illFormed {
                #expect(actual != .valid, "\(bytes)")
            } else {
                #expect(actual == expected, "\(bytes)")
            }
        }
    }
}
