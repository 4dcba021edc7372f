import Foundation
import Synchronization

/// CRLs and OCSP responses for the fetcher tests, generated once per test process with `openssl ca`, then only
/// read. Sendable because every field is an immutable path string.
struct FetcherTestPKI: Sendable {
    var directory: String
    /// The CA whose CRLs are accepted ("CN=Fetcher Test CA").
    var ca: String
    var caKey: String
    var caIndex: String
    /// Issued by the CA, status good.
    var server: String
    /// Issued by the CA, then revoked.
    var revoked: String
    /// cRLNumber 4096 (0x1000), no entries (PEM).
    var crl4096: String
    /// cRLNumber 4097, revoking `revoked` (PEM and openssl's DER of the same CRL).
    var crl4097: String
    var crl4097DER: String
    /// Both CRLs in one PEM file.
    var twoCRLs: String
    /// Same issuer name, signed by another key.
    var wrongKeyCRL: String
    /// A CRL of an unrelated CA.
    var foreignCRL: String
    /// thisUpdate 2030-01-01T00:00:00Z (`futureThisUpdate`), nextUpdate a week later.
    var futureCRL: String
    /// nextUpdate (2025-01-01) before thisUpdate (2025-01-02).
    var invertedCRL: String
    /// No cRLNumber extension.
    var unnumberedCRL: String
    /// An unknown extension (1.2.3.4) marked critical.
    var criticalExtensionCRL: String
    /// Good OCSP response for `server`, signed by the CA, nextUpdate in a day.
    var serverOCSP: String
    /// OCSP response saying `revoked` is revoked.
    var revokedOCSP: String

    static let futureThisUpdate: Int64 = 1_893_456_000

    private static let cache = Mutex<Result<FetcherTestPKI, any Error>?>(nil)

    static func shared() throws -> FetcherTestPKI {
        try cache.withLock { cached in
            if let cached {
                return try cached.get()
            }
            let result = Result { try generate() }
            cached = result
            return try result.get()
        }
    }

    /// One `openssl ca` directory.
    private struct Authority {
        var directory: String

        var certificate: String { directory + "/ca.pem" }
        var key: String { directory + "/ca.key" }
        var config: String { directory + "/openssl.cnf" }
        var index: String { directory + "/index.txt" }

        init(directory: String, subject: String, serial: String) throws {
            self.directory = directory
            try FileManager.default.createDirectory(atPath: directory + "/newcerts", withIntermediateDirectories: true)
            try Data().write(to: URL(fileURLWithPath: index))
            try Data("unique_subject = no\n".utf8).write(to: URL(fileURLWithPath: index + ".attr"))
            try Data((serial + "\n").utf8).write(to: URL(fileURLWithPath: directory + "/serial"))
            try Data("1000\n".utf8).write(to: URL(fileURLWithPath: directory + "/crlnumber"))
            try Data(Self.config(directory: directory, numbered: true).utf8).write(to: URL(fileURLWithPath: config))
            try Data(Self.config(directory: directory, numbered: false).utf8)
                .write(to: URL(fileURLWithPath: directory + "/unnumbered.cnf"))
            try OpenSSLTool.check([
                "req", "-x509", "-new", "-config", config, "-extensions", "v3_ca", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", certificate,
                "-subj", subject, "-days", "30",
            ])
        }

        func issue(_ name: String) throws -> String {
            let certificate = directory + "/\(name).pem"
            try OpenSSLTool.check([
                "req", "-new", "-config", config, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", directory + "/\(name).key", "-out", directory + "/\(name).csr",
                "-subj", "/CN=\(name)/O=Gatehouse",
            ])
            try OpenSSLTool.check([
                "ca", "-batch", "-config", config, "-extensions", "leaf", "-days", "30", "-notext",
                "-in", directory + "/\(name).csr", "-out", certificate,
            ])
            return certificate
        }

        func crl(
            _ path: String, config: String? = nil, extensions: String = "crl_ext", lastUpdate: String? = nil,
            nextUpdate: String? = nil
        ) throws {
            var arguments = ["ca", "-config", config ?? self.config, "-gencrl", "-crlexts", extensions, "-out", path]
            if let lastUpdate { arguments += ["-crl_lastupdate", lastUpdate] }
            if let nextUpdate { arguments += ["-crl_nextupdate", nextUpdate] }
            try OpenSSLTool.check(arguments)
        }

        func ocsp(for certificate: String, to path: String) throws {
            try OpenSSLTool.check([
                "ocsp", "-index", index, "-CA", self.certificate, "-rsigner", self.certificate, "-rkey", key,
                "-issuer", self.certificate, "-cert", certificate, "-respout", path, "-ndays", "1",
            ])
        }

        static func config(directory: String, numbered: Bool) -> String {
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
            \(numbered ? "crlnumber = $dir/crlnumber" : "")
            default_md = sha256
            default_days = 30
            default_crl_days = 7
            policy = policy_any
            copy_extensions = none

            [ policy_any ]
            commonName = supplied
            organizationName = optional

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

            [ leaf ]
            basicConstraints = CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = serverAuth

            [ crl_ext ]
            authorityKeyIdentifier = keyid:always

            [ crl_critical ]
            authorityKeyIdentifier = keyid:always
            1.2.3.4 = critical,ASN1:NULL

            """
        }
    }

    private static func generate() throws -> FetcherTestPKI {
        let directory = try TestFiles.makeDirectory("gatehouse-fetcher-tests-\(getpid())")
        let crls = directory + "/crls"
        try FileManager.default.createDirectory(atPath: crls, withIntermediateDirectories: true)

        let ca = try Authority(directory: directory + "/ca", subject: "/CN=Fetcher Test CA/O=Gatehouse",
                               serial: "0A000010")
        let server = try ca.issue("server")
        let revoked = try ca.issue("revoked")
        try ca.crl(crls + "/4096.crl.pem")
        try OpenSSLTool.check(["ca", "-config", ca.config, "-revoke", revoked, "-crl_reason", "keyCompromise"])
        try ca.crl(crls + "/4097.crl.pem")
        try OpenSSLTool.check(["crl", "-in", crls + "/4097.crl.pem", "-outform", "DER", "-out", crls + "/4097.crl.der"])
        let first = try Data(contentsOf: URL(fileURLWithPath: crls + "/4096.crl.pem"))
        let second = try Data(contentsOf: URL(fileURLWithPath: crls + "/4097.crl.pem"))
        try (first + second).write(to: URL(fileURLWithPath: crls + "/two.crl.pem"))
        try ca.crl(crls + "/future.crl.pem", lastUpdate: "20300101000000Z", nextUpdate: "20300108000000Z")
        try ca.crl(crls + "/inverted.crl.pem", lastUpdate: "20250102000000Z", nextUpdate: "20250101000000Z")
        try ca.crl(crls + "/unnumbered.crl.pem", config: ca.directory + "/unnumbered.cnf")
        try ca.crl(crls + "/critical.crl.pem", extensions: "crl_critical")
        try ca.ocsp(for: server, to: directory + "/server.ocsp.der")
        try ca.ocsp(for: revoked, to: directory + "/revoked.ocsp.der")

        let impostor = try Authority(directory: directory + "/impostor", subject: "/CN=Fetcher Test CA/O=Gatehouse",
                                     serial: "0B000010")
        try impostor.crl(crls + "/wrong-key.crl.pem")
        let foreign = try Authority(directory: directory + "/foreign", subject: "/CN=Foreign CA/O=Elsewhere",
                                    serial: "0C000010")
        try foreign.crl(crls + "/foreign.crl.pem")

        return FetcherTestPKI(
            directory: directory,
            ca: ca.certificate,
            caKey: ca.key,
            caIndex: ca.index,
            server: server,
            revoked: revoked,
            crl4096: crls + "/4096.crl.pem",
            crl4097: crls + "/4097.crl.pem",
            crl4097DER: crls + "/4097.crl.der",
            twoCRLs: crls + "/two.crl.pem",
            wrongKeyCRL: crls + "/wrong-key.crl.pem",
            foreignCRL: crls + "/foreign.crl.pem",
            futureCRL: crls + "/future.crl.pem",
            invertedCRL: crls + "/inverted.crl.pem",
            unnumberedCRL: crls + "/unnumbered.crl.pem",
            criticalExtensionCRL: crls + "/critical.crl.pem",
            serverOCSP: directory + "/server.ocsp.der",
            revokedOCSP: directory + "/revoked.ocsp.der"
        )
    }
}
