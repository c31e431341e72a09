/*
 * get.c — Get: points by id, routed by hash_shard like writes, read from an
 * in-sync replica of each shard like searches.
 *
 * The distinct ids (first occurrence kept) are grouped by shard; each group
 * is one ShardNode.Get, all concurrent through shard_call (in-sync policy):
 * a group that failed with a retryable code is re-sent to another in-sync
 * replica not tried yet while the deadline allows; a shard that no replica
 * answered fails the call. The reply borrows the nodes' Points and lists
 * them, and the missing ids, in the order of each id's first occurrence in
 * the request.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/hash.h"
#include "router/router.h"
#include "router/shard_call.h"

/* One shard's ids. */
struct ggroup {
    uint64_t *ids;
    size_t n;
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

/* What the shard_call callbacks of one Get share. */
struct gctx {
    const Vecshard__V1__GetRequest *req;
    const char *collection;
    struct ggroup *g; /* by shard */
    struct id_pos *ip;
    size_t n;
};

/* shard_call send: the NodeGet of one shard's ids. */
static int gsend(void *arg, struct rpc_fanout *fo, struct rpc_channel *ch, const uint32_t *shards,
                 size_t n, uint64_t epoch, const struct rpc_opts *opts)
{
    struct gctx *x = arg;
    (void)n, (void)epoch;
    Vecshard__V1__NodeGetRequest nr = VECSHARD__V1__NODE_GET_REQUEST__INIT;
    nr.collection = (char *)x->collection;
    nr.shard = shards[0];
    nr.ids = x->g[shards[0]].ids;
    nr.n_ids = x->g[shards[0]].n;
    nr.with_payload = x->req->with_payload;
    nr.with_vector = x->req->with_vector;
    nr.with_attributes = x->req->with_attributes;
    return rpc_fanout_start(fo, ch, NODE_SVC "Get", &nr.base,
                            &vecshard__v1__node_get_response__descriptor, opts);
}

/* shard_call answered: records the points of a shard's reply by id. */
static bool ganswered(void *arg, const ProtobufCMessage *m, size_t i, uint32_t shard,
                      const char *node, char *why, size_t whylen)
{
    struct gctx *x = arg;
    (void)i, (void)shard, (void)node, (void)why, (void)whylen;
    const Vecshard__V1__NodeGetResponse *resp = (const Vecshard__V1__NodeGetResponse *)m;
    for (size_t j = 0; j < resp->n_points; j++) {
        struct id_pos *hit = bsearch(&resp->points[j]->id, x->ip, x->n, sizeof *x->ip, cmp_id);
        /* bsearch may land on any copy of a repeated id: walk to the first. */
        while (hit != NULL && hit > x->ip && hit[-1].id == hit->id)
            hit--;
        if (hit != NULL) hit->pt = resp->points[j];
    }
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
    uint8_t *dup = NULL;
    Vecshard__V1__Point **pts = NULL;
    uint64_t *miss = NULL;
    struct shard_call sc;
    memset(&sc, 0, sizeof sc);
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
    pts = calloc(n, sizeof *pts);
    miss = calloc(n, sizeof *miss);
    static const struct shard_call_policy pol = {
        .method = NODE_SVC "Get",
        .abort_on_bad_request = true,
        .max_tries = SHARD_CALL_MAX_TRIES,
        .retry_code = router_retryable,
    };
    static const struct shard_call_ops ops = {.send = gsend, .answered = ganswered};
    struct gctx x = {req, coll->name, g, ip, n};
    int rc = shard_call_init(&sc, r, v, coll, &pol, &ops, &x,
                             router_node_deadline(router_deadline(r, c)));
    if (!ip || !dup || !g || !pts || !miss || rc != 0) {
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
        if (g[s].n > 0) shard_call_want(&sc, s);
        g[s].n = 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!dup[i]) {
            struct ggroup *gg = &g[hash_shard(req->ids[i], S)];
            gg->ids[gg->n++] = req->ids[i];
        }
    code = shard_call_run(&sc);
    if (code != GRPC_STATUS_OK) {
        code = rpc_call_error(c, code, "shard %u: node %s: %s: %s", sc.abort_shard, sc.abort_node,
                              rpc_status_name(code), sc.abort_details);
        goto out;
    }
    for (uint32_t s = 0; s < S; s++) {
        const struct shard_call_unit *u = &sc.unit[s];
        if (u->state != SHARD_CALL_FAILED) continue;
        code = rpc_call_error(c, u->code != GRPC_STATUS_OK ? u->code : GRPC_STATUS_UNAVAILABLE,
                              "shard %u could not be read: %s", s, u->msg);
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
    shard_call_free(&sc);
    for (uint32_t s = 0; g != NULL && s < S; s++)
        free(g[s].ids);
    free(g);
    free(ip);
    free(dup);
    free(pts);
    free(miss);
    rt_release(v);
    return code;
}
