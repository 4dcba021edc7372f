@testable import AccessControl
import Foundation
import Testing

@Suite struct PasswordFileTests {
    /// Runs mosquitto_passwd (Debian `mosquitto`) so the format is checked against the real tool.
    func mosquittoPasswd(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_passwd")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    func temporaryFile() -> String {
        NSTemporaryDirectory() + "gatehouse-passwd-\(UUID().uuidString)"
    }

    @Test func verifiesAFileWrittenByMosquittoPasswd() throws {
        let path = temporaryFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try mosquittoPasswd(["-c", "-b", path, "alice", "s3cret"]) == 0)
        #expect(try mosquittoPasswd(["-b", path, "bob", "hunter2"]) == 0)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let file = try PasswordFile(parsing: text, path: path)
        #expect(file.verify(username: "alice", password: Array("s3cret".utf8)))
        #expect(file.verify(username: "bob", password: Array("hunter2".utf8)))
        #expect(!file.verify(username: "alice", password: Array("hunter2".utf8)))
        #expect(!file.verify(username: "carol", password: Array("s3cret".utf8)))
        #expect(!file.verify(username: "alice", password: []))
    }

    @Test func writesAFileThatMosquittoAccepts() throws {
        var file = PasswordFile()
        try file.set(username: "dev-1", password: Array("pa ss:word".utf8))
        try file.set(username: "dev-2", password: Array("x".utf8))
        #expect(file.text.hasPrefix("dev-1:$7$101$"))
        // Parse our own output back.
        let parsed = try PasswordFile(parsing: file.text, path: "mem")
        #expect(parsed.verify(username: "dev-1", password: Array("pa ss:word".utf8)))
        #expect(parsed.order == ["dev-1", "dev-2"])
        // mosquitto_passwd -U rewrites plain passwords; a file with only hashed lines must survive it unchanged
        // (it refuses lines it cannot parse as hashes).
        let path = temporaryFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file.text.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try mosquittoPasswd(["-b", path, "dev-3", "y"]) == 0)
        let merged = try PasswordFile(parsing: try String(contentsOfFile: path, encoding: .utf8), path: path)
        #expect(merged.verify(username: "dev-1", password: Array("pa ss:word".utf8)))
        #expect(merged.verify(username: "dev-3", password: Array("y".utf8)))
    }

    @Test func replacingAUserKeepsItsPlace() throws {
        var file = PasswordFile()
        try file.set(username: "a", password: Array("1".utf8))
        try file.set(username: "b", password: Array("2".utf8))
        try file.set(username: "a", password: Array("3".utf8))
        #expect(file.order == ["a", "b"])
        #expect(file.verify(username: "a", password: Array("3".utf8)))
        #expect(!file.verify(username: "a", password: Array("1".utf8)))
    }

    @Test func acceptsTheOlderSHA512Format() throws {
        // $6$: SHA512(password + salt).
        let salt = Array("saltsaltsalt".utf8)
        let hash = try #require(PasswordHash.sha512(Array("pw".utf8) + salt))
        let line = "old:$6$\(Base64.encode(salt))$\(Base64.encode(hash))\n"
        let file = try PasswordFile(parsing: line, path: "mem")
        #expect(file.verify(username: "old", password: Array("pw".utf8)))
        #expect(!file.verify(username: "old", password: Array("pW".utf8)))
    }

    @Test func reportsMalformedLinesWithTheirNumber() {
        #expect(throws: AccessControlError(path: "p", line: 2, message: "expected 'username:hash'")) {
            try PasswordFile(parsing: "# comment\nnocolon\n", path: "p")
        }
        #expect(throws: AccessControlError(path: "p", line: 1, message: "unsupported password hash for 'u' (expected $6$ or $7$)")) {
            try PasswordFile(parsing: "u:plaintext\n", path: "p")
        }
        #expect(throws: AccessControlError(path: "p", line: 1, message: "empty username")) {
            try PasswordFile(parsing: ":$7$101$AAAA$BBBB\n", path: "p")
        }
        #expect(throws: AccessControlError.self) {
            try PasswordFile(parsing: "u:$7$abc$AAAA$BBBB\n", path: "p")
        }
    }

    @Test func rejectsBadUsernames() {
        var file = PasswordFile()
        #expect(throws: AccessControlError.self) { try file.set(username: "a:b", password: []) }
        #expect(throws: AccessControlError.self) { try file.set(username: "", password: []) }
    }

    @Test func base64RoundTrips() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let encoded = Base64.encode(bytes)
            if length == 0 {
                #expect(encoded.isEmpty)
            } else {
                #expect(Base64.decode(encoded) == bytes)
            }
        }
        #expect(Base64.decode("abc") == nil)
    }
}
