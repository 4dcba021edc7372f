#if canImport(Glibc)
import Glibc
#endif

/// Checks on the database path that run before SQLite opens it: the directory is created (mode 0700), and an
/// existing file must look like an SQLite database, so that SQLite never gets a chance to write to anything else.
enum DatabaseFile {
    /// What is at the path before opening.
    enum State: Equatable {
        case missing
        /// Zero bytes: SQLite treats it as a new database.
        case empty
        /// Starts with the SQLite header; whether it is sound is SQLite's `quick_check` to say.
        case database
    }

    private static let magic: [UInt8] = Array("SQLite format 3".utf8) + [0]
    private static let headerSize = 100

    /// Creates every missing directory on the way to `path`'s parent, each with mode 0700; existing directories
    /// keep their mode.
    static func createParentDirectory(of path: String) throws(BrokerStoreError) {
        guard let slash = path.lastIndex(of: "/") else { return }
        let parent = String(path[..<slash])
        var prefix = parent.hasPrefix("/") ? "" : "."
        for component in parent.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if mkdir(prefix, 0o700) == 0 {
                // The umask may have taken bits away; the directory holds session state, so it is owner-only.
                if chmod(prefix, 0o700) != 0 {
                    throw systemError(path: path, call: "chmod", on: prefix)
                }
                continue
            }
            let code = errno
            guard code == EEXIST else {
                throw systemError(path: path, call: "mkdir", on: prefix, code: code)
            }
            var info = stat()
            guard stat(prefix, &info) == 0 else {
                throw systemError(path: path, call: "stat", on: prefix)
            }
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw BrokerStoreError(
                    kind: .fileSystem, path: path, message: "\(prefix) exists and is not a directory"
                )
            }
        }
    }

    /// Creates an empty file readable by its owner only (an empty file is a new database).
    static func createPrivate(_ path: String) throws(BrokerStoreError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 {
            let code = errno
            if code == EEXIST { return }
            throw systemError(path: path, call: "open", on: path, code: code)
        }
        fchmod(fd, 0o600)
        close(fd)
    }

    /// Looks at the file without changing it: missing, empty, or starting with the SQLite header.
    static func inspect(_ path: String) throws(BrokerStoreError) -> State {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return .missing }
            throw systemError(path: path, call: "open", on: path, code: code)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw systemError(path: path, call: "fstat", on: path)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw BrokerStoreError(kind: .notADatabase, path: path, message: "is not a regular file")
        }
        if info.st_size == 0 { return .empty }
        var header = [UInt8](repeating: 0, count: headerSize)
        var filled = 0
        while filled < headerSize {
            let count = header.withUnsafeMutableBytes { buffer in
                pread(fd, buffer.baseAddress.map { $0 + filled }, headerSize - filled, off_t(filled))
            }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                throw systemError(path: path, call: "pread", on: path, code: code)
            }
            if count == 0 { break }
            filled += count
        }
        guard filled >= magic.count, Array(header[0..<magic.count]) == magic else {
            throw BrokerStoreError(
                kind: .notADatabase, path: path,
                message: "is not an SQLite database: its \(info.st_size) bytes do not start with the SQLite header"
            )
        }
        guard filled == headerSize else {
            throw BrokerStoreError(
                kind: .corrupt, path: path,
                message: "is truncated: \(info.st_size) bytes, shorter than the 100-byte SQLite header"
            )
        }
        return .database
    }

    private static func systemError(
        path: String, call: String, on target: String, code: Int32 = errno
    ) -> BrokerStoreError {
        let reason = String(cString: strerror(code))
        return BrokerStoreError(
            kind: .fileSystem, path: path, message: "\(call)(\(target)): \(reason) (errno \(code))"
        )
    }
}
