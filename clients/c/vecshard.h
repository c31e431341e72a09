/*
 * vecshard.h — the C client library of a vecshard cluster (libvecshard.a,
 * libvecshard.so): one handle on a vecshard-router and one function per call
 * of the public vecshard.v1.VecShard service (proto/vecshard/v1/vecshard.proto).
 * This is the only header a user includes; it needs neither gRPC nor
 * protobuf-c headers. docs/clients.md ("C") is the manual.
 *
 * Status. Every function that talks to the router returns an enum
 * vecshard_code, whose values are the gRPC status codes (VECSHARD_OK = 0),
 * and fills *err (when err is not NULL) with the same code and a message: the
 * router's own (it names the bad field, e.g. "config.dim is 0; it is required
 * (1..65536)", "points[3].vector has 7 floats, collection dim is 8") or, for
 * an argument refused before any call, one naming the parameter ("ids is
 * NULL (n 3)"). On VECSHARD_OK err->message is "". UNAVAILABLE, DEADLINE_EXCEEDED,
 * CANCELLED and ABORTED are transient (vecshard_retryable); upsert and delete
 * are idempotent, so retrying them is safe.
 *
 * Ownership. Inputs are borrowed for the duration of the call and never kept.
 * A function that returns a result through `**out` allocates it; the caller
 * frees it with the free function named next to it (each accepts NULL), and
 * every pointer inside the result (strings, arrays, payloads, vectors) stays
 * valid until then and belongs to the result. On failure *out is NULL.
 * Results filled into a caller's struct (`*out` without `**`) own nothing.
 *
 * Threads. A struct vecshard_client may be used by any number of threads at
 * once (calls share one HTTP/2 connection and each waits on its own
 * completion queue); vecshard_close must come after every call returned.
 * Results are plain memory: read them from any thread, free them once.
 */
#ifndef VECSHARD_H
#define VECSHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VECSHARD_DEFAULT_ADDRESS    "127.0.0.1:7300" /* when neither address nor $VECSHARD_ROUTER */
#define VECSHARD_DEFAULT_TIMEOUT_MS 30000
#define VECSHARD_NAME_MAX           64  /* collection names: [A-Za-z0-9_-]{1,64} */
#define VECSHARD_ERROR_MAX          256 /* bytes of message kept in struct vecshard_error */

/* Status of a call: the gRPC status codes, same numbers. */
enum vecshard_code {
    VECSHARD_OK = 0,
    VECSHARD_CANCELLED = 1,
    VECSHARD_UNKNOWN = 2,
    VECSHARD_INVALID_ARGUMENT = 3,
    VECSHARD_DEADLINE_EXCEEDED = 4,
    VECSHARD_NOT_FOUND = 5,
    VECSHARD_ALREADY_EXISTS = 6,
    VECSHARD_PERMISSION_DENIED = 7,
    VECSHARD_RESOURCE_EXHAUSTED = 8,
    VECSHARD_FAILED_PRECONDITION = 9,
    VECSHARD_ABORTED = 10,
    VECSHARD_OUT_OF_RANGE = 11,
    VECSHARD_UNIMPLEMENTED = 12,
    VECSHARD_INTERNAL = 13,
    VECSHARD_UNAVAILABLE = 14,
    VECSHARD_DATA_LOSS = 15,
    VECSHARD_UNAUTHENTICATED = 16,
};

/* What went wrong: the code and the router's (or the library's) message. */
struct vecshard_error {
    enum vecshard_code code;
    char message[VECSHARD_ERROR_MAX]; /* NUL-terminated, truncated; "" if none */
};

/* Distance function; distances are hnswlib's: squared L2, 1 - dot, 1 - cos. */
enum vecshard_metric {
    VECSHARD_METRIC_L2 = 0,
    VECSHARD_METRIC_IP = 1,
    VECSHARD_METRIC_COSINE = 2,
};

/* Upper-case name of a code ("OK", "NOT_FOUND", ...); "UNKNOWN_CODE" outside
 * 0..16. Static storage. */
const char *vecshard_code_name(enum vecshard_code code);

/* True for the transient codes worth retrying an idempotent call on. */
bool vecshard_retryable(enum vecshard_code code);

/* ===================================================================== connection */

struct vecshard_client; /* opaque */

/* Connection options; a NULL pointer or zero fields mean the defaults. */
struct vecshard_options {
    int64_t timeout_ms;   /* deadline of every call from its start; 0 = 30000 */
    size_t max_msg_bytes; /* max request and reply size; 0 = 64 MiB (the router's) */
    bool wait_for_ready;  /* wait (up to the deadline) for an unreachable router */
    /* API key sent as "authorization: Bearer <key>" on every call; NULL or
     * "": $VECSHARD_API_KEY, else none (docs/security.md). */
    const char *api_key;
    /* TLS to the router: on when `tls` is true or any file is set. tls_ca
     * verifies the router (NULL: the system roots); tls_cert + tls_key
     * (PEM paths, both or neither) are a client certificate for a router
     * run with --tls-client-auth; tls_server_name overrides the name the
     * router's certificate must carry (default: the address's host). */
    bool tls;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
};

/*
 * Opens a client of the router at address "host:port" (NULL or "": the
 * environment's $VECSHARD_ROUTER, else VECSHARD_DEFAULT_ADDRESS). The
 * connection is made by the first call, so a router that is down shows up
 * there as UNAVAILABLE. On VECSHARD_OK *out is the new client, which the
 * caller closes with vecshard_close. Fails only with INVALID_ARGUMENT (out
 * NULL, a negative timeout) or RESOURCE_EXHAUSTED (out of memory).
 */
enum vecshard_code vecshard_connect(const char *address, const struct vecshard_options *opts,
                                    struct vecshard_client **out, struct vecshard_error *err);

/* The router address the client uses; owned by the client. */
const char *vecshard_address(const struct vecshard_client *c);

/* Closes the connection and frees the client (NULL is a no-op). Results
 * already returned stay valid. */
void vecshard_close(struct vecshard_client *c);

/* ===================================================================== collections */

/* How shards store vectors for the graph walk (docs/engine.md). */
enum vecshard_quant {
    VECSHARD_QUANT_NONE = 0, /* float vectors only */
    VECSHARD_QUANT_SQ8 = 1,  /* 8-bit codes walk the graph, float vectors re-rank */
};

/* Parameters of a new collection; a zero field takes the router's default. */
struct vecshard_collection_params {
    uint32_t dim;                /* required, 1..65536 */
    enum vecshard_metric metric; /* default L2 */
    uint32_t m;                  /* HNSW M, 2..128; default 16 */
    uint32_t ef_construction;    /* default 200 */
    uint32_t ef_search;          /* default search ef; default 64 */
    uint32_t shards;             /* default 1 */
    uint32_t replicas;           /* copies of each shard; default 1 */
    enum vecshard_quant quantization; /* default none */
};

/* A collection's effective configuration. */
struct vecshard_collection_config {
    char name[VECSHARD_NAME_MAX + 1];
    uint32_t dim;
    enum vecshard_metric metric;
    uint32_t m, ef_construction, ef_search, shards, replicas;
    int64_t created_at; /* Unix milliseconds */
    enum vecshard_quant quantization;
};

/* Creates collection `name`. When out is not NULL it receives the stored
 * configuration (defaults filled in, created_at set). ALREADY_EXISTS if the
 * name is taken; INVALID_ARGUMENT naming "config.<field>"; FAILED_PRECONDITION
 * if fewer nodes are alive than replicas. */
enum vecshard_code vecshard_create_collection(struct vecshard_client *c, const char *name,
                                              const struct vecshard_collection_params *params,
                                              struct vecshard_collection_config *out,
                                              struct vecshard_error *err);

/* Deletes a collection and its data. NOT_FOUND if it does not exist. */
enum vecshard_code vecshard_drop_collection(struct vecshard_client *c, const char *name,
                                            struct vecshard_error *err);

/* Every collection, sorted by name. Free with vecshard_collection_list_free. */
struct vecshard_collection_list {
    size_t n_collections;
    struct vecshard_collection_config *collections;
};

/* Lists the collections into a new *out (caller frees). */
enum vecshard_code vecshard_list_collections(struct vecshard_client *c,
                                             struct vecshard_collection_list **out,
                                             struct vecshard_error *err);

/* Frees a list returned by vecshard_list_collections (NULL is a no-op). */
void vecshard_collection_list_free(struct vecshard_collection_list *l);

/* One replica of a shard as ClusterStatus reports it (docs/replication.md
 * §10). Strings are never NULL. */
struct vecshard_replica_info {
    const char *node_id;
    bool alive;           /* its node is registered */
    const char *role;     /* "primary" or "backup" (the shard entry's) */
    const char *state;    /* "READY", "RECOVERING", ...; "" if its node did not answer */
    bool in_sync;         /* listed in the entry's in_sync */
    uint64_t lsn;         /* last applied LSN; 0 if unknown */
    uint64_t lag;         /* the primary's LSN minus this one's; 0 for the primary */
    const char *recovery; /* "", "catching_up", "transferring", "truncating" */
    uint64_t transfer_bytes_done, transfer_bytes_total;
    const char *reason; /* why not in sync (or DAMAGED); "" when in sync */
    uint64_t bytes;     /* disk bytes as its node reports them; 0 if unknown */
    uint64_t points;    /* live points as its node reports them; 0 if unknown */
};

/* One shard's placement. Strings are never NULL ("" when empty). */
struct vecshard_shard_info {
    const char *collection;
    uint32_t shard;
    uint64_t epoch;
    const char *primary; /* node id; "" while none is alive */
    size_t n_replicas;
    const char *const *replicas; /* node ids, primary included */
    size_t n_in_sync;
    const char *const *in_sync;
    size_t n_recovering;
    const char *const *recovering;
    uint64_t lsn;                     /* the primary's last LSN; 0 if unknown */
    const char *primary_state;        /* "READY", "LOADING", ...; "" if unknown */
    const char *primary_state_reason; /* why DAMAGED or LOADING; "" otherwise */
    size_t n_replica_status;          /* vecshard_cluster_status only; 0 otherwise */
    const struct vecshard_replica_info *replica_status; /* one per replica */
};

/* A shard node as etcd knows it. Strings are never NULL. */
struct vecshard_node_info {
    const char *id;
    const char *addr;
    bool alive;
    uint32_t replicas, primaries;
    const char *version;
    int64_t started_at; /* Unix milliseconds */
    bool draining;      /* has a drain mark (docs/rebalance.md §4) */
    uint64_t bytes;     /* disk bytes of its replicas (describe: of that collection) */
    uint64_t points;    /* live points of its replicas (describe: of that collection) */
    bool answered;      /* it answered ShardStatus: bytes and points are known */
};

/* A collection in detail. Free with vecshard_collection_info_free. */
struct vecshard_collection_info {
    struct vecshard_collection_config config;
    uint64_t count; /* live points (sum of the primaries' counts, best effort) */
    size_t n_shards;
    struct vecshard_shard_info *shards; /* in shard order; replica_status filled */
    size_t n_nodes;
    struct vecshard_node_info *nodes; /* nodes holding its replicas, by id; this collection only */
};

/* Describes collection `name` into a new *out (caller frees). NOT_FOUND if
 * it does not exist. */
enum vecshard_code vecshard_describe_collection(struct vecshard_client *c, const char *name,
                                                struct vecshard_collection_info **out,
                                                struct vecshard_error *err);

/* Frees a description (NULL is a no-op). */
void vecshard_collection_info_free(struct vecshard_collection_info *info);

/* Live points of collection `name` into *count (the description's count). */
enum vecshard_code vecshard_count(struct vecshard_client *c, const char *name, uint64_t *count,
                                  struct vecshard_error *err);

/* ===================================================================== points */

/* Bytes stored with a point; borrowed by upsert. */
struct vecshard_bytes {
    const void *data;
    size_t len; /* <= 64 KiB */
};

/*
 * Inserts or replaces n points (1..100,000 per call) in collection `name`:
 * point i has id ids[i], the vector vectors[i*dim .. i*dim+dim) and, when
 * payloads is not NULL, payload payloads[i]. The vectors are sent without a
 * copy. When upserted is not NULL it receives the number written (= n). On
 * an error some shards may have applied their part; retrying is safe.
 */
enum vecshard_code vecshard_upsert(struct vecshard_client *c, const char *name, const uint64_t *ids,
                                   const float *vectors, size_t n, uint32_t dim,
                                   const struct vecshard_bytes *payloads, uint32_t *upserted,
                                   struct vecshard_error *err);

/* Deletes n ids (1..100,000; absent ids are not an error). When deleted is
 * not NULL it receives the number processed (= n). */
enum vecshard_code vecshard_delete(struct vecshard_client *c, const char *name, const uint64_t *ids,
                                   size_t n, uint32_t *deleted, struct vecshard_error *err);

/* One fetched point; vector and payload are NULL when not asked for or empty. */
struct vecshard_point {
    uint64_t id;
    const float *vector;
    size_t dim;
    const void *payload;
    size_t payload_len;
};

/* The answer to vecshard_get. Free with vecshard_points_free. */
struct vecshard_points {
    size_t n_points;
    struct vecshard_point *points; /* in the order of first occurrence in ids */
    size_t n_missing;
    const uint64_t *missing_ids; /* requested ids that do not exist, in request order */
};

/* Fetches n ids (1..100,000) into a new *out (caller frees), with their
 * vectors and/or payloads when asked. */
enum vecshard_code vecshard_get(struct vecshard_client *c, const char *name, const uint64_t *ids,
                                size_t n, bool with_vector, bool with_payload,
                                struct vecshard_points **out, struct vecshard_error *err);

/* Frees a vecshard_get result (NULL is a no-op). */
void vecshard_points_free(struct vecshard_points *p);

/* ===================================================================== search */

/* Search settings; zero fields take the defaults. */
struct vecshard_search_params {
    uint32_t k;         /* hits per query, 1..10,000; 0 = 10 */
    uint32_t ef;        /* candidate list; 0 = the collection's ef_search; raised to k */
    float min_coverage; /* fraction of shards that must answer; 0 = 1.0 */
    bool with_payload;  /* fill each hit's payload */
    bool with_vector;   /* fill each hit's vector */
    /* Only points matching this filter, in the JSON form of docs/filtering.md
     * (e.g. {"and":[{"eq":{"color":"red"}},{"range":{"price":{"lt":50}}}]});
     * NULL: no filter. A bad one is VECSHARD_INVALID_ARGUMENT naming the part. */
    const char *filter;
    /* Automatic ef: the recall@k wanted, in (0, 1], instead of ef (leave ef 0);
     * 0 = unset. The result's ef_used and estimated_recall say what was used. */
    float target_recall;
};

/* One hit; payload and vector are NULL unless asked for (and not empty). */
struct vecshard_hit {
    uint64_t id;
    float distance; /* smaller is closer */
    const void *payload;
    size_t payload_len;
    const float *vector;
    size_t dim;
};

/* Which shards answered a search. */
struct vecshard_coverage {
    uint32_t shards_total, shards_ok;
    size_t n_missing;
    const uint32_t *missing_shards; /* ascending shard numbers */
    bool partial;                   /* shards_ok < shards_total */
};

/* The answer to vecshard_search. Free with vecshard_search_result_free. */
struct vecshard_search_result {
    size_t n_queries;
    uint32_t k;
    const uint32_t *n_hits;          /* n_queries counts, each <= k */
    const struct vecshard_hit *hits; /* query i's hits at hits[i*k], ascending distance */
    struct vecshard_coverage coverage;
    /* With target_recall: the widest ef a shard used and the lowest recall
     * estimate among the shards; 0 otherwise. */
    uint32_t ef_used;
    float estimated_recall;
};

/* Searches nq queries (1..10,000; query i is queries[i*dim .. i*dim+dim))
 * in collection `name` into a new *out (caller frees). params may be NULL. */
enum vecshard_code vecshard_search(struct vecshard_client *c, const char *name,
                                   const float *queries, size_t nq, uint32_t dim,
                                   const struct vecshard_search_params *params,
                                   struct vecshard_search_result **out, struct vecshard_error *err);

/* Frees a search result (NULL is a no-op). */
void vecshard_search_result_free(struct vecshard_search_result *r);

/* Points of collection `name` matching filter (JSON form; NULL: all) into *count. */
enum vecshard_code vecshard_count_matching(struct vecshard_client *c, const char *name,
                                           const char *filter,
                                  uint64_t *count, struct vecshard_error *err);
/* Deletes every point matching filter (JSON form, required); *deleted (may be NULL) gets how many. */
enum vecshard_code vecshard_delete_matching(struct vecshard_client *c, const char *name,
                                            const char *filter, uint32_t *deleted,
                                            struct vecshard_error *err);

/* ===================================================================== cluster */

/* Lifecycle of a rebalance move; numbers as the proto enum MoveState. */
enum vecshard_move_state {
    VECSHARD_MOVE_PLANNED = 0, /* in a dry-run plan: not queued */
    VECSHARD_MOVE_QUEUED = 1,
    VECSHARD_MOVE_RUNNING = 2,
    VECSHARD_MOVE_DONE = 3,
    VECSHARD_MOVE_FAILED = 4,
    VECSHARD_MOVE_CANCELLED = 5,
};

/* "planned", "queued", "running", "done", "failed", "cancelled" ("?" outside). */
const char *vecshard_move_state_name(enum vecshard_move_state s);

/* One move of a rebalance plan and its progress (docs/rebalance.md §2, §5).
 * Strings are never NULL. */
struct vecshard_replica_move {
    const char *collection;
    uint32_t shard;
    const char *from_node, *to_node;
    bool primary;     /* the moved replica is the primary */
    const char *id;   /* queue id; "" in a dry-run plan */
    const char *kind; /* "replica" or "leader" (primaryship only) */
    enum vecshard_move_state state;
    const char *step;     /* running: "adding", "copying", "catching_up", "switching" */
    uint64_t bytes_total; /* size of the copy */
    uint64_t bytes_done;  /* copied so far */
    int64_t eta_ms;       /* running: estimated ms left; 0 unknown */
    uint32_t attempts;
    const char *reason;                          /* why failed, cancelled or retried; "" */
    const char *origin;                          /* "manual", "auto", "drain" */
    int64_t created_at, started_at, finished_at; /* Unix ms; 0 = not yet */
};

/* The cluster as the router sees it. Free with vecshard_cluster_status_free. */
struct vecshard_cluster_status {
    size_t n_nodes;
    struct vecshard_node_info *nodes; /* sorted by id */
    size_t n_collections;
    struct vecshard_collection_config *collections; /* sorted by name */
    size_t n_shards;
    struct vecshard_shard_info *shards; /* sorted by (collection, shard) */
    const char *controller;             /* router holding the controller election; "" if none */
    int64_t revision;                   /* etcd revision of the router's view; 0 if none */
    size_t n_moves;
    struct vecshard_replica_move
        *moves; /* active in execution order, then finished, newest first */
};

/* Cluster status (shards of one collection, or all when collection is NULL
 * or "") into a new *out (caller frees). */
enum vecshard_code vecshard_cluster_status(struct vecshard_client *c, const char *collection,
                                           struct vecshard_cluster_status **out,
                                           struct vecshard_error *err);

/* Frees a cluster status (NULL is a no-op). */
void vecshard_cluster_status_free(struct vecshard_cluster_status *s);

/* A rebalance plan. Free with vecshard_rebalance_plan_free. */
struct vecshard_rebalance_plan {
    size_t n_moves;
    struct vecshard_replica_move *moves; /* in execution order */
    bool started;                        /* false for a dry run or an empty plan */
    const char *note;                    /* why balance cannot be reached; "" */
};

/* Plans (and unless dry_run, queues) replica moves that even out the nodes,
 * for one collection or all (NULL or ""), into a new *out (caller frees).
 * NOT_FOUND for an unknown collection; without dry_run, UNAVAILABLE if no
 * router holds the controller election and FAILED_PRECONDITION while moves
 * are queued or running. */
enum vecshard_code vecshard_rebalance(struct vecshard_client *c, bool dry_run,
                                      const char *collection, struct vecshard_rebalance_plan **out,
                                      struct vecshard_error *err);

/* Frees a rebalance plan (NULL is a no-op). */
void vecshard_rebalance_plan_free(struct vecshard_rebalance_plan *p);

/* A node's drain state after vecshard_drain (owns nothing). */
struct vecshard_drain_state {
    bool draining;          /* marked draining after the call */
    uint32_t replicas_left; /* replicas still placed on it */
    bool empty;             /* none left: it can be stopped */
    char note[512];         /* why the drain cannot complete; "" */
};

/* Marks node_id draining (undrain: removes the mark) and fills *out.
 * INVALID_ARGUMENT for an empty id, NOT_FOUND for a node that is neither
 * registered nor holds a replica. */
enum vecshard_code vecshard_drain(struct vecshard_client *c, const char *node_id, bool undrain,
                                  struct vecshard_drain_state *out, struct vecshard_error *err);

#ifdef __cplusplus
}
#endif

#endif
