import Foundation

/// SplitMix64: a small, fast generator whose whole sequence follows from its seed, so every fuzz run feeds the
/// same inputs and a failure names an input that can be rebuilt.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }

    /// `count` random bytes, eight per step.
    mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(count + 8)
        while result.count < count {
            withUnsafeBytes(of: next().littleEndian) { result += $0 }
        }
        result.removeLast(result.count - count)
        return result
    }
}

/// The families of bad input the revocation fuzz tests feed to the fetcher and the workers. Every family is a
/// pure function of its arguments and seed. Stateless.
enum FuzzInputs {
    /// Random bytes of lengths 0, 1, small and 64 KiB, each also starting with a SEQUENCE tag and a plausible
    /// length byte so the DER parser gets past the first byte; then every single byte value.
    static func garbage(seed: UInt64) -> [[UInt8]] {
        var random = SeededRandom(seed: seed)
        var inputs: [[UInt8]] = []
        for length in [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 64, 100, 255, 256, 511, 1000, 4096, 65_536] {
            for _ in 0..<8 {
                let bytes = random.bytes(length)
                inputs.append(bytes)
                if length >= 2 {
                    var sequence = bytes
                    sequence[0] = 0x30
                    sequence[1] = length - 2 < 0x80 ? UInt8(length - 2) : 0x80 | UInt8.random(in: 1...4, using: &random)
                    inputs.append(sequence)
                }
            }
        }
        for value in 0...255 {
            inputs.append([UInt8(value)])
        }
        return inputs
    }

    /// What a misconfigured server or a captive portal sends instead: error pages, plain text, JSON, and a CRL's
    /// base64 without its PEM armour.
    static func textBodies(validDER: [UInt8]) -> [[UInt8]] {
        let texts = [
            "",
            " ",
            "\n",
            "\r\n\r\n",
            "OK",
            "Not Found",
            "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
                + "<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n",
            "<html><body><h1>500 Internal Server Error</h1></body></html>",
            "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
                + "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
                + "</body>\r\n</html>\r\n",
            "<html><head><meta http-equiv=\"refresh\" content=\"0; url=https://portal.example/login\"></head></html>",
            "{\"error\":\"not found\",\"status\":404}",
            "\u{FEFF}-----BEGIN X509 CRL-----",
            "-----BEGIN X509 CRL-----",
            "-----END X509 CRL-----\n",
            "null\0bytes\0in\0text",
            String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 200),
            Data(validDER).base64EncodedString(),
            Data(validDER).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed]) + "\n",
        ]
        return texts.map { Array($0.utf8) }
    }

    /// Every proper prefix of `bytes`, from empty to all but the last byte.
    static func prefixes(of bytes: [UInt8]) -> [[UInt8]] {
        (0..<bytes.count).map { Array(bytes.prefix($0)) }
    }

    /// `count` mutants of `original`: bit flips, random and boundary byte values, small deletions, insertions,
    /// duplicated chunks, swaps and off-by-one length bytes; each mutant has one to three of them.
    static func mutations(of original: [UInt8], count: Int, seed: UInt64) -> [[UInt8]] {
        var random = SeededRandom(seed: seed)
        let boundaries: [UInt8] = [0x00, 0x01, 0x02, 0x30, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xA0, 0xFF]
        var inputs: [[UInt8]] = []
        inputs.reserveCapacity(count)
        while inputs.count < count {
            var bytes = original
            for _ in 0..<Int.random(in: 1...3, using: &random) where !bytes.isEmpty {
                let position = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<9, using: &random) {
                case 0:
                    bytes[position] ^= 1 << UInt8.random(in: 0...7, using: &random)
                case 1:
                    bytes[position] = UInt8.random(in: 0...255, using: &random)
                case 2:
                    bytes[position] = boundaries[Int.random(in: 0..<boundaries.count, using: &random)]
                case 3:
                    for _ in 0..<Int.random(in: 2...8, using: &random) {
                        let flipped = Int.random(in: 0..<bytes.count, using: &random)
                        bytes[flipped] ^= 1 << UInt8.random(in: 0...7, using: &random)
                    }
                case 4:
                    let length = min(Int.random(in: 1...16, using: &random), bytes.count - position)
                    bytes.removeSubrange(position..<(position + length))
                case 5:
                    bytes.insert(contentsOf: random.bytes(Int.random(in: 1...16, using: &random)), at: position)
                case 6:
                    let length = min(Int.random(in: 1...64, using: &random), bytes.count - position)
                    let chunk = Array(bytes[position..<(position + length)])
                    bytes.insert(contentsOf: chunk, at: Int.random(in: 0...bytes.count, using: &random))
                case 7:
                    bytes.swapAt(position, Int.random(in: 0..<bytes.count, using: &random))
                default:
                    bytes[position] = Bool.random(using: &random) ? bytes[position] &+ 1 : bytes[position] &- 1
                }
            }
            if bytes != original {
                inputs.append(bytes)
            }
        }
        return inputs
    }

    /// `der` in a PEM block with `label`, 64 base64 characters a line.
    static func pem(_ label: String, _ der: [UInt8]) -> [UInt8] {
        let body = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return Array("-----BEGIN \(label)-----\n\(body)\n-----END \(label)-----\n".utf8)
    }

    /// `count` bytes made of one random 64 KiB block repeated: as hostile as fresh randomness to a parser, and
    /// cheap to build at 32 MiB in a debug build.
    static func hugeGarbage(count: Int, seed: UInt64) -> [UInt8] {
        var random = SeededRandom(seed: seed)
        let block = random.bytes(64 << 10)
        var result = [UInt8]()
        result.reserveCapacity(count)
        while result.count < count {
            result += block.prefix(count - result.count)
        }
        return result
    }
}
