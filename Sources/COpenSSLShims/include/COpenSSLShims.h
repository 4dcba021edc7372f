// C shims for the OpenSSL APIs that Swift cannot import: function-like macros, and macros that expand to
// variadic functions. Each shim wraps exactly one macro and is named `COpenSSLShims_<macro>`.
// Everything Swift can import directly (real functions, plain numeric macros) is called through COpenSSL instead.
#ifndef GATEHOUSE_COPENSSL_SHIMS_H
#define GATEHOUSE_COPENSSL_SHIMS_H

#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/x509v3.h>

// MARK: Keys

/// `EVP_EC_gen(curve)`: expands to the variadic `EVP_PKEY_Q_keygen`. Returns a new key, or NULL (error queue set).
EVP_PKEY *COpenSSLShims_EVP_EC_gen(const char *curve);

// MARK: Stacks

/// `sk_GENERAL_NAME_push`: returns the new number of elements, or 0 on failure (`name` is then not owned by `names`).
int COpenSSLShims_sk_GENERAL_NAME_push(GENERAL_NAMES *names, GENERAL_NAME *name);

#endif
