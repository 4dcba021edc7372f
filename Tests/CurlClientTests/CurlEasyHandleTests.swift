import CurlClient
import Foundation
import Testing

/// A real HTTP server on loopback (Python's http.server with a few extra routes), started once per suite.
final class LoopbackHTTPServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    let root: String

    static let script = #"""
    import http.server, sys, time, email.utils, hashlib, os
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            reply = (self.headers.get("Content-Type", "") + ":").encode() + body[::-1]
            self.send_response(200); self.send_header("Content-Length", str(len(reply))); self.end_headers()
            self.wfile.write(reply)
        def do_GET(self):
            if self.path == "/etag":
                tag = '"v1"'
                if self.headers.get("If-None-Match") == tag:
                    self.send_response(304); self.send_header("ETag", tag); self.end_headers(); return
                body = b"etag body"
                self.send_response(200); self.send_header("ETag", tag); self.send_header("Content-Length", str(len(body)))
                self.end_headers(); self.wfile.write(body); return
            if self.path.startswith("/redirect/"):
                n = int(self.path.rsplit("/", 1)[1])
                self.send_response(302)
                self.send_header("Location", "/crl.der" if n == 0 else f"/redirect/{n-1}")
                self.send_header("Content-Length", "0"); self.end_headers(); return
            if self.path == "/elsewhere":
                self.send_response(302)
                self.send_header("Location", "http://localhost:%d/crl.der" % self.server.server_address[1])
                self.send_header("Content-Length", "0"); self.end_headers(); return
            if self.path == "/loop":
                self.send_response(302); self.send_header("Location", "/loop"); self.send_header("Content-Length", "0")
                self.end_headers(); return
            if self.path == "/ftp":
                self.send_response(302); self.send_header("Location", "ftp://127.0.0.1/x"); self.send_header("Content-Length", "0")
                self.end_headers(); return
            if self.path == "/slow":
                time.sleep(3); self.send_response(200); self.end_headers(); return
            if self.path == "/error":
                self.send_response(500); self.send_header("Content-Length", "0"); self.end_headers(); return
            if self.path == "/chunked-big":
                self.send_response(200); self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
                chunk = b"x" * 65536
                for _ in range(64):
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n"); return
            return super().do_GET()
    os.chdir(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """#

    init() throws {
        root = NSTemporaryDirectory() + "gatehouse-http-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Data((0..<2000).map { UInt8(truncatingIfNeeded: $0) }).write(to: URL(fileURLWithPath: root + "/crl.der"))
        // Modified an hour ago, so that its Last-Modified validates (see `freshFileGivesNoValidator`).
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: root + "/crl.der")
        try Data(repeating: 0x41, count: 200_000).write(to: URL(fileURLWithPath: root + "/big.bin"))
        let scriptPath = root + "/server.py"
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scriptPath, root]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line = output.fileHandleForReading.availableData
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw CurlError(code: 0, status: nil, url: "", message: "test server did not start")
        }
        self.port = port
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    func stop() {
        // SIGKILL: the interpreter may sit behind a version-manager shim that does not pass SIGTERM on.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: root)
    }
}

@Suite(.serialized) final class CurlEasyHandleTests {
    let server: LoopbackHTTPServer
    let curl: CurlEasyHandle

    init() throws {
        server = try LoopbackHTTPServer()
        curl = try CurlEasyHandle()
    }

    deinit {
        server.stop()
    }

    @Test func getsABinaryBodyExactly() throws {
        let response = try curl.perform(HTTPRequest(url: server.url("/crl.der")))
        #expect(response.status == 200)
        #expect(response.body == (0..<2000).map { UInt8(truncatingIfNeeded: $0) })
        #expect(response.lastModified != nil)
    }

    @Test func conditionalGetCostsA304() throws {
        let first = try curl.perform(HTTPRequest(url: server.url("/etag")))
        #expect(first.etag == "\"v1\"")
        #expect(String(decoding: first.body, as: UTF8.self) == "etag body")
        let second = try curl.perform(HTTPRequest(url: server.url("/etag"), ifNoneMatch: first.etag))
        #expect(second.isNotModified)
        #expect(second.body.isEmpty)
        let file = try curl.perform(HTTPRequest(url: server.url("/crl.der")))
        let again = try curl.perform(HTTPRequest(url: server.url("/crl.der"), ifModifiedSince: file.lastModified))
        #expect(again.isNotModified)
    }

    /// A file served in the second it was written could change again within that second under the same
    /// Last-Modified: such a date is not kept as a validator, so the next request is unconditional.
    @Test func freshFileGivesNoValidator() throws {
        try Data("new".utf8).write(to: URL(fileURLWithPath: server.root + "/fresh.crl"))
        let response = try curl.perform(HTTPRequest(url: server.url("/fresh.crl")))
        #expect(response.status == 200)
        #expect(response.lastModified == nil)
    }

    @Test func lastModifiedValidatesOnlyASecondBeforeDate() {
        let date = "Sun, 29 Nov 2026 11:20:27 GMT"
        #expect(HTTPDate.parse(date) == 1_795_951_227)
        #expect(HTTPDate.validatingLastModified("Sun, 29 Nov 2026 11:20:26 GMT", date: date) != nil)
        #expect(HTTPDate.validatingLastModified("Sun, 29 Nov 2026 11:20:27 GMT", date: date) == nil)
        #expect(HTTPDate.validatingLastModified("Sun, 29 Nov 2026 11:20:26 GMT", date: nil) == nil)
        #expect(HTTPDate.validatingLastModified("yesterday-ish", date: date) == nil)
        #expect(HTTPDate.parse("not a date") == nil)
    }

    @Test func postsACopiedBody() throws {
        var body: [UInt8]? = Array("abc".utf8)
        let request = HTTPRequest(url: server.url("/ocsp"), method: .post(body: body ?? [], contentType: "application/ocsp-request"))
        body = nil
        let response = try curl.perform(request)
        #expect(String(decoding: response.body, as: UTF8.self) == "application/ocsp-request:cba")
    }

    @Test func followsUpToThreeRedirects() throws {
        let three = try curl.perform(HTTPRequest(url: server.url("/redirect/2")))
        #expect(three.body.count == 2000)
        #expect(three.effectiveURL.hasSuffix("/crl.der"))
        #expect(throws: CurlError.self) { try self.curl.perform(HTTPRequest(url: self.server.url("/redirect/3"))) }
        do {
            _ = try curl.perform(HTTPRequest(url: server.url("/loop")))
            Issue.record("a redirect loop succeeded")
        } catch {
            #expect(error.message == "more than 3 redirects")
            #expect(error.url == server.url("/loop"))
        }
    }

    /// `localhost` and `127.0.0.1` are one machine but two host names: a redirect between them leaves the host.
    @Test func redirectsToAnotherHostFollowThePolicy() throws {
        for policy in [RedirectPolicy.sameHost, .none] {
            do {
                _ = try curl.perform(HTTPRequest(url: server.url("/elsewhere"), redirectPolicy: policy))
                Issue.record("\(policy): a redirect to another host was followed")
            } catch {
                let target = "http://localhost:\(server.port)/crl.der"
                #expect(error.refusedRedirect == target)
                #expect(error.status == 302)
                #expect(error.url == server.url("/elsewhere"))
                let reason = policy == .none ? "redirects are not followed" : "another host"
                #expect(error.message == "redirect to \(target) refused: \(reason)")
            }
        }
        let followed = try curl.perform(HTTPRequest(url: server.url("/elsewhere"), redirectPolicy: .any))
        #expect(followed.body.count == 2000)
        #expect(followed.effectiveURL == "http://localhost:\(server.port)/crl.der")
        // Within the host: followed unless redirects are off.
        #expect(try curl.perform(HTTPRequest(url: server.url("/redirect/0"))).body.count == 2000)
        #expect(throws: CurlError.self) {
            try self.curl.perform(HTTPRequest(url: self.server.url("/redirect/0"), redirectPolicy: .none))
        }
    }

    @Test func redirectRefusalsByURL() {
        let policy = RedirectPolicy.sameHost
        #expect(policy.refusal(from: "http://ca.example/a.crl", to: "https://CA.example:8443/b.crl") == nil)
        #expect(policy.refusal(from: "http://ca.example/a.crl", to: "http://ca.example.evil/a.crl") == "another host")
        #expect(policy.refusal(from: "http://127.0.0.1:80/a", to: "http://127.0.0.2:80/a") == "another host")
        #expect(policy.refusal(from: "http://[::1]:80/a", to: "http://[::1]:81/a") == nil)
        #expect(policy.refusal(from: "http://ca.example/a", to: "ftp://ca.example/a") == "not an http or https URL")
        #expect(RedirectPolicy.any.refusal(from: "http://a/", to: "file:///etc/passwd") == "not an http or https URL")
        #expect(RedirectPolicy.any.refusal(from: "http://a/", to: "https://b/") == nil)
        #expect(RedirectPolicy.none.refusal(from: "http://a/", to: "http://a/b") == "redirects are not followed")
    }

    @Test func refusesOtherProtocols() {
        #expect(throws: CurlError.self) { try self.curl.perform(HTTPRequest(url: self.server.url("/ftp"))) }
        #expect(throws: CurlError.self) { try self.curl.perform(HTTPRequest(url: "file:///etc/passwd")) }
    }

    @Test func enforcesTheBodyLimitWhileDownloading() throws {
        // Content-Length known in advance…
        do {
            _ = try curl.perform(HTTPRequest(url: server.url("/big.bin"), maximumBodySize: 100_000))
            Issue.record("an oversized body was accepted")
        } catch {
            #expect(error.message == "body larger than 100000 bytes")
        }
        // …and a chunked body with no length: stopped by the write callback.
        do {
            _ = try curl.perform(HTTPRequest(url: server.url("/chunked-big"), maximumBodySize: 1_000_000))
            Issue.record("an oversized chunked body was accepted")
        } catch {
            #expect(error.message == "body larger than 1000000 bytes")
        }
        #expect(try curl.perform(HTTPRequest(url: server.url("/big.bin"), maximumBodySize: 200_000)).body.count == 200_000)
    }

    @Test func timesOut() {
        let started = Date()
        do {
            _ = try curl.perform(HTTPRequest(url: server.url("/slow"), timeout: .milliseconds(500)))
            Issue.record("a slow server did not time out")
        } catch {
            #expect(error.code == 28)  // CURLE_OPERATION_TIMEDOUT
        }
        #expect(Date().timeIntervalSince(started) < 2.5)
    }

    @Test func reportsHTTPErrorsWithStatusAndURL() {
        do {
            _ = try curl.perform(HTTPRequest(url: server.url("/error")))
            Issue.record("HTTP 500 succeeded")
        } catch {
            #expect(error.status == 500)
            #expect(error.url == server.url("/error"))
            #expect(error.description == "\(server.url("/error")): unexpected HTTP status (HTTP 500)")
        }
        do {
            _ = try curl.perform(HTTPRequest(url: server.url("/missing")))
            Issue.record("HTTP 404 succeeded")
        } catch {
            #expect(error.status == 404)
        }
    }

    @Test func reportsConnectionFailures() {
        do {
            _ = try curl.perform(HTTPRequest(url: "http://127.0.0.1:1/x", timeout: .seconds(2)))
            Issue.record("connecting to a closed port succeeded")
        } catch {
            #expect(error.code == 7)  // CURLE_COULDNT_CONNECT
            #expect(error.status == nil)
        }
    }
}
