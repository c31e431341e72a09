/*
 * write.c — Upsert and Delete (docs/design.md §4 from the router's side).
 *
 * The request is validated whole first (nothing is sent if any point is
 * bad), then split by shard (hash_shard, common/util/hash.h). Each group
 * becomes one ShardNode.Write to its shard's primary carrying the epoch the
 * router knows, all at once through shard_call (primary policy): a stale
 * epoch refreshes the shard entry and resends at once, a node behind the
 * router's map, a replica not open yet or connection trouble resends after
 * 50, 100, 200 ms, anything else fails the group (shard_call.h).
 *
 * Writes are idempotent per (id, LSN), so resending is safe. The call is
 * acknowledged only when every group succeeded.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/filter/attrs.h"
#include "common/util/hash.h"
#include "router/router.h"
#include "router/shard_call.h"

#define WRITE_ATTEMPTS 4 /* first try + 3 retries per group */
/* Points one ShardNode.Write of a delete by filter removes at most (one atomic batch). */
#define DELETE_FILTER_BATCH 10000

/* One shard's part of the request. */
struct wgroup {
    Vecshard__V1__Point **pts; /* borrowed from the request */
    size_t n_pts;
    uint64_t *ids;
    size_t n_ids;
};

/* Everything one Upsert / Delete call works with. */
struct wctx {
    const char *collection;
    uint32_t shards;
    struct wgroup *groups; /* by shard */
    struct shard_call sc;
    const Vecshard__V1__Filter *filter; /* delete by filter: sent to every shard wanted */
    uint32_t *deleted;                  /* delete by filter: per shard, of the last round */
};

/* shard_call send: the Write of one group to its primary. */
static int wsend(void *arg, struct rpc_fanout *fo, struct rpc_channel *ch, const uint32_t *shards,
                 size_t n, uint64_t epoch, const struct rpc_opts *opts)
{
    struct wctx *w = arg;
    (void)n;
    struct wgroup *g = &w->groups[shards[0]];
    Vecshard__V1__WriteBatch batch = VECSHARD__V1__WRITE_BATCH__INIT;
    batch.upserts = g->pts;
    batch.n_upserts = g->n_pts;
    batch.deletes = g->ids;
    batch.n_deletes = g->n_ids;
    Vecshard__V1__WriteRequest req = VECSHARD__V1__WRITE_REQUEST__INIT;
    req.collection = (char *)w->collection;
    req.shard = shards[0];
    req.epoch = epoch;
    if (w->filter != NULL) {
        req.delete_filter = (Vecshard__V1__Filter *)w->filter;
        req.delete_limit = DELETE_FILTER_BATCH;
    } else {
        req.batch = &batch;
    }
    return rpc_fanout_start(fo, ch, NODE_SVC "Write", &req.base,
                            &vecshard__v1__write_response__descriptor, opts);
}

/* shard_call answered (delete by filter): notes how many the shard deleted. */
static bool wanswered(void *arg, const ProtobufCMessage *m, size_t i, uint32_t shard,
                      const char *node, char *why, size_t whylen)
{
    struct wctx *w = arg;
    (void)i, (void)node, (void)why, (void)whylen;
    if (w->deleted != NULL)
        w->deleted[shard] = ((const Vecshard__V1__WriteResponse *)m)->deleted;
    return true;
}

/* Sends every group with something to write and waits for the outcome. */
static void wrun(struct wctx *w)
{
    for (uint32_t s = 0; s < w->shards; s++)
        if (w->groups[s].n_pts + w->groups[s].n_ids > 0) shard_call_want(&w->sc, s);
    shard_call_run(&w->sc);
}

/* Replies to the client: OK (reply already set up by the caller) or the
 * error of the lowest failed shard naming all failed ones. */
static grpc_status_code wfinish(struct wctx *w, struct rpc_call *c)
{
    uint32_t n_failed = 0, n_used = 0, S = w->shards;
    const struct shard_call_unit *first = NULL;
    for (uint32_t s = 0; s < S; s++) {
        const struct shard_call_unit *u = &w->sc.unit[s];
        if (u->state != SHARD_CALL_UNUSED) n_used++;
        if (u->state != SHARD_CALL_FAILED) continue;
        n_failed++;
        if (first == NULL) first = u;
    }
    if (first == NULL) return GRPC_STATUS_OK;
    struct router_msg m = {0};
    router_msg_add(&m, "%u of %u shards failed: ", n_failed, n_used);
    for (uint32_t s = 0; s < S; s++) {
        const struct shard_call_unit *u = &w->sc.unit[s];
        if (u->state != SHARD_CALL_FAILED) continue;
        if (u->addr[0] != '\0')
            router_msg_add(&m, "%sshard %u (primary %s at %s): %s", u == first ? "" : "; ", s,
                           u->node, u->addr, u->msg);
        else /* no call was made: the message already names the shard */
            router_msg_add(&m, "%s%s", u == first ? "" : "; ", u->msg);
    }
    if (n_failed < n_used)
        router_msg_add(&m, "; the other shards were written (retrying the whole call is safe)");
    grpc_status_code code = first->code;
    if (code == GRPC_STATUS_OK) code = GRPC_STATUS_UNAVAILABLE;
    return rpc_call_error(c, code, "%s", m.buf);
}

/* Frees what the groups own. */
static void wfree(struct wctx *w)
{
    for (uint32_t i = 0; w->groups != NULL && i < w->shards; i++) {
        free(w->groups[i].pts);
        free(w->groups[i].ids);
    }
    free(w->groups);
    shard_call_free(&w->sc);
}

/* Sets up the groups of a call on coll (in view v). 0 or -1. */
static int winit(struct wctx *w, struct router *r, struct rpc_call *c, const struct rt_view *v,
                 const struct rt_collection *coll)
{
    static const struct shard_call_policy pol = {
        .method = NODE_SVC "Write",
        .primary = true,
        .max_tries = WRITE_ATTEMPTS,
    };
    static const struct shard_call_ops ops = {.send = wsend, .answered = wanswered};
    memset(w, 0, sizeof *w);
    w->collection = coll->name;
    w->shards = coll->shards;
    w->groups = calloc(coll->shards, sizeof *w->groups);
    int rc = shard_call_init(&w->sc, r, v, coll, &pol, &ops, w,
                             router_node_deadline(router_deadline(r, c)));
    return w->groups == NULL || rc != 0 ? -1 : 0;
}

grpc_status_code router_upsert(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__UpsertRequest *req = (const Vecshard__V1__UpsertRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    struct wctx w;
    uint32_t *count = NULL;
    memset(&w, 0, sizeof w);
    if (req->n_points == 0) {
        code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "points is empty");
        goto out;
    }
    if (req->n_points > ROUTER_MAX_POINTS) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "points has %zu entries, the limit is %u per call", req->n_points,
                              ROUTER_MAX_POINTS);
        goto out;
    }
    for (size_t i = 0; i < req->n_points; i++) {
        const Vecshard__V1__Point *p = req->points[i];
        char what[48];
        snprintf(what, sizeof what, "points[%zu].vector", i);
        code = router_check_vector(c, what, p->vector, p->n_vector, coll);
        if (code != GRPC_STATUS_OK) goto out;
        if (p->payload.len > ROUTER_MAX_PAYLOAD) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "points[%zu].payload has %zu bytes, the limit is %u", i,
                                  p->payload.len, ROUTER_MAX_PAYLOAD);
            goto out;
        }
        char where[32], aerr[ATTR_ERR_MAX + 64];
        snprintf(where, sizeof where, "points[%zu]", i);
        if (p->n_attributes && !attrs_check(p->attributes, p->n_attributes, where, aerr, sizeof aerr)) {
            code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", aerr);
            goto out;
        }
    }
    count = calloc(coll->shards, sizeof *count);
    if (count == NULL || winit(&w, r, c, v, coll) != 0) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_points; i++)
        count[hash_shard(req->points[i]->id, coll->shards)]++;
    for (uint32_t s = 0; s < coll->shards; s++) {
        if (count[s] > 0 && (w.groups[s].pts = calloc(count[s], sizeof(void *))) == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < req->n_points; i++) {
        struct wgroup *g = &w.groups[hash_shard(req->points[i]->id, coll->shards)];
        g->pts[g->n_pts++] = req->points[i];
    }
    wrun(&w);
    code = wfinish(&w, c);
    if (code == GRPC_STATUS_OK) {
        Vecshard__V1__UpsertResponse resp = VECSHARD__V1__UPSERT_RESPONSE__INIT;
        resp.upserted = (uint32_t)req->n_points;
        rpc_call_reply(c, &resp.base);
    }
out:
    free(count);
    wfree(&w);
    rt_release(v);
    return code;
}

/*
 * Delete by filter: every shard's primary deletes up to DELETE_FILTER_BATCH
 * matching points per Write, each an atomic batch of ids in its WAL; the
 * shards that deleted a full batch are asked again until none is left
 * (docs/filtering.md "Delete by filter").
 */
static grpc_status_code delete_by_filter(struct router *r, struct rpc_call *c,
                                         const Vecshard__V1__Filter *f, const struct rt_view *v,
                                         const struct rt_collection *coll)
{
    grpc_status_code code = router_check_filter(c, f);
    if (code != GRPC_STATUS_OK) return code;
    uint32_t S = coll->shards;
    uint32_t *deleted = calloc(S, sizeof *deleted);
    bool *more = calloc(S, sizeof *more);
    uint64_t total = 0;
    if (deleted == NULL || more == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (uint32_t s = 0; s < S; s++)
        more[s] = true;
    for (bool any = true; any;) {
        struct wctx w;
        if (winit(&w, r, c, v, coll) != 0) {
            wfree(&w);
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        w.filter = f;
        w.deleted = deleted;
        for (uint32_t s = 0; s < S; s++)
            if (more[s]) shard_call_want(&w.sc, s);
        shard_call_run(&w.sc);
        code = wfinish(&w, c);
        wfree(&w);
        if (code != GRPC_STATUS_OK) goto out;
        any = false;
        for (uint32_t s = 0; s < S; s++) {
            if (!more[s]) continue;
            total += deleted[s];
            more[s] = deleted[s] >= DELETE_FILTER_BATCH;
            any = any || more[s];
        }
    }
    Vecshard__V1__DeleteResponse resp = VECSHARD__V1__DELETE_RESPONSE__INIT;
    resp.deleted = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
    rpc_call_reply(c, &resp.base);
out:
    free(deleted);
    free(more);
    return code;
}

grpc_status_code router_delete(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__DeleteRequest *req = (const Vecshard__V1__DeleteRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    struct wctx w;
    uint32_t *count = NULL;
    memset(&w, 0, sizeof w);
    if (req->filter != NULL) {
        code = req->n_ids ? rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                                           "ids and filter are exclusive: send one")
                          : delete_by_filter(r, c, req->filter, v, coll);
        goto out;
    }
    if (req->n_ids == 0) {
        code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "ids is empty");
        goto out;
    }
    if (req->n_ids > ROUTER_MAX_POINTS) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "ids has %zu entries, the limit is %u per call", req->n_ids,
                              ROUTER_MAX_POINTS);
        goto out;
    }
    count = calloc(coll->shards, sizeof *count);
    if (count == NULL || winit(&w, r, c, v, coll) != 0) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_ids; i++)
        count[hash_shard(req->ids[i], coll->shards)]++;
    for (uint32_t s = 0; s < coll->shards; s++) {
        if (count[s] > 0 && (w.groups[s].ids = calloc(count[s], sizeof(uint64_t))) == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < req->n_ids; i++) {
        struct wgroup *g = &w.groups[hash_shard(req->ids[i], coll->shards)];
        g->ids[g->n_ids++] = req->ids[i];
    }
    wrun(&w);
    code = wfinish(&w, c);
    if (code == GRPC_STATUS_OK) {
        Vecshard__V1__DeleteResponse resp = VECSHARD__V1__DELETE_RESPONSE__INIT;
        resp.deleted = (uint32_t)req->n_ids;
        rpc_call_reply(c, &resp.base);
    }
out:
    free(count);
    wfree(&w);
    rt_release(v);
    return code;
}
