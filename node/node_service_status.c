/*
 * node_service_status.c — the status handlers: ShardStatus (LSN, epoch,
 * counts, role and state of the matching replicas, and their replication
 * state: in_sync, recovery, truncations, a primary's peers) and NodeStatus (identity
 * and resource use of the process).
 */
#define _GNU_SOURCE
#include "node/node_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/node_service_internal.h"
#include "node/storage/replica.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

/* ------------------------------------------------------------ status */

/*
 * The replication fields of one replica (docs/replication.md §10): in_sync,
 * recovery, truncations, transfer progress and, on a primary, its peers.
 * 0, or -1 on ENOMEM.
 */
static int fill_replication(struct node_service *svc, struct node_svc_scratch *s,
                            const struct node_shard_view *v, Vecshard__V1__ShardReplicaStatus *st)
{
    st->in_sync = node_ids_has(&v->in_sync, svc->cfg->node_id);
    st->truncations = v->truncations;
    struct transfer_progress tp;
    transfers_progress(svc->xfer, v->coll.name, v->shard, &tp);
    st->transfer_bytes_done = tp.bytes_done;
    st->transfer_bytes_total = tp.bytes_total;
    st->transfers_completed = tp.completed;
    st->recovery = tp.running                                    ? "transferring"
                   : v->truncating                               ? "truncating"
                   : v->role == NODE_ROLE_BACKUP && !st->in_sync ? "catching_up"
                                                                 : "";
    struct repl *repl = atomic_load(&svc->repl);
    if (repl == NULL || v->role != NODE_ROLE_PRIMARY) return 0;
    struct repl_peer_status *ps = node_svc_scratch_alloc(s, NODE_REPLICAS_MAX, sizeof *ps);
    Vecshard__V1__ReplicaPeerStatus *pv = node_svc_scratch_alloc(s, NODE_REPLICAS_MAX, sizeof *pv);
    Vecshard__V1__ReplicaPeerStatus **pp = node_svc_scratch_alloc(s, NODE_REPLICAS_MAX, sizeof *pp);
    if (ps == NULL || pv == NULL || pp == NULL) return -1;
    size_t n = repl_peers(repl, v->coll.name, v->shard, ps, NODE_REPLICAS_MAX);
    for (size_t k = 0; k < n; k++) {
        vecshard__v1__replica_peer_status__init(&pv[k]);
        pv[k].node_id = ps[k].node_id;
        pv[k].in_sync = ps[k].in_sync;
        pv[k].acked_lsn = ps[k].acked_lsn;
        pv[k].lag = ps[k].lag;
        pv[k].state = ps[k].state;
        pv[k].reason = ps[k].reason;
        pv[k].transfer_bytes_done = ps[k].transfer_bytes_done;
        pv[k].transfer_bytes_total = ps[k].transfer_bytes_total;
        pp[k] = &pv[k];
    }
    st->peers = pp;
    st->n_peers = n;
    return 0;
}

/*
 * The digest of one replica's content (docs/replication.md §11) when with_digest is set: 32 hex
 * chars in a scratch block. rep is borrowed by the caller; NULL skips it.
 */
static grpc_status_code status_digest(struct rpc_call *c, struct replica *rep, bool with_digest,
                                      Vecshard__V1__ShardReplicaStatus *st,
                                      struct node_svc_scratch *s)
{
    if (!with_digest || rep == NULL) return GRPC_STATUS_OK;
    uint8_t d[REPLICA_DIGEST_BYTES];
    char err[REPLICA_ERR_MAX];
    int rc = replica_digest(rep, d, NULL, err);
    if (rc != REPLICA_OK)
        return rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "digest of %s/%u: %s",
                              st->collection, st->shard, err);
    char *hex = node_svc_scratch_alloc(s, 2 * REPLICA_DIGEST_BYTES + 1, 1);
    if (hex == NULL) return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    for (int i = 0; i < REPLICA_DIGEST_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    st->digest = hex;
    return GRPC_STATUS_OK;
}

/* ShardStatus: LSN, epoch, counts, role and state of matching replicas. */
grpc_status_code node_svc_shard_status(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__ShardStatusRequest *req = (const Vecshard__V1__ShardStatusRequest *)msg;
    bool has_coll = req->collection != NULL && req->collection[0] != '\0';
    if (!has_coll && req->n_shards > 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "shards is set but collection is empty");
    if (has_coll && !cluster_name_ok(req->collection, strlen(req->collection)))
        return node_svc_check_collection_name(c, req->collection);

    struct node_shard_view *views = NULL;
    long n = node_shards_list(svc->reg, req->collection, req->shards, req->n_shards, &views);
    if (n < 0) return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    struct node_svc_scratch s = {0};
    grpc_status_code code = GRPC_STATUS_OK;
    Vecshard__V1__ShardReplicaStatus *st = node_svc_scratch_alloc(&s, (size_t)n, sizeof *st);
    Vecshard__V1__ShardReplicaStatus **stp = node_svc_scratch_alloc(&s, (size_t)n, sizeof *stp);
    char **names = node_svc_scratch_alloc(&s, (size_t)n, sizeof *names);
    if (st == NULL || stp == NULL || names == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (long i = 0; i < n; i++) {
        vecshard__v1__shard_replica_status__init(&st[i]);
        stp[i] = &st[i];
        st[i].collection = views[i].coll.name;
        st[i].shard = views[i].shard;
        st[i].epoch = views[i].epoch;
        st[i].role = (Vecshard__V1__ShardRole)views[i].role;
        st[i].state = (Vecshard__V1__ReplicaState)views[i].state;
        st[i].state_reason = views[i].reason;
        struct node_shard_view v;
        struct node_shard *e =
            node_shards_acquire(svc->reg, views[i].coll.name, views[i].shard, &v);
        if (e != NULL && v.rep != NULL) {
            struct replica_stat rs;
            replica_status(v.rep, &rs);
            st[i].lsn = rs.lsn;
            st[i].count = rs.count;
            st[i].deleted = rs.deleted;
            st[i].snapshot_lsn = rs.snapshot_lsn;
            st[i].disk_bytes = rs.disk_bytes;
            if (st[i].epoch == 0) st[i].epoch = rs.epoch;
            st[i].state = (Vecshard__V1__ReplicaState)v.state;
            replica_epoch_at(v.rep, rs.lsn, &st[i].last_epoch);
        }
        if (code == GRPC_STATUS_OK)
            code = status_digest(c, e != NULL ? v.rep : NULL, req->with_digest, &st[i], &s);
        node_shards_release(svc->reg, e);
        if (fill_replication(svc, &s, &views[i], &st[i]) != 0) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    }
    if (code != GRPC_STATUS_OK) goto out;
    Vecshard__V1__ShardStatusResponse resp = VECSHARD__V1__SHARD_STATUS_RESPONSE__INIT;
    resp.shards = stp;
    resp.n_shards = (size_t)n;
    if (rpc_call_reply(c, &resp.base) != 0)
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "reply too large");
out:
    node_svc_scratch_free(&s);
    free(views);
    return code;
}

/* Resident set size of this process in bytes, from /proc/self/statm (0 if unknown). */
static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (f == NULL) return 0;
    unsigned long long size = 0, rss = 0;
    int got = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return got == 2 && page > 0 ? rss * (uint64_t)page : 0;
}

/* NodeStatus: identity and resource use. */
grpc_status_code node_svc_node_status(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    (void)msg;
    struct node_service *svc = user;
    Vecshard__V1__NodeStatusResponse resp = VECSHARD__V1__NODE_STATUS_RESPONSE__INIT;
    resp.node_id = (char *)svc->cfg->node_id;
    resp.addr = svc->addr;
    resp.version = NODE_VERSION;
    resp.started_at = svc->started_at_ms;
    resp.memory_bytes = resident_bytes();

    struct node_shard_view *views = NULL;
    long n = node_shards_list(svc->reg, NULL, NULL, 0, &views);
    resp.replicas = n > 0 ? (uint32_t)n : 0;
    for (long i = 0; i < n; i++) {
        struct node_shard_view v;
        struct node_shard *e =
            node_shards_acquire(svc->reg, views[i].coll.name, views[i].shard, &v);
        if (e != NULL && v.rep != NULL) {
            struct replica_stat rs;
            replica_status(v.rep, &rs);
            resp.disk_bytes += rs.disk_bytes;
        }
        node_shards_release(svc->reg, e);
    }
    free(views);
    struct node_meta *meta = atomic_load(&svc->meta);
    resp.etcd_ok = meta != NULL && node_meta_registered(meta);
    resp.fenced = false; /* no longer used: a lost lease does not stop writes */
    if (rpc_call_reply(c, &resp.base) != 0)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "reply too large");
    return GRPC_STATUS_OK;
}
