/*
 * route_table.h — the router's in-memory copy of the cluster map in etcd
 * (docs/design.md §3): live nodes, collection configs, shard placements,
 * who holds the controller election (docs/replication.md §7), drain marks
 * and rebalance moves (docs/rebalance.md).
 *
 * A background thread lists `<prefix>/` (retrying every second until etcd
 * answers), then watches it from the listed revision + 1; the etcd client
 * resumes broken streams and re-lists after compaction. Every change builds
 * a new immutable `struct rt_view` and swaps it in.
 *
 * Concurrency (RCU-style): `rt->lock` protects only the pointer to the
 * current view and its wait condition; a reader takes a reference
 * (rt_acquire, a few ns under the lock) and then reads the view without any
 * lock, for as long as its request runs — one consistent map per request,
 * and readers never wait for etcd. The watch thread builds the next view
 * outside the lock. A view is freed when its last reference is released.
 * The raw key/value list the views are built from belongs to the watch
 * thread alone.
 *
 * When etcd is unreachable the last view stays current: data keeps flowing
 * from the cache. rt_health tells how fresh it is (the router's /readyz and
 * metrics): a view is known current while the watch stream is up, and
 * grows stale from the moment it went down.
 */
#ifndef VS_ROUTER_ROUTE_TABLE_H
#define VS_ROUTER_ROUTE_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster/cluster.h"
#include "common/etcd/etcd.h"

/* A registered (live) node: <prefix>/nodes/<id>. */
struct rt_node {
    char *id;
    char *addr;
    char *version;
    int64_t started_at;
};

/* Shard placements are struct cluster_shard (common/cluster/cluster.h):
 * <prefix>/shards/<name>/<shard>, present = false when etcd has no entry. */

/* A collection: <prefix>/collections/<name>, with its shards. */
struct rt_collection {
    char *name;
    uint32_t dim;
    enum cluster_metric metric;
    uint32_t m, ef_construction, ef_search, shards, replication_factor;
    uint32_t quant; /* enum hnsw_quant */
    int64_t created_at;
    int64_t mod_revision;
    struct cluster_shard *shard; /* [shards] */
};

/* An immutable snapshot of the map. Read-only for everyone but route_table.c. */
struct rt_view {
    atomic_int refs;
    int64_t revision; /* etcd revision it reflects; 0 = etcd never read */
    struct rt_node *nodes;
    size_t n_nodes; /* sorted by id */
    struct rt_collection *colls;
    size_t n_colls;               /* sorted by name */
    char *controller;             /* id of the router holding the controller election: the
                                   * oldest key under <prefix>/controller/ (value "<id> <addr>");
                                   * NULL when there is none */
    struct cluster_drain *drains; /* <prefix>/drain/<id> (docs/rebalance.md §4) */
    size_t n_drains;              /* sorted by node id */
    struct cluster_move *moves;   /* <prefix>/moves/<id> (docs/rebalance.md §2) */
    size_t n_moves;               /* sorted by id (= creation order) */
};

struct route_table;

/* Starts following `<prefix>/` in etcd. The table keeps a pointer to etcd
 * (which must outlive it). Returns 0, or -1 with a message in err. */
int rt_start(etcd_client *etcd, const char *prefix, struct route_table **out, char *err,
             size_t errlen);

/* Stops the background threads and frees the table (views still referenced
 * stay valid until released). NULL is a no-op. */
void rt_stop(struct route_table *rt);

/* The current view with a reference the caller releases with rt_release. Never NULL. */
struct rt_view *rt_acquire(struct route_table *rt);

/* Drops a reference; frees the view with the last one. NULL is a no-op. */
void rt_release(struct rt_view *v);

/* How current the table is (rt_health). */
struct rt_health {
    bool loaded;      /* a full listing of `<prefix>/` has been read */
    bool watch_live;  /* the watch stream is up (etcd_watch_live) */
    int64_t stale_ms; /* 0 while watch_live; else since when the view has not been known current:
                       * the stream going down, the listing, or rt_start when never loaded */
    int64_t revision; /* of the current view (0 = etcd never read) */
    uint64_t updates; /* views published since rt_start */
};

/* Fills *out. Cheap (one lock, atomics); never waits for etcd. Any thread. */
void rt_health(struct route_table *rt, struct rt_health *out);

/* Waits (up to timeout_ms) until the current view's revision is >= rev.
 * Returns true if it is. */
bool rt_wait_revision(struct route_table *rt, int64_t rev, int64_t timeout_ms);

/* Waits (up to timeout_ms) until shard `shard` of collection `name` has an
 * epoch >= epoch in the current view, or the collection is gone. */
bool rt_wait_shard_epoch(struct route_table *rt, const char *name, uint32_t shard, uint64_t epoch,
                         int64_t timeout_ms);

/* The collection called name in v, or NULL. */
const struct rt_collection *rt_view_collection(const struct rt_view *v, const char *name);

/* The registered node with this id in v, or NULL. */
const struct rt_node *rt_view_node(const struct rt_view *v, const char *id);

/* True when a shard entry of v names node id (as a replica or the primary),
 * whether or not the node is registered. */
bool rt_view_named(const struct rt_view *v, const char *id);

/* True when v has a drain mark for node id. */
bool rt_view_draining(const struct rt_view *v, const char *id);

#endif
