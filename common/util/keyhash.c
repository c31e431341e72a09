/* keyhash.c — see keyhash.h. */
#include "common/util/keyhash.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

void keyhash_sha256(const void *p, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) != 1) memset(out, 0, 32);
}

void keyhash_hex(const char *key, char *out, size_t outlen)
{
    unsigned char h[32];
    keyhash_sha256(key, strlen(key), h);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    snprintf(out, outlen, "sha256:%s", hex);
}
