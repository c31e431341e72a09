/*
 * node_meta.h — vecshard-node's side of etcd (docs/design.md §3): its membership
 * lease and registration, and its cached copy of the collections and the
 * shard map, from which it tells the registry (node_shards) what to host.
 *
 * Threads it owns:
 *   - the lease thread: registers <prefix>/nodes/<id> on a fresh lease, keeps
 *     it alive (etcd_lease_keeper, every TTL/3), and when the lease is lost
 *     registers again. A lost lease no longer fences the node: the epoch
 *     rule of docs/replication.md §8 keeps a deposed primary from
 *     acknowledging alone, so an etcd outage does not stop writes;
 *   - the sync thread: lists <prefix>/collections/, <prefix>/shards/ and
 *     <prefix>/nodes/ (peer addresses for replication),
 *     watches them from the listed revision + 1 (re-listing on compaction),
 *     and reconciles the registry whenever the cache changes; between
 *     changes it purges trash entries older than the grace period whose
 *     collection or assignment a fresh etcd read says is gone
 *     (trash.h).
 * While etcd is unreachable neither thread touches the registry, so the
 * node keeps serving what it hosts, reads and writes.
 */
#ifndef VS_NODE_META_H
#define VS_NODE_META_H

#include <stdbool.h>
#include <stdint.h>

#include "common/etcd/etcd.h"
#include "node/node_shards.h"

struct node_meta_config {
    etcd_client *etcd; /* borrowed; outlives the meta */
    const char *prefix;
    const char *node_id;
    const char *addr; /* advertised address */
    const char *version;
    uint64_t capacity;
    int64_t started_at_ms;
    int lease_ttl;          /* seconds */
    const char *data_dir;   /* whose trash.d/ the sync thread purges */
    int64_t trash_grace_ms; /* age before a trash entry may be purged */
};

struct node_meta;

/* Starts both threads. Strings are copied. 0, or -1 with err filled. */
int node_meta_start(const struct node_meta_config *cfg, struct node_shards *reg,
                    struct node_meta **out, char *err, size_t errlen);

/* True while the node holds a live, registered lease. */
bool node_meta_registered(struct node_meta *m);

/* The etcd side as metrics and /readyz see it (node_meta_status). */
struct node_meta_status {
    bool registered;          /* node key on a live lease, shard map reconciled since */
    bool lease_live;          /* a lease is held and the keeper has not reported it lost */
    int64_t keepalive_age_ms; /* since the last successful keep-alive; -1 without a lease */
    bool watches_ok;          /* every watch stream (collections, shards, nodes) is connected */
    bool etcd_reachable;      /* the client's last request got an answer (etcd_client_health) */
};

/* Fills *st under the meta's lock (never held across etcd calls). Thread-safe. */
void node_meta_status(struct node_meta *m, struct node_meta_status *st);

/* Stops the watches and the reconciler (the registry is left as it is). */
void node_meta_stop_sync(struct node_meta *m);

/* Leaves the cluster: node_meta_stop_sync, then stops keeping the lease
 * alive and revokes it, so the node key disappears and the controller
 * promotes a backup of every shard this node leads at once. The node calls
 * it at shutdown once it serves no more calls, before the shutdown
 * snapshots. m stays valid for node_meta_stop. NULL is a no-op. */
void node_meta_leave(struct node_meta *m);

/* Stops everything, revokes the lease (the node key disappears), frees m. */
void node_meta_stop(struct node_meta *m);

#endif
