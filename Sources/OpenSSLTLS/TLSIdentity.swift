internal import COpenSSL

/// What a listener presents: its certificate chain (server certificate first, then intermediates) and the private
/// key that belongs to the certificate. Built only from a consistent pair: `load` refuses a key that does not match
/// the certificate, so a half-written rotation (new certificate, old key) never reaches a context. A plain value of
/// immutable objects; Sendable.
public struct TLSIdentity: Sendable {
    /// Server certificate first, then the intermediates sent with it.
    public let chain: [X509Certificate]
    public let key: PrivateKey

    /// The server certificate.
    public var certificate: X509Certificate {
        chain[0]
    }

    /// - Throws: if `chain` is empty or `key` is not the certificate's key.
    public init(chain: [X509Certificate], key: PrivateKey) throws(OpenSSLError) {
        guard let first = chain.first else {
            throw OpenSSLError(operation: "TLSIdentity", message: "no certificate in the chain")
        }
        OpenSSLErrorQueue.clear()
        guard X509_check_private_key(first.pointer, key.pointer) == 1 else {
            OpenSSLErrorQueue.clear()
            throw OpenSSLError(
                operation: "X509_check_private_key",
                message: "private key does not match certificate \(first.subjectDN) (serial \(first.serialHex))")
        }
        self.chain = chain
        self.key = key
    }

    /// Reads `certfile` (PEM chain) and `keyfile`, and checks that they belong together. Blocking file reads: call
    /// off the event loops.
    public static func load(certificateChainPath: String, privateKeyPath: String) throws(OpenSSLError) -> TLSIdentity {
        let chain: [X509Certificate]
        do {
            chain = try X509Certificate.load(file: certificateChainPath)
        } catch {
            throw OpenSSLError(
                operation: error.operation, message: "cannot load certificate chain \(certificateChainPath)",
                openSSLErrors: error.openSSLErrors.isEmpty ? [error.message] : error.openSSLErrors)
        }
        let key = try PrivateKey.load(file: privateKeyPath)
        do {
            return try TLSIdentity(chain: chain, key: key)
        } catch {
            throw OpenSSLError(
                operation: error.operation,
                message: "\(error.message): \(certificateChainPath) and \(privateKeyPath) do not belong together")
        }
    }
}
