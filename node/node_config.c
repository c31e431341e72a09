/*
 * node_config.c — flag and environment parsing for vecshard-node.
 *
 * The flags are one table: name, kind, default (as the text a user would
 * type), bounds and help. Parsing runs the same converter over the default,
 * then the environment variable, then the command line, so a bad value is
 * reported the same way wherever it came from ("--threads: \"x\" is not an
 * integer (from VECSHARD_THREADS)") and the process exits 2. Sizes accept a
 * binary suffix (64MiB, 64M, 64m, 1g, 512k).
 */
#define _GNU_SOURCE
#include "node/node_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util/log.h"
#include "node/wal.h"

enum flag_kind { F_STR, F_INT, F_SIZE, F_FSYNC, F_LEVEL, F_ID };

struct flag {
    const char *name; /* without the leading "--" */
    enum flag_kind kind;
    const char *def; /* NULL: no default (computed or optional) */
    uint64_t min, max;
    size_t offset; /* into struct node_config */
    const char *help;
};

#define OFF(f) offsetof(struct node_config, f)

static const struct flag flags[] = {
    {"listen", F_STR, "0.0.0.0:7400", 0, 0, OFF(listen),
     "host:port the gRPC server binds; port 0 picks a free port (logged)"},
    {"advertise", F_STR, NULL, 0, 0, OFF(advertise),
     "address registered in etcd for routers and peers (default: the bound address, with "
     "the hostname for a wildcard host)"},
    {"node-id", F_ID, NULL, 0, 0, OFF(node_id),
     "node identity, [A-Za-z0-9_.-]{1,128} (default: the hostname)"},
    {"data-dir", F_STR, "./data", 0, 0, OFF(data_dir),
     "replicas live in <data-dir>/<collection>/<shard>/"},
    {"etcd", F_STR, "http://127.0.0.1:2379", 0, 0, OFF(etcd),
     "comma-separated etcd endpoints (http:// is added when missing)"},
    {"etcd-prefix", F_STR, "/vecshard", 0, 0, OFF(etcd_prefix), "prefix of every etcd key"},
    {"fsync", F_FSYNC, "always", 0, 0, OFF(fsync),
     "WAL durability: always (fsync before ack), batch (group commit), none"},
    {"threads", F_INT, "8", 1, 1024, OFF(threads), "gRPC handler threads"},
    {"lease-ttl", F_INT, "10", 2, 3600, OFF(lease_ttl),
     "etcd lease TTL in seconds (kept alive every TTL/3)"},
    {"etcd-timeout-ms", F_INT, "2000", 100, 60000, OFF(etcd_timeout_ms),
     "bound of every etcd request (keep well below the lease TTL)"},
    {"log-level", F_LEVEL, "info", 0, 0, OFF(log_level), "debug, info, warn or error"},
    {"snapshot-wal-bytes", F_SIZE, "256MiB", 1u << 16, UINT64_MAX, OFF(snapshot_wal_bytes),
     "take a snapshot of a replica once its WAL since the last snapshot exceeds this"},
    {"max-message-bytes", F_SIZE, "64MiB", 1u << 16, (uint64_t)INT_MAX, OFF(max_message_bytes),
     "largest gRPC request or reply"},
    {"max-batch-points", F_INT, "100000", 1, 10000000, OFF(max_batch_points),
     "most upserts + deletes in one Write"},
    {"max-payload-bytes", F_SIZE, "64KiB", 1, 1u << 16, OFF(max_payload_bytes),
     "largest payload of one point (at most 64KiB, DESIGN §2)"},
    {"max-k", F_INT, "10000", 1, 10000, OFF(max_k), "largest k of a search"},
    {"max-ef", F_INT, "100000", 1, 100000, OFF(max_ef), "largest ef of a search"},
    {"capacity", F_INT, "0", 0, 1000000000, OFF(capacity),
     "replicas this node offers to host, advertised in its registration (0 = no limit)"},
    {"shutdown-grace-ms", F_INT, "5000", 0, 600000, OFF(shutdown_grace_ms),
     "on SIGTERM, how long running calls may finish before they are cancelled"},
};

#define N_FLAGS (sizeof flags / sizeof flags[0])

/* Environment variable name of a flag ("VECSHARD_NODE_ID"). */
static void env_name(const struct flag *f, char *buf, size_t size)
{
    size_t p = (size_t)snprintf(buf, size, "VECSHARD_");
    for (const char *s = f->name; *s != '\0' && p + 1 < size; s++)
        buf[p++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
    buf[p] = '\0';
}

/* Parses an unsigned integer with an optional binary size suffix. */
static bool parse_u64(const char *s, bool size_suffix, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0) return false;
    unsigned shift = 0;
    if (size_suffix && *end != '\0') {
        switch (tolower((unsigned char)*end)) {
        case 'k':
            shift = 10;
            break;
        case 'm':
            shift = 20;
            break;
        case 'g':
            shift = 30;
            break;
        default:
            return false;
        }
        end++;
        if (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0) end += strlen(end);
    }
    if (*end != '\0') return false;
    if (shift != 0 && v > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* True when id is a valid node id (it becomes an etcd key segment). */
static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 128) return false;
    for (const char *s = id; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.') return false;
    return true;
}

/* Stores an integer into the config field of f, whose C type depends on f. */
static void store_int(struct node_config *cfg, const struct flag *f, uint64_t v)
{
    char *p = (char *)cfg + f->offset;
    if (f->offset == OFF(etcd_timeout_ms))
        *(long *)p = (long)v;
    else if (f->offset == OFF(snapshot_wal_bytes) || f->offset == OFF(max_message_bytes) ||
             f->offset == OFF(capacity))
        *(uint64_t *)p = v;
    else if (f->offset == OFF(max_batch_points) || f->offset == OFF(max_payload_bytes) ||
             f->offset == OFF(max_k) || f->offset == OFF(max_ef))
        *(uint32_t *)p = (uint32_t)v;
    else
        *(int *)p = (int)v;
}

/* Applies one textual value to cfg; prints the reason and returns false if bad. */
static bool apply(struct node_config *cfg, const struct flag *f, const char *val,
                  const char *source)
{
    char *p = (char *)cfg + f->offset;
    uint64_t v;
    int e;
    switch (f->kind) {
    case F_ID:
        if (!valid_id(val)) {
            fprintf(stderr,
                    "vecshard-node: --%s: \"%s\" is not a valid node id "
                    "([A-Za-z0-9_.-]{1,128}) (from %s)\n",
                    f->name, val, source);
            return false;
        }
        /* fall through */
    case F_STR:
        if (*val == '\0' && f->offset != OFF(advertise)) {
            fprintf(stderr, "vecshard-node: --%s: empty value (from %s)\n", f->name, source);
            return false;
        }
        free(*(char **)p);
        *(char **)p = strdup(val);
        if (*(char **)p == NULL) {
            fprintf(stderr, "vecshard-node: out of memory\n");
            return false;
        }
        return true;
    case F_INT:
    case F_SIZE:
        if (!parse_u64(val, f->kind == F_SIZE, &v)) {
            fprintf(stderr, "vecshard-node: --%s: \"%s\" is not %s (from %s)\n", f->name, val,
                    f->kind == F_SIZE ? "a size (e.g. 65536, 64KiB, 64MiB)"
                                      : "a non-negative integer",
                    source);
            return false;
        }
        if (v < f->min || v > f->max) {
            fprintf(stderr, "vecshard-node: --%s: %s is out of range %llu..%llu (from %s)\n",
                    f->name, val, (unsigned long long)f->min, (unsigned long long)f->max, source);
            return false;
        }
        store_int(cfg, f, v);
        return true;
    case F_FSYNC:
        e = wal_fsync_parse(val);
        if (e < 0) {
            fprintf(stderr,
                    "vecshard-node: --%s: \"%s\" is not one of always, batch, none (from %s)\n",
                    f->name, val, source);
            return false;
        }
        *(int *)p = e;
        return true;
    case F_LEVEL:
        e = log_level_parse(val);
        if (e < 0) {
            fprintf(stderr,
                    "vecshard-node: --%s: \"%s\" is not one of debug, info, warn, error "
                    "(from %s)\n",
                    f->name, val, source);
            return false;
        }
        *(int *)p = e;
        return true;
    }
    return false;
}

/* Prints every flag with its environment name and default. */
static void print_help(void)
{
    printf("usage: vecshard-node [flags]\n\n"
           "Serves the vecshard.v1.ShardNode gRPC service: hosts the shard replicas that etcd\n"
           "assigns to this node. Every flag can also be set by its environment variable;\n"
           "the flag wins.\n\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        char env[64];
        env_name(&flags[i], env, sizeof env);
        printf("  --%-20s %s\n  %22s env %s, default %s\n", flags[i].name, flags[i].help, "", env,
               flags[i].def != NULL ? flags[i].def : "(see above)");
    }
    printf("  --%-20s print this help and exit\n  --%-20s print the version and exit\n", "help",
           "version");
}

/* Finds a flag by name (without dashes); NULL if unknown. */
static const struct flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

/* Adds http:// to endpoints given without a scheme; returns a new string or NULL. */
static char *normalise_endpoints(const char *in)
{
    size_t cap = strlen(in) * 2 + 16, p = 0;
    char *out = malloc(cap);
    if (out == NULL) return NULL;
    const char *s = in;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        while (len > 0 && isspace((unsigned char)*s))
            s++, len--;
        while (len > 0 && isspace((unsigned char)s[len - 1]))
            len--;
        if (len > 0) {
            if (p > 0) out[p++] = ',';
            if (memmem(s, len, "://", 3) == NULL) p += (size_t)sprintf(out + p, "http://");
            memcpy(out + p, s, len);
            p += len;
        }
        if (comma == NULL) break;
        s = comma + 1;
    }
    out[p] = '\0';
    return out;
}

/* Parses defaults, environment and argv into cfg (see node_config.h). */
enum node_config_result node_config_parse(int argc, char **argv, struct node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].def != NULL && !apply(cfg, &flags[i], flags[i].def, "default"))
            return NODE_CONFIG_EXIT_BAD;

    for (size_t i = 0; i < N_FLAGS; i++) {
        char env[64];
        env_name(&flags[i], env, sizeof env);
        const char *v = getenv(env);
        if (v != NULL && !apply(cfg, &flags[i], v, env)) return NODE_CONFIG_EXIT_BAD;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help();
            return NODE_CONFIG_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("vecshard-node %s\n", NODE_VERSION);
            return NODE_CONFIG_EXIT_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "vecshard-node: unexpected argument \"%s\" (see --help)\n", a);
            return NODE_CONFIG_EXIT_BAD;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const struct flag *f = find_flag(name, len);
        if (f == NULL) {
            fprintf(stderr, "vecshard-node: unknown flag \"--%.*s\" (see --help)\n", (int)len,
                    name);
            return NODE_CONFIG_EXIT_BAD;
        }
        const char *val = eq != NULL ? eq + 1 : NULL;
        if (val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vecshard-node: --%s needs a value\n", f->name);
                return NODE_CONFIG_EXIT_BAD;
            }
            val = argv[++i];
        }
        if (!apply(cfg, f, val, "command line")) return NODE_CONFIG_EXIT_BAD;
    }

    if (cfg->node_id == NULL) {
        char host[256];
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "node");
        host[sizeof host - 1] = '\0';
        const struct flag *f = find_flag("node-id", 7);
        if (!apply(cfg, f, host, "the hostname; set --node-id")) return NODE_CONFIG_EXIT_BAD;
    }
    if (cfg->advertise != NULL && cfg->advertise[0] == '\0') {
        free(cfg->advertise);
        cfg->advertise = NULL;
    }
    const char *colon = strrchr(cfg->listen, ':');
    uint64_t port;
    if (cfg->listen[0] == ':' || colon == NULL || !parse_u64(colon + 1, false, &port) ||
        port > 65535) {
        fprintf(stderr, "vecshard-node: --listen: \"%s\" is not host:port (port 0..65535)\n",
                cfg->listen);
        return NODE_CONFIG_EXIT_BAD;
    }
    char *eps = normalise_endpoints(cfg->etcd);
    if (eps == NULL || eps[0] == '\0') {
        fprintf(stderr, "vecshard-node: --etcd: no endpoint in \"%s\"\n", cfg->etcd);
        free(eps);
        return NODE_CONFIG_EXIT_BAD;
    }
    free(cfg->etcd);
    cfg->etcd = eps;
    size_t pl = strlen(cfg->etcd_prefix);
    while (pl > 1 && cfg->etcd_prefix[pl - 1] == '/')
        cfg->etcd_prefix[--pl] = '\0';
    if (cfg->etcd_prefix[0] != '/') {
        fprintf(stderr, "vecshard-node: --etcd-prefix: \"%s\" must start with '/'\n",
                cfg->etcd_prefix);
        return NODE_CONFIG_EXIT_BAD;
    }
    return NODE_CONFIG_OK;
}

/* Frees every string of cfg. */
void node_config_free(struct node_config *cfg)
{
    free(cfg->listen);
    free(cfg->advertise);
    free(cfg->node_id);
    free(cfg->data_dir);
    free(cfg->etcd);
    free(cfg->etcd_prefix);
    memset(cfg, 0, sizeof *cfg);
}
