/*
 * node_metrics.c — the Prometheus metrics of vecshard-node (node_metrics.h).
 *
 * One collector renders everything node-specific at each scrape. It first
 * takes a snapshot of every hosted replica (the registry's view, then the
 * replica's counters through a short borrow, then on a primary its peers),
 * and only then writes the families one after the other, because the text
 * format wants all samples of a family together. The snapshot is taken
 * without holding any lock across it: the registry lock is only held inside
 * node_shards_list / acquire, the replica's counters are atomics, and
 * repl_peers takes the replication locks that are never held across an RPC.
 *
 * Label values: collection (the name), shard (decimal), state (loading,
 * recovering, ready, damaged: ShardStatus's names in lower case), role
 * (primary, backup), node (a peer's node id), direction (send, receive),
 * result (ok, failed).
 */
#define _GNU_SOURCE
#include "node/node_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/metrics/metrics.h"
#include "node/node_service.h"
#include "node/storage/replica.h"

/* What one scrape knows of one hosted replica. */
struct replica_row {
    struct node_shard_view v; /* rep is not borrowed */
    char shard[16];
    bool open; /* st is filled (the replica was READY) */
    struct replica_stat st;
    bool member;                    /* this node is in the entry's in_sync */
    struct repl_peer_status *peers; /* on a primary: malloc'ed, npeers of them */
    size_t npeers;
};

/* The replica states exported as vecshard_replica_state{state=...} (FENCED is unused). */
static const struct {
    enum node_state state;
    const char *name;
} states[] = {
    {NODE_STATE_LOADING, "loading"},
    {NODE_STATE_RECOVERING, "recovering"},
    {NODE_STATE_READY, "ready"},
    {NODE_STATE_DAMAGED, "damaged"},
};

/* Unix seconds now. */
static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Snapshots every hosted replica into *out (malloc'ed; free with rows_free). Returns the count;
 * 0 also on ENOMEM (the families are then written without samples). */
static size_t rows_take(struct node_service *svc, struct replica_row **out)
{
    *out = NULL;
    struct node_shard_view *views = NULL;
    long n = node_shards_list(svc->reg, NULL, NULL, 0, &views);
    if (n <= 0) {
        free(views);
        return 0;
    }
    struct replica_row *rows = calloc((size_t)n, sizeof *rows);
    if (rows == NULL) {
        free(views);
        return 0;
    }
    struct repl *repl = atomic_load(&svc->repl);
    for (long i = 0; i < n; i++) {
        struct replica_row *r = &rows[i];
        r->v = views[i];
        r->v.rep = NULL;
        snprintf(r->shard, sizeof r->shard, "%u", r->v.shard);
        r->member = node_ids_has(&r->v.in_sync, svc->cfg->node_id);
        struct node_shard_view now;
        struct node_shard *e = node_shards_acquire(svc->reg, r->v.coll.name, r->v.shard, &now);
        if (e != NULL && now.rep != NULL) {
            replica_status(now.rep, &r->st);
            r->open = true;
        }
        if (e != NULL) r->v.state = now.state;
        node_shards_release(svc->reg, e);
        if (repl != NULL && r->v.role == NODE_ROLE_PRIMARY) {
            r->peers = calloc(NODE_REPLICAS_MAX, sizeof *r->peers);
            if (r->peers != NULL)
                r->npeers =
                    repl_peers(repl, r->v.coll.name, r->v.shard, r->peers, NODE_REPLICAS_MAX);
        }
    }
    free(views);
    *out = rows;
    return (size_t)n;
}

/* Frees what rows_take made. */
static void rows_free(struct replica_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(rows[i].peers);
    free(rows);
}

/* Writes one gauge family `fam` with a sample per open replica: expr of its row r. */
#define OPEN_GAUGE(w, rows, n, fam, help, expr)                                                    \
    do {                                                                                           \
        metrics_family(w, fam, "gauge", help);                                                     \
        for (size_t i_ = 0; i_ < (n); i_++) {                                                      \
            const struct replica_row *r = &(rows)[i_];                                             \
            if (r->open)                                                                           \
                metrics_sample(w, fam, (double)(expr), "collection", r->v.coll.name, "shard",      \
                               r->shard, NULL);                                                    \
        }                                                                                          \
    } while (0)

/* The per-replica families. */
static void write_replicas(struct metrics_writer *w, const struct replica_row *rows, size_t n)
{
    OPEN_GAUGE(w, rows, n, "vecshard_replica_points",
               "Live points of the replica (ShardStatus count, ReplicaInfo points).", r->st.count);
    OPEN_GAUGE(w, rows, n, "vecshard_replica_deleted_points",
               "Deleted points still linked in the replica's graph.", r->st.deleted);
    OPEN_GAUGE(w, rows, n, "vecshard_replica_disk_bytes",
               "Bytes of the replica's snapshots and WAL segments on disk (ShardStatus "
               "disk_bytes, ReplicaInfo bytes).",
               r->st.disk_bytes);
    OPEN_GAUGE(w, rows, n, "vecshard_replica_memory_bytes",
               "Bytes of memory held by the replica's index and payload store.",
               r->st.memory_bytes);
    OPEN_GAUGE(w, rows, n, "vecshard_replica_lsn", "Highest LSN applied to the replica.",
               r->st.lsn);
    OPEN_GAUGE(w, rows, n, "vecshard_replica_wal_since_snapshot_bytes",
               "WAL bytes written since the replica's last snapshot (replayed at a restart).",
               r->st.wal_bytes_since_snapshot);
    OPEN_GAUGE(w, rows, n, "vecshard_replica_wal_since_snapshot_records",
               "WAL records written since the replica's last snapshot (replayed at a restart).",
               r->st.wal_records_since_snapshot);

    double now = unix_now();
    metrics_family(w, "vecshard_replica_snapshot_age_seconds", "gauge",
                   "Seconds since the replica's newest snapshot was written; no sample while it "
                   "has none.");
    for (size_t i = 0; i < n; i++)
        if (rows[i].open && rows[i].st.snapshot_unix_ms > 0)
            metrics_sample(w, "vecshard_replica_snapshot_age_seconds",
                           now - (double)rows[i].st.snapshot_unix_ms / 1000.0, "collection",
                           rows[i].v.coll.name, "shard", rows[i].shard, NULL);
    metrics_family(w, "vecshard_replica_snapshots_total", "counter",
                   "Snapshots the replica took since it was opened.");
    for (size_t i = 0; i < n; i++)
        if (rows[i].open)
            metrics_sample(w, "vecshard_replica_snapshots_total",
                           (double)rows[i].st.snapshots_taken, "collection", rows[i].v.coll.name,
                           "shard", rows[i].shard, NULL);

    metrics_family(w, "vecshard_replica_epoch", "gauge",
                   "Epoch of the shard entry this node follows for the replica.");
    for (size_t i = 0; i < n; i++)
        metrics_sample(w, "vecshard_replica_epoch", (double)rows[i].v.epoch, "collection",
                       rows[i].v.coll.name, "shard", rows[i].shard, NULL);
    metrics_family(w, "vecshard_replica_state", "gauge",
                   "1 for the replica's current state (loading, recovering, ready, damaged), 0 "
                   "for the others.");
    for (size_t i = 0; i < n; i++)
        for (size_t s = 0; s < sizeof states / sizeof states[0]; s++)
            metrics_sample(w, "vecshard_replica_state", rows[i].v.state == states[s].state,
                           "collection", rows[i].v.coll.name, "shard", rows[i].shard, "state",
                           states[s].name, NULL);
    metrics_family(w, "vecshard_replica_role", "gauge",
                   "1 for the role the shard map gives the replica (primary, backup), 0 for the "
                   "other; both 0 before the node has read etcd.");
    for (size_t i = 0; i < n; i++) {
        metrics_sample(w, "vecshard_replica_role", rows[i].v.role == NODE_ROLE_PRIMARY,
                       "collection", rows[i].v.coll.name, "shard", rows[i].shard, "role", "primary",
                       NULL);
        metrics_sample(w, "vecshard_replica_role", rows[i].v.role == NODE_ROLE_BACKUP, "collection",
                       rows[i].v.coll.name, "shard", rows[i].shard, "role", "backup", NULL);
    }
    metrics_family(w, "vecshard_replica_in_sync", "gauge",
                   "1 when this node is in the shard entry's in_sync list for the replica.");
    for (size_t i = 0; i < n; i++)
        metrics_sample(w, "vecshard_replica_in_sync", rows[i].member, "collection",
                       rows[i].v.coll.name, "shard", rows[i].shard, NULL);
}

/* The per-shard families a primary writes, and the replication counters. */
static void write_shards(struct metrics_writer *w, struct node_service *svc,
                         const struct replica_row *rows, size_t n)
{
    metrics_family(w, "vecshard_shard_replicas", "gauge",
                   "On the primary: members of the shard entry's replicas list.");
    for (size_t i = 0; i < n; i++)
        if (rows[i].v.role == NODE_ROLE_PRIMARY)
            metrics_sample(w, "vecshard_shard_replicas", rows[i].v.replicas.n, "collection",
                           rows[i].v.coll.name, "shard", rows[i].shard, NULL);
    metrics_family(w, "vecshard_shard_in_sync_replicas", "gauge",
                   "On the primary: members of the shard entry's in_sync list, the primary "
                   "included.");
    for (size_t i = 0; i < n; i++)
        if (rows[i].v.role == NODE_ROLE_PRIMARY)
            metrics_sample(w, "vecshard_shard_in_sync_replicas", rows[i].v.in_sync.n, "collection",
                           rows[i].v.coll.name, "shard", rows[i].shard, NULL);
    metrics_family(w, "vecshard_replication_lag_records", "gauge",
                   "On the primary, per other replica (node): LSNs handed to writes that it has "
                   "not acknowledged yet (ReplicaPeerStatus lag).");
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < rows[i].npeers; k++)
            metrics_sample(w, "vecshard_replication_lag_records", (double)rows[i].peers[k].lag,
                           "collection", rows[i].v.coll.name, "shard", rows[i].shard, "node",
                           rows[i].peers[k].node_id, NULL);
    metrics_family(w, "vecshard_replication_acked_lsn", "gauge",
                   "On the primary, per other replica (node): the highest LSN it acknowledged.");
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < rows[i].npeers; k++)
            metrics_sample(w, "vecshard_replication_acked_lsn", (double)rows[i].peers[k].acked_lsn,
                           "collection", rows[i].v.coll.name, "shard", rows[i].shard, "node",
                           rows[i].peers[k].node_id, NULL);

    struct repl *repl = atomic_load(&svc->repl);
    struct repl_stats rs = {0};
    if (repl != NULL) repl_stats(repl, &rs);
    metrics_family(w, "vecshard_replication_in_sync_removals_total", "counter",
                   "Backups this node, as primary, removed from in_sync (failed or too slow).");
    metrics_sample(w, "vecshard_replication_in_sync_removals_total", (double)rs.in_sync_removals,
                   NULL);
    metrics_family(w, "vecshard_replication_in_sync_adds_total", "counter",
                   "Caught-up backups this node, as primary, added back to in_sync.");
    metrics_sample(w, "vecshard_replication_in_sync_adds_total", (double)rs.in_sync_adds, NULL);
}

/* Transfers (full copies) in flight and their totals. */
static void write_transfers(struct metrics_writer *w, struct node_service *svc)
{
    struct transfer_stats ts = {0};
    if (svc->xfer != NULL) transfers_stats(svc->xfer, &ts);
    metrics_family(w, "vecshard_transfers_in_flight", "gauge",
                   "Full replica transfers running: direction send (TransferShard streams served) "
                   "or receive (copies pulled into this node).");
    metrics_sample(w, "vecshard_transfers_in_flight", ts.sending, "direction", "send", NULL);
    metrics_sample(w, "vecshard_transfers_in_flight", ts.receiving, "direction", "receive", NULL);
    metrics_family(w, "vecshard_transfer_bytes_total", "counter",
                   "Snapshot and WAL bytes of full transfers sent or received since start-up.");
    metrics_sample(w, "vecshard_transfer_bytes_total", (double)ts.sent_bytes, "direction", "send",
                   NULL);
    metrics_sample(w, "vecshard_transfer_bytes_total", (double)ts.received_bytes, "direction",
                   "receive", NULL);
    metrics_family(w, "vecshard_transfers_total", "counter",
                   "Full transfers finished since start-up, by direction and result (ok, failed).");
    metrics_sample(w, "vecshard_transfers_total", (double)ts.sent_ok, "direction", "send", "result",
                   "ok", NULL);
    metrics_sample(w, "vecshard_transfers_total", (double)ts.sent_failed, "direction", "send",
                   "result", "failed", NULL);
    metrics_sample(w, "vecshard_transfers_total", (double)ts.received_ok, "direction", "receive",
                   "result", "ok", NULL);
    metrics_sample(w, "vecshard_transfers_total", (double)ts.received_failed, "direction",
                   "receive", "result", "failed", NULL);
}

/* etcd reachability, lease and registration. */
static void write_etcd(struct metrics_writer *w, struct node_service *svc)
{
    struct node_meta *meta = atomic_load(&svc->meta);
    struct node_meta_status ms = {.keepalive_age_ms = -1};
    if (meta != NULL) node_meta_status(meta, &ms);
    metrics_family(w, "vecshard_etcd_reachable", "gauge",
                   "1 when the node's last etcd request got an answer, 0 when it reached no "
                   "endpoint or timed out (or none was made yet).");
    metrics_sample(w, "vecshard_etcd_reachable", ms.etcd_reachable, NULL);
    metrics_family(w, "vecshard_etcd_lease_live", "gauge",
                   "1 while the node holds an etcd lease that its keeper has not reported lost.");
    metrics_sample(w, "vecshard_etcd_lease_live", ms.lease_live, NULL);
    metrics_family(w, "vecshard_etcd_registered", "gauge",
                   "1 when the node key is registered on a live lease and the shard map read "
                   "since has been applied.");
    metrics_sample(w, "vecshard_etcd_registered", ms.registered, NULL);
    metrics_family(w, "vecshard_etcd_watch_connected", "gauge",
                   "1 when every etcd watch stream of the node (collections, shards, nodes) is "
                   "connected.");
    metrics_sample(w, "vecshard_etcd_watch_connected", ms.watches_ok, NULL);
    metrics_family(w, "vecshard_etcd_keepalive_age_seconds", "gauge",
                   "Seconds since the last successful keep-alive of the node's lease; no sample "
                   "without a lease.");
    if (ms.keepalive_age_ms >= 0)
        metrics_sample(w, "vecshard_etcd_keepalive_age_seconds",
                       (double)ms.keepalive_age_ms / 1000.0, NULL);
}

/* The collector: everything node-specific, in a fixed family order. */
static void collect(struct metrics_writer *w, void *user)
{
    struct node_service *svc = user;
    struct replica_row *rows;
    size_t n = rows_take(svc, &rows);
    write_replicas(w, rows, n);
    write_shards(w, svc, rows, n);
    rows_free(rows, n);
    write_transfers(w, svc);
    write_etcd(w, svc);
}

/* Creates the node's families and collectors (node_metrics.h). */
int node_metrics_register(struct metrics *m, struct node_service *svc)
{
    svc->points_upserted =
        metrics_counter(m, "vecshard_points_upserted_total",
                        "Points upserted by writes this node accepted as primary.", "collection");
    svc->points_deleted =
        metrics_counter(m, "vecshard_points_deleted_total",
                        "Point deletes in writes this node accepted as primary.", "collection");
    svc->search_queries = metrics_counter(
        m, "vecshard_search_queries_total",
        "Query vectors searched by this node, once per query and shard.", "collection");
    if (svc->points_upserted == NULL || svc->points_deleted == NULL || svc->search_queries == NULL)
        return -1;
    return metrics_add_collector(m, collect, svc);
}
