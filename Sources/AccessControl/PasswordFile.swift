internal import COpenSSL

/// A Mosquitto-compatible password file (`password_file`): one `username:hash` per line, where the hash is
/// `$7$<iterations>$<salt>$<PBKDF2-HMAC-SHA512>` (what `mosquitto_passwd` writes) or the older
/// `$6$<salt>$<SHA512(password + salt)>`, salts and hashes in base64. Files made with `mosquitto_passwd` work as
/// they are, and `gatehouse passwd` writes the same format.
///
/// An immutable value: reload builds a new one.
public struct PasswordFile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var username: String
        public var hash: PasswordHash
    }

    public private(set) var entries: [String: Entry] = [:]
    /// Usernames in file order, so rewriting the file keeps it stable.
    public private(set) var order: [String] = []

    public init() {}

    /// Parses the file text. Blank lines and `#` comments are skipped; any other malformed line is an error
    /// naming its line number.
    public init(parsing text: String, path: String) throws(AccessControlError) {
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.trimmingCharacters(in: " \t\r")
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw AccessControlError(path: path, line: lineNumber, message: "expected 'username:hash'")
            }
            let username = String(line[..<colon])
            guard !username.isEmpty else {
                throw AccessControlError(path: path, line: lineNumber, message: "empty username")
            }
            guard let hash = PasswordHash(parsing: String(line[line.index(after: colon)...])) else {
                throw AccessControlError(
                    path: path, line: lineNumber, message: "unsupported password hash for '\(username)' (expected $6$ or $7$)")
            }
            if entries[username] == nil { order.append(username) }
            entries[username] = Entry(username: username, hash: hash)
        }
    }

    /// True when `username` exists and `password` matches its hash.
    public func verify(username: String, password: [UInt8]) -> Bool {
        guard let entry = entries[username] else {
            // Spend the same work as a real check so timing does not tell which usernames exist.
            _ = PasswordHash.pbkdf2(password: password, salt: [UInt8](repeating: 0, count: 12), iterations: 101)
            return false
        }
        return entry.hash.matches(password)
    }

    /// Adds or replaces a user with a fresh `$7$` hash.
    public mutating func set(username: String, password: [UInt8]) throws(AccessControlError) {
        guard !username.isEmpty, !username.contains(":"), !username.contains("\n") else {
            throw AccessControlError(path: "", line: nil, message: "a username must be non-empty and contain no ':'")
        }
        let hash = try PasswordHash.make(password: password)
        if entries[username] == nil { order.append(username) }
        entries[username] = Entry(username: username, hash: hash)
    }

    /// Removes a user; false when there was none.
    public mutating func remove(username: String) -> Bool {
        guard entries.removeValue(forKey: username) != nil else { return false }
        order.removeAll { $0 == username }
        return true
    }

    /// The file text, one line per user.
    public var text: String {
        order.compactMap { entries[$0] }.map { "\($0.username):\($0.hash.encoded)\n" }.joined()
    }
}

/// One stored password hash.
public enum PasswordHash: Sendable, Equatable {
    case sha512(salt: [UInt8], hash: [UInt8])
    case pbkdf2SHA512(iterations: Int, salt: [UInt8], hash: [UInt8])

    /// Mosquitto 2's defaults.
    public static let defaultIterations = 101
    public static let saltLength = 12

    init?(parsing text: String) {
        let parts = text.split(separator: "$", omittingEmptySubsequences: false).map(String.init)
        // "$7$101$salt$hash" splits into ["", "7", "101", "salt", "hash"].
        guard parts.count >= 4, parts[0].isEmpty else { return nil }
        switch parts[1] {
        case "6" where parts.count == 4:
            guard let salt = Base64.decode(parts[2]), let hash = Base64.decode(parts[3]), hash.count == 64 else {
                return nil
            }
            self = .sha512(salt: salt, hash: hash)
        case "7" where parts.count == 5:
            guard let iterations = Int(parts[2]), iterations > 0, iterations <= 10_000_000,
                let salt = Base64.decode(parts[3]), let hash = Base64.decode(parts[4]), hash.count == 64
            else { return nil }
            self = .pbkdf2SHA512(iterations: iterations, salt: salt, hash: hash)
        default:
            return nil
        }
    }

    static func make(password: [UInt8]) throws(AccessControlError) -> PasswordHash {
        var salt = [UInt8](repeating: 0, count: saltLength)
        guard RAND_bytes(&salt, Int32(saltLength)) == 1 else {
            throw AccessControlError(path: "", line: nil, message: "cannot get random bytes for a salt")
        }
        guard let hash = pbkdf2(password: password, salt: salt, iterations: defaultIterations) else {
            throw AccessControlError(path: "", line: nil, message: "PBKDF2 failed")
        }
        return .pbkdf2SHA512(iterations: defaultIterations, salt: salt, hash: hash)
    }

    var encoded: String {
        switch self {
        case .sha512(let salt, let hash):
            return "$6$\(Base64.encode(salt))$\(Base64.encode(hash))"
        case .pbkdf2SHA512(let iterations, let salt, let hash):
            return "$7$\(iterations)$\(Base64.encode(salt))$\(Base64.encode(hash))"
        }
    }

    func matches(_ password: [UInt8]) -> Bool {
        let computed: [UInt8]?
        let expected: [UInt8]
        switch self {
        case .sha512(let salt, let hash):
            computed = Self.sha512(password + salt)
            expected = hash
        case .pbkdf2SHA512(let iterations, let salt, let hash):
            computed = Self.pbkdf2(password: password, salt: salt, iterations: iterations)
            expected = hash
        }
        guard let computed, computed.count == expected.count else { return false }
        return CRYPTO_memcmp(computed, expected, expected.count) == 0
    }

    static func pbkdf2(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8]? {
        var output = [UInt8](repeating: 0, count: 64)
        let ok = password.withUnsafeBufferPointer { passwordBytes in
            passwordBytes.withMemoryRebound(to: CChar.self) { passwordChars in
                PKCS5_PBKDF2_HMAC(
                    passwordChars.baseAddress, Int32(passwordChars.count), salt, Int32(salt.count), Int32(iterations),
                    EVP_sha512(), 64, &output)
            }
        }
        return ok == 1 ? output : nil
    }

    static func sha512(_ bytes: [UInt8]) -> [UInt8]? {
        var output = [UInt8](repeating: 0, count: 64)
        var length: UInt32 = 0
        guard EVP_Digest(bytes, bytes.count, &output, &length, EVP_sha512(), nil) == 1, length == 64 else {
            return nil
        }
        return output
    }
}

/// Standard base64 (with padding), as Mosquitto writes it.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        var output = [UInt8](repeating: 0, count: 4 * ((bytes.count + 2) / 3) + 1)
        let length = EVP_EncodeBlock(&output, bytes, Int32(bytes.count))
        return String(decoding: output.prefix(Int(max(0, length))), as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard !input.isEmpty, input.count % 4 == 0 else { return nil }
        var output = [UInt8](repeating: 0, count: input.count / 4 * 3)
        let length = EVP_DecodeBlock(&output, input, Int32(input.count))
        guard length >= 0 else { return nil }
        // EVP_DecodeBlock counts padding as zero bytes: drop them.
        let padding = input.reversed().prefix { $0 == UInt8(ascii: "=") }.count
        return Array(output.prefix(Int(length) - padding))
    }
}

extension Substring {
    func trimmingCharacters(in characters: String) -> Substring {
        var result = self
        while let first = result.first, characters.contains(first) { result.removeFirst() }
        while let last = result.last, characters.contains(last) { result.removeLast() }
        return result
    }
}
