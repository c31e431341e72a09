/*
 * router_config.h — the command line and environment of vecshard-router.
 *
 * Every flag `--name` has an environment twin `VECSHARD_NAME` (upper case,
 * '-' -> '_'); the flag wins over the environment, which wins over the
 * default. One table in router_config.c holds names, defaults and help, so
 * `--help` and docs/router.md list the same thing.
 */
#ifndef VS_ROUTER_CONFIG_H
#define VS_ROUTER_CONFIG_H

#include <stdint.h>

#include "common/util/version.h"

#define ROUTER_VERSION VECSHARD_VERSION

/* Effective configuration; strings are owned by the struct (router_config_free). */
struct router_config {
    char *listen;      /* host:port to bind; port 0 = ephemeral */
    char *http;        /* --http host:port of /metrics, /healthz, /readyz; "" = off */
    char *etcd;        /* comma-separated endpoints, each with a scheme */
    char *etcd_prefix; /* no trailing '/' */
    int threads;       /* rpc worker threads */
    int default_timeout_ms;
    int etcd_timeout_ms;
    int log_level;       /* enum log_level */
    int slow_query_ms;   /* warn about calls slower than this; 0 = off */
    int view_max_age_ms; /* /readyz fails once the routing view is stale this long */
    uint64_t max_message_bytes;
    int shutdown_grace_ms;
    char *router_id;         /* NULL: "<hostname>:<bound port>", set by main once bound */
    int controller;          /* take part in the controller election (0 off, 1 on) */
    int controller_ttl;      /* seconds, lease of the election */
    int replace_after_ms;    /* grace before a missing node's replicas are re-created */
    int auto_rebalance;      /* plan moves on node join / after re-replication (0 off, 1 on) */
    int max_moves;           /* rebalance moves running at once */
    int move_timeout_ms;     /* a move attempt without progress for this long is undone */
    int rebalance_settle_ms; /* how long the cluster must be settled before an automatic plan */
    /* docs/security.md: TLS of the public port and client certificate of
     * the calls to nodes (mTLS). */
    char *tls_cert, *tls_key, *tls_ca; /* NULL = plaintext */
    int tls_client_auth;               /* enum rpc_tls_client_auth of the public port */
    char *tls_server_name;             /* expected name in nodes' certificates; NULL = host */
    char *etcd_cacert, *etcd_cert, *etcd_key; /* TLS to etcd; NULL = unset */
    char *api_keys;      /* --api-keys file (router/auth.h); NULL = no authentication */
    int max_concurrent;  /* --max-concurrent-requests; 0 = no limit */
    int hedge_max_ms;    /* --hedge-max-ms: cap of the hedging threshold of searches; 0 = off */
};

/* What router_config_parse decided. */
enum router_config_result {
    ROUTER_CONFIG_OK = 0,
    ROUTER_CONFIG_EXIT_OK,  /* --help or --version was printed: exit 0 */
    ROUTER_CONFIG_EXIT_BAD, /* a message was printed to stderr: exit 2 */
};

/*
 * Fills cfg from defaults, then VECSHARD_* variables, then argv. Prints help,
 * version or the error itself. cfg must be released with router_config_free
 * whatever the result.
 */
enum router_config_result router_config_parse(int argc, char **argv, struct router_config *cfg);

/* Frees the strings of cfg and zeroes it. */
void router_config_free(struct router_config *cfg);

#endif
