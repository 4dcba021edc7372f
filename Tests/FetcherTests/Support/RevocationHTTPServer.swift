import Foundation

/// A loopback HTTP server (Python's http.server) standing in for a CA's CRL distribution point and OCSP
/// responder. Driven through files in `root`, so a test changes its answers between fetches:
///
/// - `GET /<name>`: `<name>.status` (a number) answers that status with no body; otherwise the bytes of `<name>`
///   with a strong ETag (a hash of the bytes) and a fixed Last-Modified, and 304 when If-None-Match matches
///   (unless `<name>.ignore-conditional` exists).
/// - `POST /<name>`: `<name>.post-status` answers that status; otherwise the bytes of `<name>`.
/// - `GET /<name>/<anything>`: the bytes of `<name>` (the OCSP GET form).
/// - Every request appends "METHOD path if-none-match" to `requests.log`.
final class RevocationHTTPServer: @unchecked Sendable {
    private let process = Process()
    let port: Int
    let root: String

    static let lastModified = "Wed, 01 Jan 2025 00:00:00 GMT"

    private static let script = #"""
    import http.server, sys, os, hashlib
    root = sys.argv[1]
    def path_of(name): return os.path.join(root, name)
    def read(name):
        with open(path_of(name), "rb") as f: return f.read()
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args): pass
        def log_request_line(self):
            with open(path_of("requests.log"), "a") as f:
                f.write("%s %s %s\n" % (self.command, self.path, self.headers.get("If-None-Match", "-")))
        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for key, value in headers: self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and status != 304: self.wfile.write(body)
        def do_GET(self):
            self.log_request_line()
            parts = self.path.lstrip("/").split("/", 1)
            name = parts[0]
            if len(parts) == 2:
                if os.path.exists(path_of(name)): return self.reply(200, read(name))
                return self.reply(404)
            if os.path.exists(path_of(name + ".status")):
                return self.reply(int(read(name + ".status").strip()))
            if not os.path.exists(path_of(name)): return self.reply(404)
            body = read(name)
            tag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]
            headers = [("ETag", tag), ("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT")]
            if self.headers.get("If-None-Match") == tag and not os.path.exists(path_of(name + ".ignore-conditional")):
                return self.reply(304, b"", headers)
            self.reply(200, body, headers)
        def do_POST(self):
            self.log_request_line()
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            name = self.path.lstrip("/")
            if os.path.exists(path_of(name + ".post-status")):
                return self.reply(int(read(name + ".post-status").strip()))
            if not os.path.exists(path_of(name)): return self.reply(404)
            self.reply(200, read(name), [("Content-Type", "application/ocsp-response")])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """#

    init() throws {
        root = try TestFiles.makeDirectory("gatehouse-fetcher-http")
        let scriptPath = root + "/server.py"
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scriptPath, root]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line = output.fileHandleForReading.availableData
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw OpenSSLTool.Failure(arguments: ["python3", scriptPath], status: nil, output: "server did not start")
        }
        self.port = port
    }

    func url(_ path: String) -> String {
        "http://127.0.0.1:\(port)\(path)"
    }

    /// Serves `bytes` as `name` (and clears any status override).
    func serve(_ bytes: [UInt8], as name: String) throws {
        try? FileManager.default.removeItem(atPath: root + "/\(name).status")
        // Replaced by rename, so a concurrent request sees the old bytes or the new ones.
        try TestFiles.write(bytes, to: root + "/\(name).tmp")
        guard rename(root + "/\(name).tmp", root + "/\(name)") == 0 else {
            throw OpenSSLTool.Failure(arguments: ["rename", name], status: errno, output: "cannot serve \(name)")
        }
    }

    func serve(file path: String, as name: String) throws {
        try serve(try TestFiles.bytes(path), as: name)
    }

    /// Answers GET `name` with `status` (nil: back to serving the file).
    func answer(_ name: String, status: Int?) throws {
        let path = root + "/\(name).status"
        if let status {
            try TestFiles.write(Array("\(status)\n".utf8), to: path)
        } else {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Answers POST `name` with `status`.
    func answerPost(_ name: String, status: Int) throws {
        try TestFiles.write(Array("\(status)\n".utf8), to: root + "/\(name).post-status")
    }

    /// Whether GET `name` ignores If-None-Match (a server without conditional requests).
    func ignoreConditional(_ name: String) throws {
        try TestFiles.write([], to: root + "/\(name).ignore-conditional")
    }

    /// The request log: one "METHOD path if-none-match" line per request, oldest first.
    var requests: [String] {
        guard let text = try? String(contentsOfFile: root + "/requests.log", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    func stop() {
        // SIGKILL: the interpreter may sit behind a version-manager shim that does not pass SIGTERM on.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: root)
    }
}
