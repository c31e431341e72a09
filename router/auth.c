/*
 * auth.c — the key file, the role table and the check (auth.h).
 */
#define _GNU_SOURCE
#include "router/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/util/keyhash.h"

#define NAME_MAX_LEN 64

struct key {
    char name[NAME_MAX_LEN + 1];
    enum auth_role role;
    unsigned char hash[32];
    char **colls; /* NULL: every collection */
    size_t n_colls;
};

struct auth_keys {
    struct key *v;
    size_t n;
};

static const struct {
    const char *method;
    enum auth_role role;
} roles[] = {
    {"Search", AUTH_READ},           {"Get", AUTH_READ},
    {"Count", AUTH_READ},
    {"DescribeCollection", AUTH_READ}, {"ListCollections", AUTH_READ},
    {"ClusterStatus", AUTH_READ},    {"Upsert", AUTH_WRITE},
    {"Delete", AUTH_WRITE},          {"CreateCollection", AUTH_ADMIN},
    {"DropCollection", AUTH_ADMIN},  {"Rebalance", AUTH_ADMIN},
    {"Drain", AUTH_ADMIN},
};

enum auth_role auth_method_role(const char *method)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(roles[i].method, method) == 0) return roles[i].role;
    return AUTH_ADMIN; /* fail closed */
}

const char *auth_role_name(enum auth_role r)
{
    return r == AUTH_READ ? "read" : r == AUTH_WRITE ? "write" : "admin";
}

static void key_free(struct key *k)
{
    for (size_t i = 0; i < k->n_colls; i++)
        free(k->colls[i]);
    free(k->colls);
}

void auth_keys_free(struct auth_keys *k)
{
    if (k == NULL) return;
    for (size_t i = 0; i < k->n; i++)
        key_free(&k->v[i]);
    free(k->v);
    free(k);
}

size_t auth_keys_count(const struct auth_keys *k)
{
    return k != NULL ? k->n : 0;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-') return false;
    return true;
}

/* Parses one non-empty line into k; NULL or the reason. */
static const char *parse_line(char *line, struct key *k)
{
    char *save = NULL, *name = strtok_r(line, " \t", &save), *role = strtok_r(NULL, " \t", &save),
         *hash = strtok_r(NULL, " \t", &save), *scope = strtok_r(NULL, " \t", &save);
    if (name == NULL || role == NULL || hash == NULL)
        return "want: <name> <role> sha256:<hex> [collections=a,b]";
    if (strtok_r(NULL, " \t", &save) != NULL) return "unexpected text after the scope";
    if (!name_ok(name)) return "bad name (want [A-Za-z0-9_.-]{1,64})";
    snprintf(k->name, sizeof k->name, "%s", name);
    if (strcmp(role, "read") == 0)
        k->role = AUTH_READ;
    else if (strcmp(role, "write") == 0)
        k->role = AUTH_WRITE;
    else if (strcmp(role, "admin") == 0)
        k->role = AUTH_ADMIN;
    else
        return "bad role (want read, write or admin)";
    if (strncmp(hash, "sha256:", 7) != 0 || strlen(hash + 7) != 64)
        return "bad hash (want sha256: and 64 hex digits; `vecshard key hash KEY` prints it)";
    for (int i = 0; i < 32; i++) {
        int hi = hexval(hash[7 + 2 * i]), lo = hexval(hash[8 + 2 * i]);
        if (hi < 0 || lo < 0) return "bad hash (not hex)";
        k->hash[i] = (unsigned char)(hi << 4 | lo);
    }
    if (scope != NULL) {
        if (strncmp(scope, "collections=", 12) != 0 || scope[12] == '\0')
            return "bad scope (want collections=a,b)";
        char *s2 = NULL;
        for (char *c = strtok_r(scope + 12, ",", &s2); c != NULL; c = strtok_r(NULL, ",", &s2)) {
            char **nv = realloc(k->colls, (k->n_colls + 1) * sizeof *nv);
            if (nv == NULL) return "out of memory";
            k->colls = nv;
            if ((k->colls[k->n_colls] = strdup(c)) == NULL) return "out of memory";
            k->n_colls++;
        }
        if (k->n_colls == 0) return "bad scope (no collection)";
    }
    return NULL;
}

struct auth_keys *auth_keys_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct auth_keys *ks = calloc(1, sizeof *ks);
    char *line = NULL;
    size_t cap = 0;
    long no = 0;
    const char *why = ks == NULL ? "out of memory" : NULL;
    while (why == NULL && getline(&line, &cap, f) >= 0) {
        no++;
        char *hash = strchr(line, '#');
        if (hash != NULL) *hash = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\0') continue;
        struct key *nv = realloc(ks->v, (ks->n + 1) * sizeof *nv);
        if (nv == NULL) {
            why = "out of memory";
            break;
        }
        ks->v = nv;
        struct key *k = &ks->v[ks->n];
        memset(k, 0, sizeof *k);
        why = parse_line(p, k);
        ks->n++; /* counted even on error, so key_free releases its scope */
        for (size_t i = 0; why == NULL && i + 1 < ks->n; i++)
            if (strcmp(ks->v[i].name, k->name) == 0) why = "duplicate name";
    }
    if (why == NULL && ferror(f)) why = "read error";
    free(line);
    fclose(f);
    if (why != NULL) {
        snprintf(err, errlen, "%s:%ld: %s", path, no, why);
        auth_keys_free(ks);
        return NULL;
    }
    return ks;
}

/* The Bearer token of an authorization value, or NULL. */
static const char *bearer(const char *v)
{
    if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0) return NULL;
    v += 7;
    while (*v == ' ') v++;
    return *v ? v : NULL;
}

grpc_status_code auth_keys_check(const struct auth_keys *k, const char *authorization,
                                 const char *method, const char *collection, char *msg,
                                 size_t msglen)
{
    const char *tok = bearer(authorization);
    if (tok == NULL) {
        snprintf(msg, msglen, "%s", authorization == NULL
                                        ? "missing API key: send metadata authorization: Bearer <key>"
                                        : "malformed authorization metadata: want Bearer <key>");
        return GRPC_STATUS_UNAUTHENTICATED;
    }
    unsigned char h[32];
    keyhash_sha256(tok, strlen(tok), h);
    const struct key *found = NULL;
    for (size_t i = 0; i < k->n; i++) { /* every entry, no early exit */
        bool eq = CRYPTO_memcmp(h, k->v[i].hash, 32) == 0;
        if (eq && found == NULL) found = &k->v[i];
    }
    if (found == NULL) {
        snprintf(msg, msglen, "unknown API key");
        return GRPC_STATUS_UNAUTHENTICATED;
    }
    enum auth_role need = auth_method_role(method);
    if (found->role < need) {
        snprintf(msg, msglen, "API key \"%s\" has role %s; %s needs %s", found->name,
                 auth_role_name(found->role), method, auth_role_name(need));
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    if (found->colls != NULL) {
        if (collection == NULL || collection[0] == '\0') {
            if (strcmp(method, "Rebalance") == 0 || strcmp(method, "Drain") == 0) {
                snprintf(msg, msglen, "API key \"%s\" is limited to some collections; %s needs "
                                      "an unscoped admin key", found->name, method);
                return GRPC_STATUS_PERMISSION_DENIED;
            }
            return GRPC_STATUS_OK;
        }
        for (size_t i = 0; i < found->n_colls; i++)
            if (strcmp(found->colls[i], collection) == 0) return GRPC_STATUS_OK;
        snprintf(msg, msglen, "API key \"%s\" may not access collection \"%s\"", found->name,
                 collection);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    return GRPC_STATUS_OK;
}

int auth_init(struct auth *a, const char *path, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    pthread_rwlock_init(&a->lock, NULL);
    if (path == NULL || path[0] == '\0') return 0;
    if ((a->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->keys = auth_keys_load(path, err, errlen);
    return a->keys != NULL ? 0 : -1;
}

int auth_reload(struct auth *a, char *err, size_t errlen)
{
    if (a->path == NULL) return 0;
    struct auth_keys *k = auth_keys_load(a->path, err, errlen);
    if (k == NULL) return -1;
    pthread_rwlock_wrlock(&a->lock);
    struct auth_keys *old = a->keys;
    a->keys = k;
    pthread_rwlock_unlock(&a->lock);
    auth_keys_free(old);
    return 0;
}

grpc_status_code auth_check(struct auth *a, const char *authorization, const char *method,
                            const char *collection, char *msg, size_t msglen)
{
    if (a->path == NULL) return GRPC_STATUS_OK;
    pthread_rwlock_rdlock(&a->lock);
    grpc_status_code c = auth_keys_check(a->keys, authorization, method, collection, msg, msglen);
    pthread_rwlock_unlock(&a->lock);
    return c;
}

void auth_destroy(struct auth *a)
{
    auth_keys_free(a->keys);
    free(a->path);
    pthread_rwlock_destroy(&a->lock);
    memset(a, 0, sizeof *a);
}
