import Foundation
import RevocationCache
import Testing

@Suite struct DistributionPointRequestsTests {
    @Test("http and https URLs are acceptable", arguments: [
        "http://ca.example/root.crl", "https://ca.example/root.crl", "HTTP://CA.EXAMPLE/ROOT.CRL",
        "Https://ca.example:8443/a/b.crl?x=1", "http://127.0.0.1:1/root.crl", "http://[::1]:8080/x.crl",
    ])
    func acceptable(_ url: String) {
        #expect(DistributionPointRequests.isAcceptable(url))
    }

    @Test("other schemes, malformed URLs, spaces and control characters are not", arguments: [
        "", "http", "http:", "http:/ca.example/x.crl", "http:ca.example", "ftp://ca.example/x.crl",
        "ldap://ca.example/cn=CA?certificateRevocationList", "file:///etc/passwd", "javascript:alert(1)",
        "httpx://ca.example/x.crl", " http://ca.example/x.crl", "http://ca.example/x.crl ",
        "http://ca.example/a b.crl", "http://ca.example/a\tb", "http://ca.example/a\nb", "http://ca.example/a\rb",
        "http://ca.example/a\u{0}b", "http://ca.example/a\u{7f}b", "http://ca.example/a\u{1b}b",
        "http://", "https://", "http:///x.crl", "http://?x", "http://#x",
    ])
    func notAcceptable(_ url: String) {
        #expect(!DistributionPointRequests.isAcceptable(url))
    }

    @Test func lengthIsLimitedTo2048Bytes() {
        let prefix = "http://ca.example/"
        let longest = prefix + String(repeating: "a", count: 2048 - prefix.utf8.count)
        #expect(longest.utf8.count == 2048)
        #expect(DistributionPointRequests.isAcceptable(longest))
        #expect(!DistributionPointRequests.isAcceptable(longest + "a"))
        // Bytes, not characters: 2-byte characters count twice.
        let wide = prefix + String(repeating: "é", count: 1016)
        #expect(wide.utf8.count == 2050)
        #expect(!DistributionPointRequests.isAcceptable(wide))
    }

    func makeLayout() throws -> CacheLayout {
        let layout = CacheLayout(root: try TestFiles.makeDirectory("gatehouse-requests") + "/cache")
        try layout.create()
        return layout
    }

    @Test func submittedURLsArePendingOncePerURL() throws {
        let layout = try makeLayout()
        defer { try? FileManager.default.removeItem(atPath: layout.root) }
        let first = "http://ca.example/a.crl"
        let second = "https://ca.example/b.crl?x=1"
        try DistributionPointRequests.submit(first, layout: layout)
        try DistributionPointRequests.submit(second, layout: layout)
        try DistributionPointRequests.submit(first, layout: layout)

        let path = layout.requestFile(forURL: first)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == first + "\n")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        #expect(TestFiles.names(in: layout.requestDirectory).count == 2)

        let pending = DistributionPointRequests.pending(layout: layout)
        #expect(Set(pending.map(\.url)) == [first, second])
        #expect(Set(pending.map(\.path)) == [layout.requestFile(forURL: first), layout.requestFile(forURL: second)])
        // Listing does not take them: the fetcher deletes a request once it has it.
        #expect(DistributionPointRequests.pending(layout: layout).count == 2)
    }

    @Test func unacceptableTemporaryAndForeignFilesAreSkipped() throws {
        let layout = try makeLayout()
        defer { try? FileManager.default.removeItem(atPath: layout.root) }
        let good = "http://ca.example/a.crl"
        try DistributionPointRequests.submit(good, layout: layout)
        let directory = layout.requestDirectory
        // Written by someone else: an unacceptable URL is removed, not returned.
        try Data("ftp://ca.example/x.crl\n".utf8).write(to: URL(fileURLWithPath: directory + "/bad.url"))
        try Data("http://ca.example/a b.crl\n".utf8).write(to: URL(fileURLWithPath: directory + "/space.url"))
        try Data().write(to: URL(fileURLWithPath: directory + "/empty.url"))
        // A temp file of a write in progress, a dot file and a file of another kind are left alone.
        try Data("http://ca.example/t.crl\n".utf8).write(to: URL(fileURLWithPath: directory + "/x.url.tmp.123"))
        try Data("http://ca.example/h.crl\n".utf8).write(to: URL(fileURLWithPath: directory + "/.hidden.url"))
        try Data("http://ca.example/n.crl\n".utf8).write(to: URL(fileURLWithPath: directory + "/notes.txt"))
        // Surrounding whitespace is trimmed.
        try Data("  http://ca.example/w.crl \r\n".utf8).write(to: URL(fileURLWithPath: directory + "/w.url"))

        let pending = DistributionPointRequests.pending(layout: layout)
        #expect(Set(pending.map(\.url)) == [good, "http://ca.example/w.crl"])
        let names = Set(TestFiles.names(in: directory))
        #expect(!names.contains("bad.url") && !names.contains("space.url") && !names.contains("empty.url"))
        #expect(names.isSuperset(of: ["x.url.tmp.123", ".hidden.url", "notes.txt", "w.url"]))
    }

    @Test func aMissingRequestDirectoryMeansNothingPending() {
        let layout = CacheLayout(root: NSTemporaryDirectory() + "gatehouse-missing-\(UUID().uuidString)")
        #expect(DistributionPointRequests.pending(layout: layout).isEmpty)
    }

    @Test func submittingIntoAMissingDirectoryThrows() {
        let layout = CacheLayout(root: NSTemporaryDirectory() + "gatehouse-missing-\(UUID().uuidString)")
        #expect(throws: (any Error).self) {
            try DistributionPointRequests.submit("http://ca.example/a.crl", layout: layout)
        }
    }
}
