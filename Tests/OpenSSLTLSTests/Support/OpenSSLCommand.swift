import Foundation

/// Runs the `openssl` command-line tool with a bounded run time; the process is always terminated. Stateless.
enum OpenSSLCommand {
    struct Failure: Error, CustomStringConvertible {
        var arguments: [String]
        var status: Int32
        var output: String

        var description: String {
            "openssl \(arguments.joined(separator: " ")) exited \(status): \(output)"
        }
    }

    /// The outcome of one run: exit status (nil if it had to be killed) and stdout+stderr.
    struct Outcome {
        var status: Int32?
        var output: String
    }

    static let executable = "/usr/bin/openssl"

    /// Runs `openssl arguments` in `directory`, feeding `input` on stdin (then closing it), and waits at most
    /// `timeout` seconds.
    static func run(
        _ arguments: [String],
        in directory: String? = nil,
        input: String = "",
        timeout: Double = 10
    ) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory {
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
        }
        let outputPath = NSTemporaryDirectory() + "openssl-out-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil),
              let outputHandle = FileHandle(forWritingAtPath: outputPath)
        else {
            throw Failure(arguments: arguments, status: -1, output: "cannot create \(outputPath)")
        }
        defer {
            try? outputHandle.close()
            try? FileManager.default.removeItem(atPath: outputPath)
        }
        let stdin = Pipe()
        process.standardInput = stdin
        process.standardOutput = outputHandle
        process.standardError = outputHandle
        try process.run()
        if !input.isEmpty {
            try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
        }
        try? stdin.fileHandleForWriting.close()

        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            usleep(5_000)
        }
        var status: Int32?
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        } else {
            process.waitUntilExit()
            status = process.terminationStatus
        }
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return Outcome(status: status, output: output)
    }

    /// Runs and throws unless the exit status is 0.
    @discardableResult
    static func check(_ arguments: [String], in directory: String? = nil, timeout: Double = 30) throws -> String {
        let outcome = try run(arguments, in: directory, timeout: timeout)
        guard outcome.status == 0 else {
            throw Failure(arguments: arguments, status: outcome.status ?? -1, output: outcome.output)
        }
        return outcome.output
    }
}
