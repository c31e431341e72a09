/*
 * node_service.h — the vecshard.v1.ShardNode gRPC handlers of vecshard-node
 * (proto/vecshard/v1/shard_node.proto): Write, Search, Get, ShardStatus and
 * NodeStatus over the replicas of node_shards, and the replication RPCs
 * Replicate (backup side) and TransferShard (transfer.h). The status code
 * of every error case is listed in docs/node.md.
 */
#ifndef VS_NODE_SERVICE_H
#define VS_NODE_SERVICE_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/rpc/rpc.h"
#include "node/node_config.h"
#include "node/node_meta.h"
#include "node/node_shards.h"
#include "node/replication/primary.h"
#include "node/replication/transfer.h"

/*
 * Exit status of a node that stopped because a batch reached a WAL but
 * could not be applied (REPLICA_EUNAPPLIED): a restart replays it.
 */
#define NODE_EXIT_UNAPPLIED 3

struct node_service;
struct metrics;
struct metrics_family;

/* One registered ShardNode method, as the timing wrapper of node_service.c
 * sees it: the handler it calls (unary or stream) and the service. */
struct node_svc_method {
    const char *name; /* "Search" */
    rpc_unary_fn unary;
    rpc_stream_fn stream;
    struct node_service *svc;
};

#define NODE_SVC_METHODS 8

/* What the handlers share. Owned by main; outlives the server. */
struct node_service {
    const struct node_config *cfg;
    struct node_shards *reg;
    _Atomic(struct node_meta *) meta; /* set once etcd registration starts; NULL before */
    char addr[256];                   /* advertised address (set before meta) */
    int64_t started_at_ms;            /* Unix ms (NodeStatus.started_at; uptime = now - it) */
    struct rpc_client *rpc;           /* outgoing calls to other nodes (replication, transfer) */
    struct transfers *xfer;           /* TransferShard sender and receiver jobs (transfer.h) */
    _Atomic(struct repl *) repl;      /* primary-side replication (primary.h); NULL before etcd */
    struct metrics *metrics; /* the process's registry (common/metrics); set before serving */
    char self_addr[300];     /* the gRPC port on loopback, for /healthz (node_metrics.h) */
    /* Counters the handlers update (node_metrics_register creates them; NULL = no metrics). */
    struct metrics_family *points_upserted, *points_deleted, *search_queries;
    struct node_svc_method methods[NODE_SVC_METHODS]; /* node_service_register fills them */
};

/* Registers every ShardNode method on s (before rpc_server_start). 0 or -1. */
int node_service_register(struct rpc_server *s, struct node_service *svc);

#endif
