import Foundation

/// Runs the `openssl` command-line tool (or another fixed tool) with a bounded run time. Stateless.
enum OpenSSLTool {
    struct Failure: Error, CustomStringConvertible {
        var arguments: [String]
        var status: Int32?
        var output: String

        var description: String {
            "\(arguments.joined(separator: " ")) exited \(status.map(String.init) ?? "by timeout"): \(output)"
        }
    }

    /// Runs `executable arguments`, waits at most `timeout` seconds, and throws unless it exits 0. Returns
    /// stdout and stderr together.
    @discardableResult
    static func check(
        _ arguments: [String], executable: String = "/usr/bin/openssl", timeout: Double = 20
    ) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let outputPath = NSTemporaryDirectory() + "fetcher-tool-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil),
              let outputHandle = FileHandle(forWritingAtPath: outputPath)
        else {
            throw Failure(arguments: arguments, status: nil, output: "cannot create \(outputPath)")
        }
        defer {
            try? outputHandle.close()
            try? FileManager.default.removeItem(atPath: outputPath)
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = outputHandle
        process.standardError = outputHandle
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            usleep(5_000)
        }
        if process.isRunning {
            process.terminate()
        }
        process.waitUntilExit()
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw Failure(arguments: arguments, status: process.terminationStatus, output: output)
        }
        return output
    }

    /// SHA-256 of a file in lowercase hex, by `sha256sum` (independent of the code under test).
    static func sha256(ofFile path: String) throws -> String {
        let output = try check([path], executable: "/usr/bin/sha256sum")
        return String(output.prefix { $0 != " " })
    }
}

/// File helpers for the tests.
enum TestFiles {
    static func bytes(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// The file's inode number.
    static func inode(_ path: String) throws -> UInt64 {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        guard let number = attributes[.systemFileNumber] as? NSNumber else {
            throw OpenSSLTool.Failure(arguments: ["stat", path], status: nil, output: "no inode number")
        }
        return number.uint64Value
    }

    static func names(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// A fresh, empty directory under the temporary directory.
    static func makeDirectory(_ prefix: String) throws -> String {
        let path = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
