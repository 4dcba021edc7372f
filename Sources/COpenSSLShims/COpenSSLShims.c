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
