/*
 * router/controller/moves_plan.c — the planner's input from a routing view
 * and the nodes' ShardStatus, and the queueing of planned moves as etcd
 * documents (moves.h, docs/rebalance.md §1–§2).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/controller/moves.h"
#include "router/controller/rebalance.h"
#include "router/router.h"

#define PLAN_STATUS_MS 2000

_Static_assert((int)CLUSTER_MOVE_REPLICA == (int)REBALANCE_REPLICA &&
                   (int)CLUSTER_MOVE_LEADER == (int)REBALANCE_LEADER,
               "move kinds are numbered alike");

void moves_free(struct cluster_move *m, size_t n)
{
    for (size_t i = 0; i < n && m != NULL; i++)
        cluster_move_clear(&m[i]);
    free(m);
}

/* True when an active move in v names (collection, shard). */
static bool shard_has_active_move(const struct rt_view *v, const char *name, uint32_t shard)
{
    for (size_t i = 0; i < v->n_moves; i++)
        if (cluster_move_active(&v->moves[i]) && v->moves[i].shard == shard &&
            strcmp(v->moves[i].name, name) == 0)
            return true;
    return false;
}

/* The shard is movable: present, fully in sync, every replica registered,
 * no active move of it. */
static bool shard_movable(const struct rt_view *v, const struct rt_collection *c, uint32_t s)
{
    const struct cluster_shard *sh = &c->shard[s];
    if (!sh->present || sh->primary[0] == '\0' || sh->replicas.n == 0 ||
        sh->in_sync.n != sh->replicas.n)
        return false;
    for (uint32_t i = 0; i < sh->replicas.n; i++)
        if (!cluster_ids_has(&sh->in_sync, sh->replicas.v[i]) ||
            rt_view_node(v, sh->replicas.v[i]) == NULL)
            return false;
    return !shard_has_active_move(v, c->name, s);
}

/* Drain-only plans mark every other shard unmovable, so the planner's
 * "stay uneven" parts of the note say nothing about the drain: keeps only
 * the "; "-separated parts about draining or eligible nodes. */
static void note_keep_drain(char *note)
{
    char *src = note, *dst = note;
    while (*src != '\0') {
        size_t len = strcspn(src, ";");
        bool keep =
            memmem(src, len, "draining", 8) != NULL || memmem(src, len, "eligible", 8) != NULL;
        if (keep) {
            if (dst != note) {
                memcpy(dst, "; ", 2);
                dst += 2;
            }
            memmove(dst, src, len);
            dst += len;
        }
        src += len;
        while (*src == ';' || *src == ' ')
            src++;
    }
    *dst = '\0';
}

int moves_plan(struct router *r, const struct rt_view *v, const char *collection,
               enum moves_scope scope, struct cluster_move **out, size_t *n, char *note,
               size_t notelen)
{
    *out = NULL;
    *n = 0;
    if (note != NULL && notelen > 0) note[0] = '\0';
    size_t total = 0;
    for (size_t k = 0; k < v->n_colls; k++)
        total += v->colls[k].shards;
    struct rebalance_node *nodes = calloc(v->n_nodes + 1, sizeof *nodes);
    struct rebalance_shard *shards = calloc(total + 1, sizeof *shards);
    bool *want = calloc(v->n_nodes + 1, sizeof *want);
    Vecshard__V1__ShardStatusResponse **st = calloc(v->n_nodes + 1, sizeof *st);
    struct rebalance_move *mv = NULL;
    int rc = -1;
    if (nodes == NULL || shards == NULL || want == NULL || st == NULL) goto out;
    for (size_t i = 0; i < v->n_nodes; i++) {
        nodes[i].id = v->nodes[i].id;
        nodes[i].draining = rt_view_draining(v, v->nodes[i].id);
        want[i] = true;
    }
    if (v->n_nodes > 0) router_shard_status(r, v, want, "", rpc_now_ms() + PLAN_STATUS_MS, st);
    size_t ns = 0;
    for (size_t k = 0; k < v->n_colls; k++) {
        const struct rt_collection *c = &v->colls[k];
        for (uint32_t s = 0; s < c->shards; s++) {
            const struct cluster_shard *sh = &c->shard[s];
            if (!sh->present) continue;
            struct rebalance_shard *rs = &shards[ns++];
            rs->collection = c->name;
            rs->shard = s;
            rs->primary = sh->primary;
            rs->replicas = (const char *const *)sh->replicas.v;
            rs->n_replicas = sh->replicas.n;
            const struct rt_node *p = rt_view_node(v, sh->primary);
            const Vecshard__V1__ShardReplicaStatus *rst =
                p != NULL ? router_replica_status(st[p - v->nodes], c->name, s) : NULL;
            rs->bytes = rst != NULL ? rst->disk_bytes : 0;
            rs->movable = shard_movable(v, c, s) &&
                          (collection[0] == '\0' || strcmp(collection, c->name) == 0);
            if (scope == MOVES_DRAIN_ONLY && rs->movable) {
                bool on_drained = false;
                for (uint32_t i = 0; i < sh->replicas.n && !on_drained; i++)
                    on_drained = rt_view_draining(v, sh->replicas.v[i]);
                rs->movable = on_drained;
            }
        }
    }
    size_t cnt = rebalance_plan(nodes, v->n_nodes, shards, ns, NULL, 0, note, notelen);
    mv = calloc(cnt + 1, sizeof *mv);
    if (mv == NULL) goto out;
    cnt = rebalance_plan(nodes, v->n_nodes, shards, ns, mv, cnt, note, notelen);
    if (scope == MOVES_DRAIN_ONLY && note != NULL) note_keep_drain(note);
    struct cluster_move *res = calloc(cnt + 1, sizeof *res);
    if (res == NULL) goto out;
    size_t m = 0;
    for (size_t i = 0; i < cnt; i++) {
        /* Drain-only: keep the moves off draining nodes (the planner's later
         * steps only balance the movable shards, which are all on one). */
        if (scope == MOVES_DRAIN_ONLY &&
            (mv[i].kind != REBALANCE_REPLICA || !rt_view_draining(v, mv[i].from)))
            continue;
        struct cluster_move *o = &res[m];
        const struct rebalance_shard *rs = &shards[mv[i].shard];
        snprintf(o->name, sizeof o->name, "%s", rs->collection);
        o->shard = rs->shard;
        o->kind = (enum cluster_move_kind)mv[i].kind;
        o->primary = mv[i].primary;
        o->state = CLUSTER_MOVE_QUEUED;
        o->bytes_total = mv[i].bytes;
        m++;
        if (cluster_move_set(&o->from, mv[i].from) != 0 ||
            cluster_move_set(&o->to, mv[i].to) != 0 || cluster_move_set(&o->step, "") != 0 ||
            cluster_move_set(&o->reason, "") != 0 || cluster_move_set(&o->origin, "") != 0) {
            moves_free(res, m);
            goto out;
        }
    }
    *out = res;
    *n = m;
    rc = 0;
out:
    router_shard_status_free(st, st != NULL ? v->n_nodes : 0);
    free(st);
    free(want);
    free(mv);
    free(shards);
    free(nodes);
    return rc;
}

int moves_queue(struct router *r, struct cluster_move *m, size_t n, const char *origin,
                int64_t *revision, char *err, size_t errlen)
{
    static _Atomic uint32_t seq;
    int64_t now = router_unix_ms();
    for (size_t i = 0; i < n; i++) {
        cluster_move_id(m[i].id, now, seq++);
        m[i].state = CLUSTER_MOVE_QUEUED;
        m[i].created_at = now;
        if (cluster_move_set(&m[i].origin, origin) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        char *key = cluster_key_move(r->cfg->etcd_prefix, m[i].id);
        char *doc = cluster_move_format(&m[i]);
        etcd_err eerr;
        etcd_status es = key != NULL && doc != NULL
                             ? etcd_put(r->etcd, key, doc, strlen(doc), 0, NULL, revision, &eerr)
                             : ETCD_ENOMEM;
        free(key);
        free(doc);
        if (es != ETCD_OK) {
            snprintf(err, errlen, "cannot queue move %s of %s/%u: %s", m[i].id, m[i].name,
                     m[i].shard, es == ETCD_ENOMEM ? "out of memory" : eerr.msg);
            return -1;
        }
    }
    return 0;
}
