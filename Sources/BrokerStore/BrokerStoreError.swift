/// A failure of the broker's SQLite store: which database file, what kind of failure, and what went wrong.
///
/// `kind` tells a caller how to react: `notADatabase`, `corrupt` and `incompatible` come from `BrokerStore.init`
/// and mean "refuse to start, a person must look at the file"; `sqlite` and `fileSystem` at run time are usually
/// transient (busy past the timeout, disk full) and the failed batch is retried.
public struct BrokerStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The closed set of failure kinds.
    public enum Kind: Sendable, Equatable {
        /// The file exists but is not an SQLite database (wrong header, too short, not a regular file).
        case notADatabase
        /// SQLite reports damage (`PRAGMA quick_check`, a malformed image), or a row holds a value this build
        /// cannot decode.
        case corrupt
        /// A sound SQLite database that is not Gatehouse's, or one written by a newer Gatehouse.
        case incompatible
        /// The directory or the file could not be created, opened or read.
        case fileSystem
        /// A statement failed at run time: busy past the timeout, disk full, I/O error.
        case sqlite
        /// The store was used after `close()`.
        case closed
    }

    public var kind: Kind
    /// The database file this error is about.
    public var path: String
    /// What is wrong, in words meant for the operator; never contains payload bytes.
    public var message: String

    public init(kind: Kind, path: String, message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    public var description: String { "broker store \(path): \(message)" }
}
