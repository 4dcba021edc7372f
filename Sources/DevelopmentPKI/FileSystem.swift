#if canImport(Glibc)
import Glibc
#endif
import ProcessSupport

/// The file operations `DevelopmentPKI.generate` needs, on top of ProcessSupport's, with errors turned into
/// `DevelopmentPKIError`. Stateless.
enum FileSystem {
    /// Creates `path` with mode 0700 and missing parents with 0755, like `mkdir -p -m 0700`.
    static func makeDirectory(_ path: String) throws(DevelopmentPKIError) {
        guard !path.isEmpty else {
            throw DevelopmentPKIError(code: .invalidArgument, operation: "mkdir", reason: "empty directory path")
        }
        do {
            try FileDescriptor.makeDirectory(path, mode: 0o700, parentMode: 0o755)
        } catch {
            throw converted(error)
        }
    }

    /// Throws `.fileExists` if anything (including a dangling symlink) is at `path`.
    static func refuseExisting(_ path: String) throws(DevelopmentPKIError) {
        var info = stat()
        if lstat(path, &info) == 0 {
            throw DevelopmentPKIError(code: .fileExists, operation: "refusing to overwrite", path: path)
        }
        let error = errno
        guard error == ENOENT else {
            throw DevelopmentPKIError(code: .system, operation: "lstat", path: path, errno: error)
        }
    }

    /// Temp file with exactly `mode`, fsync, rename, fsync of the directory (ProcessSupport).
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t) throws(DevelopmentPKIError) {
        do {
            try FileDescriptor.writeAtomically(bytes, to: path, mode: mode)
        } catch {
            throw converted(error)
        }
    }

    static func remove(_ path: String) {
        _ = unlink(path)
    }

    private static func converted(_ error: SystemError) -> DevelopmentPKIError {
        DevelopmentPKIError(code: .system, operation: error.call, path: error.detail, errno: error.errno)
    }
}

func systemErrorMessage(_ code: Int32) -> String {
    String(cString: strerror(code))
}
