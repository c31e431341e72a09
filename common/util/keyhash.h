/*
 * keyhash.h — SHA-256 of API keys, as the router's key file stores them
 * ("sha256:<64 hex>", docs/security.md §3). Shared by the router (router/
 * auth.c) and the CLI (`vecshard key`). Pure functions, thread-safe.
 * Uses OpenSSL's libcrypto (linked with gRPC).
 */
#ifndef VS_UTIL_KEYHASH_H
#define VS_UTIL_KEYHASH_H

#include <stddef.h>

#define KEYHASH_HEX_LEN 71 /* "sha256:" + 64 hex digits */

/* SHA-256 of len bytes at p. */
void keyhash_sha256(const void *p, size_t len, unsigned char out[32]);

/* "sha256:<hex>" of the NUL-terminated key into out (at least KEYHASH_HEX_LEN + 1 bytes). */
void keyhash_hex(const char *key, char *out, size_t outlen);

#endif
