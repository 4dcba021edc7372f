/// SipHash-2-4 (Aumasson and Bernstein) of a short byte string under a 64-bit key (used as both halves of the
/// 128-bit key): a keyed hash whose outputs an attacker who does not know the key cannot steer, for the
/// per-address connection counters that several processes share (`SharedListenerCounters`). Swift's `Hasher` is
/// seeded per process, so it cannot be shared.
enum SipHash {
    static func hash(_ bytes: [UInt8], key: UInt64) -> UInt64 {
        hash(bytes, k0: key, k1: key ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// SipHash-2-4 with the 128-bit key `k0`, `k1` (each read little-endian, as in the reference).
    static func hash(_ bytes: [UInt8], k0: UInt64, k1: UInt64) -> UInt64 {
        var v0: UInt64 = 0x736f_6d65_7073_6575 ^ k0
        var v1: UInt64 = 0x646f_7261_6e64_6f6d ^ k1
        var v2: UInt64 = 0x6c79_6765_6e65_7261 ^ k0
        var v3: UInt64 = 0x7465_6462_7974_6573 ^ k1

        func round() {
            v0 &+= v1; v1 = v1.rotatedLeft(13); v1 ^= v0; v0 = v0.rotatedLeft(32)
            v2 &+= v3; v3 = v3.rotatedLeft(16); v3 ^= v2
            v0 &+= v3; v3 = v3.rotatedLeft(21); v3 ^= v0
            v2 &+= v1; v1 = v1.rotatedLeft(17); v1 ^= v2; v2 = v2.rotatedLeft(32)
        }
        func compress(_ word: UInt64) {
            v3 ^= word
            round()
            round()
            v0 ^= word
        }

        var index = 0
        while index + 8 <= bytes.count {
            var word: UInt64 = 0
            for offset in 0..<8 { word |= UInt64(bytes[index + offset]) << (8 * offset) }
            compress(word)
            index += 8
        }
        var last = UInt64(truncatingIfNeeded: bytes.count) << 56
        for offset in 0..<(bytes.count - index) { last |= UInt64(bytes[index + offset]) << (8 * offset) }
        compress(last)
        v2 ^= 0xFF
        for _ in 0..<4 { round() }
        return v0 ^ v1 ^ v2 ^ v3
    }
}

extension UInt64 {
    fileprivate func rotatedLeft(_ count: UInt64) -> UInt64 {
        (self << count) | (self >> (64 - count))
    }
}
