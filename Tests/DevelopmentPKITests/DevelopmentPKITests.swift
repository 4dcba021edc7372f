import DevelopmentPKI
import Foundation
import Testing

/// Generates PKIs into temporary directories and checks them with the real `openssl` CLI.
@Suite struct DevelopmentPKITests {
    // MARK: Paths

    @Test func filesComputesPathsOnly() {
        let files = DevelopmentPKIFiles(directory: "/nonexistent/pki")
        #expect(files.caCertificate == "/nonexistent/pki/ca.pem")
        #expect(files.caKey == "/nonexistent/pki/ca.key")
        #expect(files.serverCertificate == "/nonexistent/pki/server.pem")
        #expect(files.serverKey == "/nonexistent/pki/server.key")
        #expect(files.clientCertificate == "/nonexistent/pki/client.pem")
        #expect(files.clientKey == "/nonexistent/pki/client.key")
        #expect(files.crl == "/nonexistent/pki/crl.pem")
        #expect(files.all.count == 7)
        #expect(Set(files.all).count == 7)
        #expect(DevelopmentPKIFiles(directory: "/nonexistent/pki/").all == files.all)
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent/pki"))
    }

    // MARK: Chain, CRL, purposes

    @Test func certificatesVerifyAgainstCA() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            for leaf in [files.serverCertificate, files.clientCertificate] {
                let result = try openssl("verify", "-CAfile", files.caCertificate, leaf)
                #expect(result.status == 0, "\(result.output)")
                #expect(result.output.contains("\(leaf): OK"), "\(result.output)")
            }
        }
    }

    @Test func certificatesVerifyWithCRLCheck() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            for leaf in [files.clientCertificate, files.serverCertificate] {
                let result = try openssl(
                    "verify", "-crl_check", "-CAfile", files.caCertificate, "-CRLfile", files.crl, leaf
                )
                #expect(result.status == 0, "\(result.output)")
                #expect(result.output.contains("\(leaf): OK"), "\(result.output)")
            }
        }
    }

    @Test func certificatesHaveTheRightPurposes() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            let server = try openssl("verify", "-purpose", "sslserver", "-CAfile", files.caCertificate,
                                     files.serverCertificate)
            #expect(server.status == 0, "\(server.output)")
            let client = try openssl("verify", "-purpose", "sslclient", "-CAfile", files.caCertificate,
                                     files.clientCertificate)
            #expect(client.status == 0, "\(client.output)")

            // And not the other way round: each EKU names exactly one purpose.
            let serverAsClient = try openssl("verify", "-purpose", "sslclient", "-CAfile", files.caCertificate,
                                             files.serverCertificate)
            #expect(serverAsClient.status != 0, "\(serverAsClient.output)")
            let clientAsServer = try openssl("verify", "-purpose", "sslserver", "-CAfile", files.caCertificate,
                                             files.clientCertificate)
            #expect(clientAsServer.status != 0, "\(clientAsServer.output)")
        }
    }

    // MARK: Certificate contents

    @Test func caCertificateContents() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            let subject = try openssl("x509", "-in", files.caCertificate, "-noout", "-subject", "-issuer",
                                      "-nameopt", "RFC2253")
            #expect(subject.output.contains("subject=O=Gatehouse,CN=Gatehouse Development CA"), "\(subject.output)")
            #expect(subject.output.contains("issuer=O=Gatehouse,CN=Gatehouse Development CA"), "\(subject.output)")

            let text = try openssl("x509", "-in", files.caCertificate, "-noout", "-text")
            #expect(text.status == 0, "\(text.output)")
            #expect(text.output.contains("Version: 3 (0x2)"), "\(text.output)")
            #expect(text.output.contains("ecdsa-with-SHA256"), "\(text.output)")
            #expect(text.output.contains("NIST CURVE: P-256"), "\(text.output)")
            #expect(text.output.contains("X509v3 Basic Constraints: critical\n                CA:TRUE"), "\(text.output)")
            #expect(text.output.contains("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"),
                    "\(text.output)")
            #expect(text.output.contains("X509v3 Subject Key Identifier"), "\(text.output)")
        }
    }

    @Test func serverCertificateContents() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            let san = try openssl("x509", "-in", files.serverCertificate, "-noout", "-ext", "subjectAltName")
            #expect(san.output.contains("DNS:localhost"), "\(san.output)")
            #expect(san.output.contains("IP Address:127.0.0.1"), "\(san.output)")
            #expect(san.output.contains("IP Address:0:0:0:0:0:0:0:1"), "\(san.output)")

            let eku = try openssl("x509", "-in", files.serverCertificate, "-noout", "-ext", "extendedKeyUsage")
            #expect(eku.output.contains("TLS Web Server Authentication"), "\(eku.output)")
            #expect(!eku.output.contains("TLS Web Client Authentication"), "\(eku.output)")

            let other = try openssl("x509", "-in", files.serverCertificate, "-noout", "-ext",
                                    "basicConstraints,keyUsage,authorityKeyIdentifier")
            #expect(other.output.contains("CA:FALSE"), "\(other.output)")
            #expect(other.output.contains("Digital Signature"), "\(other.output)")
            #expect(other.output.contains("X509v3 Authority Key Identifier"), "\(other.output)")

            let subject = try openssl("x509", "-in", files.serverCertificate, "-noout", "-subject", "-issuer",
                                      "-nameopt", "RFC2253")
            #expect(subject.output.contains("subject=O=Gatehouse,CN=localhost"), "\(subject.output)")
            #expect(subject.output.contains("issuer=O=Gatehouse,CN=Gatehouse Development CA"), "\(subject.output)")
        }
    }

    @Test func clientCertificateContents() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki", clientCommonName: "device-42")
            let subject = try openssl("x509", "-in", files.clientCertificate, "-noout", "-subject",
                                      "-nameopt", "RFC2253")
            #expect(subject.output.contains("subject=O=Gatehouse,CN=device-42"), "\(subject.output)")

            let eku = try openssl("x509", "-in", files.clientCertificate, "-noout", "-ext", "extendedKeyUsage")
            #expect(eku.output.contains("TLS Web Client Authentication"), "\(eku.output)")
            #expect(!eku.output.contains("TLS Web Server Authentication"), "\(eku.output)")

            let keyUsage = try openssl("x509", "-in", files.clientCertificate, "-noout", "-ext", "keyUsage")
            #expect(keyUsage.output.contains("Digital Signature"), "\(keyUsage.output)")
        }
    }

    @Test func customServerNames() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(
                in: root + "/pki",
                serverDNSNames: ["broker.example", "localhost"],
                serverIPAddresses: ["10.1.2.3"]
            )
            let san = try openssl("x509", "-in", files.serverCertificate, "-noout", "-ext", "subjectAltName")
            #expect(san.output.contains("DNS:broker.example, DNS:localhost, IP Address:10.1.2.3"), "\(san.output)")
            let verify = try openssl("verify", "-CAfile", files.caCertificate, "-verify_hostname", "broker.example",
                                     files.serverCertificate)
            #expect(verify.status == 0, "\(verify.output)")
            let wrongHost = try openssl("verify", "-CAfile", files.caCertificate, "-verify_hostname", "other.example",
                                        files.serverCertificate)
            #expect(wrongHost.status != 0, "\(wrongHost.output)")
        }
    }

    @Test func serialNumbersArePositive16ByteAndDistinct() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            var serials: Set<String> = []
            for certificate in [files.caCertificate, files.serverCertificate, files.clientCertificate] {
                let result = try openssl("x509", "-in", certificate, "-noout", "-serial")
                let line = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(line.hasPrefix("serial="), "\(line)")
                let hex = String(line.dropFirst("serial=".count))
                #expect(hex.count == 32, "\(hex)")
                // Top bit clear (positive), next bit set (exactly 16 bytes).
                #expect(["4", "5", "6", "7"].contains(hex.first.map(String.init) ?? ""), "\(hex)")
                serials.insert(hex)
            }
            #expect(serials.count == 3)
        }
    }

    @Test func validityPeriod() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki", validityDays: 30)
            for certificate in [files.caCertificate, files.serverCertificate, files.clientCertificate] {
                // Valid now, and for 29 more days, but not 31.
                let now = try openssl("x509", "-in", certificate, "-noout", "-checkend", "0")
                #expect(now.status == 0, "\(now.output)")
                let soon = try openssl("x509", "-in", certificate, "-noout", "-checkend", "\(29 * 86_400)")
                #expect(soon.status == 0, "\(soon.output)")
                let later = try openssl("x509", "-in", certificate, "-noout", "-checkend", "\(31 * 86_400)")
                #expect(later.status != 0, "\(later.output)")
            }
            // notBefore is backdated by about an hour: the certificate already verifies at now − 50 minutes.
            let earlier = Int(Date().timeIntervalSince1970) - 3_000
            let verify = try openssl("verify", "-attime", "\(earlier)", "-CAfile", files.caCertificate,
                                     files.serverCertificate)
            #expect(verify.status == 0, "\(verify.output)")
            let tooEarly = try openssl("verify", "-attime", "\(earlier - 1_200)", "-CAfile", files.caCertificate,
                                       files.serverCertificate)
            #expect(tooEarly.status != 0, "\(tooEarly.output)")
        }
    }

    // MARK: Keys

    @Test func keysArePKCS8P256AndMatchTheirCertificates() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            let pairs = [
                (files.caKey, files.caCertificate),
                (files.serverKey, files.serverCertificate),
                (files.clientKey, files.clientCertificate),
            ]
            for (key, certificate) in pairs {
                let pem = try String(contentsOfFile: key, encoding: .utf8)
                #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n"), "\(key)")

                let text = try openssl("pkey", "-in", key, "-noout", "-text_pub")
                #expect(text.status == 0, "\(text.output)")
                #expect(text.output.contains("NIST CURVE: P-256"), "\(text.output)")

                let keyPublic = try openssl("pkey", "-in", key, "-pubout")
                let certificatePublic = try openssl("x509", "-in", certificate, "-noout", "-pubkey")
                #expect(keyPublic.status == 0 && certificatePublic.status == 0)
                #expect(keyPublic.output == certificatePublic.output, "\(key) does not match \(certificate)")
            }
        }
    }

    // MARK: CRL

    @Test func crlContents() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            let text = try openssl("crl", "-in", files.crl, "-noout", "-text")
            #expect(text.status == 0, "\(text.output)")
            #expect(text.output.contains("Version 2 (0x1)"), "\(text.output)")
            #expect(text.output.contains("ecdsa-with-SHA256"), "\(text.output)")
            #expect(text.output.contains("Issuer: CN = Gatehouse Development CA, O = Gatehouse"), "\(text.output)")
            #expect(text.output.contains("X509v3 CRL Number: \n                1\n"), "\(text.output)")
            #expect(text.output.contains("X509v3 Authority Key Identifier"), "\(text.output)")
            #expect(text.output.contains("No Revoked Certificates."), "\(text.output)")

            let signature = try openssl("crl", "-in", files.crl, "-noout", "-CAfile", files.caCertificate)
            #expect(signature.status == 0, "\(signature.output)")
            #expect(signature.output.contains("verify OK"), "\(signature.output)")
        }
    }

    // MARK: Files on disk

    @Test func fileAndDirectoryModes() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/nested/parents/pki")
            #expect(try permissions(of: files.directory) == 0o700)
            for key in [files.caKey, files.serverKey, files.clientKey] {
                #expect(try permissions(of: key) == 0o600, "\(key)")
            }
            for certificate in [files.caCertificate, files.serverCertificate, files.clientCertificate, files.crl] {
                #expect(try permissions(of: certificate) == 0o644, "\(certificate)")
            }
            // Exactly the seven files: no temporary files left behind.
            let names = try FileManager.default.contentsOfDirectory(atPath: files.directory).sorted()
            #expect(names == ["ca.key", "ca.pem", "client.key", "client.pem", "crl.pem", "server.key", "server.pem"])
        }
    }

    @Test func existingDirectoryIsAccepted() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root)
            let verify = try openssl("verify", "-CAfile", files.caCertificate, files.serverCertificate)
            #expect(verify.status == 0, "\(verify.output)")
        }
    }

    @Test func secondGenerateThrowsAndLeavesFilesUnchanged() throws {
        try withTemporaryDirectory { root in
            let files = try DevelopmentPKI.generate(in: root + "/pki")
            let before = try snapshot(files.all)
            let error = #expect(throws: DevelopmentPKIError.self) {
                try DevelopmentPKI.generate(in: root + "/pki")
            }
            #expect(error?.code == .fileExists)
            #expect(error?.path == files.caCertificate)
            #expect(try snapshot(files.all) == before)
            #expect(try permissions(of: files.caKey) == 0o600)
        }
    }

    @Test func anySingleExistingFileIsRefused() throws {
        try withTemporaryDirectory { root in
            let files = DevelopmentPKIFiles(directory: root)
            let operatorKey = Data("operator's key\n".utf8)
            try operatorKey.write(to: URL(fileURLWithPath: files.serverKey))
            let error = #expect(throws: DevelopmentPKIError.self) {
                try DevelopmentPKI.generate(in: root)
            }
            #expect(error?.code == .fileExists)
            #expect(error?.path == files.serverKey)
            #expect(try Data(contentsOf: URL(fileURLWithPath: files.serverKey)) == operatorKey)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root) == ["server.key"])
        }
    }

    // MARK: Invalid input

    @Test func invalidArgumentsWriteNothing() throws {
        try withTemporaryDirectory { root in
            let directory = root + "/pki"
            let badValidity = #expect(throws: DevelopmentPKIError.self) {
                try DevelopmentPKI.generate(in: directory, validityDays: 0)
            }
            #expect(badValidity?.code == .invalidArgument)

            let noNames = #expect(throws: DevelopmentPKIError.self) {
                try DevelopmentPKI.generate(in: directory, serverDNSNames: [], serverIPAddresses: [])
            }
            #expect(noNames?.code == .invalidArgument)

            let badDNS = #expect(throws: DevelopmentPKIError.self) {
                try DevelopmentPKI.generate(in: directory, serverDNSNames: ["bad name"])
            }
            #expect(badDNS?.code == .invalidArgument)

            #expect(!FileManager.default.fileExists(atPath: directory))
        }
    }

    @Test func invalidIPAddressIsAnOpenSSLErrorAndWritesNoFiles() throws {
        try withTemporaryDirectory { root in
            let directory = root + "/pki"
            let error = #expect(throws: DevelopmentPKIError.self) {
                try DevelopmentPKI.generate(in: directory, serverIPAddresses: ["999.1.2.3"])
            }
            #expect(error?.code == .openSSL)
            #expect(error?.operation.contains("a2i_GENERAL_NAME") == true, "\(String(describing: error))")
            #expect(error.map { !$0.openSSLErrors.isEmpty } == true, "\(String(describing: error))")
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            #expect(contents.isEmpty)
        }
    }
}
