#if canImport(Glibc)
import Glibc
#endif
import Foundation
import OpenSSLTLS
import ProcessSupport
import Synchronization

/// The rollback floors: per CRL lineage (`CRLLineage`: issuer, verified signer key, scope), the newest CRL the
/// fetcher ever accepted (`CRLOrder`: cRLNumber, else thisUpdate). A CRL older than its lineage's floor is refused
/// as a rollback, whatever URL it came from and whatever the cache directory still holds: over plain HTTP anyone on
/// the path can replay an older, still unexpired CRL, and an older CRL un-revokes what the newer one revoked.
/// The same CRL again (equal) is accepted.
///
/// Kept in `<node.data_dir>/crl-floors.json`, apart from the cache, so that losing the cache (removed, recreated,
/// a crash between the renames of a file and its metadata) does not lose the floors. The file is rewritten
/// (temp, fsync, rename) whenever a floor rises, before the CRL that raised it is published.
///
/// Shared by the fetch job threads (check and raise are one step under the lock, so two jobs that fetch CRLs of
/// one lineage from two URLs cannot both pass an older one); the main thread loads and seeds it.
final class CRLFloors: Sendable {
    /// One lineage's floor.
    struct Floor: Codable, Sendable, Equatable {
        var issuer: String
        var scope: String
        /// Decimal.
        var crlNumber: String?
        var thisUpdate: Int64?
        /// Where the CRL that set it came from, and when (Unix seconds).
        var sourceURL: String
        var acceptedAt: Double

        enum CodingKeys: String, CodingKey {
            case issuer, scope
            case crlNumber = "crl_number"
            case thisUpdate = "this_update"
            case sourceURL = "source_url"
            case acceptedAt = "accepted_at"
        }
    }

    /// The file's layout: floors by `CRLLineage.key`.
    private struct File: Codable {
        var version: Int
        var floors: [String: Floor]
    }

    /// What `admit` decided.
    enum Admission: Equatable {
        /// At or above the floor (which now is this CRL). `saveError`: the floor rose but could not be written
        /// (it holds in memory until the fetcher stops).
        case accepted(saveError: String?)
        /// Below the floor.
        case rollback(Floor)
    }

    /// How `load` found the file.
    enum LoadOutcome: Equatable {
        case loaded(count: Int)
        case missing
        /// Unreadable or not ours; set aside as `<path>.corrupt` (`keptAs`, nil if that failed too).
        case corrupt(reason: String, keptAs: String?)
    }

    let path: String
    private let floors: Mutex<[String: Floor]>

    private init(path: String, floors: [String: Floor]) {
        self.path = path
        self.floors = Mutex(floors)
    }

    /// No floors yet, kept at `path` (before `load`).
    static func empty(path: String) -> CRLFloors {
        CRLFloors(path: path, floors: [:])
    }

    /// Reads the floors at `path`. A corrupt file is moved aside and the floors start empty: the caller seeds them
    /// from the CRLs the cache still holds (`seed`), so what is lost is only history the cache no longer shows.
    static func load(path: String) -> (CRLFloors, LoadOutcome) {
        guard FileDescriptor.fileExists(path) else {
            return (CRLFloors(path: path, floors: [:]), .missing)
        }
        guard let bytes = FileDescriptor.readFile(path, limit: 16 << 20) else {
            return (CRLFloors(path: path, floors: [:]), corrupt(path, "cannot read it"))
        }
        do {
            let file = try JSONDecoder().decode(File.self, from: Data(bytes))
            guard file.version == 1 else {
                return (CRLFloors(path: path, floors: [:]), corrupt(path, "unknown version \(file.version)"))
            }
            return (CRLFloors(path: path, floors: file.floors), .loaded(count: file.floors.count))
        } catch {
            return (CRLFloors(path: path, floors: [:]), corrupt(path, "not valid JSON floors: \(error)"))
        }
    }

    private static func corrupt(_ path: String, _ reason: String) -> LoadOutcome {
        let aside = path + ".corrupt"
        return .corrupt(reason: reason, keptAs: rename(path, aside) == 0 ? aside : nil)
    }

    /// The floor of `lineage`, if any.
    func floor(of lineage: CRLLineage) -> Floor? {
        floors.withLock { $0[lineage.key] }
    }

    var count: Int {
        floors.withLock { $0.count }
    }

    /// Checks a verified CRL against its lineage's floor and, if it is at least as new, makes it the floor (saved
    /// before this returns).
    func admit(
        _ lineage: CRLLineage, number: String?, thisUpdate: Int64?, sourceURL: String, now: Double
    ) -> Admission {
        floors.withLock { floors in
            let key = lineage.key
            if let floor = floors[key] {
                let order = CRLOrder.compare(
                    number: number, thisUpdate: thisUpdate, to: floor.crlNumber, otherThisUpdate: floor.thisUpdate)
                if order < 0 {
                    return .rollback(floor)
                }
                if order == 0 {
                    return .accepted(saveError: nil)
                }
            }
            floors[key] = Floor(
                issuer: lineage.issuerDN, scope: lineage.scope, crlNumber: number, thisUpdate: thisUpdate,
                sourceURL: sourceURL, acceptedAt: now)
            do {
                try Self.save(floors, to: path)
                return .accepted(saveError: nil)
            } catch {
                return .accepted(saveError: "\(error)")
            }
        }
    }

    private static func save(_ floors: [String: Floor], to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data = try encoder.encode(File(version: 1, floors: floors))
        try FileDescriptor.writeAtomically(Array(data) + [0x0a], to: path, mode: 0o600)
    }

    /// Raises the floors to the CRLs in `crlFiles` that verify against `authorities` (the ones the fetcher
    /// published; used when the floors file was missing or corrupt). Returns how many files set or raised a floor.
    /// Blocking and CPU-heavy for big CRLs; run at start only.
    func seed(
        crlFiles: [String], authorities: [X509Certificate], maximumSize: Int, maximumEntries: Int, now: Double
    ) -> Int {
        var raised = 0
        for file in crlFiles {
            guard let bytes = FileDescriptor.readFile(file, limit: maximumSize),
                  let entries = try? CRLEnvelope.revokedEntryCount(bytes), entries <= maximumEntries,
                  let crl = (try? CertificateRevocationList.parse(bytes))?.first,
                  case .success(let verified) = CRLSet.validate(crl, cas: authorities),
                  let lineage = verified.lineage
            else { continue }
            let before = floor(of: lineage)
            _ = admit(
                lineage, number: verified.crlNumber, thisUpdate: verified.thisUpdate, sourceURL: "file://" + file,
                now: now)
            if floor(of: lineage) != before { raised += 1 }
        }
        return raised
    }
}
