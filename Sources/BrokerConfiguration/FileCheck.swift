import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks that a file named by the configuration can be opened for reading. Reads file-system metadata only.
enum FileCheck {
    /// A message such as `file not found: /abs/path`, or `nil` when the file is a readable regular file.
    static func problem(at path: String) -> String? {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        return message(
            path: path, exists: exists, isDirectory: isDirectory.boolValue, isReadable: access(path, R_OK) == 0)
    }

    /// The decision of `problem(at:)`, separated from the file system so it can be tested as any user.
    static func message(path: String, exists: Bool, isDirectory: Bool, isReadable: Bool) -> String? {
        if !exists {
            return "file not found: \(path)"
        }
        if isDirectory {
            return "not a file: \(path)"
        }
        if !isReadable {
            return "file not readable: \(path)"
        }
        return nil
    }
}
