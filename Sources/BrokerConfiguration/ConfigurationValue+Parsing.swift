#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why one value was rejected; the loader adds file, line and key to make it a `ConfigurationError`.
struct ValueError: Error, Equatable {
    var message: String
}

/// What value parsing needs from outside the value itself.
struct ValueParsingContext: Sendable {
    /// Absolute directory that relative paths resolve against.
    var baseDirectory: String
    /// Meaning of `auto` for `integerOrAuto`.
    var cpuCount: Int
}

extension ConfigurationValue {
    /// Parses `text` (already trimmed and unquoted) as a value of `kind`.
    static func parse(
        _ text: String, as kind: ValueKind, context: ValueParsingContext
    ) throws(ValueError) -> ConfigurationValue {
        switch kind {
        case .integer(let range):
            return .integer(try parseInteger(text, in: range))
        case .integerOrAuto(let range):
            if text == "auto" {
                return .integer(min(max(context.cpuCount, range.lowerBound), range.upperBound))
            }
            guard isInteger(text) else {
                throw ValueError(message: "invalid value '\(text)' (use an integer \(describe(range)) or auto)")
            }
            return .integer(try parseInteger(text, in: range))
        case .duration(let minimum, let maximum):
            let duration = try parseDuration(text, maximum: maximum)
            guard duration >= minimum else {
                throw ValueError(message: "'\(text)' is too short (the minimum is \(format(minimum)))")
            }
            return .duration(duration)
        case .size(let range):
            let size = try parseSize(text)
            guard range.contains(size) else {
                throw ValueError(message: "size '\(text)' is out of range (\(describe(range)) bytes)")
            }
            return .integer(size)
        case .boolean:
            return .boolean(try parseBoolean(text))
        case .choice(let choices):
            guard choices.contains(text) else {
                throw ValueError(
                    message: "invalid value '\(text)' (use one of: \(choices.joined(separator: ", ")))")
            }
            return .string(text)
        case .file, .directory:
            return .string(PathNormalizer.absolute(text, relativeTo: context.baseDirectory))
        case .fileList:
            return .list(parseList(text).map { PathNormalizer.absolute($0, relativeTo: context.baseDirectory) })
        case .url:
            return .string(try parseURL(text))
        case .urlList:
            var urls: [String] = []
            for item in parseList(text) {
                urls.append(try parseURL(item))
            }
            return .list(urls)
        case .list:
            return .list(parseList(text))
        case .tlsVersions:
            return .list(try parseTLSVersions(text).map(\.rawValue))
        case .address:
            return .address(try parseAddress(text))
        case .addressOrOff:
            if text == "off" {
                return .address(nil)
            }
            return .address(try parseAddress(text, alternatives: " or off"))
        }
    }

    // MARK: Numbers

    static func parseInteger(_ text: String, in range: ClosedRange<Int>) throws(ValueError) -> Int {
        guard isInteger(text) else {
            throw ValueError(message: "invalid integer '\(text)'")
        }
        guard let value = Int(text), range.contains(value) else {
            throw ValueError(message: "'\(text)' is out of range (\(describe(range)))")
        }
        return value
    }

    private static func isInteger(_ text: String) -> Bool {
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        return !digits.isEmpty && digits.allSatisfy(\.isASCIIDigit)
    }

    /// `1-65535`.
    static func describe(_ range: ClosedRange<Int>) -> String {
        "\(range.lowerBound)-\(range.upperBound)"
    }

    // MARK: Durations

    private static let durationUnits: [(unit: String, milliseconds: Int64)] = [
        ("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]

    /// One or more `<digits><unit>` groups (`15s`, `1h30m`, `500ms`); a bare number has no unit and is rejected.
    /// Durations above `maximum` are rejected: every duration is later added to clock instants or converted to
    /// other units, where a value near `Int64.max` milliseconds would overflow.
    static func parseDuration(_ text: String, maximum: Duration) throws(ValueError) -> Duration {
        let invalid = ValueError(
            message: "invalid duration '\(text)' (use a number with a unit: ms, s, m, h, d; e.g. 15s)")
        let tooLarge = ValueError(message: "'\(text)' is too long (the maximum is \(format(maximum)))")
        var rest = Substring(text)
        var total: Int64 = 0
        guard !rest.isEmpty else { throw invalid }
        while !rest.isEmpty {
            let digits = rest.prefix(while: \.isASCIIDigit)
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix(while: { $0.isASCII && $0.isLetter })
            rest = rest.dropFirst(unit.count)
            guard !digits.isEmpty,
                  let factor = durationUnits.first(where: { $0.unit == unit })?.milliseconds
            else { throw invalid }
            guard let count = Int64(digits) else { throw tooLarge }
            let (product, productOverflow) = count.multipliedReportingOverflow(by: factor)
            let (sum, sumOverflow) = total.addingReportingOverflow(product)
            guard !productOverflow, !sumOverflow else { throw tooLarge }
            total = sum
        }
        let duration = Duration.milliseconds(total)
        guard duration <= maximum else { throw tooLarge }
        return duration
    }

    /// The shortest `1h30m`-style text for a duration, used in messages.
    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        var milliseconds = seconds * 1_000 + attoseconds / 1_000_000_000_000_000
        if milliseconds == 0 {
            return "0s"
        }
        var text = ""
        for (unit, factor) in durationUnits.reversed() where milliseconds >= factor {
            text += "\(milliseconds / factor)\(unit)"
            milliseconds %= factor
        }
        return text
    }

    // MARK: Sizes

    private static let sizeUnits: [String: Int] = [
        "": 1, "b": 1,
        "k": 1 << 10, "kb": 1 << 10,
        "m": 1 << 20, "mb": 1 << 20,
        "g": 1 << 30, "gb": 1 << 30,
    ]

    /// Plain digits (bytes) or digits with a case-insensitive B, KB, MB or GB unit (1024 multiples).
    static func parseSize(_ text: String) throws(ValueError) -> Int {
        let digits = text.prefix(while: \.isASCIIDigit)
        let unit = text.dropFirst(digits.count).lowercased()
        guard !digits.isEmpty, let factor = sizeUnits[unit] else {
            throw ValueError(
                message: "invalid size '\(text)' (use bytes or a number with a unit: B, KB, MB, GB; e.g. 64MB)")
        }
        let tooLarge = ValueError(message: "size '\(text)' is too large")
        guard let count = Int(digits) else { throw tooLarge }
        let (size, overflow) = count.multipliedReportingOverflow(by: factor)
        guard !overflow else { throw tooLarge }
        return size
    }

    // MARK: Booleans, lists, URLs, TLS versions

    static func parseBoolean(_ text: String) throws(ValueError) -> Bool {
        switch text {
        case "true", "on": return true
        case "false", "off": return false
        default: throw ValueError(message: "invalid boolean '\(text)' (use true, false, on or off)")
        }
    }

    /// Splits on `,`, trims each item and drops empty ones.
    static func parseList(_ text: String) -> [String] {
        text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingWhitespace() }
            .filter { !$0.isEmpty }
    }

    static func parseURL(_ text: String) throws(ValueError) -> String {
        let lowered = text.lowercased()
        let isHTTP = ["http://", "https://"].contains { lowered.hasPrefix($0) && lowered.count > $0.count }
        guard isHTTP else {
            throw ValueError(message: "invalid URL '\(text)' (must start with http:// or https://)")
        }
        return text
    }

    static func parseTLSVersions(_ text: String) throws(ValueError) -> [TLSSettings.Version] {
        var versions: [TLSSettings.Version] = []
        for item in parseList(text) {
            let lowered = item.lowercased()
            if let version = TLSSettings.Version(rawValue: lowered) {
                if !versions.contains(version) {
                    versions.append(version)
                }
            } else if ["tlsv1", "tlsv1.0", "tlsv1.1", "sslv3"].contains(lowered) {
                throw ValueError(message: "TLS versions below 1.2 are not supported")
            } else {
                throw ValueError(message: "invalid TLS version '\(item)' (use tlsv1.2, tlsv1.3)")
            }
        }
        guard !versions.isEmpty else {
            throw ValueError(message: "at least one TLS version is required (tlsv1.2, tlsv1.3)")
        }
        return versions
    }

    // MARK: Addresses

    /// `PORT` (host `0.0.0.0`), `IPv4:PORT` or `[IPv6]:PORT`; `localhost` means `127.0.0.1`. The host is returned
    /// in its canonical text form so that equal addresses compare equal.
    static func parseAddress(_ text: String, alternatives: String = "") throws(ValueError) -> ListenAddress {
        let invalid = ValueError(
            message: "invalid address '\(text)' (use PORT, IPv4:PORT or [IPv6]:PORT\(alternatives))")
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw invalid }
            host = String(text[text.index(after: text.startIndex)..<close])
            let afterClose = text[text.index(after: close)...]
            guard afterClose.hasPrefix(":") else { throw invalid }
            portText = afterClose.dropFirst()
            guard host.contains(":") else {
                throw ValueError(message: "invalid host '\(host)' (only IPv6 addresses go in brackets)")
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else { throw invalid }
        } else {
            host = "0.0.0.0"
            portText = Substring(text)
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCIIDigit) else { throw invalid }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw ValueError(message: "port out of range (1-65535)")
        }
        if host == "localhost" {
            return ListenAddress(host: "127.0.0.1", port: port)
        }
        guard let canonical = canonicalIPAddress(host) else {
            throw ValueError(message: "invalid host '\(host)' (use a literal IPv4 or IPv6 address, or localhost)")
        }
        return ListenAddress(host: canonical, port: port)
    }

    /// The `inet_ntop` form of a literal IP address, or `nil` if `inet_pton` rejects it.
    static func canonicalIPAddress(_ host: String) -> String? {
        let family = host.contains(":") ? AF_INET6 : AF_INET
        var address = [UInt8](repeating: 0, count: 16)
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let converted = address.withUnsafeMutableBytes { bytes -> Bool in
            guard inet_pton(family, host, bytes.baseAddress) == 1 else { return false }
            return inet_ntop(family, bytes.baseAddress, &text, socklen_t(text.count)) != nil
        }
        guard converted else { return nil }
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Character {
    /// `0`–`9` only; `isNumber` would also accept other scripts' digits and fractions.
    var isASCIIDigit: Bool {
        isASCII && isWholeNumber
    }
}

extension StringProtocol {
    /// The text without leading and trailing whitespace (spaces, tabs, CR).
    func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }),
              let last = lastIndex(where: { !$0.isWhitespace })
        else { return "" }
        return String(self[first...last])
    }
}
