// What every libFuzzer harness here shares: handing control to libFuzzer (a fuzzing build), or replaying the
// files and directories named on the command line through the same harness (a plain build), to reproduce a crash
// or re-run a corpus.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// libFuzzer's `LLVMFuzzerTestOneInput` signature.
public typealias FuzzTestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

#if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    func llvmFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: FuzzTestOneInput
    ) -> Int32
#endif

public enum FuzzDriver {
    /// Runs libFuzzer with the process's arguments (built with -DFUZZING and -sanitize=fuzzer), else replays every
    /// input named on the command line; exits either way.
    public static func main(_ testOneInput: FuzzTestOneInput) -> Never {
        #if FUZZING
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            exit(llvmFuzzerRunDriver(&argc, &argv, testOneInput))
        #else
            func replay(path: String) -> Bool {
                guard let bytes = readFile(path) else { return false }
                _ = bytes.withUnsafeBufferPointer { testOneInput($0.baseAddress, $0.count) }
                return true
            }
            var replayed = 0
            for argument in CommandLine.arguments.dropFirst() where !argument.hasPrefix("-") {
                if let directory = opendir(argument) {
                    while let entry = readdir(directory) {
                        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                        }
                        if name != "." && name != ".." && replay(path: argument + "/" + name) { replayed += 1 }
                    }
                    closedir(directory)
                } else if replay(path: argument) {
                    replayed += 1
                } else {
                    print("cannot read \(argument)")
                    exit(1)
                }
            }
            print("replayed \(replayed) inputs without a failure")
            exit(0)
        #endif
    }

    /// The whole file, or nil if it cannot be read.
    public static func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes += chunk[..<count]
        }
        return ferror(file) == 0 ? bytes : nil
    }
}
