/*
 * node_service_write.c — the Write handler: the placement checks of the write
 * path (stale or newer epoch, role unknown, not primary), then
 * replica_write and the wait for every in-sync backup's acknowledgement
 * (repl_wait, docs/replication.md §3); a batch logged but not applied stops
 * the process (NODE_EXIT_UNAPPLIED). Check order and reply ownership: node_service.c.
 */
#define _GNU_SOURCE
#include "node/node_service.h"

#include <stdio.h>
#include <unistd.h>

#include "common/metrics/metrics.h"
#include "common/util/log.h"
#include "node/node_service_internal.h"
#include "common/filter/filter.h"
#include "node/storage/replica.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

/* ------------------------------------------------------------ Write */

/* Resident memory of the process (/proc/self/statm), bytes; 0 if unknown. */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    int n = f != NULL ? fscanf(f, "%llu %llu", &size, &resident) : 0;
    if (f != NULL) fclose(f);
    return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/*
 * --max-memory (docs/security.md §4): refuses a primary's write when the
 * process's resident memory plus an estimate of what the batch adds (twice
 * its encoded size: the vectors and payloads it carries, plus as much again
 * for graph links, id maps and the WAL buffer) would pass the budget.
 * Checked before anything is written, so a refused write leaves no trace.
 * Backups (Replicate) are not checked: refusing there would drop a copy
 * from in_sync; the primary's check bounds what reaches them.
 */
static grpc_status_code check_memory(struct rpc_call *c, const struct node_service *svc,
                                     const Vecshard__V1__WriteBatch *b)
{
    uint64_t budget = svc->cfg->max_memory;
    if (budget == 0 || b->n_upserts == 0) return GRPC_STATUS_OK;
    uint64_t add = 2 * (uint64_t)vecshard__v1__write_batch__get_packed_size(b), rss = rss_bytes();
    if (rss + add <= budget) return GRPC_STATUS_OK;
    return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                          "memory budget: %llu bytes in use + about %llu for this batch > "
                          "--max-memory %llu; delete points, add nodes or raise the budget",
                          (unsigned long long)rss, (unsigned long long)add,
                          (unsigned long long)budget);
}

/* Write: a batch for one shard, accepted only by its primary. */
grpc_status_code node_svc_write(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__WriteRequest *req = (const Vecshard__V1__WriteRequest *)msg;
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->batch == NULL && req->delete_filter == NULL)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "batch is missing");
    if (req->batch != NULL && req->delete_filter != NULL)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "batch and delete_filter are exclusive: send one");
    struct filter *filter = NULL;
    if (req->delete_filter != NULL) {
        char ferr[FILTER_ERR_MAX];
        int frc = filter_compile(req->delete_filter, "delete_filter", &filter, ferr, sizeof ferr);
        if (frc)
            return rpc_call_error(c, frc == -2 ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                               : GRPC_STATUS_INVALID_ARGUMENT,
                                  "%s", ferr);
    }

    struct node_shard_view v;
    struct node_shard *e = node_svc_borrow(svc, c, req->collection, req->shard, &v, &code);
    if (e == NULL) {
        filter_free(filter);
        return code;
    }

    if (req->epoch < v.epoch) {
        node_svc_placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION, "stale epoch %llu, current %llu",
                              (unsigned long long)req->epoch, (unsigned long long)v.epoch);
        goto out;
    }
    if (req->epoch > v.epoch) {
        /* The caller saw a newer shard map than ours: our role may be gone. */
        node_svc_placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "epoch %llu is newer than this node's %llu for %s/%u; the node has "
                              "not seen that shard map yet, retry",
                              (unsigned long long)req->epoch, (unsigned long long)v.epoch,
                              req->collection, req->shard);
        goto out;
    }
    if (v.role == NODE_ROLE_UNKNOWN) {
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "node %s does not know its role for %s/%u yet: the shard map has "
                              "not been read from etcd since start-up",
                              svc->cfg->node_id, req->collection, req->shard);
        goto out;
    }
    if (v.role != NODE_ROLE_PRIMARY) {
        node_svc_placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION,
                              "node %s is not the primary of %s/%u at epoch %llu; the primary is "
                              "%s",
                              svc->cfg->node_id, req->collection, req->shard,
                              (unsigned long long)v.epoch,
                              v.primary[0] != '\0' ? v.primary : "unknown");
        goto out;
    }
    code = node_svc_check_deadline(c, "before the write");
    if (code != GRPC_STATUS_OK) goto out;
    if (req->batch != NULL) {
        code = check_memory(c, svc, req->batch);
        if (code != GRPC_STATUS_OK) goto out;
    }

    char err[REPLICA_ERR_MAX];
    uint64_t lsn = 0;
    uint32_t deleted = 0;
    int rc = filter != NULL ? replica_delete_matching(v.rep, v.epoch, filter, req->delete_limit,
                                                      &lsn, &deleted, err)
                            : replica_write(v.rep, v.epoch, req->batch, &lsn, err);
    if (rc != REPLICA_OK) {
        code = rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "%s", err);
        if (rc == REPLICA_EUNAPPLIED) {
            /*
             * The batch is in the WAL but not (fully) in memory: serving on
             * would answer from a state the log does not describe. Stop now
             * (no snapshot, no clean close); the next start replays it.
             */
            log_error("stopping: a logged batch could not be applied",
                      "collection=%s shard=%u error=%s", req->collection, req->shard,
                      log_quote(err));
            _exit(NODE_EXIT_UNAPPLIED);
        }
        if (rc == REPLICA_EIO || rc == REPLICA_EFAILED || rc == REPLICA_ENOMEM ||
            rc == REPLICA_EINTERNAL)
            log_error("write failed", "collection=%s shard=%u code=%s error=%s", req->collection,
                      req->shard, replica_code_str(rc), log_quote(err));
        goto out;
    }
    const char *labels[] = {req->collection};
    size_t nup = req->batch ? req->batch->n_upserts : 0;
    size_t ndel = req->batch ? req->batch->n_deletes : deleted;
    if (nup) metrics_add(svc->points_upserted, labels, (double)nup);
    if (ndel) metrics_add(svc->points_deleted, labels, (double)ndel);
    /* Acknowledge only once every in-sync backup has the record (docs/replication.md §3). */
    uint64_t epoch = v.epoch;
    struct repl *repl = atomic_load(&svc->repl);
    if (repl != NULL) {
        char msg[NODE_ERR_MAX + 300];
        code = repl_wait(repl, &v, lsn, &epoch, msg, sizeof msg);
        if (code != GRPC_STATUS_OK) {
            if (code == GRPC_STATUS_FAILED_PRECONDITION) {
                struct node_shard_view now;
                struct node_shard *e2 =
                    node_shards_acquire(svc->reg, req->collection, req->shard, &now);
                if (e2 != NULL) node_svc_placement_trailers(c, &now);
                /* The replica left this node meanwhile (a rebalance move's
                 * switch, docs/rebalance.md §3): no epoch to name, so say
                 * UNAVAILABLE, which the router resends to the new primary. */
                if (e2 == NULL) code = GRPC_STATUS_UNAVAILABLE;
                node_shards_release(svc->reg, e2);
            }
            code = rpc_call_error(c, code, "%s", msg);
            goto out;
        }
    }
    Vecshard__V1__WriteResponse resp = VECSHARD__V1__WRITE_RESPONSE__INIT;
    resp.lsn = lsn;
    resp.epoch = epoch;
    resp.deleted = deleted;
    if (rpc_call_reply(c, &resp.base) != 0)
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot build the reply");
    log_debug("write", "collection=%s shard=%u lsn=%llu upserts=%zu deletes=%zu", req->collection,
              req->shard, (unsigned long long)lsn, nup, ndel);
out:
    node_shards_release(svc->reg, e);
    filter_free(filter);
    return code;
}
