/*
 * get.c — Get: points by id, routed by hash_shard like writes, read from an
 * in-sync replica of each shard like searches.
 *
 * The distinct ids (first occurrence kept) are grouped by shard; each group
 * is one ShardNode.Get, all concurrent on one rpc_fanout. A failed group is
 * re-sent to another in-sync replica not tried yet while the deadline
 * allows; a shard that no replica answered fails the call. The reply
 * borrows the nodes' Points and lists them, and the missing ids, in the
 * order of each id's first occurrence in the request.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/hash.h"
#include "router/router.h"

#define MAX_TRIES 16

/* One shard's ids. */
struct ggroup {
    uint64_t *ids;
    size_t n;
    const char *tried[MAX_TRIES];
    int n_tried;
    const struct rt_node *node; /* of the running call */
    bool running, ok;
    grpc_status_code code;
    char why[240];
};

/* An id with its position, to find first occurrences and look ids up. */
struct id_pos {
    uint64_t id;
    size_t pos;
    const Vecshard__V1__Point *pt;
};

static int cmp_id_pos(const void *a, const void *b)
{
    const struct id_pos *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_id(const void *key, const void *elem)
{
    uint64_t k = *(const uint64_t *)key, e = ((const struct id_pos *)elem)->id;
    return k < e ? -1 : k > e;
}

/* Starts group g (shard s) on a replica not tried yet; false if none is left. */
static bool gstart(struct router *r, const struct rt_view *v, const struct rt_collection *coll,
                   struct rpc_fanout *fo, int *call_shard, uint32_t s, struct ggroup *g,
                   const Vecshard__V1__GetRequest *req, int64_t deadline)
{
    char why[200];
    const struct rt_node *node =
        g->n_tried < MAX_TRIES
            ? router_pick_replica(r, v, coll, s, g->tried, g->n_tried, NULL, why, sizeof why)
            : NULL;
    if (node == NULL) {
        if (g->n_tried == 0) {
            g->code = GRPC_STATUS_UNAVAILABLE;
            snprintf(g->why, sizeof g->why, "no live in-sync replica: %.170s", why);
        }
        return false;
    }
    g->tried[g->n_tried++] = node->id;
    Vecshard__V1__NodeGetRequest nr = VECSHARD__V1__NODE_GET_REQUEST__INIT;
    nr.collection = coll->name;
    nr.shard = s;
    nr.ids = g->ids;
    nr.n_ids = g->n;
    nr.with_payload = req->with_payload;
    nr.with_vector = req->with_vector;
    struct rpc_opts opts = {.deadline_ms = deadline};
    struct rpc_channel *ch = rpc_client_channel(r->client, node->addr);
    int idx = ch != NULL ? rpc_fanout_start(fo, ch, NODE_SVC "Get", &nr.base,
                                            &vecshard__v1__node_get_response__descriptor, &opts)
                         : -1;
    if (idx < 0) {
        g->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(g->why, sizeof g->why, "out of memory");
        return false;
    }
    call_shard[idx] = (int)s;
    g->node = node;
    g->running = true;
    router_load_add(r, node->id, 1);
    return true;
}

grpc_status_code router_get(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__GetRequest *req = (const Vecshard__V1__GetRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    uint32_t S = coll->shards;
    struct id_pos *ip = NULL;
    struct ggroup *g = NULL;
    int *call_shard = NULL;
    uint8_t *dup = NULL;
    struct rpc_fanout *fo = NULL;
    Vecshard__V1__Point **pts = NULL;
    uint64_t *miss = NULL;
    size_t n = req->n_ids;
    if (n == 0) {
        code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "ids is empty");
        goto out;
    }
    if (n > ROUTER_MAX_POINTS) {
        code =
            rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                           "ids has %zu entries, the limit is %u per call", n, ROUTER_MAX_POINTS);
        goto out;
    }
    ip = calloc(n, sizeof *ip);
    dup = calloc(n, 1);
    g = calloc(S, sizeof *g);
    call_shard = calloc((size_t)S * MAX_TRIES, sizeof *call_shard);
    pts = calloc(n, sizeof *pts);
    miss = calloc(n, sizeof *miss);
    fo = rpc_fanout_create();
    if (!ip || !dup || !g || !call_shard || !pts || !miss || !fo) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        ip[i] = (struct id_pos){req->ids[i], i, NULL};
    qsort(ip, n, sizeof *ip, cmp_id_pos);
    for (size_t i = 1; i < n; i++)
        if (ip[i].id == ip[i - 1].id) dup[ip[i].pos] = 1;
    for (size_t i = 0; i < n; i++)
        if (!dup[i]) g[hash_shard(req->ids[i], S)].n++;
    for (uint32_t s = 0; s < S; s++) {
        if (g[s].n > 0 && (g[s].ids = calloc(g[s].n, sizeof *g[s].ids)) == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        g[s].n = 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!dup[i]) {
            struct ggroup *gg = &g[hash_shard(req->ids[i], S)];
            gg->ids[gg->n++] = req->ids[i];
        }
    int64_t deadline = router_node_deadline(router_deadline(r, c));
    for (uint32_t s = 0; s < S; s++)
        if (g[s].n > 0) gstart(r, v, coll, fo, call_shard, s, &g[s], req, deadline);
    for (;;) {
        int idx = rpc_fanout_next(fo, deadline);
        if (idx < 0) break;
        uint32_t s = (uint32_t)call_shard[idx];
        struct ggroup *gg = &g[s];
        const struct rpc_status *st = rpc_fanout_status(fo, idx);
        gg->running = false;
        router_load_add(r, gg->node->id, -1);
        if (st->code == GRPC_STATUS_OK) {
            gg->ok = true;
            const Vecshard__V1__NodeGetResponse *resp =
                (const Vecshard__V1__NodeGetResponse *)rpc_fanout_response(fo, idx);
            for (size_t j = 0; j < resp->n_points; j++) {
                struct id_pos *hit = bsearch(&resp->points[j]->id, ip, n, sizeof *ip, cmp_id);
                /* bsearch may land on any copy of a repeated id: walk to the first. */
                while (hit != NULL && hit > ip && hit[-1].id == hit->id)
                    hit--;
                if (hit != NULL) hit->pt = resp->points[j];
            }
            continue;
        }
        gg->code = st->code;
        snprintf(gg->why, sizeof gg->why, "node %s: %s: %.160s", gg->node->id,
                 rpc_status_name(st->code), st->details);
        if (st->code == GRPC_STATUS_INVALID_ARGUMENT ||
            st->code == GRPC_STATUS_RESOURCE_EXHAUSTED) {
            code = rpc_call_error(c, st->code, "shard %u: %s", s, gg->why);
            goto out;
        }
        if (router_retryable(st->code) && rpc_now_ms() < deadline)
            gstart(r, v, coll, fo, call_shard, s, gg, req, deadline);
    }
    for (uint32_t s = 0; s < S; s++) {
        if (g[s].n == 0 || g[s].ok) continue;
        if (g[s].running) {
            g[s].code = GRPC_STATUS_DEADLINE_EXCEEDED;
            snprintf(g[s].why, sizeof g[s].why, "node %s: no answer before the deadline",
                     g[s].node->id);
        }
        code = rpc_call_error(c, g[s].code != GRPC_STATUS_OK ? g[s].code : GRPC_STATUS_UNAVAILABLE,
                              "shard %u could not be read: %s", s, g[s].why);
        goto out;
    }
    size_t n_pts = 0, n_miss = 0;
    for (size_t i = 0; i < n; i++) {
        if (dup[i]) continue;
        struct id_pos *hit = bsearch(&req->ids[i], ip, n, sizeof *ip, cmp_id);
        while (hit != NULL && hit > ip && hit[-1].id == hit->id)
            hit--;
        if (hit != NULL && hit->pt != NULL)
            pts[n_pts++] = (Vecshard__V1__Point *)hit->pt;
        else
            miss[n_miss++] = req->ids[i];
    }
    Vecshard__V1__GetResponse resp = VECSHARD__V1__GET_RESPONSE__INIT;
    resp.points = pts;
    resp.n_points = n_pts;
    resp.missing_ids = miss;
    resp.n_missing_ids = n_miss;
    rpc_call_reply(c, &resp.base);
    code = GRPC_STATUS_OK;
out:
    if (fo != NULL) rpc_fanout_destroy(fo);
    for (uint32_t s = 0; g != NULL && s < S; s++) {
        if (g[s].running) router_load_add(r, g[s].node->id, -1);
        free(g[s].ids);
    }
    free(g);
    free(ip);
    free(dup);
    free(call_shard);
    free(pts);
    free(miss);
    rt_release(v);
    return code;
}
