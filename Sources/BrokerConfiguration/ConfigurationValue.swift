/// A value from the file after it has been parsed and validated against its `ValueKind`, or a schema default.
/// Internal to the loader; `ConfigurationValues` turns it into the model's typed fields.
enum ConfigurationValue: Sendable, Equatable {
    case integer(Int)
    case duration(Duration)
    case boolean(Bool)
    /// Choices, URLs and (already absolute) paths.
    case string(String)
    /// Comma lists: plain strings, URLs, absolute paths or TLS version names.
    case list([String])
    /// `nil` when an address-or-off key is `off`.
    case address(ListenAddress?)
}

/// What a key's value must look like; each case has one parser in `ConfigurationValue+Parsing.swift`.
enum ValueKind: Sendable {
    case integer(ClosedRange<Int>)
    /// An integer in range, or `auto` (the CPU count, clamped to the range).
    case integerOrAuto(ClosedRange<Int>)
    /// `<digits><unit>` groups; values outside `minimum...maximum` are rejected.
    case duration(minimum: Duration, maximum: Duration)
    /// Bytes, optionally with a B/KB/MB/GB unit.
    case size(ClosedRange<Int>)
    /// `true|false|on|off`.
    case boolean
    /// One of a fixed set of words.
    case choice([String])
    /// A file that must exist and be readable when `ConfigurationLoadOptions.checkFiles` is set.
    case file
    /// A comma list of `file`s.
    case fileList
    /// A directory; the node creates it, so it need not exist yet.
    case directory
    /// An http:// or https:// URL.
    case url
    /// A comma list of `url`s.
    case urlList
    /// A comma list of plain words.
    case list
    /// A comma list of `tlsv1.2`, `tlsv1.3`.
    case tlsVersions
    /// `PORT`, `IPv4:PORT` or `[IPv6]:PORT`.
    case address
    /// An `address`, or `off`.
    case addressOrOff
}
