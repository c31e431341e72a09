/*
 * tls.c — TLS credentials of servers and channels, and their reload
 * (rpc.h, "TLS"; docs/security.md §2).
 *
 * A struct tls_state holds the PEM file paths of one server or client and
 * the contents last read from them. Files are read and checked with OpenSSL
 * (the library gRPC itself links) before they replace the old contents, so
 * a reload with a missing file, a file that is not PEM, or a key that does
 * not match its certificate is refused with a message and changes nothing.
 *
 * Server side: the credentials use the core's certificate-config fetcher
 * (grpc_ssl_server_credentials_create_options_using_config_fetcher). The
 * core calls it before every handshake; it answers "unchanged" until a
 * reload bumped the generation, then hands the core a config built from the
 * new contents. Established connections and the calls on them are not
 * touched: only new handshakes see the new certificate.
 *
 * Client side: a channel's credentials are fixed when it is created, so
 * rpc_client_reload_tls (client.c) builds new credentials from the new
 * contents and re-opens the client's channels with them; calls already
 * running finish on the old channel.
 *
 * Threading: every tls_state function may be called from any thread; the
 * mutex protects the contents and generations (the fetcher runs on gRPC's
 * threads).
 */
#include "common/rpc/rpc_internal.h"
#include "common/rpc/server_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct tls_state {
    pthread_mutex_t mu;
    char *cert_path, *key_path, *ca_path, *server_name;
    enum rpc_tls_client_auth client_auth;
    char *cert_pem, *key_pem, *ca_pem; /* contents last read; NULL when no file */
    unsigned long gen;                 /* bumped by every successful (re)load */
    unsigned long served;              /* server: generation handed to the core */
};

static void tls_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err != NULL && errlen > 0) snprintf(err, errlen, fmt, a, b);
}

/* Reads a whole file as a NUL-terminated string; NULL with err on failure. */
static char *read_file(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        tls_err(err, errlen, "%s: %s", what, path);
        if (err != NULL && errlen > 0) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, ": %s", strerror(errno));
        }
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                tls_err(err, errlen, "%s: %s: out of memory", what, path);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        tls_err(err, errlen, "%s: %s: read error", what, path);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Number of PEM certificates in pem (0 when none parse). */
static int count_certs(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (b == NULL) return 0;
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        X509_free(x);
        n++;
    }
    BIO_free(b);
    ERR_clear_error();
    return n;
}

/* 0 when key_pem is a private key matching the first certificate of
 * cert_pem; -1 with err otherwise. */
static int check_pair(const struct tls_state *t, const char *cert_pem, const char *key_pem,
                      char *err, size_t errlen)
{
    int rc = -1;
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = cb != NULL ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    if (x == NULL)
        tls_err(err, errlen, "certificate %s: no PEM certificate in it%s", t->cert_path, "");
    else if (k == NULL)
        tls_err(err, errlen, "key %s: no PEM private key in it (an encrypted key is not "
                             "supported)%s", t->key_path, "");
    else if (X509_check_private_key(x, k) != 1)
        tls_err(err, errlen, "key %s does not match certificate %s", t->key_path, t->cert_path);
    else
        rc = 0;
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(kb);
    BIO_free(cb);
    ERR_clear_error();
    return rc;
}

/* Reads and checks t's files; on success replaces the contents and bumps
 * the generation (under t->mu), else changes nothing. */
static int load(struct tls_state *t, char *err, size_t errlen)
{
    char *cert = NULL, *key = NULL, *ca = NULL;
    if (t->cert_path != NULL &&
        (cert = read_file("certificate", t->cert_path, err, errlen)) == NULL)
        goto fail;
    if (t->key_path != NULL && (key = read_file("key", t->key_path, err, errlen)) == NULL)
        goto fail;
    if (t->ca_path != NULL && (ca = read_file("CA", t->ca_path, err, errlen)) == NULL) goto fail;
    if (cert != NULL && check_pair(t, cert, key, err, errlen) != 0) goto fail;
    if (ca != NULL && count_certs(ca) == 0) {
        tls_err(err, errlen, "CA %s: no PEM certificate in it%s", t->ca_path, "");
        goto fail;
    }
    pthread_mutex_lock(&t->mu);
    free(t->cert_pem);
    free(t->key_pem);
    free(t->ca_pem);
    t->cert_pem = cert;
    t->key_pem = key;
    t->ca_pem = ca;
    t->gen++;
    pthread_mutex_unlock(&t->mu);
    return 0;
fail:
    free(cert);
    free(key);
    free(ca);
    return -1;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL || s[0] == '\0') return NULL;
    char *d = strdup(s);
    if (d == NULL) *oom = true;
    return d;
}

/* Checks the combination of files (not their contents). */
static int check_shape(const struct rpc_tls *c, bool server, char *err, size_t errlen)
{
    bool cert = c->cert != NULL && c->cert[0], key = c->key != NULL && c->key[0],
         ca = c->ca != NULL && c->ca[0];
    if (cert != key) {
        tls_err(err, errlen, "%s", cert ? "a certificate needs its key" : "a key needs its certificate", "");
        return -1;
    }
    if (server && !cert) {
        tls_err(err, errlen, "%s", "a TLS server needs a certificate and its key", "");
        return -1;
    }
    if (server && c->client_auth != RPC_TLS_CLIENT_NONE && !ca) {
        tls_err(err, errlen, "%s", "verifying client certificates needs a CA", "");
        return -1;
    }
    return 0;
}

struct tls_state *tls_state_new(const struct rpc_tls *c, bool server, char *err, size_t errlen)
{
    if (check_shape(c, server, err, errlen) != 0) return NULL;
    struct tls_state *t = calloc(1, sizeof *t);
    bool oom = t == NULL;
    if (t != NULL) {
        pthread_mutex_init(&t->mu, NULL);
        t->client_auth = server ? c->client_auth : RPC_TLS_CLIENT_NONE;
        t->cert_path = dup_or_null(c->cert, &oom);
        t->key_path = dup_or_null(c->key, &oom);
        t->ca_path = dup_or_null(c->ca, &oom);
        t->server_name = server ? NULL : dup_or_null(c->server_name, &oom);
    }
    if (oom) {
        tls_err(err, errlen, "%s", "out of memory", "");
        tls_state_free(t);
        return NULL;
    }
    if (load(t, err, errlen) != 0) {
        tls_state_free(t);
        return NULL;
    }
    return t;
}

void tls_state_free(struct tls_state *t)
{
    if (t == NULL) return;
    pthread_mutex_destroy(&t->mu);
    free(t->cert_path);
    free(t->key_path);
    free(t->ca_path);
    free(t->server_name);
    free(t->cert_pem);
    free(t->key_pem);
    free(t->ca_pem);
    free(t);
}

int tls_state_reload(struct tls_state *t, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (t == NULL) return 0;
    return load(t, err, errlen);
}

unsigned long tls_state_generation(struct tls_state *t)
{
    pthread_mutex_lock(&t->mu);
    unsigned long g = t->gen;
    pthread_mutex_unlock(&t->mu);
    return g;
}

const char *tls_state_server_name(const struct tls_state *t)
{
    return t->server_name;
}

int rpc_tls_check(const struct rpc_tls *c, bool server, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (!rpc_tls_on(c)) return 0;
    struct tls_state *t = tls_state_new(c, server, err, errlen);
    if (t == NULL) return -1;
    tls_state_free(t);
    return 0;
}

/* ------------------------------------------------------------ server side */

/* The core's certificate-config fetcher: a new config after each reload. */
static grpc_ssl_certificate_config_reload_status fetch(void *user,
                                                       grpc_ssl_server_certificate_config **cfg)
{
    struct tls_state *t = user;
    grpc_ssl_certificate_config_reload_status rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&t->mu);
    if (t->served != t->gen) {
        grpc_ssl_pem_key_cert_pair pair = {t->key_pem, t->cert_pem};
        *cfg = grpc_ssl_server_certificate_config_create(t->ca_pem, &pair, 1);
        if (*cfg != NULL) {
            t->served = t->gen;
            rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        } else {
            rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL; /* the core keeps the old one */
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rs;
}

grpc_server_credentials *tls_server_credentials(struct tls_state *t)
{
    grpc_ssl_client_certificate_request_type req = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    if (t->client_auth == RPC_TLS_CLIENT_OPTIONAL)
        req = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    else if (t->client_auth == RPC_TLS_CLIENT_REQUIRE)
        req = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, t);
    return o != NULL ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

/* ------------------------------------------------------------ client side */

grpc_channel_credentials *tls_channel_credentials(struct tls_state *t)
{
    pthread_mutex_lock(&t->mu);
    grpc_ssl_pem_key_cert_pair pair = {t->key_pem, t->cert_pem};
    grpc_channel_credentials *cr =
        grpc_ssl_credentials_create(t->ca_pem, t->cert_pem != NULL ? &pair : NULL, NULL, NULL);
    pthread_mutex_unlock(&t->mu);
    return cr;
}

int rpc_server_reload_tls(struct rpc_server *s, char *err, size_t errlen)
{
    return tls_state_reload(s->tls, err, errlen);
}
