import Synchronization

/// One certificate of a client chain as revocation sees it: its issuer and serial number.
public struct RevocationSubject: Sendable, Hashable {
    public var subjectDN: String
    public var issuerDN: String
    /// Upper-case hex, as `X509Certificate.serialHex`.
    public var serialHex: String

    public init(subjectDN: String, issuerDN: String, serialHex: String) {
        self.subjectDN = subjectDN
        self.issuerDN = issuerDN
        self.serialHex = serialHex
    }
}

/// One listener's gate: the TLS context in force (the newest generation of identity, CA bundle, CRLs and staple)
/// and the client certificates of the connections admitted through it.
///
/// One lock orders context swaps against handshake completions. A handshake that completes registers its
/// certificates and reads the context in force in one step (`admit`); a swap installs the new context and takes
/// the registered connections in one step (`install`). So every completed handshake either is seen by the swap,
/// which checks it against the new CRLs and revokes it, or sees the new context, against which its handshake
/// checks it again before MQTT starts. There is no instant at which a revoked certificate can slip between the two.
///
/// Sendable: swaps happen on a reload thread, admissions on the event loops.
public final class TLSGate: Sendable {
    /// A connection admitted with a client certificate, kept while it is open.
    public struct Admission: Sendable {
        /// The client certificate.
        public var peer: PeerCertificate
        /// The certificates a newer CRL may revoke: the client certificate, and with `crl_check_depth = chain`
        /// every CA certificate of its verified chain below the trust anchor.
        public var subjects: [RevocationSubject]
        /// Called when a newly installed context revokes one of `subjects` (on the installing thread; hand the
        /// disconnect to the connection's event loop).
        public var onRevoked: @Sendable (Revocation) -> Void

        public init(
            peer: PeerCertificate, subjects: [RevocationSubject], onRevoked: @escaping @Sendable (Revocation) -> Void
        ) {
            self.peer = peer
            self.subjects = subjects
            self.onRevoked = onRevoked
        }
    }

    /// An admitted connection that a newly installed CRL revokes.
    public struct Revocation: Sendable {
        public var peer: PeerCertificate
        /// The certificate of the chain that is revoked (the client certificate, or a CA above it).
        public var subject: RevocationSubject
        public var crlNumber: String?
    }

    /// Identifies an admission for `release`.
    public struct Ticket: Sendable, Hashable {
        let id: UInt64
    }

    private struct State {
        var context: TLSContext
        var generation = 1
        var admitted: [UInt64: Admission] = [:]
        var nextID: UInt64 = 1
    }

    private let state: Mutex<State>
    private let revokedTotal = Atomic<Int>(0)

    public init(context: TLSContext) {
        state = Mutex(State(context: context))
    }

    /// The context new connections start with.
    public var current: TLSContext {
        state.withLock { $0.context }
    }

    /// 1 for the first context, one more for each `install`.
    public var generation: Int {
        state.withLock { $0.generation }
    }

    /// How many connections are admitted with a certificate that is watched for revocation.
    public var admittedCount: Int {
        state.withLock { $0.admitted.count }
    }

    /// Connections revoked by an installed context since the start.
    public var revokedCount: Int {
        revokedTotal.load(ordering: .relaxed)
    }

    /// Makes `context` the one in force and checks every admitted connection against its CRLs, calling the
    /// `onRevoked` of each one it revokes. Returns the new generation and those revocations. The check runs after
    /// the lock is released: whoever completes a handshake from now on sees `context` (see the type's comment).
    @discardableResult
    public func install(_ context: TLSContext) -> (generation: Int, revoked: [Revocation]) {
        let (generation, admitted) = state.withLock { state in
            state.context = context
            state.generation += 1
            return (state.generation, Array(state.admitted.values))
        }
        guard context.configuration.isCRLCheckEnabled, !admitted.isEmpty else {
            return (generation, [])
        }
        let index = RevokedSerialIndex(context.crls)
        var revoked: [Revocation] = []
        for admission in admitted {
            for subject in admission.subjects {
                if let crl = index.crl(revoking: subject) {
                    let revocation = Revocation(peer: admission.peer, subject: subject, crlNumber: crl.crlNumber)
                    revoked.append(revocation)
                    admission.onRevoked(revocation)
                    break
                }
            }
        }
        if !revoked.isEmpty {
            revokedTotal.add(revoked.count, ordering: .relaxed)
        }
        return (generation, revoked)
    }

    /// At handshake completion: registers `admission` (nil: the connection is not watched for revocation) and
    /// returns the context in force at this instant, against which the caller checks the handshake again if it
    /// was verified against another one.
    public func admit(_ admission: Admission?) -> (context: TLSContext, ticket: Ticket?) {
        state.withLock { state in
            guard let admission else {
                return (state.context, nil)
            }
            let id = state.nextID
            state.nextID += 1
            state.admitted[id] = admission
            return (state.context, Ticket(id: id))
        }
    }

    /// Forgets an admission (the connection closed, or its completion check refused it).
    public func release(_ ticket: Ticket) {
        _ = state.withLock { $0.admitted.removeValue(forKey: ticket.id) }
    }
}

/// The CRLs of a context by issuer name, for revocation lookups by (issuer, serial) outside a handshake.
struct RevokedSerialIndex {
    private let byIssuer: [String: [CertificateRevocationList]]

    init(_ crls: [CertificateRevocationList]) {
        byIssuer = Dictionary(grouping: crls, by: \.issuerDN)
    }

    /// The CRL that lists `subject`'s serial as revoked, if any. Every scope of the issuer counts: a serial is
    /// unique per issuer, so a listing anywhere means that certificate is revoked.
    func crl(revoking subject: RevocationSubject) -> CertificateRevocationList? {
        byIssuer[subject.issuerDN]?.first { $0.isRevoked(serialHex: subject.serialHex) }
    }
}
