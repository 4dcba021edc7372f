// C shims for the OpenSSL APIs that Swift cannot import: function-like macros, and macros that expand to
// variadic functions. Each shim wraps exactly one macro and is named `COpenSSLShims_<macro>`.
// Everything Swift can import directly (real functions, plain numeric macros) is called through COpenSSL instead.
#ifndef GATEHOUSE_COPENSSL_SHIMS_H
#define GATEHOUSE_COPENSSL_SHIMS_H

#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/x509v3.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stddef.h>

// MARK: Keys

/// `EVP_EC_gen(curve)`: expands to the variadic `EVP_PKEY_Q_keygen`. Returns a new key, or NULL (error queue set).
EVP_PKEY *COpenSSLShims_EVP_EC_gen(const char *curve);

// MARK: Stacks

/// `sk_GENERAL_NAME_push`: returns the new number of elements, or 0 on failure (`name` is then not owned by `names`).
int COpenSSLShims_sk_GENERAL_NAME_push(GENERAL_NAMES *names, GENERAL_NAME *name);

// MARK: SSL_CTX / SSL controls

/// `SSL_OP_NO_RENEGOTIATION` (built with `SSL_OP_BIT`, so not imported).
uint64_t COpenSSLShims_SSL_OP_NO_RENEGOTIATION(void);
/// `SSL_OP_NO_COMPRESSION`.
uint64_t COpenSSLShims_SSL_OP_NO_COMPRESSION(void);
/// `SSL_OP_CIPHER_SERVER_PREFERENCE`.
uint64_t COpenSSLShims_SSL_OP_CIPHER_SERVER_PREFERENCE(void);
/// `SSL_OP_NO_TICKET`: no session tickets (`reuse_sessions = off`).
uint64_t COpenSSLShims_SSL_OP_NO_TICKET(void);
/// `SSL_CTX_add1_chain_cert`: adds `certificate` (a new reference) to the chain of the current server certificate;
/// 1 on success.
int COpenSSLShims_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *certificate);
/// `SSL_CTX_set1_groups_list`: the key exchange groups offered, e.g. "X25519:P-256"; 1 on success.
int COpenSSLShims_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *groups);
/// `SSL_CTX_set_min_proto_version`: 1 on success.
int COpenSSLShims_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
/// `SSL_CTX_set_max_proto_version`: 1 on success.
int COpenSSLShims_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
/// `SSL_CTX_set_mode`: returns the new mode bits.
long COpenSSLShims_SSL_CTX_set_mode(SSL_CTX *ctx, long mode);
/// `SSL_CTX_set_session_cache_mode`: returns the previous mode.
long COpenSSLShims_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode);

// MARK: OCSP stapling

/// The status callback type of `SSL_CTX_set_tlsext_status_cb` (server side: return `SSL_TLSEXT_ERR_*`).
typedef int (*COpenSSLShims_status_cb)(SSL *ssl, void *arg);
/// `SSL_CTX_set_tlsext_status_cb`.
long COpenSSLShims_SSL_CTX_set_tlsext_status_cb(SSL_CTX *ctx, COpenSSLShims_status_cb cb);
/// `SSL_CTX_set_tlsext_status_arg`.
long COpenSSLShims_SSL_CTX_set_tlsext_status_arg(SSL_CTX *ctx, void *arg);
/// `SSL_set_tlsext_status_ocsp_resp` with an `OPENSSL_memdup` copy of `der` (the SSL takes ownership of the copy and
/// frees it with `OPENSSL_free`; the copy is freed here if the call fails). Returns 1 on success.
int COpenSSLShims_SSL_set_ocsp_response_copy(SSL *ssl, const unsigned char *der, size_t length);

// MARK: Names

/// `XN_FLAG_RFC2253` (an or of other macros, so not imported): the `X509_NAME_print_ex` flags for RFC 2253 output.
unsigned long COpenSSLShims_XN_FLAG_RFC2253(void);

// MARK: Memory

/// `OPENSSL_free`.
void COpenSSLShims_OPENSSL_free(void *pointer);

// MARK: More stacks

/// `sk_X509_num`.
int COpenSSLShims_sk_X509_num(const STACK_OF(X509) *stack);
/// `sk_X509_value`.
X509 *COpenSSLShims_sk_X509_value(const STACK_OF(X509) *stack, int index);
/// `sk_X509_REVOKED_num`.
int COpenSSLShims_sk_X509_REVOKED_num(const STACK_OF(X509_REVOKED) *stack);
/// `sk_DIST_POINT_num`.
int COpenSSLShims_sk_DIST_POINT_num(const STACK_OF(DIST_POINT) *stack);
/// `sk_DIST_POINT_value`.
DIST_POINT *COpenSSLShims_sk_DIST_POINT_value(const STACK_OF(DIST_POINT) *stack, int index);
/// `sk_DIST_POINT_pop_free(stack, DIST_POINT_free)`.
void COpenSSLShims_sk_DIST_POINT_pop_free(STACK_OF(DIST_POINT) *stack);
/// `sk_GENERAL_NAME_num`.
int COpenSSLShims_sk_GENERAL_NAME_num(const STACK_OF(GENERAL_NAME) *stack);
/// `sk_GENERAL_NAME_value`.
GENERAL_NAME *COpenSSLShims_sk_GENERAL_NAME_value(const STACK_OF(GENERAL_NAME) *stack, int index);
/// `sk_ACCESS_DESCRIPTION_num`.
int COpenSSLShims_sk_ACCESS_DESCRIPTION_num(const STACK_OF(ACCESS_DESCRIPTION) *stack);
/// `sk_ACCESS_DESCRIPTION_value`.
ACCESS_DESCRIPTION *COpenSSLShims_sk_ACCESS_DESCRIPTION_value(const STACK_OF(ACCESS_DESCRIPTION) *stack, int index);
/// `sk_ACCESS_DESCRIPTION_pop_free(stack, ACCESS_DESCRIPTION_free)` (= `AUTHORITY_INFO_ACCESS_free`).
void COpenSSLShims_sk_ACCESS_DESCRIPTION_pop_free(STACK_OF(ACCESS_DESCRIPTION) *stack);

#endif
