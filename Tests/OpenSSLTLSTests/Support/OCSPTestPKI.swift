import Foundation
import Synchronization

/// The OCSP test PKI, generated once per test process with `openssl ca`, then only read: a root with its own
/// `index.txt` (one certificate revoked), delegated responders with and without id-kp-OCSPSigning, an intermediate
/// CA with a leaf, an unrelated CA, an impostor CA with the root's name, and a certificate the root signed without
/// recording it in its index. Responses are produced per test by `respond(…)`, each into a fresh file.
struct OCSPTestPKI: Sendable {
    var directory: String
    var root: String
    var rootKey: String
    var rootIndex: String
    var rootConfig: String
    /// Issued by the root, status good.
    var server: String
    /// Issued by the root, another good certificate (for "a response about someone else").
    var sibling: String
    /// Issued by the root, then revoked with reason keyCompromise.
    var revoked: String
    /// Signed by the root key with `openssl x509 -req`, so not in the root's index: the responder answers unknown.
    var unindexed: String
    /// Delegated responder issued by the root with extendedKeyUsage OCSPSigning.
    var responder: String
    var responderKey: String
    /// Issued by the root, digitalSignature only, no extendedKeyUsage.
    var plainResponder: String
    var plainResponderKey: String
    var intermediate: String
    var intermediateKey: String
    var intermediateIndex: String
    /// Issued by the intermediate.
    var intermediateLeaf: String
    /// An unrelated root and a certificate it issued.
    var other: String
    var otherKey: String
    var otherIndex: String
    var otherLeaf: String
    /// Same subject as the root, different key.
    var impostor: String
    var impostorKey: String

    private static let cache = Mutex<Result<OCSPTestPKI, any Error>?>(nil)

    /// The process-wide PKI, generated on first use.
    static func shared() throws -> OCSPTestPKI {
        try cache.withLock { cached in
            if let cached {
                return try cached.get()
            }
            let result = Result { try generate() }
            cached = result
            return try result.get()
        }
    }

    /// Runs `openssl ocsp` as a one-shot responder over `index` for the DER request in `request`, signing with
    /// `signer`/`signerKey`, valid for `validity` (no nextUpdate if empty); returns the response DER.
    func respond(
        to request: [UInt8],
        index: String,
        ca: String,
        signer: String,
        signerKey: String,
        validity: [String] = ["-ndays", "1"],
        extra: [String] = []
    ) throws -> [UInt8] {
        let name = UUID().uuidString.prefix(8)
        let requestPath = directory + "/responses/req-\(name).der"
        let responsePath = directory + "/responses/resp-\(name).der"
        try Data(request).write(to: URL(fileURLWithPath: requestPath))
        try OpenSSLCommand.check([
            "ocsp", "-index", index, "-CA", ca, "-rsigner", signer, "-rkey", signerKey, "-reqin", requestPath,
            "-respout", responsePath,
        ] + validity + extra)
        return Array(try Data(contentsOf: URL(fileURLWithPath: responsePath)))
    }

    private static let responderExtensions = """
        [ ocsp_signing ]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = OCSPSigning

        [ plain_signing ]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature

        """

    private static func generate() throws -> OCSPTestPKI {
        let directory = NSTemporaryDirectory() + "gatehouse-ocsp-tests-\(getpid())-\(UUID().uuidString.prefix(8))"
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: directory + "/responses", withIntermediateDirectories: true)
        let extensionFile = directory + "/responders.ext"
        try Data(responderExtensions.utf8).write(to: URL(fileURLWithPath: extensionFile))

        let root = try TestCA(directory: directory + "/root", subject: "/CN=OCSP Test Root/O=Gatehouse",
                              firstSerial: "05000010")
        let server = try root.issue("server", subject: "/CN=localhost/O=Gatehouse", extensions: "server_cert")
        let sibling = try root.issue("sibling", subject: "/CN=sibling/O=Gatehouse", extensions: "server_cert")
        let revoked = try root.issue("revoked", subject: "/CN=revoked/O=Gatehouse", extensions: "server_cert")
        try root.revoke(revoked.certificate)

        func responder(_ name: String, section: String) throws -> (certificate: String, key: String) {
            let certificate = root.directory + "/\(name).pem"
            let key = root.directory + "/\(name).key"
            try OpenSSLCommand.check([
                "req", "-new", "-config", root.configPath, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", root.directory + "/\(name).csr", "-subj", "/CN=\(name)/O=Gatehouse",
            ])
            try OpenSSLCommand.check([
                "ca", "-batch", "-config", root.configPath, "-extfile", extensionFile, "-extensions", section,
                "-days", "30", "-notext", "-in", root.directory + "/\(name).csr", "-out", certificate,
            ])
            return (certificate, key)
        }
        let delegated = try responder("responder", section: "ocsp_signing")
        let plain = try responder("plain-responder", section: "plain_signing")

        // Signed by the root key outside `openssl ca`: valid, but absent from index.txt.
        let unindexed = root.directory + "/unindexed.pem"
        try OpenSSLCommand.check([
            "req", "-new", "-config", root.configPath, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", root.directory + "/unindexed.key", "-out", root.directory + "/unindexed.csr",
            "-subj", "/CN=unindexed/O=Gatehouse",
        ])
        try OpenSSLCommand.check([
            "x509", "-req", "-in", root.directory + "/unindexed.csr", "-CA", root.certificatePath,
            "-CAkey", root.keyPath, "-set_serial", "0x05999999", "-days", "30", "-out", unindexed,
        ])

        let intermediate = try TestCA(directory: directory + "/intermediate",
                                      subject: "/CN=OCSP Test Intermediate/O=Gatehouse", firstSerial: "06000010",
                                      parent: root)
        let intermediateLeaf = try intermediate.issue("leaf", subject: "/CN=leaf/O=Gatehouse",
                                                      extensions: "server_cert")
        let other = try TestCA(directory: directory + "/other", subject: "/CN=Other Root/O=Elsewhere",
                               firstSerial: "07000010")
        let otherLeaf = try other.issue("leaf", subject: "/CN=other-leaf/O=Elsewhere", extensions: "server_cert")
        let impostor = try TestCA(directory: directory + "/impostor", subject: "/CN=OCSP Test Root/O=Gatehouse",
                                  firstSerial: "08000010")

        return OCSPTestPKI(
            directory: directory,
            root: root.certificatePath,
            rootKey: root.keyPath,
            rootIndex: root.indexPath,
            rootConfig: root.configPath,
            server: server.certificate,
            sibling: sibling.certificate,
            revoked: revoked.certificate,
            unindexed: unindexed,
            responder: delegated.certificate,
            responderKey: delegated.key,
            plainResponder: plain.certificate,
            plainResponderKey: plain.key,
            intermediate: intermediate.certificatePath,
            intermediateKey: intermediate.keyPath,
            intermediateIndex: intermediate.indexPath,
            intermediateLeaf: intermediateLeaf.certificate,
            other: other.certificatePath,
            otherKey: other.keyPath,
            otherIndex: other.indexPath,
            otherLeaf: otherLeaf.certificate,
            impostor: impostor.certificatePath,
            impostorKey: impostor.keyPath
        )
    }
}
