internal import COpenSSL
internal import COpenSSLShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The per-context table of CRLs whose signature was verified when the context was built, keyed by `X509_CRL`
/// address. Owned by a `TLSContext` (which keeps the CRL objects alive); the context's `X509_STORE` holds an
/// unretained pointer to it in ex-data, read by `CRLCheck` during handshakes.
///
/// `@unchecked Sendable`: built completely in init and never mutated, so concurrent lookups from several event
/// loops only read.
final class CRLRegistry: @unchecked Sendable {
    /// What was established about one CRL at load time.
    struct Record {
        /// The subjectPublicKey of the CA certificate that verified the CRL's signature.
        var signerKeyBits: [UInt8]
        var thisUpdate: Int64?
        var nextUpdate: Int64?
        var scope: CRLScope
    }

    let records: [Int: Record]
    /// Seconds a CRL past its nextUpdate is still accepted (`crl_fail_policy = grace`); nil: refused at once.
    let staleGrace: Int64?

    init(records: [Int: Record], staleGrace: Int64? = nil) {
        self.records = records
        self.staleGrace = staleGrace
    }

    static func key(_ crl: OpaquePointer) -> Int {
        Int(bitPattern: UnsafeRawPointer(crl))
    }
}

/// The `check_crl` step installed on every context's `X509_STORE` (`X509_STORE_set_check_crl`).
///
/// OpenSSL's default step re-verifies the CRL signature on every verification, hashing the whole CRL each handshake
/// (33.7 ms per handshake at a million entries). This one trusts the signature check done once at load time and
/// keeps the remaining checks, all O(1): the CRL must be one that was verified for this context, its verified signer
/// key must be the key of the issuer found for it in the chain, and that issuer's subject must equal the CRL issuer
/// name; the issuer may sign CRLs (keyUsage); the CRL's scope (IDP onlyUser/onlyCA/distribution point) must cover
/// the certificate; and thisUpdate/nextUpdate must contain the verification time. Finding the CRL by issuer name
/// and the revoked-serial lookup stay OpenSSL's. Stateless; runs on whichever thread verifies.
enum CRLCheck {
    /// Index of the `X509_STORE` ex-data slot holding the context's `CRLRegistry`.
    static let storeRegistryIndex: Int32 = CRYPTO_get_ex_new_index(
        CRYPTO_EX_INDEX_X509_STORE, 0, nil, nil, nil, nil
    )

    /// Installs the check and the registry on `store`. `registry` must outlive every verification using `store`.
    static func install(on store: OpaquePointer, registry: CRLRegistry) -> Bool {
        guard storeRegistryIndex >= 0,
              X509_STORE_set_ex_data(store, storeRegistryIndex, Unmanaged.passUnretained(registry).toOpaque()) == 1
        else {
            return false
        }
        X509_STORE_set_check_crl(store) { storeContext, crl in
            guard let storeContext, let crl else {
                return 0
            }
            return CRLCheck.check(storeContext, crl)
        }
        return true
    }

    /// Returns 1 to accept the CRL, or the verify callback's answer after setting the error (like OpenSSL's own
    /// step, so a verify callback sees every error).
    static func check(_ storeContext: OpaquePointer, _ crl: OpaquePointer) -> Int32 {
        func fail(_ error: Int32) -> Int32 {
            X509_STORE_CTX_set_error(storeContext, error)
            guard let callback = X509_STORE_CTX_get_verify_cb(storeContext) else {
                return 0
            }
            return callback(0, storeContext)
        }

        guard let store = X509_STORE_CTX_get0_store(storeContext),
              let rawRegistry = X509_STORE_get_ex_data(store, storeRegistryIndex)
        else {
            return fail(X509_V_ERR_CRL_SIGNATURE_FAILURE)
        }
        let registry = Unmanaged<CRLRegistry>.fromOpaque(rawRegistry).takeUnretainedValue()
        guard let record = registry.records[CRLRegistry.key(crl)] else {
            // Not a CRL this context verified: its signature was never checked.
            return fail(X509_V_ERR_CRL_SIGNATURE_FAILURE)
        }

        guard let issuer = issuer(of: storeContext) else {
            return fail(X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER)
        }
        guard X509_NAME_cmp(X509_get_subject_name(issuer), X509_CRL_get_issuer(crl)) == 0 else {
            return fail(X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER)
        }
        guard isKey(of: issuer, equalTo: record.signerKeyBits) else {
            return fail(X509_V_ERR_CRL_SIGNATURE_FAILURE)
        }
        if X509_get_key_usage(issuer) & UInt32(KU_CRL_SIGN) == 0 {
            return fail(X509_V_ERR_KEYUSAGE_NO_CRL_SIGN)
        }

        if let certificate = X509_STORE_CTX_get_current_cert(storeContext),
           !isInScope(certificate, record.scope)
        {
            return fail(X509_V_ERR_DIFFERENT_CRL_SCOPE)
        }

        guard let parameters = X509_STORE_CTX_get0_param(storeContext) else {
            return fail(X509_V_ERR_UNSPECIFIED)
        }
        let flags = X509_VERIFY_PARAM_get_flags(parameters)
        if flags & UInt(X509_V_FLAG_NO_CHECK_TIME) == 0 {
            let now = flags & UInt(X509_V_FLAG_USE_CHECK_TIME) != 0
                ? Int64(X509_VERIFY_PARAM_get_time(parameters)) : Int64(time(nil))
            guard let thisUpdate = record.thisUpdate else {
                return fail(X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD)
            }
            // The same leeway as the fetcher's: a CRL it published is never "not yet valid" here.
            if thisUpdate > now + RevocationClock.skewLeeway {
                return fail(X509_V_ERR_CRL_NOT_YET_VALID)
            }
            if let nextUpdate = record.nextUpdate, nextUpdate < now {
                guard let grace = registry.staleGrace, now - nextUpdate <= grace else {
                    return fail(X509_V_ERR_CRL_HAS_EXPIRED)
                }
                // Grace: accepted on the last good CRL, never silently (the handler logs the handshake).
                if let verification = TLSConnection.record(for: storeContext), verification.staleCRL == nil {
                    verification.staleCRL = StaleCRLUse(
                        issuerDN: ASN1Conversions.distinguishedName(X509_CRL_get_issuer(crl)),
                        nextUpdate: nextUpdate, secondsPast: now - nextUpdate)
                }
            }
        }
        return 1
    }

    /// The certificate OpenSSL matched as the CRL's issuer, else the next certificate up the chain (or the top one
    /// if it is self-issued), as OpenSSL's own step finds it.
    private static func issuer(of storeContext: OpaquePointer) -> OpaquePointer? {
        if let issuer = X509_STORE_CTX_get0_current_issuer(storeContext) {
            return issuer
        }
        guard let chain = X509_STORE_CTX_get0_chain(storeContext) else {
            return nil
        }
        let depth = X509_STORE_CTX_get_error_depth(storeContext)
        let last = COpenSSLShims_sk_X509_num(chain) - 1
        if depth < last {
            return COpenSSLShims_sk_X509_value(chain, depth + 1)
        }
        guard last >= 0, let top = COpenSSLShims_sk_X509_value(chain, last),
              X509_NAME_cmp(X509_get_subject_name(top), X509_get_issuer_name(top)) == 0
        else {
            return nil
        }
        return top
    }

    private static func isKey(of certificate: OpaquePointer, equalTo bits: [UInt8]) -> Bool {
        guard let key = X509_get0_pubkey_bitstr(certificate) else {
            return false
        }
        let length = Int(ASN1_STRING_length(key))
        guard length == bits.count, length > 0, let data = ASN1_STRING_get0_data(key) else {
            return false
        }
        return bits.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else {
                return false
            }
            return memcmp(base, data, length) == 0
        }
    }

    /// OpenSSL's scope rules (crl_crldp_check) for the IDP forms `CRLScope` accepts.
    private static func isInScope(_ certificate: OpaquePointer, _ scope: CRLScope) -> Bool {
        let isCA = X509_get_extension_flags(certificate) & UInt32(EXFLAG_CA) != 0
        if isCA && scope.onlyUserCertificates || !isCA && scope.onlyCACertificates {
            return false
        }
        guard !scope.distributionPointURIs.isEmpty else {
            return true
        }
        // A partitioned CRL covers only certificates that name one of its distribution points.
        let pointURIs = CertificateExtensions.distributionPointURIs(of: certificate, directOnly: true)
        return pointURIs.contains { scope.distributionPointURIs.contains($0) }
    }
}
