/// Validation of MQTT UTF-8 encoded strings (MQTT-1.5.4-1, MQTT-1.5.4-2): well-formed UTF-8 per RFC 3629, so no
/// overlong forms, no surrogates (U+D800...U+DFFF) and nothing above U+10FFFF, and no U+0000.
enum MQTTUTF8 {
    enum Validity {
        case valid
        case illFormed
        case containsNull
    }

    static func validate(_ bytes: UnsafeRawBufferPointer) -> Validity {
        let count = bytes.count
        var index = 0
        while index < count {
            // ASCII fast path: eight bytes at a time with no high bit and no zero byte.
            if index + 8 <= count {
                let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                let hasHighBit = word & 0x8080_8080_8080_8080 != 0
                let hasZero = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080 != 0
                if !hasHighBit && !hasZero {
                    index += 8
                    continue
                }
            }
            let lead = bytes[index]
            if lead < 0x80 {
                if lead == 0 { return .containsNull }
                index += 1
                continue
            }
            let length: Int
            var lowerBound: UInt8 = 0x80
            var upperBound: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF:
                length = 2
            case 0xE0:
                length = 3
                lowerBound = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF:
                length = 3
            case 0xED:
                length = 3
                upperBound = 0x9F
            case 0xF0:
                length = 4
                lowerBound = 0x90
            case 0xF1...0xF3:
                length = 4
            case 0xF4:
                length = 4
                upperBound = 0x8F
            default:
                return .illFormed
            }
            guard index + length <= count else { return .illFormed }
            let second = bytes[index + 1]
            guard second >= lowerBound && second <= upperBound else { return .illFormed }
            var offset = 2
            while offset < length {
                guard bytes[index + offset] & 0xC0 == 0x80 else { return .illFormed }
                offset += 1
            }
            index += length
        }
        return .valid
    }

    /// Whether `bytes` contain the MQTT wildcard characters '+' or '#'.
    static func containsWildcard(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for byte in bytes where byte == UInt8(ascii: "+") || byte == UInt8(ascii: "#") {
            return true
        }
        return false
    }
}
