internal import COpenSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The paths of the files making up a development PKI in one directory. A plain value; Sendable.
public struct DevelopmentPKIFiles: Sendable, Equatable {
    public var directory: String
    public var caCertificate: String
    public var caKey: String
    public var serverCertificate: String
    public var serverKey: String
    public var clientCertificate: String
    public var clientKey: String
    public var crl: String

    /// Computes the paths only; touches nothing on disk.
    public init(directory: String) {
        self.directory = directory
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        caCertificate = prefix + "ca.pem"
        caKey = prefix + "ca.key"
        serverCertificate = prefix + "server.pem"
        serverKey = prefix + "server.key"
        clientCertificate = prefix + "client.pem"
        clientKey = prefix + "client.key"
        crl = prefix + "crl.pem"
    }

    /// Every file, in the order `DevelopmentPKI.generate` writes them.
    public var all: [String] {
        [caCertificate, caKey, serverCertificate, serverKey, clientCertificate, clientKey, crl]
    }
}

/// Generates a throwaway CA, a server and a client certificate, and an empty CRL with the OpenSSL C API, so that a
/// broker's TLS listener works on first start. For development only: the CA key sits unencrypted next to the
/// certificates. Stateless; `generate` may be called from any isolation domain.
public enum DevelopmentPKI {
    /// Creates `directory` (mode 0700, with parents) and writes every file. Refuses (throws) if any of the files
    /// already exists, so it never overwrites an operator's keys.
    ///
    /// All keys, certificates and the CRL are built in memory first; only then are the files written, each through a
    /// temporary file, `fsync` and `rename`. Key files are created 0600 and certificates 0644. If a write fails, the
    /// files this call already wrote are removed again, so a retry does not trip over a partial set.
    public static func generate(
        in directory: String,
        serverDNSNames: [String] = ["localhost"],
        serverIPAddresses: [String] = ["127.0.0.1", "::1"],
        clientCommonName: String = "gatehouse-dev-client",
        validityDays: Int = 825
    ) throws(DevelopmentPKIError) -> DevelopmentPKIFiles {
        let parameters = try Parameters(
            serverDNSNames: serverDNSNames,
            serverIPAddresses: serverIPAddresses,
            clientCommonName: clientCommonName,
            validityDays: validityDays
        )
        let files = DevelopmentPKIFiles(directory: directory)
        // Check before creating the directory too, so a refusal leaves no trace.
        for path in files.all {
            try FileSystem.refuseExisting(path)
        }
        try FileSystem.makeDirectory(directory)
        for path in files.all {
            try FileSystem.refuseExisting(path)
        }

        let material = try Material(parameters, now: time(nil))
        let outputs: [(path: String, bytes: [UInt8], mode: mode_t)] = [
            (files.caCertificate, material.caCertificate, 0o644),
            (files.caKey, material.caKey, 0o600),
            (files.serverCertificate, material.serverCertificate, 0o644),
            (files.serverKey, material.serverKey, 0o600),
            (files.clientCertificate, material.clientCertificate, 0o644),
            (files.clientKey, material.clientKey, 0o600),
            (files.crl, material.crl, 0o644),
        ]
        var written: [String] = []
        do throws(DevelopmentPKIError) {
            for output in outputs {
                try FileSystem.refuseExisting(output.path)
                try FileSystem.writeAtomically(output.bytes, to: output.path, mode: output.mode)
                written.append(output.path)
            }
        } catch {
            for path in written {
                FileSystem.remove(path)
            }
            throw error
        }
        return files
    }
}

// MARK: - Parameters

/// `generate`'s arguments, validated.
private struct Parameters {
    static let backdateSeconds = 3600  // notBefore / lastUpdate = now − 1 h, for clock skew.
    static let crlValidityDays: Int32 = 365
    static let maximumValidityDays = 36_500

    var serverDNSNames: [String]
    var serverIPAddresses: [String]
    var clientCommonName: String
    var validityDays: Int32

    init(
        serverDNSNames: [String],
        serverIPAddresses: [String],
        clientCommonName: String,
        validityDays: Int
    ) throws(DevelopmentPKIError) {
        guard !serverDNSNames.isEmpty || !serverIPAddresses.isEmpty else {
            throw Self.invalid("serverDNSNames and serverIPAddresses are both empty")
        }
        for name in serverDNSNames {
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw Self.invalid("server DNS name \(String(reflecting: name)) is not printable ASCII")
            }
        }
        // IP address syntax is checked by OpenSSL (a2i_IPADDRESS) when the subjectAltName is built.
        guard !clientCommonName.isEmpty, clientCommonName.utf8.count <= 64 else {
            throw Self.invalid("clientCommonName must be 1...64 bytes")
        }
        guard (1...Self.maximumValidityDays).contains(validityDays) else {
            throw Self.invalid("validityDays must be 1...\(Self.maximumValidityDays), got \(validityDays)")
        }
        self.serverDNSNames = serverDNSNames
        self.serverIPAddresses = serverIPAddresses
        self.clientCommonName = clientCommonName
        self.validityDays = Int32(validityDays)
    }

    private static func invalid(_ reason: String) -> DevelopmentPKIError {
        DevelopmentPKIError(code: .invalidArgument, operation: "DevelopmentPKI.generate", reason: reason)
    }
}

// MARK: - Material

/// The PEM encodings of every file, built in memory.
private struct Material {
    var caCertificate: [UInt8]
    var caKey: [UInt8]
    var serverCertificate: [UInt8]
    var serverKey: [UInt8]
    var clientCertificate: [UInt8]
    var clientKey: [UInt8]
    var crl: [UInt8]

    init(_ parameters: Parameters, now: time_t) throws(DevelopmentPKIError) {
        let caKey = try PrivateKey.generateP256()
        let ca = try Self.makeCA(key: caKey, parameters: parameters, now: now)

        let serverKey = try PrivateKey.generateP256()
        let server = try Self.makeLeaf(
            subject: DistinguishedName([("CN", "localhost"), ("O", "Gatehouse")]),
            key: serverKey, ca: ca, extendedKeyUsage: "serverAuth", parameters: parameters, now: now
        )
        try server.addSubjectAltName(dnsNames: parameters.serverDNSNames, ipAddresses: parameters.serverIPAddresses)
        try server.sign(with: caKey)

        let clientKey = try PrivateKey.generateP256()
        let client = try Self.makeLeaf(
            subject: DistinguishedName([("CN", parameters.clientCommonName), ("O", "Gatehouse")]),
            key: clientKey, ca: ca, extendedKeyUsage: "clientAuth", parameters: parameters, now: now
        )
        try client.sign(with: caKey)

        let crl = try CertificateRevocationList()
        try crl.setVersion2()
        try crl.setIssuerName(from: ca)
        try crl.setUpdateTimes(now: now, backdateSeconds: Parameters.backdateSeconds, days: Parameters.crlValidityDays)
        try crl.setCRLNumber(1)
        try crl.addAuthorityKeyIdentifier(issuer: ca)
        try crl.sign(with: caKey)

        self.caCertificate = try ca.pem()
        self.caKey = try caKey.pkcs8PEM()
        self.serverCertificate = try server.pem()
        self.serverKey = try serverKey.pkcs8PEM()
        self.clientCertificate = try client.pem()
        self.clientKey = try clientKey.pkcs8PEM()
        self.crl = try crl.pem()
    }

    /// Self-signed, `CN=Gatehouse Development CA, O=Gatehouse`.
    private static func makeCA(
        key: PrivateKey,
        parameters: Parameters,
        now: time_t
    ) throws(DevelopmentPKIError) -> Certificate {
        let certificate = try Certificate()
        let name = try DistinguishedName([("CN", "Gatehouse Development CA"), ("O", "Gatehouse")])
        try certificate.setVersion3()
        try certificate.setRandomSerialNumber()
        try certificate.setSubjectName(name)
        try certificate.setIssuerName(name)
        try certificate.setValidity(now: now, backdateSeconds: Parameters.backdateSeconds, days: parameters.validityDays)
        try certificate.setPublicKey(of: key)
        try certificate.addExtension(nid: NID_basic_constraints, value: "critical,CA:TRUE", issuer: certificate)
        try certificate.addExtension(nid: NID_key_usage, value: "critical,keyCertSign,cRLSign", issuer: certificate)
        try certificate.addExtension(nid: NID_subject_key_identifier, value: "hash", issuer: certificate)
        try certificate.addExtension(nid: NID_authority_key_identifier, value: "keyid:always", issuer: certificate)
        try certificate.sign(with: key)
        return certificate
    }

    /// An end-entity certificate issued by `ca`, not yet signed (the caller may add more extensions first).
    private static func makeLeaf(
        subject: DistinguishedName,
        key: PrivateKey,
        ca: Certificate,
        extendedKeyUsage: String,
        parameters: Parameters,
        now: time_t
    ) throws(DevelopmentPKIError) -> Certificate {
        let certificate = try Certificate()
        try certificate.setVersion3()
        try certificate.setRandomSerialNumber()
        try certificate.setSubjectName(subject)
        try certificate.setIssuerName(from: ca)
        try certificate.setValidity(now: now, backdateSeconds: Parameters.backdateSeconds, days: parameters.validityDays)
        try certificate.setPublicKey(of: key)
        try certificate.addExtension(nid: NID_basic_constraints, value: "critical,CA:FALSE", issuer: ca)
        try certificate.addExtension(nid: NID_key_usage, value: "critical,digitalSignature", issuer: ca)
        try certificate.addExtension(nid: NID_ext_key_usage, value: extendedKeyUsage, issuer: ca)
        try certificate.addExtension(nid: NID_subject_key_identifier, value: "hash", issuer: ca)
        try certificate.addExtension(nid: NID_authority_key_identifier, value: "keyid:always", issuer: ca)
        return certificate
    }
}
