/// Just enough DER to take a valid CRL or OCSP response apart and put it back together with one element replaced
/// (single-byte tags, definite lengths). Test-only: it never decides whether anything is valid, it only builds
/// inputs and reads back the revoked serials of a CRL the code under test accepted. Stateless.
enum DERWalker {
    /// One tag-length-value inside a byte array.
    struct Element {
        var tag: UInt8
        /// Where the whole element (header and content) lies.
        var range: Range<Int>
        /// Where its content lies.
        var content: Range<Int>
    }

    /// The element starting at `offset`, or nil if the header is not a definite-length one that fits.
    static func element(in bytes: [UInt8], at offset: Int) -> Element? {
        guard offset + 2 <= bytes.count else { return nil }
        let tag = bytes[offset]
        let first = Int(bytes[offset + 1])
        var length = 0
        var contentStart = offset + 2
        if first < 0x80 {
            length = first
        } else {
            let count = first & 0x7F
            guard count >= 1, count <= 4, contentStart + count <= bytes.count else { return nil }
            for byte in bytes[contentStart..<(contentStart + count)] {
                length = length << 8 | Int(byte)
            }
            contentStart += count
        }
        guard contentStart + length <= bytes.count else { return nil }
        let end = contentStart + length
        return Element(tag: tag, range: offset..<end, content: contentStart..<end)
    }

    /// The elements that make up `parent`'s content (for a SEQUENCE, an explicit tag, or an OCTET STRING that
    /// wraps DER); nil if the content is not a run of whole elements.
    static func children(of parent: Element, in bytes: [UInt8]) -> [Element]? {
        var result: [Element] = []
        var offset = parent.content.lowerBound
        while offset < parent.content.upperBound {
            guard let child = element(in: bytes, at: offset), child.range.upperBound <= parent.content.upperBound
            else { return nil }
            result.append(child)
            offset = child.range.upperBound
        }
        return result
    }

    /// The element at `path` (child indexes from the outermost element).
    static func element(in bytes: [UInt8], path: [Int]) -> Element? {
        guard var current = element(in: bytes, at: 0) else { return nil }
        for index in path {
            guard let children = children(of: current, in: bytes), index < children.count else { return nil }
            current = children[index]
        }
        return current
    }

    /// The definite-length header for `tag` and a content of `length` bytes.
    static func header(tag: UInt8, length: Int) -> [UInt8] {
        guard length >= 0x80 else { return [tag, UInt8(length)] }
        var octets: [UInt8] = []
        var rest = length
        while rest > 0 {
            octets.insert(UInt8(rest & 0xFF), at: 0)
            rest >>= 8
        }
        return [tag, 0x80 | UInt8(octets.count)] + octets
    }

    static func encode(tag: UInt8, content: [UInt8]) -> [UInt8] {
        header(tag: tag, length: content.count) + content
    }

    /// `bytes` (one element) with the element at `path` replaced by `replacement`, every enclosing length
    /// recomputed. Nil if the path does not exist.
    static func replacing(path: [Int], in bytes: [UInt8], with replacement: [UInt8]) -> [UInt8]? {
        guard let root = element(in: bytes, at: 0) else { return nil }
        return replacing(path: path[...], in: root, of: bytes, with: replacement)
    }

    private static func replacing(
        path: ArraySlice<Int>, in node: Element, of bytes: [UInt8], with replacement: [UInt8]
    ) -> [UInt8]? {
        guard let index = path.first else { return replacement }
        guard let children = children(of: node, in: bytes), index < children.count,
              let changed = replacing(path: path.dropFirst(), in: children[index], of: bytes, with: replacement)
        else { return nil }
        var content: [UInt8] = []
        for (position, child) in children.enumerated() {
            content += position == index ? changed : Array(bytes[child.range])
        }
        return encode(tag: node.tag, content: content)
    }

    /// The outermost element re-encoded with an indefinite length (BER): `tag 0x80 content 00 00`.
    static func indefinite(_ bytes: [UInt8], terminated: Bool = true) -> [UInt8]? {
        guard let root = element(in: bytes, at: 0) else { return nil }
        return [root.tag, 0x80] + Array(bytes[root.content]) + (terminated ? [0, 0] : [])
    }

    /// `depth` SEQUENCEs, each the only content of the one around it, with definite lengths; the innermost is
    /// empty. Built outside-in from precomputed sizes, so 100 000 levels cost one pass.
    static func nestedSequences(depth: Int) -> [UInt8] {
        guard depth > 0 else { return [] }
        // sizes[i]: the encoded size of the sequence with i sequences inside it.
        var sizes = [2]
        sizes.reserveCapacity(depth)
        for level in 1..<depth {
            let inner = sizes[level - 1]
            sizes.append(header(tag: 0x30, length: inner).count + inner)
        }
        var result: [UInt8] = []
        result.reserveCapacity(sizes[depth - 1])
        for level in stride(from: depth - 1, through: 1, by: -1) {
            result += header(tag: 0x30, length: sizes[level - 1])
        }
        return result + [0x30, 0x00]
    }

    /// `depth` indefinite-length SEQUENCEs, closed by their end-of-contents octets or left open.
    static func nestedIndefiniteSequences(depth: Int, terminated: Bool) -> [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(depth * 4)
        for _ in 0..<depth { result += [0x30, 0x80] }
        if terminated {
            for _ in 0..<depth { result += [0x00, 0x00] }
        }
        return result
    }

    /// The serial numbers (content bytes of each entry's INTEGER, hex) listed in a DER CRL, in order.
    static func revokedSerials(ofCRL der: [UInt8]) -> [String]? {
        guard let tbs = element(in: der, path: [0]), let fields = children(of: tbs, in: der) else { return nil }
        // version? signature issuer thisUpdate nextUpdate? revokedCertificates? [0] extensions?
        var index = fields.first?.tag == 0x02 ? 3 : 2
        guard index < fields.count, [0x17, 0x18].contains(fields[index].tag) else { return nil }
        index += 1
        if index < fields.count, [0x17, 0x18].contains(fields[index].tag) { index += 1 }
        guard index < fields.count, fields[index].tag == 0x30 else { return [] }
        guard let entries = children(of: fields[index], in: der) else { return nil }
        var serials: [String] = []
        for entry in entries {
            guard let parts = children(of: entry, in: der), let serial = parts.first, serial.tag == 0x02 else {
                return nil
            }
            serials.append(der[serial.content].map { byte in
                let digits = String(byte, radix: 16, uppercase: true)
                return digits.count == 1 ? "0" + digits : digits
            }.joined())
        }
        return serials
    }
}
