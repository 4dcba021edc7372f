import AccessControl
import BrokerConfiguration
import Foundation

extension AccessPolicy {
    /// Reads `password_file` and `acl_file` as the configuration names them. Used by the supervisor to refuse a
    /// bad file before starting or reloading, and by each worker to build its policy.
    public static func load(_ configuration: GatehouseConfiguration) throws(AccessControlError) -> AccessPolicy {
        let settings = configuration.authentication
        var policy = AccessPolicy(allowAnonymous: settings.allowAnonymous)
        if let path = settings.passwordFile {
            policy.passwords = try PasswordFile(parsing: try read(path), path: path)
        }
        if let path = settings.aclFile {
            policy.acl = try ACLFile(parsing: try read(path), path: path)
        }
        return policy
    }

    private static func read(_ path: String) throws(AccessControlError) -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw AccessControlError(path: path, line: nil, message: "cannot read: \(error.localizedDescription)")
        }
    }
}
