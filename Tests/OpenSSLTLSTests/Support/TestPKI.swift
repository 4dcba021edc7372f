import Foundation
import Synchronization

/// One CA managed the way EMQX's walkthrough does it: an `openssl.cnf` with `[ ca ]`/`[ myca ]`, `index.txt`,
/// `serial`, `crlnumber`, `openssl ca` to issue, revoke and generate CRLs. Used from one test thread at a time.
final class TestCA {
    let directory: String
    let subject: String

    var certificatePath: String { directory + "/ca.pem" }
    var keyPath: String { directory + "/ca.key" }
    var configPath: String { directory + "/openssl.cnf" }
    var indexPath: String { directory + "/index.txt" }

    /// Creates the CA directory. A root is self-signed; otherwise `parent` issues the CA certificate.
    init(directory: String, subject: String, firstSerial: String, parent: TestCA? = nil) throws {
        self.directory = directory
        self.subject = subject
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: directory + "/newcerts", withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: indexPath))
        try Data("unique_subject = no\n".utf8).write(to: URL(fileURLWithPath: indexPath + ".attr"))
        try Data((firstSerial + "\n").utf8).write(to: URL(fileURLWithPath: directory + "/serial"))
        try Data("1000\n".utf8).write(to: URL(fileURLWithPath: directory + "/crlnumber"))
        try Data(Self.config(directory: directory).utf8).write(to: URL(fileURLWithPath: configPath))

        if let parent {
            try OpenSSLCommand.check([
                "req", "-new", "-config", configPath, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", keyPath, "-out", directory + "/ca.csr", "-subj", subject,
            ])
            try parent.sign(csr: directory + "/ca.csr", extensions: "v3_ca", output: certificatePath)
        } else {
            try OpenSSLCommand.check([
                "req", "-x509", "-new", "-config", configPath, "-extensions", "v3_ca", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-out", certificatePath,
                "-subj", subject, "-days", "30",
            ])
        }
    }

    /// Issues a certificate with a fresh P-256 key; returns (certificate path, key path).
    func issue(_ name: String, subject: String, extensions: String) throws -> (certificate: String, key: String) {
        let certificate = directory + "/\(name).pem"
        let key = directory + "/\(name).key"
        try OpenSSLCommand.check([
            "req", "-new", "-config", configPath, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", directory + "/\(name).csr", "-subj", subject,
        ])
        try sign(csr: directory + "/\(name).csr", extensions: extensions, output: certificate)
        return (certificate, key)
    }

    func sign(csr: String, extensions: String, output: String) throws {
        try OpenSSLCommand.check([
            "ca", "-batch", "-config", configPath, "-extensions", extensions, "-days", "30", "-notext",
            "-in", csr, "-out", output,
        ])
    }

    func revoke(_ certificate: String) throws {
        try OpenSSLCommand.check(["ca", "-config", configPath, "-revoke", certificate, "-crl_reason", "keyCompromise"])
    }

    /// `openssl ca -gencrl`, optionally with explicit lastUpdate/nextUpdate (YYYYMMDDHHMMSSZ).
    func generateCRL(to path: String, lastUpdate: String? = nil, nextUpdate: String? = nil) throws {
        var arguments = ["ca", "-config", configPath, "-gencrl", "-crlexts", "crl_ext", "-out", path]
        if let lastUpdate {
            arguments += ["-crl_lastupdate", lastUpdate]
        }
        if let nextUpdate {
            arguments += ["-crl_nextupdate", nextUpdate]
        }
        try OpenSSLCommand.check(arguments)
    }

    private static func config(directory: String) -> String {
        """
        [ ca ]
        default_ca = myca

        [ myca ]
        dir = \(directory)
        database = $dir/index.txt
        new_certs_dir = $dir/newcerts
        certificate = $dir/ca.pem
        private_key = $dir/ca.key
        serial = $dir/serial
        crlnumber = $dir/crlnumber
        default_md = sha256
        default_days = 30
        default_crl_days = 7
        policy = policy_any
        email_in_dn = no
        copy_extensions = none

        [ policy_any ]
        commonName = supplied
        organizationName = optional
        organizationalUnitName = optional
        countryName = optional

        [ req ]
        distinguished_name = req_dn
        prompt = no

        [ req_dn ]
        CN = placeholder

        [ v3_ca ]
        basicConstraints = critical, CA:TRUE
        keyUsage = critical, keyCertSign, cRLSign
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid:always

        [ server_cert ]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = IP:127.0.0.1, DNS:localhost
        authorityInfoAccess = OCSP;URI:http://127.0.0.1:1/ocsp
        crlDistributionPoints = URI:http://127.0.0.1:1/root.crl

        [ client_cert ]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = clientAuth

        [ crl_ext ]
        authorityKeyIdentifier = keyid:always

        """
    }
}

/// The whole test PKI, generated once per test process into a temporary directory with the `openssl` CLI, then
/// only read. Sendable because every field is an immutable path string.
struct TestPKI: Sendable {
    var directory: String
    var rootSubjectDN = "O=Gatehouse,CN=Gatehouse Test Root"
    var root: String
    var rootKey: String
    var intermediate: String
    /// root + intermediate, the listener's CA bundle.
    var caBundle: String
    var server: String
    var serverKey: String
    var goodClient: String
    var goodClientKey: String
    var revokedClient: String
    var revokedClientKey: String
    var intermediateClient: String
    var intermediateClientKey: String
    var otherClient: String
    var otherClientKey: String

    /// Root CRL before any revocation.
    var rootEmptyCRL: String
    /// Root CRL revoking `revokedClient` (PEM and DER).
    var rootRevokedCRL: String
    var rootRevokedCRLDER: String
    /// Root CRL whose nextUpdate is in 2020.
    var rootExpiredCRL: String
    /// Root CRL revoking `revokedClient` and the intermediate CA.
    var rootRevokesIntermediateCRL: String
    /// The intermediate's (empty) CRL.
    var intermediateCRL: String
    /// A CRL naming the root as issuer but signed by another key.
    var wrongKeyCRL: String
    /// A DER OCSP response (good) for the server certificate.
    var serverOCSPResponse: String

    private static let cache = Mutex<Result<TestPKI, any Error>?>(nil)

    /// The process-wide PKI, generated on first use.
    static func shared() throws -> TestPKI {
        try cache.withLock { cached in
            if let cached {
                return try cached.get()
            }
            let result = Result { try generate() }
            cached = result
            return try result.get()
        }
    }

    private static func generate() throws -> TestPKI {
        let directory = NSTemporaryDirectory() + "gatehouse-tls-tests-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)

        let root = try TestCA(directory: directory + "/root", subject: "/CN=Gatehouse Test Root/O=Gatehouse",
                              firstSerial: "01000010")
        let server = try root.issue("server", subject: "/CN=localhost/O=Gatehouse", extensions: "server_cert")
        let good = try root.issue("good-client", subject: "/CN=good-client/O=Gatehouse/OU=Devices",
                                  extensions: "client_cert")
        let revoked = try root.issue("revoked-client", subject: "/CN=revoked-client/O=Gatehouse",
                                     extensions: "client_cert")
        let intermediate = try TestCA(directory: directory + "/intermediate",
                                      subject: "/CN=Gatehouse Test Intermediate/O=Gatehouse",
                                      firstSerial: "02000010", parent: root)
        let intermediateClient = try intermediate.issue("chain-client", subject: "/CN=chain-client/O=Gatehouse",
                                                        extensions: "client_cert")
        let other = try TestCA(directory: directory + "/other", subject: "/CN=Other Root/O=Elsewhere",
                               firstSerial: "03000010")
        let otherClient = try other.issue("other-client", subject: "/CN=other-client/O=Elsewhere",
                                          extensions: "client_cert")
        let impostor = try TestCA(directory: directory + "/impostor", subject: "/CN=Gatehouse Test Root/O=Gatehouse",
                                  firstSerial: "04000010")

        let crls = directory + "/crls"
        try FileManager.default.createDirectory(atPath: crls, withIntermediateDirectories: true)
        try root.generateCRL(to: crls + "/root-empty.crl.pem")
        try intermediate.generateCRL(to: crls + "/intermediate.crl.pem")
        try impostor.generateCRL(to: crls + "/wrong-key.crl.pem")
        try root.revoke(revoked.certificate)
        try root.generateCRL(to: crls + "/root-revoked.crl.pem")
        try OpenSSLCommand.check([
            "crl", "-in", crls + "/root-revoked.crl.pem", "-outform", "DER", "-out", crls + "/root-revoked.crl.der",
        ])
        try root.generateCRL(to: crls + "/root-expired.crl.pem", lastUpdate: "20200101000000Z",
                             nextUpdate: "20200102000000Z")
        try root.revoke(intermediate.certificatePath)
        try root.generateCRL(to: crls + "/root-revokes-intermediate.crl.pem")

        let bundle = directory + "/ca-bundle.pem"
        let rootPEM = try Data(contentsOf: URL(fileURLWithPath: root.certificatePath))
        let intermediatePEM = try Data(contentsOf: URL(fileURLWithPath: intermediate.certificatePath))
        try (rootPEM + intermediatePEM).write(to: URL(fileURLWithPath: bundle))

        let ocsp = directory + "/server.ocsp.der"
        try OpenSSLCommand.check([
            "ocsp", "-index", root.indexPath, "-rsigner", root.certificatePath, "-rkey", root.keyPath,
            "-CA", root.certificatePath, "-issuer", root.certificatePath, "-cert", server.certificate,
            "-respout", ocsp, "-no_nonce", "-ndays", "1",
        ])

        return TestPKI(
            directory: directory,
            root: root.certificatePath,
            rootKey: root.keyPath,
            intermediate: intermediate.certificatePath,
            caBundle: bundle,
            server: server.certificate,
            serverKey: server.key,
            goodClient: good.certificate,
            goodClientKey: good.key,
            revokedClient: revoked.certificate,
            revokedClientKey: revoked.key,
            intermediateClient: intermediateClient.certificate,
            intermediateClientKey: intermediateClient.key,
            otherClient: otherClient.certificate,
            otherClientKey: otherClient.key,
            rootEmptyCRL: crls + "/root-empty.crl.pem",
            rootRevokedCRL: crls + "/root-revoked.crl.pem",
            rootRevokedCRLDER: crls + "/root-revoked.crl.der",
            rootExpiredCRL: crls + "/root-expired.crl.pem",
            rootRevokesIntermediateCRL: crls + "/root-revokes-intermediate.crl.pem",
            intermediateCRL: crls + "/intermediate.crl.pem",
            wrongKeyCRL: crls + "/wrong-key.crl.pem",
            serverOCSPResponse: ocsp
        )
    }
}
