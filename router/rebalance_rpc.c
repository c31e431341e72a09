/*
 * rebalance_rpc.c — the VecShard calls that start replica moves and the
 * progress they report (docs/rebalance.md §4–§5, docs/router.md):
 * Rebalance (a dry plan, or a plan queued as move documents), Drain (the
 * drain mark of a node, or its removal), and the ReplicaMove list of
 * ClusterStatus with each running move's bytes copied and ETA.
 *
 * Any router answers these: plans come from moves_plan over the router's
 * cached view (router/controller/moves.h, one ShardStatus fan-out), and
 * queueing is etcd puts (moves_queue). Only the elected controller executes
 * moves (router/controller/moves.c); these handlers never change a move
 * after queueing it. Threading: handler threads, no state of their own.
 * Ownership: every message built here borrows its strings from the view
 * and the ShardStatus replies the caller holds until the reply is sent.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"
#include "router/controller/moves.h"
#include "router/router.h"

#define FINISHED_SHOWN 50 /* finished moves in ClusterStatus (docs/rebalance.md §5) */
#define VIEW_WAIT_MS   2000

/* ------------------------------------------------------------ ReplicaMove */

/* Fills a ReplicaMove from a move document (strings borrowed from m). */
static void move_info(Vecshard__V1__ReplicaMove *out, const struct cluster_move *m)
{
    vecshard__v1__replica_move__init(out);
    out->collection = (char *)m->name;
    out->shard = m->shard;
    out->from_node = m->from != NULL ? m->from : "";
    out->to_node = m->to != NULL ? m->to : "";
    out->primary = m->primary;
    out->id = (char *)m->id;
    out->kind = (char *)cluster_move_kind_name(m->kind);
    out->state = (Vecshard__V1__MoveState)m->state;
    out->step = m->step != NULL ? m->step : "";
    out->bytes_total = m->bytes_total;
    out->bytes_done = m->state == CLUSTER_MOVE_DONE ? m->bytes_total : 0;
    out->attempts = m->attempts;
    out->reason = m->reason != NULL ? m->reason : "";
    out->origin = m->origin != NULL ? m->origin : "";
    out->created_at = m->created_at;
    out->started_at = m->started_at;
    out->finished_at = m->finished_at;
}

/*
 * A RUNNING replica move's progress: while the target copies, bytes_done is
 * its transfer's bytes received and bytes_total the larger of the planned
 * size and the transfer's total; once it catches up or switches, all of it.
 * eta_ms from the rate since started_at (0 when unknown).
 */
static void move_progress(Vecshard__V1__ReplicaMove *out, const struct rt_view *v,
                          const struct cluster_move *m,
                          Vecshard__V1__ShardStatusResponse *const *replies, int64_t now)
{
    if (m->state != CLUSTER_MOVE_RUNNING || m->kind != CLUSTER_MOVE_REPLICA) return;
    const char *step = m->step != NULL ? m->step : "";
    if (strcmp(step, "catching_up") == 0 || strcmp(step, "switching") == 0) {
        out->bytes_done = out->bytes_total;
        return;
    }
    const struct rt_node *to = m->to != NULL ? rt_view_node(v, m->to) : NULL;
    const Vecshard__V1__ShardReplicaStatus *rs =
        to != NULL && replies != NULL
            ? router_replica_status(replies[to - v->nodes], m->name, m->shard)
            : NULL;
    if (rs == NULL || rs->transfer_bytes_total == 0) return;
    if (rs->transfer_bytes_total > out->bytes_total) out->bytes_total = rs->transfer_bytes_total;
    out->bytes_done =
        rs->transfer_bytes_done < out->bytes_total ? rs->transfer_bytes_done : out->bytes_total;
    int64_t spent = now - m->started_at;
    if (m->started_at > 0 && spent > 0 && out->bytes_done > 0)
        out->eta_ms = (int64_t)((double)(out->bytes_total - out->bytes_done) * (double)spent /
                                (double)out->bytes_done);
}

/* Newest finished first: finished_at, then id, both descending. */
static int cmp_finished(const void *a, const void *b)
{
    const struct cluster_move *x = *(const struct cluster_move *const *)a;
    const struct cluster_move *y = *(const struct cluster_move *const *)b;
    if (x->finished_at != y->finished_at) return x->finished_at > y->finished_at ? -1 : 1;
    return -strcmp(x->id, y->id);
}

size_t router_status_moves(const struct rt_view *v,
                           Vecshard__V1__ShardStatusResponse *const *replies,
                           Vecshard__V1__ReplicaMove *out, Vecshard__V1__ReplicaMove **outp)
{
    int64_t now = router_unix_ms();
    size_t n = 0, n_fin = 0;
    const struct cluster_move **fin = calloc(v->n_moves + 1, sizeof *fin);
    for (size_t i = 0; i < v->n_moves; i++) {
        const struct cluster_move *m = &v->moves[i];
        if (!cluster_move_active(m)) {
            if (fin != NULL) fin[n_fin++] = m;
            continue;
        }
        move_info(&out[n], m);
        move_progress(&out[n], v, m, replies, now);
        outp[n] = &out[n];
        n++;
    }
    if (fin != NULL) {
        qsort(fin, n_fin, sizeof *fin, cmp_finished);
        for (size_t i = 0; i < n_fin && i < FINISHED_SHOWN; i++, n++) {
            move_info(&out[n], fin[i]);
            outp[n] = &out[n];
        }
    }
    free(fin);
    return n;
}

/* ------------------------------------------------------------ Rebalance */

/* Active (queued or running) moves in v. */
static size_t active_moves(const struct rt_view *v)
{
    size_t n = 0;
    for (size_t i = 0; i < v->n_moves; i++)
        n += cluster_move_active(&v->moves[i]);
    return n;
}

/* Replies with moves m[0..n): queued ones as they are, a dry plan's with
 * state UNSPECIFIED (planned, not queued) and id "". */
static grpc_status_code reply_plan(struct rpc_call *c, const struct cluster_move *m, size_t n,
                                   bool dry, bool started, const char *note)
{
    Vecshard__V1__ReplicaMove *rm = calloc(n + 1, sizeof *rm);
    Vecshard__V1__ReplicaMove **rmp = calloc(n + 1, sizeof *rmp);
    if (rm == NULL || rmp == NULL) {
        free(rm);
        free(rmp);
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        move_info(&rm[i], &m[i]);
        if (dry) rm[i].state = VECSHARD__V1__MOVE_STATE__MOVE_STATE_UNSPECIFIED;
        rmp[i] = &rm[i];
    }
    Vecshard__V1__RebalanceResponse resp = VECSHARD__V1__REBALANCE_RESPONSE__INIT;
    resp.moves = rmp;
    resp.n_moves = n;
    resp.started = started;
    resp.note = (char *)note;
    rpc_call_reply(c, &resp.base);
    free(rm);
    free(rmp);
    return GRPC_STATUS_OK;
}

grpc_status_code router_rebalance(struct rpc_call *c, const ProtobufCMessage *msg, void *u)
{
    struct router *r = u;
    const Vecshard__V1__RebalanceRequest *req = (const Vecshard__V1__RebalanceRequest *)msg;
    const char *only = req->collection != NULL ? req->collection : "";
    struct rt_view *v;
    grpc_status_code code;
    if (only[0] != '\0') {
        const struct rt_collection *coll;
        code = router_collection(r, c, "collection", only, &v, &coll);
        if (code != GRPC_STATUS_OK) return code;
    } else {
        v = rt_acquire(r->rt);
    }
    struct cluster_move *mv = NULL;
    size_t n = 0;
    char note[512] = "";
    if (!req->dry_run) {
        size_t active = active_moves(v);
        if (v->controller == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                                  "no router holds the controller election, so queued moves would "
                                  "not run (start a router with --controller on)");
            goto out;
        }
        if (active > 0) {
            code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION,
                                  "a rebalance is in progress: %zu moves queued or running "
                                  "(vecshard rebalance --watch follows it)",
                                  active);
            goto out;
        }
    }
    if (moves_plan(r, v, only, MOVES_ALL, &mv, &n, note, sizeof note) != 0) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory planning moves");
        goto out;
    }
    if (!req->dry_run && n > 0) {
        char err[512];
        int64_t rev = 0;
        if (moves_queue(r, mv, n, "manual", &rev, err, sizeof err) != 0) {
            code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                                  "etcd is needed to queue the moves and did not answer: %s", err);
            goto out;
        }
        log_info("rebalance queued", "request_id=%s moves=%zu collection=%s first=%s",
                 log_quote(router_request_id()), n, only[0] ? only : "(all)", mv[0].id);
        rt_wait_revision(r->rt, rev, VIEW_WAIT_MS); /* ClusterStatus right after sees them */
    }
    code = reply_plan(c, mv, n, req->dry_run, !req->dry_run && n > 0, note);
out:
    moves_free(mv, n);
    rt_release(v);
    return code;
}

/* ------------------------------------------------------------ Drain */

/* Replicas placed on node id in v (shard entries naming it). */
static uint32_t replicas_on(const struct rt_view *v, const char *id)
{
    uint32_t n = 0;
    for (size_t k = 0; k < v->n_colls; k++)
        for (uint32_t s = 0; s < v->colls[k].shards; s++)
            n += cluster_ids_has(&v->colls[k].shard[s].replicas, id);
    return n;
}

/* Writes (undrain: deletes) drain/<id> in one txn; its revision in *rev. */
static grpc_status_code write_mark(struct router *r, struct rpc_call *c, const char *id,
                                   bool undrain, int64_t *rev)
{
    struct cluster_drain d = {.node_id = (char *)id, .since = router_unix_ms()};
    char *key = cluster_key_drain(r->cfg->etcd_prefix, id);
    char *doc = undrain ? NULL : cluster_drain_format(&d);
    if (key == NULL || (!undrain && doc == NULL)) {
        free(key);
        free(doc);
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    etcd_op op =
        undrain
            ? (etcd_op){.type = ETCD_OP_DELETE, .key = key}
            : (etcd_op){.type = ETCD_OP_PUT, .key = key, .value = doc, .value_len = strlen(doc)};
    etcd_txn_result tr = {0};
    etcd_err eerr;
    etcd_status st = etcd_txn(r->etcd, NULL, 0, &op, 1, NULL, 0, &tr, &eerr);
    grpc_status_code code = GRPC_STATUS_OK;
    if (st != ETCD_OK)
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "etcd is needed to %s a node and did not answer: %s",
                              undrain ? "undrain" : "drain", eerr.msg);
    else
        *rev = tr.revision;
    etcd_txn_result_free(&tr);
    free(key);
    free(doc);
    return code;
}

grpc_status_code router_drain(struct rpc_call *c, const ProtobufCMessage *msg, void *u)
{
    struct router *r = u;
    const Vecshard__V1__DrainRequest *req = (const Vecshard__V1__DrainRequest *)msg;
    const char *id = req->node_id != NULL ? req->node_id : "";
    if (id[0] == '\0')
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "node_id is empty; it names a node (vecshard status lists them)");
    if (strchr(id, '/') != NULL || strlen(id) > 128)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "node_id \"%.128s\" is not a node id (at most 128 bytes, no '/')",
                              id);
    struct rt_view *v = rt_acquire(r->rt);
    bool known = rt_view_node(v, id) != NULL || replicas_on(v, id) > 0 ||
                 (req->undrain && rt_view_draining(v, id));
    bool marked = rt_view_draining(v, id);
    rt_release(v);
    if (!known)
        return rpc_call_error(c, GRPC_STATUS_NOT_FOUND,
                              "node_id \"%s\" is neither registered nor named by any shard entry",
                              id);
    if (marked == !req->undrain) {
        /* Already as asked: nothing to write, the answer below is current. */
    } else {
        int64_t rev = 0;
        grpc_status_code code = write_mark(r, c, id, req->undrain, &rev);
        if (code != GRPC_STATUS_OK) return code;
        log_info(req->undrain ? "node undrained" : "node draining",
                 "request_id=%s node=%s revision=%lld", log_quote(router_request_id()), id,
                 (long long)rev);
        rt_wait_revision(r->rt, rev, VIEW_WAIT_MS);
    }

    v = rt_acquire(r->rt);
    Vecshard__V1__DrainResponse resp = VECSHARD__V1__DRAIN_RESPONSE__INIT;
    char note[512] = "";
    resp.draining = rt_view_draining(v, id);
    resp.replicas_left = replicas_on(v, id);
    resp.empty = resp.replicas_left == 0;
    if (resp.draining && !resp.empty) {
        struct cluster_move *mv = NULL;
        size_t n = 0;
        if (moves_plan(r, v, "", MOVES_DRAIN_ONLY, &mv, &n, note, sizeof note) == 0)
            moves_free(mv, n);
    }
    resp.note = note;
    rpc_call_reply(c, &resp.base);
    rt_release(v);
    return GRPC_STATUS_OK;
}
