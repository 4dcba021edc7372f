/// Byte-level helpers shared by the topic types and the tries.
///
/// MQTT compares topics byte for byte, without Unicode normalisation (MQTT-4.7.3-4), while
/// `String.==` compares canonical equivalence; everything here therefore works on UTF-8 bytes.
@usableFromInline
enum TopicBytes {
    @inlinable static var slash: UInt8 { UInt8(ascii: "/") }
    @inlinable static var plus: UInt8 { UInt8(ascii: "+") }
    @inlinable static var hash: UInt8 { UInt8(ascii: "#") }
    @inlinable static var dollar: UInt8 { UInt8(ascii: "$") }
    static let maximumByteCount = 65_535

    /// Whether `count` bytes at `a` and `b` are equal.
    @inlinable
    static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count: Int) -> Bool {
        var offset = 0
        while offset &+ 8 <= count {
            if a.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                != b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            {
                return false
            }
            offset &+= 8
        }
        while offset < count {
            if a.load(fromByteOffset: offset, as: UInt8.self) != b.load(fromByteOffset: offset, as: UInt8.self) {
                return false
            }
            offset &+= 1
        }
        return true
    }

    @inlinable
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard a.count > 0, let pa = a.baseAddress, let pb = b.baseAddress else { return true }
        return equal(pa, pb, count: a.count)
    }

    /// Whether the level is exactly the one byte `byte`.
    @inlinable
    static func isSingleByte(_ level: UnsafeRawBufferPointer, _ byte: UInt8) -> Bool {
        level.count == 1 && level[0] == byte
    }

    /// Calls `body` with each `/`-separated level of `bytes`, in order; there is always at least one
    /// (possibly empty) level. `body` returns `false` to stop early.
    @inlinable
    static func forEachLevel(
        _ bytes: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer, _ isLast: Bool) throws -> Bool
    ) rethrows {
        var start = 0
        var index = 0
        let end = bytes.count
        while index < end {
            if bytes[index] == slash {
                guard try body(UnsafeRawBufferPointer(rebasing: bytes[start..<index]), false) else { return }
                start = index &+ 1
            }
            index &+= 1
        }
        _ = try body(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), true)
    }

    /// The number of `/`-separated levels, at least one.
    @inlinable
    static func levelCount(_ bytes: UnsafeRawBufferPointer) -> Int {
        var count = 1
        for byte in bytes where byte == slash {
            count &+= 1
        }
        return count
    }
}

extension String {
    /// Runs `body` over the string's UTF-8 bytes without copying native strings.
    @inlinable
    func withUTF8Bytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        var copy = self
        return try copy.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }

    /// Byte-wise equality (no Unicode canonical equivalence).
    @inlinable
    func utf8Equals(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }
        return withUTF8Bytes { a in other.withUTF8Bytes { b in TopicBytes.equal(a, b) } }
    }

    /// Feeds the UTF-8 bytes to `hasher`, consistent with `utf8Equals`.
    func hashUTF8(into hasher: inout Hasher) {
        withUTF8Bytes { bytes in
            hasher.combine(bytes.count)
            hasher.combine(bytes: bytes)
        }
    }
}
