internal import COpenSSL
internal import COpenSSLShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Conversions from OpenSSL's ASN.1 and name types to Swift values. Stateless; every function only reads its
/// arguments, so it may run on any thread that owns (or shares read-only) the objects passed in.
enum ASN1Conversions {
    /// An `X509_NAME` as an RFC 2253 string (most significant RDN last, `,` separated, `\` escapes), keeping UTF-8
    /// characters as they are rather than `\XX`-escaping them, so it can serve as a readable username.
    static func distinguishedName(_ name: OpaquePointer?) -> String {
        guard let name, let bio = BIO_new(BIO_s_mem()) else {
            return ""
        }
        defer { BIO_free(bio) }
        let flags = COpenSSLShims_XN_FLAG_RFC2253() & ~UInt(ASN1_STRFLGS_ESC_MSB)
        guard X509_NAME_print_ex(bio, name, 0, flags) >= 0 else {
            ERR_clear_error()
            return ""
        }
        return memoryBIOContents(bio)
    }

    /// The first commonName entry of `name`, decoded to UTF-8; nil if there is none or it does not decode.
    static func commonName(_ name: OpaquePointer?) -> String? {
        guard let name else {
            return nil
        }
        let index = X509_NAME_get_index_by_NID(name, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(name, index),
              let data = X509_NAME_ENTRY_get_data(entry)
        else {
            return nil
        }
        return utf8String(data)
    }

    /// Any ASN.1 string type converted to UTF-8 by `ASN1_STRING_to_UTF8`; nil if it does not convert.
    static func utf8String(_ string: UnsafeMutablePointer<ASN1_STRING>) -> String? {
        var output: UnsafeMutablePointer<UInt8>?
        let length = ASN1_STRING_to_UTF8(&output, string)
        guard length >= 0, let output else {
            ERR_clear_error()
            return nil
        }
        defer { COpenSSLShims_OPENSSL_free(output) }
        return String(decoding: UnsafeBufferPointer(start: output, count: Int(length)), as: UTF8.self)
    }

    /// The raw bytes of an ASN.1 string (an IA5String URI, a BIT STRING's content), decoded as UTF-8.
    static func rawString(_ string: UnsafePointer<ASN1_STRING>?) -> String? {
        guard let string else {
            return nil
        }
        let length = ASN1_STRING_length(string)
        guard length >= 0, let data = ASN1_STRING_get0_data(string) else {
            return nil
        }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The raw content bytes of an ASN.1 string.
    static func rawBytes(_ string: UnsafePointer<ASN1_STRING>?) -> [UInt8] {
        guard let string else {
            return []
        }
        let length = ASN1_STRING_length(string)
        guard length > 0, let data = ASN1_STRING_get0_data(string) else {
            return []
        }
        return Array(UnsafeBufferPointer(start: data, count: Int(length)))
    }

    /// An INTEGER as upper-case hex without sign (e.g. "1000", "0A3F"), the form `openssl ca`'s index uses.
    static func integerHex(_ integer: UnsafePointer<ASN1_INTEGER>?) -> String {
        guard let integer, let bignum = ASN1_INTEGER_to_BN(integer, nil) else {
            ERR_clear_error()
            return ""
        }
        defer { BN_free(bignum) }
        guard let hex = BN_bn2hex(bignum) else {
            ERR_clear_error()
            return ""
        }
        defer { COpenSSLShims_OPENSSL_free(hex) }
        return String(cString: hex)
    }

    /// An INTEGER in decimal (for cRLNumber, which may exceed 64 bits).
    static func integerDecimal(_ integer: UnsafePointer<ASN1_INTEGER>?) -> String? {
        guard let integer, let bignum = ASN1_INTEGER_to_BN(integer, nil) else {
            ERR_clear_error()
            return nil
        }
        defer { BN_free(bignum) }
        guard let text = BN_bn2dec(bignum) else {
            ERR_clear_error()
            return nil
        }
        defer { COpenSSLShims_OPENSSL_free(text) }
        return String(cString: text)
    }

    /// A UTCTime or GeneralizedTime as seconds since 1970-01-01T00:00:00Z.
    static func unixTime(_ time: UnsafePointer<ASN1_TIME>?) -> Int64? {
        guard let time else {
            return nil
        }
        var components = tm()
        guard ASN1_TIME_to_tm(time, &components) == 1 else {
            ERR_clear_error()
            return nil
        }
        return Int64(timegm(&components))
    }

    /// The URIs among `names` (a `GENERAL_NAMES` stack).
    static func uniformResourceIdentifiers(in names: OpaquePointer?) -> [String] {
        guard let names else {
            return []
        }
        var uris: [String] = []
        for index in 0..<COpenSSLShims_sk_GENERAL_NAME_num(names) {
            guard let name = COpenSSLShims_sk_GENERAL_NAME_value(names, index), name.pointee.type == GEN_URI,
                  let uri = rawString(name.pointee.d.uniformResourceIdentifier)
            else {
                continue
            }
            uris.append(uri)
        }
        return uris
    }

    /// Everything written to a memory BIO so far.
    static func memoryBIOContents(_ bio: OpaquePointer) -> String {
        let pending = BIO_ctrl_pending(bio)
        guard pending > 0, pending <= Int32.max else {
            return ""
        }
        var bytes = [UInt8](repeating: 0, count: Int(pending))
        let count = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(pending)) }
        guard count > 0 else {
            return ""
        }
        return String(decoding: bytes.prefix(Int(count)), as: UTF8.self)
    }
}

/// Whole-file and in-memory input for the parsers. Blocking file I/O: call off the event loops.
enum OpenSSLInput {
    /// Reads the whole file through a file BIO.
    static func readFile(_ path: String, what: String) throws(OpenSSLError) -> [UInt8] {
        let bio = try openSSLObject("BIO_new_file", "cannot open \(what) \(path)") { BIO_new_file(path, "rb") }
        defer { BIO_free(bio) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
            if count <= 0 {
                break
            }
            contents.append(contentsOf: chunk.prefix(Int(count)))
        }
        ERR_clear_error()
        return contents
    }

    /// Whether `bytes` look like PEM ("-----BEGIN " somewhere near the start), as opposed to DER.
    static func isPEM(_ bytes: [UInt8]) -> Bool {
        let marker = Array("-----BEGIN ".utf8)
        let window = bytes.prefix(4096)
        guard window.count >= marker.count else {
            return false
        }
        for start in 0...(window.count - marker.count) where window[start] == marker[0] {
            if Array(window[start..<(start + marker.count)]) == marker {
                return true
            }
        }
        return false
    }

    /// Runs `body` with a read-only memory BIO over `bytes` (the BIO does not copy; it lives only inside `body`).
    static func withMemoryBIO<Result>(
        _ bytes: [UInt8],
        _ body: (OpaquePointer) throws(OpenSSLError) -> Result
    ) throws(OpenSSLError) -> Result {
        guard bytes.count <= Int32.max else {
            throw OpenSSLError(operation: "BIO_new_mem_buf", message: "input is larger than 2 GiB")
        }
        // Closure-based typed throws do not compose with withUnsafeBytes, so carry the result out explicitly.
        var outcome: Swift.Result<Result, OpenSSLError>?
        bytes.withUnsafeBytes { raw in
            OpenSSLErrorQueue.clear()
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
                outcome = .failure(.drained("BIO_new_mem_buf", "cannot allocate a memory BIO"))
                return
            }
            defer { BIO_free(bio) }
            do throws(OpenSSLError) {
                outcome = .success(try body(bio))
            } catch {
                outcome = .failure(error)
            }
        }
        guard let outcome else {
            throw OpenSSLError(operation: "BIO_new_mem_buf", message: "internal error")
        }
        return try outcome.get()
    }
}
