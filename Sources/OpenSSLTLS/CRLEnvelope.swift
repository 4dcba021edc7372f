internal import COpenSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A CRL's bytes before OpenSSL sees them: the DER of each CRL in a PEM or DER input, and how many revoked entries
/// each declares, read from the ASN.1 outline alone. OpenSSL allocates every entry (a few hundred bytes each, more
/// than the bytes that encode it) as it parses, so a hostile input is bounded by counting first and parsing only
/// what is within the limit. Used by the fetcher on every download; workers can use it on `crlfile`s.
/// Stateless; linear in the input, no allocation per entry.
public enum CRLEnvelope {
    /// The DER of every CRL in `bytes`: each `X509 CRL` PEM block base64-decoded if the input is PEM (the same
    /// test as `CertificateRevocationList.parse`: `-----BEGIN ` within the first 4 KiB; text around the blocks is
    /// ignored, as OpenSSL does), else `bytes` itself.
    public static func derEncodings(_ bytes: [UInt8]) throws(CRLEnvelopeError) -> [[UInt8]] {
        guard OpenSSLInput.isPEM(bytes) else {
            return [bytes]
        }
        return try PEMBlocks.decode(bytes, label: "X509 CRL")
    }

    /// The revoked entries of every CRL in `bytes` (PEM or DER), summed.
    public static func revokedEntryCount(_ bytes: [UInt8]) throws(CRLEnvelopeError) -> Int {
        var total = 0
        for der in try derEncodings(bytes) {
            total += try revokedEntryCount(der: der)
        }
        return total
    }

    /// The entries of the revokedCertificates list of one DER CRL (RFC 5280 5.1: CertificateList ::= SEQUENCE {
    /// tbsCertList SEQUENCE { version INTEGER OPTIONAL, signature, issuer, thisUpdate, nextUpdate OPTIONAL,
    /// revokedCertificates SEQUENCE OF ... OPTIONAL, crlExtensions [0] OPTIONAL }, ... }). Bytes after the CRL are
    /// ignored (so does OpenSSL's parser); anything else that does not fit that outline is an error.
    public static func revokedEntryCount(der: [UInt8]) throws(CRLEnvelopeError) -> Int {
        do {
            return try der.withUnsafeBufferPointer { buffer throws(DERReader.Failure) in
                guard buffer.first == 0x30 else {
                    throw DERReader.Failure(message: buffer.isEmpty ? "truncated: empty" : "does not start with a SEQUENCE")
                }
                let reader = DERReader(bytes: buffer)
                let list = try reader.element(at: 0, limit: buffer.count)
                let tbs = try reader.element(at: list.contents.lowerBound, limit: list.contents.upperBound, depth: 1)
                guard tbs.tag == 0x30 else {
                    throw DERReader.Failure(message: "tbsCertList is not a SEQUENCE")
                }
                var cursor = tbs.contents.lowerBound
                func next() throws(DERReader.Failure) -> DERReader.Element? {
                    guard cursor < tbs.contents.upperBound else { return nil }
                    let element = try reader.element(at: cursor, limit: tbs.contents.upperBound, depth: 2)
                    cursor = element.end
                    return element
                }
                var field = try next()
                if field?.tag == 0x02 {  // version
                    field = try next()
                }
                for (name, tag) in [("signature", UInt8(0x30)), ("issuer", 0x30)] {
                    guard field?.tag == tag else {
                        throw DERReader.Failure(message: "tbsCertList has no \(name)")
                    }
                    field = try next()
                }
                guard let thisUpdate = field, thisUpdate.tag == 0x17 || thisUpdate.tag == 0x18 else {
                    throw DERReader.Failure(message: "tbsCertList has no thisUpdate")
                }
                field = try next()
                if let nextUpdate = field, nextUpdate.tag == 0x17 || nextUpdate.tag == 0x18 {
                    field = try next()
                }
                guard let revoked = field, revoked.tag == 0x30 else {
                    return 0
                }
                return try reader.childCount(of: revoked, depth: 2)
            }
        } catch {
            throw CRLEnvelopeError(error.message)
        }
    }
}

/// Why `CRLEnvelope` could not read an input: `message` says what is wrong with it, `description` that it is
/// therefore not a CRL.
public struct CRLEnvelopeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { "not a CRL: " + message }
}

/// PEM blocks (RFC 7468) of one label, base64-decoded with OpenSSL's decoder (the one `PEM_read` uses).
enum PEMBlocks {
    static func decode(_ bytes: [UInt8], label: String) throws(CRLEnvelopeError) -> [[UInt8]] {
        let begin = Array("-----BEGIN \(label)-----".utf8)
        let end = Array("-----END \(label)-----".utf8)
        var blocks: [[UInt8]] = []
        var cursor = 0
        while let start = find(begin, in: bytes, from: cursor) {
            let body = start + begin.count
            guard let stop = find(end, in: bytes, from: body) else {
                throw CRLEnvelopeError("PEM block \(blocks.count + 1) has no END line")
            }
            guard let decoded = base64(bytes, body..<stop) else {
                throw CRLEnvelopeError("PEM block \(blocks.count + 1) is not valid base64")
            }
            blocks.append(decoded)
            cursor = stop + end.count
        }
        return blocks
    }

    /// The first index of `needle` in `haystack` from `start`, jumping between candidates with memchr.
    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first else { return nil }
        return haystack.withUnsafeBufferPointer { hay -> Int? in
            guard let base = hay.baseAddress else { return nil }
            var index = start
            while index + needle.count <= hay.count {
                guard let hit = memchr(base + index, Int32(first), hay.count - index) else { return nil }
                let candidate = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(hit))
                guard candidate + needle.count <= hay.count else { return nil }
                if memcmp(base + candidate, needle, needle.count) == 0 {
                    return candidate
                }
                index = candidate + 1
            }
            return nil
        }
    }

    /// `EVP_DecodeUpdate` over `range` in chunks: whitespace ignored, padding checked; nil on anything else.
    /// (The decoder takes `-` for the end of the data and stops there silently: a `-` inside is refused first.)
    static func base64(_ bytes: [UInt8], _ range: Range<Int>) -> [UInt8]? {
        let hasDash = bytes.withUnsafeBufferPointer { buffer in
            buffer.baseAddress.map { memchr($0 + range.lowerBound, Int32(UInt8(ascii: "-")), range.count) != nil }
                ?? false
        }
        guard !hasDash, let context = EVP_ENCODE_CTX_new() else { return nil }
        defer { EVP_ENCODE_CTX_free(context) }
        EVP_DecodeInit(context)
        let chunk = 1 << 20
        var output = [UInt8](repeating: 0, count: range.count / 4 * 3 + 80)
        var written = 0
        let ok = bytes.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out -> Bool in
                guard let source = input.baseAddress, let target = out.baseAddress else { return range.isEmpty }
                var offset = range.lowerBound
                while offset < range.upperBound {
                    let length = min(chunk, range.upperBound - offset)
                    var produced: Int32 = 0
                    guard written + length / 4 * 3 + 80 <= out.count,
                          EVP_DecodeUpdate(context, target + written, &produced, source + offset, Int32(length)) >= 0
                    else { return false }
                    written += Int(produced)
                    offset += length
                }
                var produced: Int32 = 0
                guard EVP_DecodeFinal(context, target + written, &produced) == 1 else { return false }
                written += Int(produced)
                return true
            }
        }
        OpenSSLErrorQueue.clear()
        guard ok else { return nil }
        output.removeSubrange(written...)
        return output
    }
}
