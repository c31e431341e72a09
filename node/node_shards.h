/*
 * node_shards.h — the registry of the shard replicas open on this node, and
 * the collection configurations they were opened with.
 *
 * The registry is the one place where replicas are opened, closed and
 * deleted. node_meta tells it what etcd assigns (node_shards_reconcile);
 * the gRPC handlers borrow replicas from it (node_shards_acquire /
 * node_shards_release). A replica being closed is first taken out of the
 * table, then closed once the last borrower has released it, so a handler
 * never sees a replica freed under it.
 *
 * A replica whose files are missing (the data dir was emptied or replaced)
 * or damaged (replica_open says REPLICA_ECORRUPT) stays in the table in
 * state DAMAGED with a reason, so that it is neither deleted nor reopened
 * empty: the handlers answer DATA_LOSS for it and ShardStatus shows why,
 * until the operator resets it (--reset-replica).
 *
 * Each collection with a replica here also gets <data-dir>/<name>/collection.json
 * (the configuration, written atomically) so that a restart without etcd can
 * reopen its replicas and keep serving reads (docs/design.md §3).
 *
 * Concurrency: one mutex (`lock` in node_shards.c) protects the table, every
 * entry's role / epoch / primary / replicas / in_sync / state / refcount, the
 * collection list and the known nodes' addresses.
 * It is never held across disk I/O: opening and closing replicas happen
 * outside it, and only one thread (node_meta's reconciler, or main at
 * start-up and shutdown) calls the reconcile / load / close functions.
 */
#ifndef VS_NODE_SHARDS_H
#define VS_NODE_SHARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster/name.h"
#include "common/hnsw/hnsw.h"

#define NODE_NAME_MAX CLUSTER_NAME_MAX /* collection names (common/cluster/name.h) */
#define NODE_ID_MAX   128              /* node ids */
#define NODE_ERR_MAX  512
/* Node ids kept per list of a shard entry: the router's largest replication
 * factor (ROUTER_MAX_RF, 16) plus the target of a rebalance move, which is
 * a replica too while it copies (R + 1, docs/rebalance.md §2). A shorter
 * list would drop members: a primary that does not see every in_sync
 * member could acknowledge a write without one of them. */
#define NODE_REPLICAS_MAX 17

/* A list of node ids from a shard entry (replicas, in_sync). */
struct node_ids {
    uint32_t n;
    char v[NODE_REPLICAS_MAX][NODE_ID_MAX + 1];
};

/* A collection's configuration as etcd holds it (docs/design.md §2; docs/node.md). */
struct node_collection {
    char name[NODE_NAME_MAX + 1];
    uint32_t dim;
    enum hnsw_metric metric;
    uint32_t m, ef_construction, ef_search;
    uint32_t shards, replication_factor;
    int64_t created_at; /* Unix ms; 0 = unknown */
    enum hnsw_quant quant;
};

/* Role of a replica (values of vecshard.v1.ShardRole). */
enum node_role {
    NODE_ROLE_UNKNOWN = 0,
    NODE_ROLE_PRIMARY = 1,
    NODE_ROLE_BACKUP = 2,
};

/* State of a replica (values of vecshard.v1.ReplicaState). */
enum node_state {
    NODE_STATE_LOADING = 1,
    NODE_STATE_RECOVERING = 2,
    NODE_STATE_READY = 3,
    NODE_STATE_FENCED =
        4, /* no longer used: a lost lease does not stop writes (replication.md §8) */
    NODE_STATE_DAMAGED = 5, /* files missing or damaged: no writes, no reads (DATA_LOSS) */
};

/* One replica etcd assigns to this node. */
struct node_assignment {
    struct node_collection coll;
    uint32_t shard;
    uint64_t epoch;
    char primary[NODE_ID_MAX + 1]; /* "" when the entry names none */
    struct node_ids replicas, in_sync;
    bool keep; /* etcd's entry is unreadable: leave an open replica as it is, open nothing */
};

struct node_shards;
struct node_shard; /* an entry; opaque to borrowers */
struct replica;

/* Settings the registry opens replicas with. Strings are copied. */
struct node_shards_config {
    const char *data_dir;
    const char *node_id;
    int fsync;                     /* enum wal_fsync */
    uint64_t snapshot_wal_bytes;   /* background snapshot triggers (replica_config): bytes, */
    uint64_t snapshot_wal_records; /* records, */
    uint64_t snapshot_age_ms;      /* age of the oldest unsnapshotted write; 0 = that one off */
    int load_threads;              /* replicas opened (and snapshotted at shutdown) at once;
                                      <= 0: the CPU count, at most 8 */
    uint32_t max_batch;            /* upserts + deletes per write, ids per get */
    uint32_t max_payload;          /* bytes per payload */
    /* Creation time of the data dir (its identity, Unix ms): an assigned replica without files
     * whose collection is older than this is DAMAGED, not created empty. 0 = never. */
    int64_t dir_created_at;
    /* --reset-replica: "coll/shard,..." replicas whose DAMAGED state is accepted as empty
     * (damaged files go to the trash). NULL or "" = none. */
    const char *reset_replicas;
};

/* A consistent copy of an entry's metadata, taken by node_shards_acquire. */
struct node_shard_view {
    struct node_collection coll;
    uint32_t shard;
    uint64_t epoch;
    enum node_role role;
    enum node_state state;
    char primary[NODE_ID_MAX + 1];
    struct node_ids replicas, in_sync; /* of the shard entry this node follows */
    bool truncating;                   /* node_shards_truncate is cutting its tail */
    uint64_t truncations;              /* tails cut since start-up */
    struct replica *rep;               /* NULL unless state is READY */
    char reason[NODE_ERR_MAX];         /* why the state is DAMAGED; "" otherwise */
};

/* Creates the registry (and data_dir if missing). 0, or -1 with err filled. */
int node_shards_create(const struct node_shards_config *cfg, struct node_shards **out, char *err);

/*
 * Reopens every replica found on disk (<data-dir>/<name>/<shard>/ next to a
 * collection.json) with role unknown, so reads work before etcd answers.
 * Every replica is listed as LOADING first, then they are opened in
 * parallel (load_threads); calls on one still loading answer UNAVAILABLE.
 * Replicas whose files cannot be recovered are kept as DAMAGED; other folders it cannot use are
 * logged and left alone; trash.d/ is never looked into. Returns how many opened (READY).
 */
int node_shards_load_local(struct node_shards *reg);

/*
 * Makes the open set equal to `a[0..n)`: updates role, epoch, replicas and
 * in_sync of replicas already open (except `keep` ones, left untouched, and
 * assignments older than the epoch the node adopted itself), closes replicas not listed (or whose
 * collection was recreated with another configuration) and moves their folders into the trash
 * (trash.h), removes collection folders left without replicas, opens the new ones: restored
 * from the trash if they are there, DAMAGED if their files are missing although the collection is
 * older than the data dir, else created empty. `collections` (all known
 * collections) become the configurations node_shards_collection answers from. Single caller at a
 * time.
 */
void node_shards_reconcile(struct node_shards *reg, const struct node_assignment *a, size_t n,
                           const struct node_collection *collections, size_t n_collections);

/* True when ids lists id. */
bool node_ids_has(const struct node_ids *ids, const char *id);

/*
 * Takes a shard entry this node changed itself (its own CAS) or learned from
 * a primary's Replicate: epoch, primary and, when not NULL, replicas and
 * in_sync. Applied only when epoch is newer than the entry's (an epoch never
 * goes backwards; the watch's later echo of the same epoch is a no-op), role
 * recomputed. True when applied; false when older or not hosted.
 */
bool node_shards_adopt(struct node_shards *reg, const char *collection, uint32_t shard,
                       uint64_t epoch, const char *primary, const struct node_ids *replicas,
                       const struct node_ids *in_sync);

/*
 * The registered nodes of the cluster (node_meta follows <prefix>/nodes/):
 * replaces the list; nodes absent from it stay known as unregistered with
 * their last address, so peers are reachable through an etcd outage.
 */
void node_shards_set_nodes(struct node_shards *reg, char *const *ids, char *const *addrs, size_t n);
/* The address of node id into addr (size bytes): 1 registered, 0 gone (last address), -1 never
 * seen. */
int node_shards_node_addr(struct node_shards *reg, const char *id, char *addr, size_t size);

/*
 * Cuts the unacknowledged tail of (collection, shard): every record after
 * after_lsn (docs/replication.md §4, TRUNCATE). Refused with -1 and err when
 * the replica is not READY or its newest snapshot holds records after
 * after_lsn (that needs a transfer). Otherwise the replica is taken from
 * its borrowers (calls answer UNAVAILABLE meanwhile), closed, its WAL cut
 * (wal_truncate_after) and reopened, replaying up to after_lsn; *cut gets
 * the records removed. The caller must not hold a borrow of it. 0, or -1.
 */
int node_shards_truncate(struct node_shards *reg, const char *collection, uint32_t shard,
                         uint64_t after_lsn, uint64_t *cut, char *err, size_t errlen);

/*
 * Borrows the replica (collection, shard): fills *view and returns the
 * entry, which the caller must give back with node_shards_release; NULL if
 * not hosted (view untouched).
 */
struct node_shard *node_shards_acquire(struct node_shards *reg, const char *collection,
                                       uint32_t shard, struct node_shard_view *view);
/* Gives back an entry from node_shards_acquire. */
void node_shards_release(struct node_shards *reg, struct node_shard *e);

/* Copies the configuration of collection `name` into *out; false if unknown. */
bool node_shards_collection(struct node_shards *reg, const char *name, struct node_collection *out);

/*
 * Views of every hosted replica matching the filter (collection NULL/"" =
 * all; shards NULL = all), sorted by (collection, shard). *out is malloc'ed
 * (caller frees); the rep pointers in it are NOT borrowed and must not be
 * used. Returns the count, or -1 on ENOMEM.
 */
long node_shards_list(struct node_shards *reg, const char *collection, const uint32_t *shards,
                      size_t n_shards, struct node_shard_view **out);

/* Number of hosted replicas. */
uint32_t node_shards_count(struct node_shards *reg);

/*
 * Clean shutdown: snapshots (in parallel, load_threads) every open replica
 * that has writes no snapshot holds, so the next start replays almost no
 * WAL. No snapshot starts after timeout_ms (one running then finishes);
 * the replicas skipped keep their WAL and replay it at the next start.
 * Logs each snapshot and a summary. Call with no other caller of the
 * registry running (after the server and the reconciler stopped).
 */
void node_shards_snapshot_all(struct node_shards *reg, long timeout_ms);

/* Closes every replica (making the WAL durable) and frees the registry. */
void node_shards_destroy(struct node_shards *reg);

/* ---------------------------------------------- full transfers (node/replication/transfer.c) */

/*
 * Marks (collection, shard) RECOVERING while a full copy is pulled into it:
 * borrowers see no replica (UNAVAILABLE "recovering"; the old one stays open
 * behind the entry). Only a READY or DAMAGED entry can start. 0, or -1 with
 * err (NODE_ERR_MAX) when it is not hosted, loading or already recovering.
 */
int node_shards_begin_recovery(struct node_shards *reg, const char *collection, uint32_t shard,
                               char *err);
/* A failed transfer: a RECOVERING entry goes back to the state it had before (READY, DAMAGED). */
void node_shards_end_recovery(struct node_shards *reg, const char *collection, uint32_t shard);
/*
 * Installs a complete, fsynced copy in staged_dir (a folder next to the
 * replica's, same file system) into the RECOVERING entry: waits for its
 * other borrowers, closes the old replica, moves the old folder into the
 * trash, renames staged_dir into its place, fsyncs the parent, opens it and
 * sets it READY (role and epoch unchanged). 0, or -1 with err: the entry
 * was removed meanwhile (staged_dir is left to the caller), or the swap or
 * the open failed (the entry is then DAMAGED with that reason).
 */
int node_shards_install(struct node_shards *reg, const char *collection, uint32_t shard,
                        const char *staged_dir, char *err);

/* Parses a collection JSON document (docs/node.md). 0, or -1 with err naming the field. */
int node_collection_parse(const char *json, size_t len, struct node_collection *out, char *err,
                          size_t errlen);

/* The collection JSON document of c (common/cluster's format); malloc'ed (caller frees), NULL on
 * ENOMEM. */
char *node_collection_format(const struct node_collection *c);

/* 0 when s is a --reset-replica list ("coll/shard[,coll/shard...]"), -1 if not. */
int node_shards_reset_list_check(const char *s);

#endif
