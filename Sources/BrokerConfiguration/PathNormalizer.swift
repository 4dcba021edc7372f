import Foundation

/// Turns configuration paths into absolute, normalized paths (no `.`/`..` components, no trailing slash).
/// Pure string work: symlinks are not resolved and the file system is not touched.
enum PathNormalizer {
    /// `path` made absolute against `base` (itself made absolute against the current directory), then normalized.
    static func absolute(_ path: String, relativeTo base: String) -> String {
        if path.hasPrefix("/") {
            return normalize(path)
        }
        return normalize(absolute(base) + "/" + path)
    }

    /// `path` made absolute against the process's current directory, then normalized.
    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") {
            return normalize(path)
        }
        return normalize(FileManager.default.currentDirectoryPath + "/" + path)
    }

    /// The directory part of an absolute path (`/` for a file at the root).
    static func parent(of path: String) -> String {
        normalize(path + "/..")
    }

    /// Removes empty, `.` and `..` components of an absolute path; `..` at the root stays at the root.
    static func normalize(_ absolutePath: String) -> String {
        var components: [Substring] = []
        for component in absolutePath.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".":
                continue
            case "..":
                _ = components.popLast()
            default:
                components.append(component)
            }
        }
        return "/" + components.joined(separator: "/")
    }
}
