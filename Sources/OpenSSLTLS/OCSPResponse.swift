internal import COpenSSL
internal import COpenSSLShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Building OCSP requests and checking OCSP responses for the server certificate a listener staples (RFC 6960).
/// Stateless; blocking but cheap (one signature check). Used by the fetcher before it publishes a response and by
/// nothing on a handshake path.
public enum OCSP {
    /// The DER of a request for `certificate`'s status (SHA-1 CertID of `issuer`'s name and key, as every
    /// responder understands; no nonce, so the answer can be cached and stapled).
    public static func request(certificate: X509Certificate, issuer: X509Certificate) throws(OpenSSLError) -> [UInt8] {
        OpenSSLErrorQueue.clear()
        let request = try openSSLObject("OCSP_REQUEST_new", "cannot create OCSP request") { OCSP_REQUEST_new() }
        defer { OCSP_REQUEST_free(request) }
        let identifier = try openSSLObject("OCSP_cert_to_id", "cannot build OCSP CertID") {
            OCSP_cert_to_id(EVP_sha1(), certificate.pointer, issuer.pointer)
        }
        guard OCSP_request_add0_id(request, identifier) != nil else {
            OCSP_CERTID_free(identifier)
            throw .drained("OCSP_request_add0_id", "cannot add CertID to OCSP request")
        }
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_OCSP_REQUEST(request, &output)
        guard length > 0, let output else {
            throw .drained("i2d_OCSP_REQUEST", "cannot encode OCSP request")
        }
        defer { COpenSSLShims_OPENSSL_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }

    /// What a stapling listener staples for: its server certificate, the issuer to ask about it, and the
    /// responder to ask. The fetcher, the workers and `status` all decide from this one answer.
    public struct StapledIdentity: Sendable {
        /// Every certificate of `certfile`, as the server sends them.
        public var chain: [X509Certificate]
        /// The first certificate of `certfile`.
        public var certificate: X509Certificate
        /// `ocsp_issuer_pem`'s first certificate, else the one in the rest of the chain or in `cacertfile` that
        /// issued `certificate`; nil if none did.
        public var issuer: X509Certificate?
        /// `ocsp_responder_url`, else the certificate's first http(s) OCSP URL; nil if neither exists.
        public var responderURL: String?
    }

    /// Works out a stapling listener's `StapledIdentity` from its files. Blocking file reads.
    public static func stapledIdentity(
        certificateChainPath: String, issuerPath: String?, caBundlePath: String?, configuredResponderURL: String?
    ) throws(OpenSSLError) -> StapledIdentity {
        let chain = try X509Certificate.load(file: certificateChainPath)
        guard !chain.isEmpty else {
            throw OpenSSLError(operation: "PEM_read", message: "no certificate in \(certificateChainPath)")
        }
        // Only needed to find the issuer when ocsp_issuer_pem does not name it.
        let authorities = issuerPath == nil ? caBundlePath.flatMap { try? X509Certificate.load(file: $0) } ?? [] : []
        return try stapledIdentity(
            chain: chain, issuerPath: issuerPath, authorities: authorities,
            configuredResponderURL: configuredResponderURL)
    }

    /// A response without nextUpdate ("newer information is always available") is stapled for at most this long
    /// after its thisUpdate; the fetcher refreshes it every `ocsp_refresh_interval`.
    public static let maximumAgeWithoutNextUpdate: Int64 = 3600

    /// Checks a response before it may be stapled: `verify`, and the status is good.
    public static func validate(
        _ der: [UInt8], certificate: X509Certificate, issuer: X509Certificate, now: Int64,
        leeway: Int64 = RevocationClock.skewLeeway
    ) -> Result<OCSPVerifiedResponse, OCSPValidationError> {
        verify(der, certificate: certificate, issuer: issuer, now: now, leeway: leeway).flatMap { response in
            switch response.certificateStatus {
            case .good:
                return .success(response)
            case .revoked(let at, let reason):
                return .failure(.revoked(serial: response.serialHex, at: at, reason: reason))
            case .unknown:
                return .failure(.unknown(serial: response.serialHex))
            }
        }
    }

    /// Checks everything the responder vouches for, whatever the status it gives: the response status is
    /// successful; it is exactly one DER-encoded basic response signed by `issuer`, or by a responder certificate
    /// issued by `issuer` that carries id-kp-OCSPSigning; it has a single response for exactly `certificate`
    /// (CertID match); thisUpdate is not in the future (with `leeway` seconds of clock skew) and nextUpdate not
    /// reached (no leeway). A REVOKED or unknown answer that passes is as trustworthy as a good one: it is what
    /// tells a server to stop stapling.
    public static func verify(
        _ der: [UInt8], certificate: X509Certificate, issuer: X509Certificate, now: Int64,
        leeway: Int64 = RevocationClock.skewLeeway
    ) -> Result<OCSPVerifiedResponse, OCSPValidationError> {
        OpenSSLErrorQueue.clear()
        guard !der.isEmpty else {
            return .failure(.malformed("empty OCSP response"))
        }
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_OCSP_RESPONSE(nil, &cursor, buffer.count)
        }
        guard let response = parsed else {
            OpenSSLErrorQueue.clear()
            return .failure(.malformed("not an OCSP response (DER)"))
        }
        defer { OCSP_RESPONSE_free(response) }
        let status = OCSP_response_status(response)
        guard status == OCSP_RESPONSE_STATUS_SUCCESSFUL else {
            return .failure(.responderStatus(responseStatusName(status)))
        }
        guard let basic = OCSP_response_get1_basic(response) else {
            OpenSSLErrorQueue.clear()
            return .failure(.malformed("not a basic OCSP response"))
        }
        defer { OCSP_BASICRESP_free(basic) }
        guard isExactEncoding(der, of: basic) else {
            return .failure(.malformed("not exactly one DER-encoded OCSP response (trailing bytes or BER)"))
        }

        let signer: Signer
        switch verifySignature(basic, issuer: issuer) {
        case .success(let found): signer = found
        case .failure(let failure): return .failure(failure)
        }
        guard let identifier = OCSP_cert_to_id(EVP_sha1(), certificate.pointer, issuer.pointer) else {
            OpenSSLErrorQueue.clear()
            return .failure(.malformed("cannot build OCSP CertID"))
        }
        defer { OCSP_CERTID_free(identifier) }
        var certificateStatus: Int32 = -1
        var reason: Int32 = -1
        var revokedAt: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        var thisUpdate: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        var nextUpdate: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        guard OCSP_resp_find_status(basic, identifier, &certificateStatus, &reason, &revokedAt, &thisUpdate, &nextUpdate)
                == 1
        else {
            OpenSSLErrorQueue.clear()
            return .failure(.notCovered(serial: certificate.serialHex))
        }
        let answer: OCSPCertificateStatus
        switch certificateStatus {
        case V_OCSP_CERTSTATUS_GOOD:
            answer = .good
        case V_OCSP_CERTSTATUS_REVOKED:
            let reasonText = reason >= 0 ? OCSP_crl_reason_str(Int(reason)).map { String(cString: $0) } : nil
            answer = .revoked(at: ASN1Conversions.unixTime(revokedAt), reason: reasonText)
        default:
            answer = .unknown
        }
        guard let thisTime = ASN1Conversions.unixTime(thisUpdate) else {
            return .failure(.malformed("thisUpdate is missing or malformed"))
        }
        let nextTime = ASN1Conversions.unixTime(nextUpdate)
        if thisTime > now + leeway {
            return .failure(.outsideValidity("thisUpdate \(Timestamp.iso8601(thisTime)) is in the future"))
        }
        if let nextTime {
            if nextTime < thisTime {
                return .failure(.outsideValidity("nextUpdate is before thisUpdate"))
            }
            // No leeway here: a response past its nextUpdate is stale and is never stapled.
            if nextTime <= now {
                return .failure(.outsideValidity("expired: nextUpdate \(Timestamp.iso8601(nextTime)) has passed"))
            }
        }
        let producedAt = ASN1Conversions.unixTime(OCSP_resp_get0_produced_at(basic))
        return .success(OCSPVerifiedResponse(
            derBytes: der, serialHex: certificate.serialHex, thisUpdate: thisTime, nextUpdate: nextTime,
            producedAt: producedAt, certificateStatus: answer, signerDER: signer.der,
            isSignedByIssuer: signer.isIssuer))
    }

    /// Whether `der` is exactly the DER of a successful response carrying `basic`, nothing before or after it.
    /// The bytes are stapled as they are, but OpenSSL's parser ignores what follows the response and accepts BER
    /// (indefinite and overlong lengths) in the parts the signature does not cover, both of which strict clients
    /// refuse ("trailing data"); a response that is not its own re-encoding is one the checks did not see whole.
    private static func isExactEncoding(_ der: [UInt8], of basic: OpaquePointer) -> Bool {
        guard let rebuilt = OCSP_response_create(Int32(OCSP_RESPONSE_STATUS_SUCCESSFUL), basic) else {
            OpenSSLErrorQueue.clear()
            return false
        }
        defer { OCSP_RESPONSE_free(rebuilt) }
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_OCSP_RESPONSE(rebuilt, &output)
        guard length > 0, let output else {
            OpenSSLErrorQueue.clear()
            return false
        }
        defer { COpenSSLShims_OPENSSL_free(output) }
        return Int(length) == der.count && der.elementsEqual(UnsafeBufferPointer(start: output, count: Int(length)))
    }

    /// The certificate that signed a response.
    private struct Signer {
        var der: [UInt8]
        var isIssuer: Bool
    }

    /// `OCSP_basic_verify` with `issuer` as the only trust anchor (partial chains allowed, so an intermediate
    /// issuer works): the signer must be the issuer itself or a certificate it issued with id-kp-OCSPSigning.
    private static func verifySignature(
        _ basic: OpaquePointer, issuer: X509Certificate
    ) -> Result<Signer, OCSPValidationError> {
        guard let store = X509_STORE_new() else {
            OpenSSLErrorQueue.clear()
            return .failure(.malformed("out of memory"))
        }
        defer { X509_STORE_free(store) }
        guard X509_STORE_add_cert(store, issuer.pointer) == 1,
              X509_STORE_set_flags(store, UInt(X509_V_FLAG_PARTIAL_CHAIN)) == 1,
              let extra = OPENSSL_sk_new_null()
        else {
            OpenSSLErrorQueue.clear()
            return .failure(.malformed("cannot prepare the OCSP trust store"))
        }
        defer { OPENSSL_sk_free(extra) }
        // The issuer as an extra candidate signer, for responses that carry no certificates.
        _ = OPENSSL_sk_push(extra, UnsafeRawPointer(issuer.pointer))
        let verified = OCSP_basic_verify(basic, extra, store, 0)
        guard verified == 1 else {
            let errors = OpenSSLErrorQueue.drain()
            let detail = errors.isEmpty ? "no detail" : errors.joined(separator: "; ")
            return .failure(.signature("responder signature or authorization does not verify: \(detail)"))
        }
        // The certificate OCSP_basic_verify just used (found the same way: the response's certificates, then the
        // issuer).
        var found: OpaquePointer?
        guard OCSP_resp_get0_signer(basic, &found, extra) == 1, let found,
              let signer = X509Certificate(retaining: found)
        else {
            OpenSSLErrorQueue.clear()
            return .failure(.malformed("cannot find the certificate that signed the response"))
        }
        return .success(Signer(der: signer.derBytes, isIssuer: X509_cmp(found, issuer.pointer) == 0))
    }

    static func responseStatusName(_ status: Int32) -> String {
        switch status {
        case OCSP_RESPONSE_STATUS_MALFORMEDREQUEST: return "malformedRequest"
        case OCSP_RESPONSE_STATUS_INTERNALERROR: return "internalError"
        case OCSP_RESPONSE_STATUS_TRYLATER: return "tryLater"
        case OCSP_RESPONSE_STATUS_SIGREQUIRED: return "sigRequired"
        case OCSP_RESPONSE_STATUS_UNAUTHORIZED: return "unauthorized"
        default: return "status \(status)"
        }
    }
}

/// What a responder says about a certificate.
public enum OCSPCertificateStatus: Sendable, Equatable {
    case good
    /// When and why, if the responder said.
    case revoked(at: Int64?, reason: String?)
    /// The responder does not know the certificate.
    case unknown

    /// `good`, `revoked` or `unknown`, as the cache metadata and the logs spell it.
    public var name: String {
        switch self {
        case .good: return "good"
        case .revoked: return "revoked"
        case .unknown: return "unknown"
        }
    }
}

/// An OCSP response that passed `OCSP.verify`: signature and CertID checked, inside its window; `OCSP.validate`
/// also requires `certificateStatus` good.
public struct OCSPVerifiedResponse: Sendable, Equatable {
    /// The response exactly as received.
    public var derBytes: [UInt8]
    /// The certificate it is about.
    public var serialHex: String
    public var thisUpdate: Int64
    /// nil when the responder gave none (newer information is always available).
    public var nextUpdate: Int64?
    public var producedAt: Int64?
    public var certificateStatus: OCSPCertificateStatus
    /// DER of the certificate that signed it (the issuer, or a delegated responder).
    public var signerDER: [UInt8]
    /// Whether the issuer itself signed it.
    public var isSignedByIssuer: Bool

    /// When it stops being stapled: nextUpdate, or `OCSP.maximumAgeWithoutNextUpdate` after thisUpdate.
    public var staplingExpiry: Int64 {
        nextUpdate ?? thisUpdate + OCSP.maximumAgeWithoutNextUpdate
    }
}

/// Why `OCSP.validate` refused a response, in words for a log line.
public enum OCSPValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not DER, not a basic response, a missing field.
    case malformed(String)
    /// The responder answered with an error status (tryLater, unauthorized, …) instead of a response.
    case responderStatus(String)
    /// The signature does not verify, or the signer is not authorized for the issuer.
    case signature(String)
    /// No single response in it is about our certificate.
    case notCovered(serial: String)
    /// The responder says the certificate is revoked.
    case revoked(serial: String, at: Int64?, reason: String?)
    /// The responder does not know the certificate.
    case unknown(serial: String)
    /// thisUpdate in the future or nextUpdate in the past.
    case outsideValidity(String)

    public var description: String {
        switch self {
        case .malformed(let text):
            return text
        case .responderStatus(let status):
            return "responder answered \(status), not a response"
        case .signature(let text):
            return text
        case .notCovered(let serial):
            return "response does not cover the certificate (serial \(serial))"
        case .revoked(let serial, let at, let reason):
            var text = "certificate status revoked (serial \(serial)"
            if let at { text += ", revoked at \(Timestamp.iso8601(at))" }
            if let reason { text += ", reason \(reason)" }
            return text + ")"
        case .unknown(let serial):
            return "certificate status unknown to the responder (serial \(serial))"
        case .outsideValidity(let text):
            return text
        }
    }

    /// Whether the responder itself reported the certificate revoked.
    public var isRevoked: Bool {
        if case .revoked = self { return true }
        return false
    }
}

/// UTC timestamps for log lines.
public enum Timestamp {
    /// e.g. "2026-11-29T08:39:35Z".
    public static func iso8601(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil else {
            return "\(seconds)"
        }
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}
