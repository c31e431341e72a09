/*
 * node_config.h — the command line and environment of vecshard-node.
 *
 * Every flag `--name` has an environment twin `VECSHARD_NAME` (upper case,
 * '-' -> '_'); the flag wins over the environment, which wins over the
 * default. One table in node_config.c holds names, defaults and help, so
 * `--help` and docs/node.md list the same thing.
 */
#ifndef VS_NODE_CONFIG_H
#define VS_NODE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/version.h"

#define NODE_VERSION VECSHARD_VERSION

/* Effective configuration; strings are owned by the struct (node_config_free). */
struct node_config {
    char *listen;    /* host:port to bind; port 0 = ephemeral */
    char *http;      /* --http host:port of /metrics, /healthz, /readyz; "" = off */
    char *advertise; /* address registered in etcd; NULL = derived from the bound address */
    char *coordinator_listen;   /* public VecShard port (node_coordinator.h); NULL = off */
    char *coordinator_api_keys; /* its --api-keys file; NULL = no authentication */
    char *node_id;   /* key under <prefix>/nodes/; default the hostname */
    char *data_dir;  /* replicas live in <data_dir>/<collection>/<shard>/ */
    char *etcd;      /* comma-separated endpoints, each with http:// */
    char *etcd_prefix;
    int fsync;                /* enum wal_fsync */
    int threads;              /* rpc worker threads */
    int lease_ttl;            /* seconds */
    long etcd_timeout_ms;     /* bound of every unary etcd call */
    int replicate_timeout_ms; /* a backup not acknowledging within this leaves in_sync */
    int log_level;            /* enum log_level */
    uint64_t snapshot_wal_bytes;
    uint64_t snapshot_wal_records;
    uint64_t snapshot_max_age_s;
    int shutdown_snapshot_timeout_ms; /* 0: no snapshot on SIGTERM */
    int load_threads;                 /* 0: CPU count, at most 8 */
    uint64_t max_message_bytes;
    uint32_t max_batch_points;
    uint32_t max_payload_bytes;
    uint32_t max_k;
    uint32_t max_ef;
    uint64_t
        capacity; /* advertised in the registration: replicas this node may host, 0 = no limit */
    int shutdown_grace_ms;
    int identity_mismatch;      /* enum node_claim_mode */
    uint64_t trash_grace_ms;    /* trashed replica folders are purged no sooner */
    char *reset_replica;        /* "coll/shard,..." accepted as empty when DAMAGED; NULL = none */
    uint64_t transfer_max_mbps; /* TransferShard send limit in MB/s (10^6 bytes); 0 = unlimited */
    uint64_t slow_query_ms;     /* calls slower than this log "slow request"; 0 = off */
    /* docs/security.md: TLS of the gRPC port (always mTLS: peers must
     * present a certificate chaining to tls_ca) and of calls to peers. */
    char *tls_cert, *tls_key, *tls_ca; /* NULL = plaintext */
    char *tls_server_name;             /* expected name in peers' certificates; NULL = host */
    char *etcd_cacert, *etcd_cert, *etcd_key; /* TLS to etcd; NULL = unset */
    uint32_t max_concurrent; /* --max-concurrent-requests; 0 = no limit */
    uint64_t max_memory;     /* --max-memory bytes; writes beyond are refused; 0 = off */
};

/* What node_config_parse decided. */
enum node_config_result {
    NODE_CONFIG_OK = 0,
    NODE_CONFIG_EXIT_OK,  /* --help or --version was printed: exit 0 */
    NODE_CONFIG_EXIT_BAD, /* a message was printed to stderr: exit 2 */
};

/*
 * Fills cfg from defaults, then VECSHARD_* variables, then argv. Prints help,
 * version or the error itself (to stdout / stderr). cfg must be released
 * with node_config_free whatever the result.
 */
enum node_config_result node_config_parse(int argc, char **argv, struct node_config *cfg);

/* Frees the strings of cfg and zeroes it. */
void node_config_free(struct node_config *cfg);

#endif
