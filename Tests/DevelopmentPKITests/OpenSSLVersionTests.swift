import OpenSSLTLS
import Testing

@Suite struct OpenSSLVersionTests {
    @Test func descriptionNamesOpenSSL3() {
        #expect(OpenSSLVersion.description.hasPrefix("OpenSSL 3"), "\(OpenSSLVersion.description)")
    }
}
