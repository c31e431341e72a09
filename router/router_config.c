/*
 * router_config.c — flag and environment parsing for vecshard-router.
 *
 * Same shape as the node's (docs/node.md): one table of flags with kind,
 * default text, bounds and help; the same converter runs over the default,
 * the environment variable and the command line, so a bad value is reported
 * alike wherever it came from ("--threads: \"x\" is not a non-negative
 * integer (from VECSHARD_THREADS)") and the process exits 2.
 */
#define _GNU_SOURCE
#include "router/router_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"

#define PROG "vecshard-router"

enum flag_kind { F_STR, F_INT, F_SIZE, F_LEVEL };

struct flag {
    const char *name; /* without the leading "--" */
    enum flag_kind kind;
    const char *def;
    uint64_t min, max;
    size_t offset; /* into struct router_config */
    const char *help;
};

#define OFF(f) offsetof(struct router_config, f)

static const struct flag flags[] = {
    {"listen", F_STR, "0.0.0.0:7300", 0, 0, OFF(listen),
     "host:port the gRPC server binds; port 0 picks a free port (logged)"},
    {"etcd", F_STR, "http://127.0.0.1:2379", 0, 0, OFF(etcd),
     "comma-separated etcd endpoints (http:// is added when missing)"},
    {"etcd-prefix", F_STR, "/vecshard", 0, 0, OFF(etcd_prefix), "prefix of every etcd key"},
    {"threads", F_INT, "16", 1, 1024, OFF(threads),
     "gRPC handler threads (a running call holds one while it waits for the nodes)"},
    {"default-timeout", F_INT, "10000", 1, 3600000, OFF(default_timeout_ms),
     "deadline in ms of calls whose client set none"},
    {"etcd-timeout-ms", F_INT, "2000", 100, 60000, OFF(etcd_timeout_ms),
     "bound of every etcd request"},
    {"log-level", F_LEVEL, "info", 0, 0, OFF(log_level), "debug, info, warn or error"},
    {"max-message-bytes", F_SIZE, "64MiB", 1u << 16, (uint64_t)INT_MAX, OFF(max_message_bytes),
     "largest gRPC request or reply, to clients and from nodes"},
    {"shutdown-grace-ms", F_INT, "5000", 0, 600000, OFF(shutdown_grace_ms),
     "on SIGTERM, how long running calls may finish before they are cancelled"},
};

#define N_FLAGS (sizeof flags / sizeof flags[0])

/* Environment variable name of a flag ("VECSHARD_ETCD_PREFIX"). */
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
        const char *units = "kmg";
        const char *u = strchr(units, tolower((unsigned char)*end));
        if (u == NULL) return false;
        shift = 10u * (unsigned)(u - units + 1);
        end++;
        if (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0) end += strlen(end);
    }
    if (*end != '\0') return false;
    if (shift != 0 && v > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* Applies one textual value to cfg; prints the reason and returns false if bad. */
static bool apply(struct router_config *cfg, const struct flag *f, const char *val,
                  const char *source)
{
    char *p = (char *)cfg + f->offset;
    uint64_t v;
    int level;
    switch (f->kind) {
    case F_STR:
        if (*val == '\0') {
            fprintf(stderr, PROG ": --%s: empty value (from %s)\n", f->name, source);
            return false;
        }
        free(*(char **)p);
        *(char **)p = strdup(val);
        if (*(char **)p == NULL) {
            fprintf(stderr, PROG ": out of memory\n");
            return false;
        }
        return true;
    case F_INT:
    case F_SIZE:
        if (!parse_u64(val, f->kind == F_SIZE, &v)) {
            fprintf(stderr, PROG ": --%s: \"%s\" is not %s (from %s)\n", f->name, val,
                    f->kind == F_SIZE ? "a size (e.g. 65536, 64KiB, 64MiB)"
                                      : "a non-negative integer",
                    source);
            return false;
        }
        if (v < f->min || v > f->max) {
            fprintf(stderr, PROG ": --%s: %s is out of range %llu..%llu (from %s)\n", f->name, val,
                    (unsigned long long)f->min, (unsigned long long)f->max, source);
            return false;
        }
        if (f->kind == F_SIZE)
            *(uint64_t *)p = v;
        else
            *(int *)p = (int)v;
        return true;
    case F_LEVEL:
        level = log_level_parse(val);
        if (level < 0) {
            fprintf(stderr,
                    PROG ": --%s: \"%s\" is not one of debug, info, warn, error (from %s)\n",
                    f->name, val, source);
            return false;
        }
        *(int *)p = level;
        return true;
    }
    return false;
}

/* Prints every flag with its environment name and default. */
static void print_help(void)
{
    printf("usage: " PROG " [flags]\n\n"
           "Serves the public vecshard.v1.VecShard gRPC service: routes writes to shard\n"
           "primaries, fans searches out to the shard nodes and merges them. Holds no state;\n"
           "the routing table is read from etcd. Every flag can also be set by its\n"
           "environment variable; the flag wins.\n\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        char env[64];
        env_name(&flags[i], env, sizeof env);
        printf("  --%-20s %s\n  %22s env %s, default %s\n", flags[i].name, flags[i].help, "", env,
               flags[i].def);
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

/* Adds http:// to endpoints given without a scheme; a new string or NULL. */
static char *normalise_endpoints(const char *in)
{
    size_t cap = strlen(in) * 2 + 16, p = 0;
    char *out = malloc(cap);
    if (out == NULL) return NULL;
    const char *s = in;
    for (;;) {
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

/* Checks and normalises the values that depend on each other or need parsing. */
static enum router_config_result finish(struct router_config *cfg)
{
    const char *colon = strrchr(cfg->listen, ':');
    uint64_t port;
    if (cfg->listen[0] == ':' || colon == NULL || !parse_u64(colon + 1, false, &port) ||
        port > 65535) {
        fprintf(stderr, PROG ": --listen: \"%s\" is not host:port (port 0..65535)\n", cfg->listen);
        return ROUTER_CONFIG_EXIT_BAD;
    }
    char *eps = normalise_endpoints(cfg->etcd);
    if (eps == NULL || eps[0] == '\0') {
        fprintf(stderr, PROG ": --etcd: no endpoint in \"%s\"\n", cfg->etcd);
        free(eps);
        return ROUTER_CONFIG_EXIT_BAD;
    }
    free(cfg->etcd);
    cfg->etcd = eps;
    size_t pl = strlen(cfg->etcd_prefix);
    while (pl > 1 && cfg->etcd_prefix[pl - 1] == '/')
        cfg->etcd_prefix[--pl] = '\0';
    if (cfg->etcd_prefix[0] != '/' || strcmp(cfg->etcd_prefix, "/") == 0) {
        fprintf(stderr, PROG ": --etcd-prefix: \"%s\" must start with '/' and name a folder\n",
                cfg->etcd_prefix);
        return ROUTER_CONFIG_EXIT_BAD;
    }
    return ROUTER_CONFIG_OK;
}

enum router_config_result router_config_parse(int argc, char **argv, struct router_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_FLAGS; i++)
        if (!apply(cfg, &flags[i], flags[i].def, "default")) return ROUTER_CONFIG_EXIT_BAD;

    for (size_t i = 0; i < N_FLAGS; i++) {
        char env[64];
        env_name(&flags[i], env, sizeof env);
        const char *v = getenv(env);
        if (v != NULL && !apply(cfg, &flags[i], v, env)) return ROUTER_CONFIG_EXIT_BAD;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help();
            return ROUTER_CONFIG_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf(PROG " %s\n", ROUTER_VERSION);
            return ROUTER_CONFIG_EXIT_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, PROG ": unexpected argument \"%s\" (see --help)\n", a);
            return ROUTER_CONFIG_EXIT_BAD;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const struct flag *f = find_flag(name, len);
        if (f == NULL) {
            fprintf(stderr, PROG ": unknown flag \"--%.*s\" (see --help)\n", (int)len, name);
            return ROUTER_CONFIG_EXIT_BAD;
        }
        const char *val = eq != NULL ? eq + 1 : NULL;
        if (val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, PROG ": --%s needs a value\n", f->name);
                return ROUTER_CONFIG_EXIT_BAD;
            }
            val = argv[++i];
        }
        if (!apply(cfg, f, val, "command line")) return ROUTER_CONFIG_EXIT_BAD;
    }
    return finish(cfg);
}

void router_config_free(struct router_config *cfg)
{
    free(cfg->listen);
    free(cfg->etcd);
    free(cfg->etcd_prefix);
    memset(cfg, 0, sizeof *cfg);
}
