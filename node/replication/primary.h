/*
 * primary.h — the primary side of replication (docs/replication.md §3, §5):
 * one ordered sender per other replica of every primary replica on this
 * node, the acknowledgement wait of the Write handler, the removal of a
 * failed backup from in_sync and the re-adding of a caught-up one, both by
 * a compare-and-swap on the shard entry (cluster_shard_update).
 *
 * Shape. A `group` per primary replica (collection, shard) holds the
 * shard's epoch and in_sync as this node knows them and one `peer` per
 * other member of `replicas`, each with its own sender thread. A manager
 * thread compares the groups with the registry every 200 ms: it creates
 * groups for new primaries (so idle shards are probed and recovering
 * backups rejoin without writes), adds and stops senders as `replicas`
 * changes, and stops the groups of replicas that are no longer primary
 * (their waiting writes fail FAILED_PRECONDITION). repl_wait creates a
 * missing group itself, so the first write does not wait for the manager.
 *
 * Senders read the records to send from the replica's WAL (replica_wal_iter),
 * every record after the peer's acknowledged LSN up to 4 MiB per call, so
 * concurrent writes share calls; the page cache serves recent records.
 *
 * Threading: every call is thread-safe. Lock order: repl.lock, then a
 * group's lock; the registry's lock is taken under neither (except the
 * registry's leaf calls made with a group lock released). No lock is held
 * across an RPC or an etcd call.
 */
#ifndef VS_NODE_PRIMARY_H
#define VS_NODE_PRIMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/etcd/etcd.h"
#include "common/rpc/rpc.h"
#include "node/node_shards.h"

struct repl_config {
    struct node_shards *reg; /* borrowed */
    struct rpc_client *rpc;  /* borrowed: Replicate calls */
    etcd_client *etcd;       /* borrowed: shard-entry CAS and re-reads */
    const char *prefix;      /* etcd prefix; copied */
    const char *node_id;     /* copied */
    const char *addr;        /* this node's advertised address (primary_addr); copied */
    int timeout_ms;          /* --replicate-timeout-ms */
};

struct repl;

/* Starts the manager thread. 0, or -1 with err. */
int repl_create(const struct repl_config *cfg, struct repl **out, char *err, size_t errlen);

/* Stops every sender and the manager, fails waiting writes, frees r. NULL is a no-op. */
void repl_destroy(struct repl *r);

/*
 * The Write handler's wait after replica_write assigned lsn at epoch:
 * returns GRPC_STATUS_OK once every member of in_sync other than this node
 * acknowledged lsn (at once with no other member). A member that failed or
 * did not acknowledge within timeout_ms is first removed from in_sync by CAS;
 * when that CAS cannot be made: UNAVAILABLE. FAILED_PRECONDITION when this
 * node stopped being the primary (a newer epoch). msg (msglen bytes) says
 * why on failure; *epoch_out gets the epoch the ack is given at.
 */
grpc_status_code repl_wait(struct repl *r, const struct node_shard_view *v, uint64_t lsn,
                           uint64_t *epoch_out, char *msg, size_t msglen);

/* A primary's view of one other replica (ReplicaPeerStatus). */
struct repl_peer_status {
    char node_id[NODE_ID_MAX + 1];
    bool in_sync;
    uint64_t acked_lsn, lag;
    char state[24];
    char reason[RPC_DETAILS_MAX + 32];
    uint64_t transfer_bytes_done, transfer_bytes_total;
};

/* Fills out[0..max) with the peers of (collection, shard); returns how many (0: no group). */
size_t repl_peers(struct repl *r, const char *collection, uint32_t shard,
                  struct repl_peer_status *out, size_t max);

/* Counters since start-up (metrics). */
struct repl_stats {
    uint64_t in_sync_removals; /* backups this node removed from in_sync (successful CAS) */
    uint64_t in_sync_adds;     /* caught-up backups it added back */
};

/* Fills *st (atomics; no lock). */
void repl_stats(struct repl *r, struct repl_stats *st);

#endif
