/*
 * node_service_replication.c — the replication handlers: Replicate, the
 * backup side of docs/replication.md §4 (epoch fencing, TRANSFER, TRUNCATE,
 * history matching with prev_lsn / prev_epoch, strictly ordered apply of the
 * primary's records as sent), and TransferShard (transfer.h).
 *
 * Replicate runs on a worker (it appends to the WAL and may reopen the
 * replica for a truncation). Records of one shard arrive from its single
 * sender in order; the replica's write lock orders them anyway.
 */
#define _GNU_SOURCE
#include "node/node_service.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util/log.h"
#include "node/node_service_internal.h"
#include "node/storage/replica.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

/* ------------------------------------------------------------ Replicate */

/* Sends resp; RESOURCE_EXHAUSTED if it cannot be packed. */
static grpc_status_code reply(struct rpc_call *c, Vecshard__V1__ReplicateResponse *resp)
{
    if (rpc_call_reply(c, &resp->base) != 0)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot build the reply");
    return GRPC_STATUS_OK;
}

/* Fills applied_lsn and last_epoch from the replica. */
static void position(struct replica *rep, Vecshard__V1__ReplicateResponse *resp)
{
    struct replica_stat rs;
    replica_status(rep, &rs);
    resp->applied_lsn = rs.lsn;
    replica_epoch_at(rep, rs.lsn, &resp->last_epoch);
}

/* TRUNCATE: cuts the tail after req->truncate_after (the entry e is released first). */
static grpc_status_code do_truncate(struct node_service *svc, struct rpc_call *c,
                                    const Vecshard__V1__ReplicateRequest *req,
                                    Vecshard__V1__ReplicateResponse *resp)
{
    char err[NODE_ERR_MAX];
    uint64_t cut = 0;
    if (node_shards_truncate(svc->reg, req->collection, req->shard, req->truncate_after, &cut, err,
                             sizeof err) != 0) {
        log_warn("cannot truncate; asking for a transfer",
                 "collection=%s shard=%u truncate_after=%llu epoch=%llu error=%s", req->collection,
                 req->shard, (unsigned long long)req->truncate_after,
                 (unsigned long long)req->epoch, log_quote(err));
        resp->result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_NEED_TRANSFER;
        resp->reason = err;
        return reply(c, resp);
    }
    log_warn("truncated the unacknowledged tail",
             "collection=%s shard=%u truncate_after=%llu records_cut=%llu epoch=%llu primary=%s",
             req->collection, req->shard, (unsigned long long)req->truncate_after,
             (unsigned long long)cut, (unsigned long long)req->epoch, log_quote(req->primary));
    struct node_shard_view v;
    struct node_shard *e = node_shards_acquire(svc->reg, req->collection, req->shard, &v);
    if (e != NULL && v.rep != NULL) position(v.rep, resp);
    node_shards_release(svc->reg, e);
    return reply(c, resp);
}

/* APPEND: the records after prev_lsn onto a matching history; fills resp (the caller replies). */
static grpc_status_code do_append(struct rpc_call *c, const Vecshard__V1__ReplicateRequest *req,
                                  struct replica *rep, Vecshard__V1__ReplicateResponse *resp,
                                  char *reason, size_t reasonlen)
{
    struct replica_stat rs;
    replica_status(rep, &rs);
    uint64_t a = rs.lsn, e = 0;
    if (req->prev_lsn > a) {
        resp->result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_GAP;
        resp->applied_lsn = a;
        replica_epoch_at(rep, a, &resp->last_epoch);
        return GRPC_STATUS_OK;
    }
    bool known = replica_epoch_at(rep, req->prev_lsn, &e);
    if (!known || e != req->prev_epoch) {
        snprintf(reason, reasonlen,
                 "record %" PRIu64 " has epoch %s%" PRIu64 " here, %" PRIu64 " on the primary",
                 req->prev_lsn, known ? "" : "(unknown) ", e, req->prev_epoch);
        resp->result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_MISMATCH;
        resp->reason = reason;
        position(rep, resp);
        return GRPC_STATUS_OK;
    }
    for (size_t i = 0; i < req->n_records; i++) {
        const Vecshard__V1__WalRecord *w = req->records[i];
        if (w->lsn <= a) {
            if (!replica_epoch_at(rep, w->lsn, &e) || e != w->epoch) {
                snprintf(reason, reasonlen,
                         "record %" PRIu64 " has epoch %" PRIu64 " here, %" PRIu64
                         " on the primary",
                         w->lsn, e, w->epoch);
                resp->result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_MISMATCH;
                resp->reason = reason;
                position(rep, resp);
                return GRPC_STATUS_OK;
            }
            continue; /* a duplicate */
        }
        if (w->lsn > a + 1) {
            resp->result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_GAP;
            break;
        }
        if (w->epoch > req->epoch)
            return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                                  "records[%zu].epoch %" PRIu64 " is newer than epoch %" PRIu64, i,
                                  w->epoch, req->epoch);
        char err[REPLICA_ERR_MAX];
        uint64_t have = 0;
        int rc =
            replica_apply_packed(rep, w->lsn, w->epoch, w->batch.data, w->batch.len, &have, err);
        if (rc == REPLICA_EUNAPPLIED) {
            log_error("stopping: a replicated batch could not be applied",
                      "collection=%s shard=%u lsn=%llu error=%s", req->collection, req->shard,
                      (unsigned long long)w->lsn, log_quote(err));
            _exit(NODE_EXIT_UNAPPLIED);
        }
        if (rc != REPLICA_OK && rc != REPLICA_ELSN_GAP)
            return rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "records[%zu]: %s", i,
                                  err);
        a = have;
        if (rc == REPLICA_ELSN_GAP) {
            resp->result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_GAP;
            break;
        }
    }
    /* One fsync for the call's records, before they are acknowledged. */
    char err[REPLICA_ERR_MAX];
    int rc = replica_sync(rep, err);
    if (rc != REPLICA_OK)
        return rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "%s", err);
    resp->applied_lsn = a;
    replica_epoch_at(rep, a, &resp->last_epoch);
    return GRPC_STATUS_OK;
}

/* Replicate: the backup side of docs/replication.md §4. */
grpc_status_code node_svc_replicate(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__ReplicateRequest *req = (const Vecshard__V1__ReplicateRequest *)msg;
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->primary == NULL || req->primary[0] == '\0')
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "primary is empty");
    if (strcmp(req->primary, svc->cfg->node_id) == 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "primary %s is this node: a node does not replicate to itself",
                              req->primary);

    struct node_shard_view v;
    struct node_shard *e = node_shards_acquire(svc->reg, req->collection, req->shard, &v);
    if (e == NULL)
        return rpc_call_error(c, GRPC_STATUS_NOT_FOUND,
                              "shard %u of collection \"%s\" is not hosted on this node",
                              req->shard, req->collection);
    if (req->epoch < v.epoch ||
        (req->epoch == v.epoch && v.primary[0] != '\0' && strcmp(v.primary, req->primary) != 0)) {
        node_svc_placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION,
                              "stale epoch %llu, current %llu (primary %s)",
                              (unsigned long long)req->epoch, (unsigned long long)v.epoch,
                              v.primary[0] != '\0' ? v.primary : "unknown");
        node_shards_release(svc->reg, e);
        return code;
    }
    if (req->epoch > v.epoch || v.role != NODE_ROLE_BACKUP) {
        /* A newer primary: follow it (a primary that learns this has been deposed). */
        if (node_shards_adopt(svc->reg, req->collection, req->shard, req->epoch, req->primary, NULL,
                              NULL) &&
            v.role == NODE_ROLE_PRIMARY)
            log_warn("deposed: a newer primary replicates to this node",
                     "collection=%s shard=%u epoch_from=%llu epoch_to=%llu primary=%s",
                     req->collection, req->shard, (unsigned long long)v.epoch,
                     (unsigned long long)req->epoch, log_quote(req->primary));
    }

    Vecshard__V1__ReplicateResponse resp = VECSHARD__V1__REPLICATE_RESPONSE__INIT;
    Vecshard__V1__LsnGap gap = VECSHARD__V1__LSN_GAP__INIT;
    char reason[NODE_ERR_MAX + 64] = "";
    struct transfer_progress tp;
    transfers_progress(svc->xfer, req->collection, req->shard, &tp);
    if (tp.running) {
        resp.result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_TRANSFERRING;
        resp.transfer_bytes_done = tp.bytes_done;
        resp.transfer_bytes_total = tp.bytes_total;
        code = reply(c, &resp);
        goto out;
    }
    if (req->action == VECSHARD__V1__REPLICATE_ACTION__REPLICATE_ACTION_TRANSFER) {
        if (transfers_start(svc->xfer, req->collection, req->shard, req->epoch, req->primary,
                            req->primary_addr) != 0) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a transfer");
            goto out;
        }
        log_warn("full transfer requested by the primary",
                 "collection=%s shard=%u epoch=%llu "
                 "primary=%s",
                 req->collection, req->shard, (unsigned long long)req->epoch,
                 log_quote(req->primary));
        resp.result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_TRANSFERRING;
        code = reply(c, &resp);
        goto out;
    }
    if (v.state == NODE_STATE_DAMAGED) {
        snprintf(reason, sizeof reason, "replica is DAMAGED: %s", v.reason);
        resp.result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_NEED_TRANSFER;
        resp.reason = reason;
        code = reply(c, &resp);
        goto out;
    }
    if (v.rep == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "shard %u of collection \"%s\" is loading on this node", req->shard,
                              req->collection);
        goto out;
    }
    if (req->action == VECSHARD__V1__REPLICATE_ACTION__REPLICATE_ACTION_TRUNCATE) {
        node_shards_release(svc->reg, e);
        return do_truncate(svc, c, req, &resp);
    }
    code = do_append(c, req, v.rep, &resp, reason, sizeof reason);
    if (code == GRPC_STATUS_OK) {
        if (resp.result == VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_GAP) {
            gap.have = resp.applied_lsn;
            resp.lsn_gap = &gap;
        }
        code = reply(c, &resp);
    }
out:
    node_shards_release(svc->reg, e);
    return code;
}

/* ------------------------------------------------------------ TransferShard */

/* TransferShard: a full copy of a replica for a recovering node (transfer.h). */
grpc_status_code node_svc_transfer_shard(struct rpc_call *c, const ProtobufCMessage *msg,
                                         struct rpc_stream *st, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__TransferShardRequest *req = (const Vecshard__V1__TransferShardRequest *)msg;
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    return transfer_serve(svc->xfer, c, req, st);
}
