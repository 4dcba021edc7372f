import AccessControl
import MQTTCodec
import NIOCore

/// Who may connect, publish and subscribe: `allow_anonymous` (global, a listener may override it), the password
/// file and the ACL file. A value; `reload` builds a new one from the files.
public struct AccessPolicy: Sendable {
    public var allowAnonymous: Bool
    public var passwords: PasswordFile?
    public var acl: ACLFile?

    public init(allowAnonymous: Bool, passwords: PasswordFile? = nil, acl: ACLFile? = nil) {
        self.allowAnonymous = allowAnonymous
        self.passwords = passwords
        self.acl = acl
    }

    /// CONNECT credentials → success, `badUserNameOrPassword` or `notAuthorized` (MQTT 5 codes; the controller
    /// maps them for 3.x). A username vouched for by a verified client certificate needs no password.
    func authenticate(
        username: String?, password: ByteBuffer?, listenerAllowsAnonymous: Bool?, certificateUsername: String?
    ) -> ReasonCode {
        if certificateUsername != nil { return .success }
        guard let username else {
            return (listenerAllowsAnonymous ?? allowAnonymous) ? .success : .notAuthorized
        }
        guard let passwords else {
            // No password file: a username is an identity for the ACL, not a credential.
            return .success
        }
        let bytes = password.map { Array($0.readableBytesView) } ?? []
        return passwords.verify(username: username, password: bytes) ? .success : .badUserNameOrPassword
    }

    func canPublish(topic: String, clientID: String, username: String?) -> Bool {
        acl?.canPublish(topic: topic, clientID: clientID, username: username) ?? true
    }

    func canSubscribe(filter: String, clientID: String, username: String?) -> Bool {
        acl?.canSubscribe(filter: filter, clientID: clientID, username: username) ?? true
    }

    func canReceive(topic: String, clientID: String, username: String?) -> Bool {
        acl?.canReceive(topic: topic, clientID: clientID, username: username) ?? true
    }
}
