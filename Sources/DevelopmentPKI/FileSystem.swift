#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The POSIX file operations `DevelopmentPKI.generate` needs. Every call retries on `EINTR` and throws a
/// `DevelopmentPKIError` carrying the call's name, the path and errno. Stateless.
enum FileSystem {
    /// Creates `path` with `mode` (exactly, regardless of umask), creating missing parents with 0755 like
    /// `mkdir -p -m`. An existing directory is accepted as is and its mode left alone.
    static func makeDirectory(_ path: String, mode: mode_t) throws(DevelopmentPKIError) {
        guard !path.isEmpty else {
            throw DevelopmentPKIError(code: .invalidArgument, operation: "mkdir", reason: "empty directory path")
        }
        if try isDirectory(path) {
            return
        }
        let parent = parentDirectory(of: path)
        if parent != path {
            try makeDirectory(parent, mode: 0o755)
        }
        if mkdir(path, mode) != 0 {
            let error = errno
            if error == EEXIST, try isDirectory(path) {
                return  // Created concurrently; accept it as an existing directory.
            }
            throw system("mkdir", path: path, errno: error)
        }
        try retryingOnEINTR("chmod", path: path) { chmod(path, mode) }
    }

    /// Throws `.fileExists` if anything (including a dangling symlink) is at `path`.
    static func refuseExisting(_ path: String) throws(DevelopmentPKIError) {
        var info = stat()
        if lstat(path, &info) == 0 {
            throw DevelopmentPKIError(code: .fileExists, operation: "refusing to overwrite", path: path)
        }
        let error = errno
        guard error == ENOENT else {
            throw system("lstat", path: path, errno: error)
        }
    }

    /// Writes `bytes` to a new temporary file next to `path` (created with `mode`, then `fchmod`ed to exactly
    /// `mode`, so it is never more permissive than that), `fsync`s it, and renames it onto `path`.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t) throws(DevelopmentPKIError) {
        let (temporaryPath, descriptor) = try createTemporaryFile(nextTo: path, mode: mode)
        var renamed = false
        defer {
            if !renamed {
                _ = unlink(temporaryPath)
            }
        }
        do throws(DevelopmentPKIError) {
            try retryingOnEINTR("fchmod", path: temporaryPath) { fchmod(descriptor, mode) }
            try writeAll(bytes, to: descriptor, path: temporaryPath)
            try retryingOnEINTR("fsync", path: temporaryPath) { fsync(descriptor) }
        } catch {
            _ = close(descriptor)
            throw error
        }
        // close(2) must not be retried on EINTR on Linux: the descriptor is released either way.
        if close(descriptor) != 0 {
            throw system("close", path: temporaryPath, errno: errno)
        }
        try retryingOnEINTR("rename", path: path) { rename(temporaryPath, path) }
        renamed = true
    }

    /// `fsync`s a directory so that renames inside it are durable.
    static func syncDirectory(_ path: String) throws(DevelopmentPKIError) {
        let descriptor = try retryingOnEINTR("open", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { _ = close(descriptor) }
        try retryingOnEINTR("fsync", path: path) { fsync(descriptor) }
    }

    /// Best-effort removal, used to roll back files this process just created.
    static func remove(_ path: String) {
        _ = unlink(path)
    }

    // MARK: Helpers

    private static func isDirectory(_ path: String) throws(DevelopmentPKIError) -> Bool {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw DevelopmentPKIError(code: .fileExists, operation: "not a directory", path: path)
            }
            return true
        }
        let error = errno
        guard error == ENOENT else {
            throw system("stat", path: path, errno: error)
        }
        return false
    }

    private static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") {
            trimmed.removeLast()
        }
        guard let slash = trimmed.lastIndex(of: "/") else {
            return "."
        }
        if slash == trimmed.startIndex {
            return "/"
        }
        return String(trimmed[..<slash])
    }

    private static func createTemporaryFile(
        nextTo path: String,
        mode: mode_t
    ) throws(DevelopmentPKIError) -> (path: String, descriptor: Int32) {
        let directory = parentDirectory(of: path)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        var attempts = 0
        while true {
            let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
            let temporaryPath = "\(directory)/.\(name).\(suffix).tmp"
            let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
            if descriptor >= 0 {
                return (temporaryPath, descriptor)
            }
            let error = errno
            attempts += 1
            if error == EINTR || (error == EEXIST && attempts < 16) {
                continue
            }
            throw system("open", path: temporaryPath, errno: error)
        }
    }

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(DevelopmentPKIError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
            }
            if written < 0 {
                let error = errno
                if error == EINTR {
                    continue
                }
                throw system("write", path: path, errno: error)
            }
            offset += written
        }
    }

    @discardableResult
    private static func retryingOnEINTR(
        _ operation: String,
        path: String,
        _ body: () -> Int32
    ) throws(DevelopmentPKIError) -> Int32 {
        while true {
            let result = body()
            if result >= 0 {
                return result
            }
            let error = errno
            if error != EINTR {
                throw system(operation, path: path, errno: error)
            }
        }
    }

    private static func system(_ operation: String, path: String, errno: Int32) -> DevelopmentPKIError {
        DevelopmentPKIError(code: .system, operation: operation, path: path, errno: errno)
    }
}

/// `strerror` text for an errno value.
func systemErrorMessage(_ code: Int32) -> String {
    guard let message = strerror(code) else {
        return "unknown error"
    }
    return String(cString: message)
}
