import Foundation
@testable import OpenSSLTLS

/// Builders shared by the test suites. Stateless.
enum TestHelpers {
    /// A server context for `pki` with the given CRL files (loaded and validated through `CRLSet.load`).
    static func context(
        _ pki: TestPKI,
        crls: [String],
        crlCheck: Bool = true,
        depth: TLSContextConfiguration.CRLCheckDepth = .leaf,
        versions: Set<TLSContextConfiguration.ProtocolVersion> = [.tls1_2, .tls1_3],
        ocspResponse: Bool = false,
        openSSLDefaultCRLCheck: Bool = false
    ) throws -> TLSContext {
        let cas = try X509Certificate.load(file: pki.caBundle)
        let loaded = CRLSet.load(files: crls, cas: cas)
        guard loaded.rejected.isEmpty else {
            throw OpenSSLError(operation: "CRLSet.load", message: "unexpected rejects: \(loaded.rejected)")
        }
        var configuration = try TLSContextConfiguration.loading(
            certificateChainPath: pki.server,
            privateKeyPath: pki.serverKey,
            caBundlePath: pki.caBundle,
            versions: versions,
            isCRLCheckEnabled: crlCheck,
            crlCheckDepth: depth,
            crls: loaded.usable
        )
        if ocspResponse {
            configuration.ocspResponseDER = Array(try Data(contentsOf: URL(fileURLWithPath: pki.serverOCSPResponse)))
        }
        configuration.usesOpenSSLDefaultCRLCheck = openSSLDefaultCRLCheck
        return try TLSContext(configuration: configuration)
    }

    /// Polls `condition` every 10 ms for up to `timeout` seconds.
    static func eventually(timeout: Double = 3, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() {
                return true
            }
            usleep(10_000)
        }
        return condition()
    }

    static func certificate(_ path: String) throws -> X509Certificate {
        guard let first = try X509Certificate.load(file: path).first else {
            throw OpenSSLError(operation: "load", message: "no certificate in \(path)")
        }
        return first
    }
}
