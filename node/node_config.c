/*
 * node_config.c — flag and environment parsing for vecshard-node.
 *
 * The flags are one table: name, kind, default (as the text a user would
 * type), bounds and help; common/util/flags parses it (defaults, then
 * VECSHARD_* variables, then the command line; a bad value is reported with
 * its source and the process exits 2). What stays here is what only the node
 * needs: the node-id check, the hostname default, and the checks that span
 * flags (listen address, etcd endpoints and prefix).
 */
#define _GNU_SOURCE
#include "node/node_config.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/etcd/etcd.h"
#include "common/http/http.h"
#include "common/util/flags.h"
#include "common/util/log.h"
#include "node/node_claim.h"
#include "node/node_shards.h"
#include "node/storage/wal.h"

/* 0 when id is a valid node id (it becomes an etcd key segment), -1 if not. */
static int check_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 128) return -1;
    for (const char *s = id; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.') return -1;
    return 0;
}

#define F(field) FLAGS_FIELD(struct node_config, field)

static const struct flags_spec flags[] = {
    {"listen", FLAGS_STR, "0.0.0.0:7400", 0, 0, F(listen),
     "host:port the gRPC server binds; port 0 picks a free port (logged)"},
    {"http", FLAGS_STR, "", 0, 0, F(http),
     "host:port of the HTTP endpoint (/metrics, /healthz, /readyz; docs/operations.md); port 0 "
     "picks a free port (logged); empty = off",
     http_addr_check, "host:port (port 0..65535) or empty", .empty_ok = true},
    {"coordinator-listen", FLAGS_STR, NULL, 0, 0, F(coordinator_listen),
     "host:port of a second gRPC port serving the public vecshard.v1.VecShard service, as a "
     "router does (docs/node.md, \"Coordinating node\"); this node's own shards are then searched "
     "in-process; port 0 picks a free port (logged); unset = off",
     http_addr_check, "host:port (port 0..65535)"},
    {"coordinator-api-keys", FLAGS_STR, NULL, 0, 0, F(coordinator_api_keys),
     "API key file of the coordinator port (the router's --api-keys; docs/security.md); unset: "
     "no authentication there"},
    {"advertise", FLAGS_STR, NULL, 0, 0, F(advertise),
     "address registered in etcd for routers and peers (default: the bound address, with "
     "the hostname for a wildcard host)",
     .empty_ok = true},
    {"node-id", FLAGS_STR, NULL, 0, 0, F(node_id),
     "node identity, [A-Za-z0-9_.-]{1,128} (default: the hostname)", check_id,
     "a valid node id ([A-Za-z0-9_.-]{1,128})"},
    {"data-dir", FLAGS_STR, "./data", 0, 0, F(data_dir),
     "replicas live in <data-dir>/<collection>/<shard>/"},
    {"etcd", FLAGS_STR, "http://127.0.0.1:2379", 0, 0, F(etcd),
     "comma-separated etcd endpoints (http:// is added when missing)"},
    {"etcd-prefix", FLAGS_STR, "/vecshard", 0, 0, F(etcd_prefix), "prefix of every etcd key"},
    {"fsync", FLAGS_ENUM, "always", 0, 0, F(fsync),
     "WAL durability: always (fsync before ack), batch (group commit), none", wal_fsync_parse,
     "one of always, batch, none"},
    {"threads", FLAGS_INT, "8", 1, 1024, F(threads), "gRPC handler threads"},
    {"lease-ttl", FLAGS_INT, "10", 2, 3600, F(lease_ttl),
     "etcd lease TTL in seconds (kept alive every TTL/3)"},
    {"etcd-timeout-ms", FLAGS_INT, "2000", 100, 60000, F(etcd_timeout_ms),
     "bound of every etcd request (keep well below the lease TTL)"},
    {"replicate-timeout-ms", FLAGS_INT, "2000", 50, 600000, F(replicate_timeout_ms),
     "an in-sync backup that has not acknowledged a write within this is removed from in_sync "
     "(docs/replication.md §3)"},
    {"log-level", FLAGS_ENUM, "info", 0, 0, F(log_level), "debug, info, warn or error",
     log_level_parse, "one of debug, info, warn, error"},
    {"snapshot-wal-bytes", FLAGS_SIZE, "64MiB", 1u << 16, UINT64_MAX, F(snapshot_wal_bytes),
     "take a snapshot of a replica once its WAL since the last snapshot exceeds this"},
    {"snapshot-wal-records", FLAGS_INT, "100000", 0, UINT64_MAX, F(snapshot_wal_records),
     "... or once this many WAL records were written since the last snapshot (0 = off)"},
    {"snapshot-max-age-s", FLAGS_INT, "600", 0, 86400 * 365, F(snapshot_max_age_s),
     "... or once the oldest write not in a snapshot is this many seconds old (0 = off)"},
    {"shutdown-snapshot-timeout-ms", FLAGS_INT, "60000", 0, 3600000,
     F(shutdown_snapshot_timeout_ms),
     "on SIGTERM, snapshot every replica with unsnapshotted writes; no snapshot starts after "
     "this many ms (0 = no shutdown snapshots)"},
    {"load-threads", FLAGS_INT, "0", 0, 256, F(load_threads),
     "replicas opened in parallel at start-up (and snapshotted at shutdown); 0 = CPU count, at "
     "most 8"},
    {"max-message-bytes", FLAGS_SIZE, "64MiB", 1u << 16, (uint64_t)INT_MAX, F(max_message_bytes),
     "largest gRPC request or reply"},
    {"max-batch-points", FLAGS_INT, "100000", 1, 10000000, F(max_batch_points),
     "most upserts + deletes in one Write"},
    {"max-payload-bytes", FLAGS_SIZE, "64KiB", 1, 1u << 16, F(max_payload_bytes),
     "largest payload of one point (at most 64KiB, docs/design.md §2)"},
    {"max-k", FLAGS_INT, "10000", 1, 10000, F(max_k), "largest k of a search"},
    {"max-ef", FLAGS_INT, "100000", 1, 100000, F(max_ef), "largest ef of a search"},
    {"capacity", FLAGS_INT, "0", 0, 1000000000, F(capacity),
     "replicas this node offers to host, advertised in its registration (0 = no limit)"},
    {"shutdown-grace-ms", FLAGS_INT, "5000", 0, 600000, F(shutdown_grace_ms),
     "on SIGTERM, how long running calls may finish before they are cancelled"},
    {"identity-mismatch", FLAGS_ENUM, "refuse", 0, 0, F(identity_mismatch),
     "when the data dir belongs to another node id or cluster, or its identity file is "
     "damaged: refuse (exit 2), adopt (keep the data as this node) or wipe (move it to the "
     "trash, start empty)",
     node_claim_mode_parse, "one of refuse, adopt, wipe"},
    {"trash-grace-ms", FLAGS_INT, "3600000", 0, UINT64_MAX, F(trash_grace_ms),
     "replica folders moved to <data-dir>/trash.d/ are purged no sooner than this, and only "
     "once etcd confirms their collection or assignment is gone"},
    {"reset-replica", FLAGS_STR, NULL, 0, 0, F(reset_replica),
     "coll/shard[,coll/shard...]: accept these DAMAGED replicas as empty (damaged files go to "
     "the trash); remove the flag afterwards",
     node_shards_reset_list_check, "a list coll/shard[,coll/shard...]", .empty_ok = true},
    {"transfer-max-mbps", FLAGS_INT, "0", 0, 100000, F(transfer_max_mbps),
     "limit of the TransferShard send rate of this node, MB/s (10^6 bytes; 0 = unlimited)"},
    {"slow-query-ms", FLAGS_INT, "1000", 0, 3600000, F(slow_query_ms),
     "log a warn line msg=\"slow request\" (request_id, method, collection, shard, k, ef, "
     "duration_ms) for every call slower than this many ms (0 = off)"},
    {"tls-cert", FLAGS_STR, NULL, 0, 0, F(tls_cert),
     "PEM certificate chain of this node: its gRPC port then speaks TLS and requires every "
     "peer (router, other nodes) to present a certificate chaining to --tls-ca (mTLS); the "
     "same certificate is presented on calls to peers (docs/security.md)"},
    {"tls-key", FLAGS_STR, NULL, 0, 0, F(tls_key), "PEM private key of --tls-cert"},
    {"tls-ca", FLAGS_STR, NULL, 0, 0, F(tls_ca),
     "PEM CA bundle of the cluster: peers' certificates must chain to it"},
    {"tls-server-name", FLAGS_STR, NULL, 0, 0, F(tls_server_name),
     "name peers' certificates must carry, instead of the host of their address"},
    {"etcd-cacert", FLAGS_STR, NULL, 0, 0, F(etcd_cacert),
     "PEM CA bundle that verifies etcd's certificate (https:// endpoints)"},
    {"etcd-cert", FLAGS_STR, NULL, 0, 0, F(etcd_cert),
     "PEM client certificate for etcd (etcd --client-cert-auth)"},
    {"etcd-key", FLAGS_STR, NULL, 0, 0, F(etcd_key), "PEM private key of --etcd-cert"},
    {"max-concurrent-requests", FLAGS_INT, "1024", 0, 1000000, F(max_concurrent),
     "most gRPC calls queued or running at once; one more is refused with RESOURCE_EXHAUSTED "
     "(0 = no limit)"},
    {"max-memory", FLAGS_SIZE, "0", 0, UINT64_MAX, F(max_memory),
     "memory budget: a primary refuses a write with RESOURCE_EXHAUSTED when the process's "
     "resident memory + the batch would pass it, before writing anything (docs/security.md; "
     "0 = off)"},
};

static const struct flags_prog prog = {
    .name = "vecshard-node",
    .version = NODE_VERSION,
    .about = "Serves the vecshard.v1.ShardNode gRPC service: hosts the shard replicas that etcd\n"
             "assigns to this node. Every flag can also be set by its environment variable;\n"
             "the flag wins.\n\n",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
};

/* Parses defaults, environment and argv into cfg (see node_config.h). */
enum node_config_result node_config_parse(int argc, char **argv, struct node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    enum flags_result fr = flags_parse(&prog, argc, argv, cfg);
    if (fr != FLAGS_OK) return fr == FLAGS_EXIT_OK ? NODE_CONFIG_EXIT_OK : NODE_CONFIG_EXIT_BAD;

    if (cfg->node_id == NULL) {
        char host[256];
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "node");
        host[sizeof host - 1] = '\0';
        if (!flags_apply(&prog, "node-id", cfg, host, "the hostname; set --node-id"))
            return NODE_CONFIG_EXIT_BAD;
    }
    if (cfg->advertise != NULL && cfg->advertise[0] == '\0') {
        free(cfg->advertise);
        cfg->advertise = NULL;
    }
    const char *colon = strrchr(cfg->listen, ':');
    uint64_t port;
    if (cfg->listen[0] == ':' || colon == NULL || !flags_parse_u64(colon + 1, false, &port) ||
        port > 65535) {
        fprintf(stderr, "vecshard-node: --listen: \"%s\" is not host:port (port 0..65535)\n",
                cfg->listen);
        return NODE_CONFIG_EXIT_BAD;
    }
    char *eps = etcd_endpoints_normalise(cfg->etcd);
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
    if (!flags_check_pair(&prog, "tls-cert", cfg->tls_cert, "tls-key", cfg->tls_key) ||
        !flags_check_pair(&prog, "etcd-cert", cfg->etcd_cert, "etcd-key", cfg->etcd_key))
        return NODE_CONFIG_EXIT_BAD;
    if ((cfg->tls_cert != NULL) != (cfg->tls_ca != NULL)) {
        fprintf(stderr, "vecshard-node: --%s is set but --%s is not: a node's TLS is always "
                        "mutual (set --tls-cert, --tls-key and --tls-ca, or none)\n",
                cfg->tls_cert != NULL ? "tls-cert" : "tls-ca",
                cfg->tls_cert != NULL ? "tls-ca" : "tls-cert");
        return NODE_CONFIG_EXIT_BAD;
    }
    return NODE_CONFIG_OK;
}

/* Frees every string of cfg. */
void node_config_free(struct node_config *cfg)
{
    free(cfg->listen);
    free(cfg->http);
    free(cfg->advertise);
    free(cfg->coordinator_listen);
    free(cfg->coordinator_api_keys);
    free(cfg->node_id);
    free(cfg->data_dir);
    free(cfg->etcd);
    free(cfg->etcd_prefix);
    free(cfg->reset_replica);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_ca);
    free(cfg->tls_server_name);
    free(cfg->etcd_cacert);
    free(cfg->etcd_cert);
    free(cfg->etcd_key);
    memset(cfg, 0, sizeof *cfg);
}
