/*
 * router.h — what the vecshard-router handlers share: the process context
 * (config, etcd client, routing table, node channel pool, per-node load),
 * the VecShard method registration, and the helpers every handler uses
 * (deadlines, collection look-up, vector validation, replica choice).
 *
 * Files: router.c (router_open/router_close: the context without a port),
 * admin.c (CreateCollection, DropCollection, ListCollections,
 * DescribeCollection, ClusterStatus), rebalance_rpc.c (Rebalance, Drain,
 * the moves of ClusterStatus), write.c (Upsert, Delete),
 * search.c (Search), get.c (Get), controller/placement.c (where new replicas go),
 * controller/failover.c + controller.c (the elected controller),
 * controller/rebalance.c + moves_plan.c + moves.c (the rebalance planner,
 * the move documents and their executor),
 * router_util.c (the helpers below), request.c (the wrapper every method
 * runs in: request ids, timing, the slow-request log), router_metrics.c
 * (the router's Prometheus families and collectors) and probes.c
 * (/healthz, /readyz). docs/router.md is the contract.
 */
#ifndef VS_ROUTER_H
#define VS_ROUTER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/etcd/etcd.h"
#include "common/rpc/rpc.h"
#include "router/auth.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"
#include "proto/vecshard/v1/vecshard.pb-c.h"
#include "router/controller/controller.h"
#include "router/route_table.h"
#include "router/router_config.h"

#define NODE_SVC           "/vecshard.v1.ShardNode/"
#define ROUTER_MAX_POINTS  100000u /* points / ids per call (docs/design.md §8) */
#define ROUTER_MAX_QUERIES 10000u
#define ROUTER_MAX_K       10000u
#define ROUTER_MAX_EF      100000u
#define ROUTER_MAX_PAYLOAD (64u << 10)
#define ROUTER_MAX_SHARDS  127u /* collection + shard keys in one etcd txn (<= 128 ops) */
#define ROUTER_MAX_RF      16u
#define ROUTER_LOAD_SLOTS  256 /* nodes tracked for outstanding-call counts */
#define ROUTER_HEALTH_MS   300 /* create-time health check of every node */
#define ROUTER_METHODS     12  /* VecShard methods (request.c) */

#define ROUTER_LATENCY_RING 64  /* answered calls per node kept for the hedging threshold */
#define ROUTER_HEDGE_MIN_US 250 /* hedge no sooner than this after the first try */

/* Outstanding calls and recent answer latencies per node id, for the
 * replica choice and the hedging of reads. `lock` protects the table; ids
 * are never removed (a slot per node ever seen). */
struct router_load {
    pthread_mutex_t lock;
    struct {
        char id[129];
        int outstanding;
        uint32_t lat_us[ROUTER_LATENCY_RING]; /* ring of the last answered calls' latencies */
        int lat_n, lat_next;
        int64_t p95_us; /* p95 of the ring, kept at every note; -1 with fewer than 8 */
    } slot[ROUTER_LOAD_SLOTS];
    int n;
    atomic_uint rr; /* round-robin start for ties */
};

struct router;
struct metrics_family;

/* One registered VecShard method (request.c): the handler the wrapper runs. */
struct router_method {
    const char *name; /* "Search" */
    rpc_unary_fn fn;
    struct router *r;
    const ProtobufCFieldDescriptor *coll;   /* the request's `collection`/`name`, or NULL */
    const ProtobufCFieldDescriptor *parent; /* non-NULL: coll is inside this message field */
};

/* The router's own metric families (router_metrics.c; docs/operations.md,
 * "Metrics"). All NULL without a registry: updates are then no-ops. */
struct router_metrics {
    struct metrics_family *fanout_shards;  /* histogram: shards per search */
    struct metrics_family *merge_seconds;  /* histogram: merge + reply build */
    struct metrics_family *partial;        /* counter: searches with coverage < 1 */
    struct metrics_family *shard_calls;    /* counter {node,method,code} */
    struct metrics_family *shard_retries;  /* counter {method} */
    struct metrics_family *shard_failures; /* counter {method} */
    struct metrics_family *hedges;         /* counter {outcome}: hedged shard calls */
    struct metrics_family *slow_requests;  /* counter {method} */
    struct metrics_family *auth_failures;  /* counter {reason} (auth.h) */
    struct metrics_family *decisions;      /* counter {decision}: controller changes applied */
    struct metrics_family *moved_bytes;    /* counter: bytes of moves finished DONE */
};

/* The process context; handlers get it as their `user` pointer. */
struct router {
    const struct router_config *cfg;
    struct auth auth; /* --api-keys (auth.h); checked in request.c's wrapper */
    etcd_client *etcd;
    struct route_table *rt;
    struct rpc_client *client;
    struct router_load load;
    const char *id;                /* --router-id or "<hostname>:<port>" (main's buffer) */
    struct controller *controller; /* NULL when --controller off */
    struct metrics *metrics;       /* the process's registry (common/metrics) */
    struct router_metrics m;
    struct router_method methods[ROUTER_METHODS]; /* request.c, filled by router_register */
    char self_addr[300]; /* loopback address of our own gRPC port (probes.c) */
    /* A node's coordinator port (node/node_coordinator.h): this node's id.
     * Its replicas win ties in router_pick_replica, and single short
     * searches whose shards all have one here run on the poller
     * (router_search_cheap). NULL in vecshard-router. */
    const char *local_node;
};

struct metrics;

/* --- router.c --- */

/* Opens r over cfg (borrowed, outlives r): API keys, etcd client, routing
 * table (watching in the background), the router's metric families in m
 * (borrowed; NULL = none) and the node client. 0, or -1 with a message in
 * err; call router_close either way. The caller serves the methods
 * (router_register) and runs the controller if it wants one. */
int router_open(struct router *r, const struct router_config *cfg, struct metrics *m, char *err,
                size_t errlen);

/* Stops the routing table and frees what router_open made. The servers
 * that serve r must be shut down first. */
void router_close(struct router *r);

/* Shards x max(ef, k) at most this for a single query: cheap enough for a
 * coordinator's poller when every shard is in-process (as the node's own
 * NODE_SVC_CHEAP_WORK). */
#define ROUTER_CHEAP_WORK 512

/* rpc_cheap_fn of Search on a coordinator port (user: the router_method):
 * one query, no filter, no automatic ef, shards x max(each shard's ef, k)
 * <= ROUTER_CHEAP_WORK, and every shard has an in-sync replica on
 * r->local_node, so the whole fan-out runs in-process. */
bool router_search_cheap(const ProtobufCMessage *m, void *u);

/* Registers every VecShard method on s, each inside request.c's wrapper
 * (on a coordinator port, Search with router_search_cheap). 0 or -1. */
int router_register(struct rpc_server *s, struct router *r);

/* --- request.c: the call in progress on this thread (none outside a handler);
 * its request id is the thread's log context (log_set_request_id) --- */

/* Options for a call to a node on behalf of the current call: the deadline
 * and the x-request-id metadata (none outside a call). The metadata lives
 * until the handler returns. */
struct rpc_opts router_node_opts(int64_t deadline_ms);

/* Notes a search's shape for the request's log lines: k, ef as requested,
 * shards of the collection and how many answered. */
void router_request_search(uint32_t k, uint32_t ef, uint32_t shards, uint32_t shards_ok);

/* --- router_metrics.c --- */

/* Creates the router's families and collectors in m (NULL: none, every
 * update a no-op). Before the HTTP server starts. 0 or -1. */
int router_metrics_init(struct router *r, struct metrics *m);

/* The last path part of a method ("/vecshard.v1.ShardNode/Search" -> "Search"). */
const char *router_method_name(const char *path);

/* --- probes.c: the http_probe_fn of /healthz and /readyz (user: the router) --- */

/* Liveness: our own gRPC server answers Health/Check on loopback within 1 s
 * (r->self_addr; rpc_health_probe). */
bool router_healthz(void *user, char *why, size_t whylen);

/* Sets r->self_addr from --listen and the bound port. */
void router_self_addr(struct router *r, const char *listen, int port);

/* Readiness: the routing table has loaded a full view and the view is not
 * stale longer than --view-max-age-ms (docs/operations.md, "Probes"). */
bool router_readyz(void *user, char *why, size_t whylen);

/* --- handlers (one per method), in admin.c, write.c, search.c, get.c --- */
grpc_status_code router_create_collection(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_drop_collection(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_list_collections(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_describe_collection(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_cluster_status(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_rebalance(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_drain(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_upsert(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_delete(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_search(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_get(struct rpc_call *c, const ProtobufCMessage *m, void *u);
grpc_status_code router_count(struct rpc_call *c, const ProtobufCMessage *m, void *u);

/* --- rebalance_rpc.c --- */

/*
 * ClusterStatus.moves of view v (docs/rebalance.md §5): the active moves in
 * id order, then at most 50 finished ones, newest first; a running replica
 * move's bytes_done and eta_ms from its target's answer in replies (per
 * node of v; NULL entries allowed). out and outp need room for v->n_moves;
 * strings are borrowed from v and replies. Returns how many were filled.
 */
size_t router_status_moves(const struct rt_view *v,
                           Vecshard__V1__ShardStatusResponse *const *replies,
                           Vecshard__V1__ReplicaMove *out, Vecshard__V1__ReplicaMove **outp);

/* --- router_util.c --- */

/* The call's deadline: the client's, or now + --default-timeout. */
int64_t router_deadline(const struct router *r, struct rpc_call *c);

/* Deadline for calls to nodes: `deadline` minus a margin (10% of what is
 * left, at most 50 ms) so the router can still answer in time. */
int64_t router_node_deadline(int64_t deadline);

/* INVALID_ARGUMENT unless name is a valid collection name; `field` names it. */
grpc_status_code router_check_name(struct rpc_call *c, const char *field, const char *name);

/*
 * Validates `name` and finds the collection. On OK, *view is a referenced
 * view (caller releases it) and *coll points into it. A name missing from the
 * cache is looked up in etcd; if it exists there, waits (<= 2 s) for the
 * watch to deliver it. NOT_FOUND otherwise.
 */
grpc_status_code router_collection(struct router *r, struct rpc_call *c, const char *field,
                                   const char *name, struct rt_view **view,
                                   const struct rt_collection **coll);

/* INVALID_ARGUMENT unless v has dim floats that pass hnsw_vector_check (the
 * nodes' rule); `what` names the field ("points[3].vector"). */
grpc_status_code router_check_vector(struct rpc_call *c, const char *what, const float *v, size_t n,
                                     const struct rt_collection *coll);

/* INVALID_ARGUMENT naming the bad node unless f (may be NULL) is a valid
 * filter (filter_compile, the nodes' rule). */
grpc_status_code router_check_filter(struct rpc_call *c, const Vecshard__V1__Filter *f);

/* Adds delta to the outstanding calls of node id. */
void router_load_add(struct router *r, const char *id, int delta);

/* Notes the latency of a call node id answered (the hedging threshold's input). */
void router_latency_note(struct router *r, const char *id, uint32_t us);

/*
 * The hedging threshold of shard s in microseconds: the lowest recent p95
 * latency among its in-sync replicas on registered nodes (a healthy copy's,
 * not the slow one's), capped by --hedge-max-ms and at least
 * ROUTER_HEDGE_MIN_US; 0 (no hedging) when hedging is off or fewer than two
 * such replicas exist. A node with fewer than 8 answers counts as the cap.
 */
int64_t router_hedge_after_us(struct router *r, const struct rt_view *v,
                              const struct rt_collection *coll, uint32_t s);

/*
 * Picks an in-sync replica of shard s whose node is registered and not in
 * `tried` (n_tried ids): the fewest outstanding calls (plus `extra`, a
 * per-request count indexed like v->nodes), ties round-robin (on a
 * coordinator port, ties go to r->local_node). NULL when none
 * is left; then `why` explains (for error messages).
 */
const struct rt_node *router_pick_replica(struct router *r, const struct rt_view *v,
                                          const struct rt_collection *coll, uint32_t s,
                                          const char *const *tried, int n_tried, const int *extra,
                                          char *why, size_t whylen);

/*
 * ShardStatus of the nodes v->nodes[i] with want[i], one call each, all
 * concurrently, restricted to `collection` unless it is "", until deadline.
 * out[i] (v->n_nodes entries) is node i's reply, or NULL (not asked, no
 * answer in time, error); the caller frees them with router_shard_status_free.
 */
void router_shard_status(struct router *r, const struct rt_view *v, const bool *want,
                         const char *collection, int64_t deadline,
                         Vecshard__V1__ShardStatusResponse **out);

/* Frees the n replies of router_shard_status (NULL entries skipped). */
void router_shard_status_free(Vecshard__V1__ShardStatusResponse **st, size_t n);

/* The replica (collection, shard) in one node's reply, or NULL (st may be NULL). */
const Vecshard__V1__ShardReplicaStatus *
router_replica_status(const Vecshard__V1__ShardStatusResponse *st, const char *collection,
                      uint32_t shard);

/* Sleeps ms milliseconds (no signals involved). */
void router_sleep_ms(int64_t ms);

/* True for codes worth retrying on another replica or after a pause. */
bool router_retryable(grpc_status_code code);

/* Unix milliseconds now. */
int64_t router_unix_ms(void);

/* A growable string for error messages (truncates silently at its size). */
struct router_msg {
    char buf[1024];
    size_t len;
};
void router_msg_add(struct router_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
