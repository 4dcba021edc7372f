internal import COpenSSL

/// A private key (an owned `EVP_PKEY *`), loaded from an unencrypted PEM or DER file. Immutable after init.
///
/// `@unchecked Sendable`: never mutated after loading; OpenSSL allows concurrent read-only use of a key.
public final class PrivateKey: @unchecked Sendable {
    /// The owned key. Module-internal; never public.
    let pointer: OpaquePointer

    private init(taking pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        EVP_PKEY_free(pointer)
    }

    /// Parses a PEM ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY") or DER key. Encrypted keys are refused
    /// (no passphrase callback).
    public convenience init(bytes: [UInt8]) throws(OpenSSLError) {
        let isPEM = OpenSSLInput.isPEM(bytes)
        let pointer = try OpenSSLInput.withMemoryBIO(bytes) { bio throws(OpenSSLError) in
            if isPEM {
                return try openSSLObject("PEM_read_bio_PrivateKey", "cannot parse PEM private key") {
                    PEM_read_bio_PrivateKey(bio, nil, nil, nil)
                }
            }
            return try openSSLObject("d2i_PrivateKey_bio", "cannot parse DER private key") {
                d2i_PrivateKey_bio(bio, nil)
            }
        }
        self.init(taking: pointer)
    }

    /// Reads and parses a key file. Blocking: call off the event loops. The error never contains key material.
    public static func load(file path: String) throws(OpenSSLError) -> PrivateKey {
        let bytes = try OpenSSLInput.readFile(path, what: "private key file")
        do {
            return try PrivateKey(bytes: bytes)
        } catch {
            throw OpenSSLError(operation: error.operation, message: "cannot load private key \(path)",
                               openSSLErrors: error.openSSLErrors)
        }
    }
}
