import Foundation
import Testing

/// The output of one run of the `openssl` command-line tool (stdout and stderr merged).
struct OpenSSLCommandResult {
    var status: Int32
    var output: String
}

/// Runs the system `openssl` CLI, the independent oracle these tests check the generated PKI against.
func openssl(_ arguments: String...) throws -> OpenSSLCommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["openssl"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return OpenSSLCommandResult(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
}

/// A fresh directory under the system temporary directory, removed when the body returns.
func withTemporaryDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
    let root = FileManager.default.temporaryDirectory
        .appendingPathComponent("DevelopmentPKITests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: root) }
    return try body(root)
}

/// The permission bits of `path`.
func permissions(of path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return try #require(attributes[.posixPermissions] as? Int)
}

/// The contents of every file, keyed by path.
func snapshot(_ paths: [String]) throws -> [String: Data] {
    var contents: [String: Data] = [:]
    for path in paths {
        contents[path] = try Data(contentsOf: URL(fileURLWithPath: path))
    }
    return contents
}
