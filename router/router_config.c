/*
 * router_config.c — flag and environment parsing for vecshard-router.
 *
 * Same shape as the node's: one table of flags with kind, default text,
 * bounds and help, parsed by common/util/flags (defaults, then VECSHARD_*
 * variables, then the command line; a bad value is reported with its source,
 * "--threads: \"x\" is not a non-negative integer (from VECSHARD_THREADS)",
 * and the process exits 2). What stays here are the checks that span flags
 * (listen address, etcd endpoints and prefix).
 */
#define _GNU_SOURCE
#include "router/router_config.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/etcd/etcd.h"
#include "common/rpc/rpc.h"
#include "common/http/http.h"
#include "common/util/flags.h"
#include "common/util/log.h"

#define PROG "vecshard-router"

#define F(field) FLAGS_FIELD(struct router_config, field)

/* "on" -> 1, "off" -> 0, else -1. */
/* --tls-client-auth: enum rpc_tls_client_auth of a word. */
static int client_auth_parse(const char *s)
{
    if (strcmp(s, "none") == 0) return RPC_TLS_CLIENT_NONE;
    if (strcmp(s, "optional") == 0) return RPC_TLS_CLIENT_OPTIONAL;
    if (strcmp(s, "require") == 0) return RPC_TLS_CLIENT_REQUIRE;
    return -1;
}

static int on_off_parse(const char *s)
{
    return strcmp(s, "on") == 0 ? 1 : strcmp(s, "off") == 0 ? 0 : -1;
}

/* 0 when id is 1..128 printable characters without spaces (the election
 * value is "<id> <addr>"), -1 if not. */
static int check_router_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 128) return -1;
    for (const char *s = id; *s != '\0'; s++)
        if (!isgraph((unsigned char)*s)) return -1;
    return 0;
}

static const struct flags_spec flags[] = {
    {"listen", FLAGS_STR, "0.0.0.0:7300", 0, 0, F(listen),
     "host:port the gRPC server binds; port 0 picks a free port (logged)"},
    {"http", FLAGS_STR, "", 0, 0, F(http),
     "host:port of the HTTP endpoint (/metrics, /healthz, /readyz; docs/operations.md); port 0 "
     "picks a free port (logged); empty = off",
     http_addr_check, "host:port (port 0..65535) or empty", .empty_ok = true},
    {"etcd", FLAGS_STR, "http://127.0.0.1:2379", 0, 0, F(etcd),
     "comma-separated etcd endpoints (http:// is added when missing)"},
    {"etcd-prefix", FLAGS_STR, "/vecshard", 0, 0, F(etcd_prefix), "prefix of every etcd key"},
    {"threads", FLAGS_INT, "16", 1, 1024, F(threads),
     "gRPC handler threads (a running call holds one while it waits for the nodes)"},
    {"default-timeout", FLAGS_INT, "10000", 1, 3600000, F(default_timeout_ms),
     "deadline in ms of calls whose client set none"},
    {"etcd-timeout-ms", FLAGS_INT, "2000", 100, 60000, F(etcd_timeout_ms),
     "bound of every etcd request"},
    {"log-level", FLAGS_ENUM, "info", 0, 0, F(log_level), "debug, info, warn or error",
     log_level_parse, "one of debug, info, warn, error"},
    {"slow-query-ms", FLAGS_INT, "1000", 0, 3600000, F(slow_query_ms),
     "log a warn line \"slow request\" for calls slower than this many ms; 0 = off"},
    {"view-max-age-ms", FLAGS_INT, "10000", 100, 3600000, F(view_max_age_ms),
     "/readyz fails once the routing table has not been known current (etcd watch down) for "
     "this many ms"},
    {"max-message-bytes", FLAGS_SIZE, "64MiB", 1u << 16, (uint64_t)INT_MAX, F(max_message_bytes),
     "largest gRPC request or reply, to clients and from nodes"},
    {"shutdown-grace-ms", FLAGS_INT, "5000", 0, 600000, F(shutdown_grace_ms),
     "on SIGTERM, how long running calls may finish before they are cancelled"},
    {"router-id", FLAGS_STR, NULL, 0, 0, F(router_id),
     "this router's name in the controller election and ClusterStatus (default: "
     "<hostname>:<bound port>)",
     check_router_id, "1 to 128 printable characters without spaces"},
    {"controller", FLAGS_ENUM, "on", 0, 0, F(controller),
     "on: take part in the controller election (failover, re-replication); off: serve only",
     on_off_parse, "one of on, off"},
    {"controller-ttl", FLAGS_INT, "5", 2, 3600, F(controller_ttl),
     "lease of the controller election in seconds: a dead controller is replaced within it"},
    {"replace-after-ms", FLAGS_INT, "60000", 0, 86400000, F(replace_after_ms),
     "how long a node must be gone before its replicas are re-created on other nodes"},
    {"auto-rebalance", FLAGS_ENUM, "on", 0, 0, F(auto_rebalance),
     "on: the controller plans a rebalance when a node joins and after re-replication "
     "(docs/rebalance.md §4); drains run either way",
     on_off_parse, "one of on, off"},
    {"max-moves", FLAGS_INT, "2", 1, 1024, F(max_moves),
     "rebalance moves the controller runs at once (one per shard)"},
    {"move-timeout-ms", FLAGS_INT, "300000", 1000, 86400000, F(move_timeout_ms),
     "a move attempt whose target makes no progress for this long is undone and retried"},
    {"rebalance-settle-ms", FLAGS_INT, "5000", 0, 3600000, F(rebalance_settle_ms),
     "how long the cluster must be settled (no node missing, every shard in sync, no move) "
     "before an automatic rebalance is planned"},
    {"tls-cert", FLAGS_STR, NULL, 0, 0, F(tls_cert),
     "PEM certificate chain: the public port speaks TLS, and the same certificate is the "
     "client certificate of the calls to nodes (mTLS; docs/security.md)"},
    {"tls-key", FLAGS_STR, NULL, 0, 0, F(tls_key), "PEM private key of --tls-cert"},
    {"tls-ca", FLAGS_STR, NULL, 0, 0, F(tls_ca),
     "PEM CA bundle of the cluster: verifies the nodes' certificates and, with "
     "--tls-client-auth, the clients'"},
    {"tls-client-auth", FLAGS_ENUM, "none", 0, 0, F(tls_client_auth),
     "client certificates on the public port: none, optional (verified against --tls-ca when "
     "sent) or require",
     client_auth_parse, "one of none, optional, require"},
    {"tls-server-name", FLAGS_STR, NULL, 0, 0, F(tls_server_name),
     "name the nodes' certificates must carry, instead of the host of their address"},
    {"etcd-cacert", FLAGS_STR, NULL, 0, 0, F(etcd_cacert),
     "PEM CA bundle that verifies etcd's certificate (https:// endpoints)"},
    {"etcd-cert", FLAGS_STR, NULL, 0, 0, F(etcd_cert),
     "PEM client certificate for etcd (etcd --client-cert-auth)"},
    {"etcd-key", FLAGS_STR, NULL, 0, 0, F(etcd_key), "PEM private key of --etcd-cert"},
    {"api-keys", FLAGS_STR, NULL, 0, 0, F(api_keys),
     "file of API keys with roles (docs/security.md); every call then needs "
     "\"authorization: Bearer <key>\"; re-read on SIGHUP. Unset: no authentication"},
    {"max-concurrent-requests", FLAGS_INT, "1024", 0, 1000000, F(max_concurrent),
     "most gRPC calls queued or running at once; one more is refused with RESOURCE_EXHAUSTED "
     "(0 = no limit)"},
    {"hedge-max-ms", FLAGS_INT, "50", 0, 60000, F(hedge_max_ms),
     "hedged searches: a shard that has not answered after the lowest recent p95 latency of "
     "its in-sync replicas, at most this many ms, is asked again on another replica and the "
     "first answer wins (0 = off)"},
};

static const struct flags_prog prog = {
    .name = PROG,
    .version = ROUTER_VERSION,
    .about = "Serves the public vecshard.v1.VecShard gRPC service: routes writes to shard\n"
             "primaries, fans searches out to the shard nodes and merges them. Holds no state;\n"
             "the routing table is read from etcd. Every flag can also be set by its\n"
             "environment variable; the flag wins.\n\n",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
};

/* Checks and normalises the values that depend on each other or need parsing. */
static enum router_config_result finish(struct router_config *cfg)
{
    const char *colon = strrchr(cfg->listen, ':');
    uint64_t port;
    if (cfg->listen[0] == ':' || colon == NULL || !flags_parse_u64(colon + 1, false, &port) ||
        port > 65535) {
        fprintf(stderr, PROG ": --listen: \"%s\" is not host:port (port 0..65535)\n", cfg->listen);
        return ROUTER_CONFIG_EXIT_BAD;
    }
    char *eps = etcd_endpoints_normalise(cfg->etcd);
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
    if (!flags_check_pair(&prog, "tls-cert", cfg->tls_cert, "tls-key", cfg->tls_key) ||
        !flags_check_pair(&prog, "etcd-cert", cfg->etcd_cert, "etcd-key", cfg->etcd_key))
        return ROUTER_CONFIG_EXIT_BAD;
    if (cfg->tls_client_auth != RPC_TLS_CLIENT_NONE && (cfg->tls_cert == NULL || cfg->tls_ca == NULL)) {
        fprintf(stderr, PROG ": --tls-client-auth needs --tls-cert, --tls-key and --tls-ca\n");
        return ROUTER_CONFIG_EXIT_BAD;
    }
    return ROUTER_CONFIG_OK;
}

/* Parses defaults, environment and argv into cfg (see router_config.h). */
enum router_config_result router_config_parse(int argc, char **argv, struct router_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    enum flags_result fr = flags_parse(&prog, argc, argv, cfg);
    if (fr != FLAGS_OK) return fr == FLAGS_EXIT_OK ? ROUTER_CONFIG_EXIT_OK : ROUTER_CONFIG_EXIT_BAD;
    return finish(cfg);
}

/* Frees every string of cfg. */
void router_config_free(struct router_config *cfg)
{
    free(cfg->listen);
    free(cfg->http);
    free(cfg->etcd);
    free(cfg->etcd_prefix);
    free(cfg->router_id);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_ca);
    free(cfg->tls_server_name);
    free(cfg->etcd_cacert);
    free(cfg->etcd_cert);
    free(cfg->etcd_key);
    free(cfg->api_keys);
    memset(cfg, 0, sizeof *cfg);
}
