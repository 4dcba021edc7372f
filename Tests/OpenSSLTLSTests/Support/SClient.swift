import Foundation
import Testing

/// The TLS versions the handshake tests run under.
enum TLSVersion: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case tls12 = "-tls1_2"
    case tls13 = "-tls1_3"

    var testDescription: String {
        self == .tls12 ? "TLS 1.2" : "TLS 1.3"
    }

    /// How s_client names the version in "New, TLSv1.3, Cipher is …".
    var protocolName: String {
        self == .tls12 ? "TLSv1.2" : "TLSv1.3"
    }
}

/// One `openssl s_client` run against a test server: sends "ping-gatehouse" and waits (bounded) until the server
/// closes. Stateless.
enum SClient {
    static let probe = "ping-gatehouse"

    struct Result {
        var output: String
        var status: Int32?

        /// The echo came back.
        var echoed: Bool {
            output.contains(SClient.probe)
        }

        var isResumed: Bool {
            output.contains("Reused, TLSv")
        }

        var sawRevokedAlert: Bool {
            output.contains("alert certificate revoked") || output.contains("alert number 44")
        }
    }

    static func connect(
        port: Int,
        version: TLSVersion,
        certificate: String?,
        key: String?,
        chain: String? = nil,
        caFile: String,
        extra: [String] = []
    ) throws -> Result {
        var arguments = [
            "s_client", "-connect", "127.0.0.1:\(port)", version.rawValue, "-CAfile", caFile, "-ign_eof",
            "-servername", "localhost",
        ]
        if let certificate, let key {
            arguments += ["-cert", certificate, "-key", key]
        }
        if let chain {
            arguments += ["-cert_chain", chain]
        }
        arguments += extra
        let outcome = try OpenSSLCommand.run(arguments, input: probe + "\n", timeout: 10)
        return Result(output: outcome.output, status: outcome.status)
    }
}
