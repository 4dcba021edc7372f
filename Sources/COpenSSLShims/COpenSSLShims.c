#include <limits.h>  // LONG_MAX
#include <string.h>  // EVP_EC_gen expands to strstr

#include "COpenSSLShims.h"

// MARK: Keys

EVP_PKEY *COpenSSLShims_EVP_EC_gen(const char *curve) {
    return EVP_EC_gen(curve);
}

// MARK: Stacks

int COpenSSLShims_sk_GENERAL_NAME_push(GENERAL_NAMES *names, GENERAL_NAME *name) {
    return sk_GENERAL_NAME_push(names, name);
}

// MARK: SSL_CTX / SSL controls

uint64_t COpenSSLShims_SSL_OP_NO_RENEGOTIATION(void) {
    return SSL_OP_NO_RENEGOTIATION;
}

uint64_t COpenSSLShims_SSL_OP_NO_COMPRESSION(void) {
    return SSL_OP_NO_COMPRESSION;
}

uint64_t COpenSSLShims_SSL_OP_CIPHER_SERVER_PREFERENCE(void) {
    return SSL_OP_CIPHER_SERVER_PREFERENCE;
}

uint64_t COpenSSLShims_SSL_OP_NO_TICKET(void) {
    return SSL_OP_NO_TICKET;
}

int COpenSSLShims_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *certificate) {
    return (int)SSL_CTX_add1_chain_cert(ctx, certificate);
}

int COpenSSLShims_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *groups) {
    return (int)SSL_CTX_set1_groups_list(ctx, groups);
}

int COpenSSLShims_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

int COpenSSLShims_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

long COpenSSLShims_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

long COpenSSLShims_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

// MARK: OCSP stapling

long COpenSSLShims_SSL_CTX_set_tlsext_status_cb(SSL_CTX *ctx, COpenSSLShims_status_cb cb) {
    return SSL_CTX_set_tlsext_status_cb(ctx, cb);
}

long COpenSSLShims_SSL_CTX_set_tlsext_status_arg(SSL_CTX *ctx, void *arg) {
    return SSL_CTX_set_tlsext_status_arg(ctx, arg);
}

int COpenSSLShims_SSL_set_ocsp_response_copy(SSL *ssl, const unsigned char *der, size_t length) {
    if (der == NULL || length == 0 || length > LONG_MAX) {
        return 0;
    }
    unsigned char *copy = OPENSSL_memdup(der, length);
    if (copy == NULL) {
        return 0;
    }
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)length) != 1) {
        OPENSSL_free(copy);
        return 0;
    }
    return 1;
}

// MARK: Names

unsigned long COpenSSLShims_XN_FLAG_RFC2253(void) {
    return XN_FLAG_RFC2253;
}

// MARK: Memory

void COpenSSLShims_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}

// MARK: More stacks

int COpenSSLShims_sk_X509_num(const STACK_OF(X509) *stack) {
    return sk_X509_num(stack);
}

X509 *COpenSSLShims_sk_X509_value(const STACK_OF(X509) *stack, int index) {
    return sk_X509_value(stack, index);
}

int COpenSSLShims_sk_X509_REVOKED_num(const STACK_OF(X509_REVOKED) *stack) {
    return sk_X509_REVOKED_num(stack);
}

int COpenSSLShims_sk_DIST_POINT_num(const STACK_OF(DIST_POINT) *stack) {
    return sk_DIST_POINT_num(stack);
}

DIST_POINT *COpenSSLShims_sk_DIST_POINT_value(const STACK_OF(DIST_POINT) *stack, int index) {
    return sk_DIST_POINT_value(stack, index);
}

void COpenSSLShims_sk_DIST_POINT_pop_free(STACK_OF(DIST_POINT) *stack) {
    sk_DIST_POINT_pop_free(stack, DIST_POINT_free);
}

int COpenSSLShims_sk_GENERAL_NAME_num(const STACK_OF(GENERAL_NAME) *stack) {
    return sk_GENERAL_NAME_num(stack);
}

GENERAL_NAME *COpenSSLShims_sk_GENERAL_NAME_value(const STACK_OF(GENERAL_NAME) *stack, int index) {
    return sk_GENERAL_NAME_value(stack, index);
}

int COpenSSLShims_sk_ACCESS_DESCRIPTION_num(const STACK_OF(ACCESS_DESCRIPTION) *stack) {
    return sk_ACCESS_DESCRIPTION_num(stack);
}

ACCESS_DESCRIPTION *COpenSSLShims_sk_ACCESS_DESCRIPTION_value(const STACK_OF(ACCESS_DESCRIPTION) *stack, int index) {
    return sk_ACCESS_DESCRIPTION_value(stack, index);
}

void COpenSSLShims_sk_ACCESS_DESCRIPTION_pop_free(STACK_OF(ACCESS_DESCRIPTION) *stack) {
    sk_ACCESS_DESCRIPTION_pop_free(stack, ACCESS_DESCRIPTION_free);
}
