import Foundation
import GRDB

/// Reads the columns of one row as the types the schema promises, and throws `BrokerStoreError` (`.corrupt`,
/// naming table and column) where GRDB's typed subscripts would trap on an unexpected value.
struct RowReader {
    let row: Row
    let table: String
    let path: String

    func integer<T: FixedWidthInteger>(_ index: Int, _ column: String, as type: T.Type = T.self)
        throws(BrokerStoreError) -> T
    {
        guard let value = try optionalInteger(index, column, as: type) else {
            throw mismatch(column, expected: "an integer", found: "NULL")
        }
        return value
    }

    func optionalInteger<T: FixedWidthInteger>(_ index: Int, _ column: String, as type: T.Type = T.self)
        throws(BrokerStoreError) -> T?
    {
        let value: DatabaseValue = row[index]
        switch value.storage {
        case .null:
            return nil
        case .int64(let integer):
            guard let exact = T(exactly: integer) else {
                throw mismatch(column, expected: "an integer in \(T.min)...\(T.max)", found: "\(integer)")
            }
            return exact
        default:
            throw mismatch(column, expected: "an integer", found: Self.describe(value))
        }
    }

    func bool(_ index: Int, _ column: String) throws(BrokerStoreError) -> Bool {
        switch try integer(index, column, as: Int64.self) {
        case 0: return false
        case 1: return true
        case let other: throw mismatch(column, expected: "0 or 1", found: "\(other)")
        }
    }

    func text(_ index: Int, _ column: String) throws(BrokerStoreError) -> String {
        guard let value = try optionalText(index, column) else {
            throw mismatch(column, expected: "text", found: "NULL")
        }
        return value
    }

    func optionalText(_ index: Int, _ column: String) throws(BrokerStoreError) -> String? {
        let value: DatabaseValue = row[index]
        switch value.storage {
        case .null: return nil
        case .string(let string): return string
        default: throw mismatch(column, expected: "text", found: Self.describe(value))
        }
    }

    func bytes(_ index: Int, _ column: String) throws(BrokerStoreError) -> [UInt8] {
        let value: DatabaseValue = row[index]
        switch value.storage {
        case .blob(let data): return [UInt8](data)
        default: throw mismatch(column, expected: "a blob", found: Self.describe(value))
        }
    }

    func optionalReal(_ index: Int, _ column: String) throws(BrokerStoreError) -> Double? {
        let value: DatabaseValue = row[index]
        switch value.storage {
        case .null: return nil
        case .double(let real): return real
        // SQLite stores a REAL without a fractional part as an integer on disk and converts back on read, but an
        // older row or a hand edit may hold an integer: accept it.
        case .int64(let integer): return Double(integer)
        default: throw mismatch(column, expected: "a real number", found: Self.describe(value))
        }
    }

    /// Builds the error for a value that does not fit its column.
    func mismatch(_ column: String, expected: String, found: String) -> BrokerStoreError {
        BrokerStoreError(
            kind: .corrupt, path: path,
            message: "table \(table), column \(column): expected \(expected), found \(found)"
        )
    }

    /// A value's kind and, for scalars, the value; never the bytes of a blob.
    private static func describe(_ value: DatabaseValue) -> String {
        switch value.storage {
        case .null: "NULL"
        case .int64(let integer): "the integer \(integer)"
        case .double(let real): "the real \(real)"
        case .string: "text"
        case .blob(let data): "a blob of \(data.count) bytes"
        }
    }
}

/// The fixed-width big-endian encoding of the integer lists stored as blobs (inbound QoS 2 packet identifiers,
/// subscription identifiers): compact, and a length that is not a multiple of the width means damage.
enum PackedIntegers {
    static func encode<T: FixedWidthInteger>(_ values: [T]) -> Data {
        var data = Data(capacity: values.count * MemoryLayout<T>.size)
        for value in values {
            withUnsafeBytes(of: value.bigEndian) { data.append(contentsOf: $0) }
        }
        return data
    }

    /// nil when the length is not a multiple of `T`'s width.
    static func decode<T: FixedWidthInteger>(_ bytes: [UInt8], as type: T.Type) -> [T]? {
        let width = MemoryLayout<T>.size
        guard bytes.count % width == 0 else { return nil }
        var values: [T] = []
        values.reserveCapacity(bytes.count / width)
        var index = 0
        while index < bytes.count {
            var value: T = 0
            for byte in bytes[index..<index + width] {
                value = value << 8 | T(truncatingIfNeeded: byte)
            }
            values.append(value)
            index += width
        }
        return values
    }
}
