/// Reads ASN.1 tag-length-value elements from bytes without OpenSSL: enough to look at the outline of a CRL or an
/// OCSP response (count a CRL's entries before OpenSSL allocates them, take a response apart to re-encode it).
///
/// Definite lengths (DER), and the indefinite lengths BER allows on constructed elements (which OpenSSL's parser
/// accepts too), nested at most `maximumDepth` deep. Every length is checked against the bytes it must fit in.
/// A plain value over borrowed bytes; the caller keeps them alive.
struct DERReader {
    /// One element: `tag` (the first identifier byte), `contents` (indices into the bytes; for an indefinite length,
    /// up to the end-of-contents octets) and `end` (the index after the whole element).
    struct Element {
        var tag: UInt8
        var start: Int
        var contents: Range<Int>
        var end: Int

        var isConstructed: Bool { tag & 0x20 != 0 }
    }

    /// Why the bytes are not what was expected, in words.
    struct Failure: Error, Equatable {
        var message: String
    }

    static let maximumDepth = 32

    let bytes: UnsafeBufferPointer<UInt8>

    /// The element that starts at `offset` and must end by `limit`.
    func element(at offset: Int, limit: Int, depth: Int = 0) throws(Failure) -> Element {
        guard depth <= Self.maximumDepth else {
            throw Failure(message: "nested more than \(Self.maximumDepth) deep")
        }
        var cursor = offset
        guard cursor < limit else {
            throw Failure(message: "truncated at byte \(offset)")
        }
        let tag = bytes[cursor]
        cursor += 1
        if tag & 0x1f == 0x1f {
            // A high tag number: more identifier bytes while the top bit is set (at most four).
            var extra = 0
            while true {
                guard cursor < limit, extra < 4 else {
                    throw Failure(message: "bad tag at byte \(offset)")
                }
                let more = bytes[cursor] & 0x80 != 0
                cursor += 1
                extra += 1
                if !more { break }
            }
        }
        guard cursor < limit else {
            throw Failure(message: "truncated length at byte \(offset)")
        }
        let first = bytes[cursor]
        cursor += 1
        if first == 0x80 {
            guard tag & 0x20 != 0 else {
                throw Failure(message: "indefinite length on a primitive element at byte \(offset)")
            }
            // Children up to the end-of-contents octets (00 00).
            let contentsStart = cursor
            while true {
                guard cursor + 1 < limit else {
                    throw Failure(message: "no end-of-contents for the element at byte \(offset)")
                }
                if bytes[cursor] == 0 && bytes[cursor + 1] == 0 {
                    return Element(tag: tag, start: offset, contents: contentsStart..<cursor, end: cursor + 2)
                }
                cursor = try element(at: cursor, limit: limit, depth: depth + 1).end
            }
        }
        var length = 0
        if first < 0x80 {
            length = Int(first)
        } else {
            let count = Int(first & 0x7f)
            guard count <= 8, first != 0xff else {
                throw Failure(message: "bad length at byte \(offset)")
            }
            for _ in 0..<count {
                guard cursor < limit else {
                    throw Failure(message: "truncated length at byte \(offset)")
                }
                guard length <= (Int.max >> 8) else {
                    throw Failure(message: "length too large at byte \(offset)")
                }
                length = length << 8 | Int(bytes[cursor])
                cursor += 1
            }
        }
        guard length <= limit - cursor else {
            throw Failure(message: "element at byte \(offset) runs past its end (\(length) bytes)")
        }
        return Element(tag: tag, start: offset, contents: cursor..<(cursor + length), end: cursor + length)
    }

    /// The children of a constructed element, in order.
    func children(of parent: Element, depth: Int = 0) throws(Failure) -> [Element] {
        var result: [Element] = []
        var cursor = parent.contents.lowerBound
        while cursor < parent.contents.upperBound {
            let child = try element(at: cursor, limit: parent.contents.upperBound, depth: depth + 1)
            result.append(child)
            cursor = child.end
        }
        return result
    }

    /// How many children a constructed element has, without keeping them (for lists of millions).
    func childCount(of parent: Element, depth: Int = 0) throws(Failure) -> Int {
        var count = 0
        var cursor = parent.contents.lowerBound
        while cursor < parent.contents.upperBound {
            cursor = try element(at: cursor, limit: parent.contents.upperBound, depth: depth + 1).end
            count += 1
        }
        return count
    }

    /// The bytes of an element, header included.
    func encoding(of element: Element) -> [UInt8] {
        Array(bytes[element.start..<element.end])
    }
}

/// DER encoding of lengths and elements, for re-encoding what `DERReader` took apart.
enum DERWriter {
    static func element(tag: UInt8, contents: [UInt8]) -> [UInt8] {
        [tag] + length(contents.count) + contents
    }

    static func length(_ count: Int) -> [UInt8] {
        guard count >= 0x80 else {
            return [UInt8(count)]
        }
        var bytes: [UInt8] = []
        var rest = count
        while rest > 0 {
            bytes.insert(UInt8(rest & 0xff), at: 0)
            rest >>= 8
        }
        return [0x80 | UInt8(bytes.count)] + bytes
    }
}
