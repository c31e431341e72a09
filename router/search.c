/*
 * search.c — Search: fan-out to one replica per shard, retry, bounded k-way
 * merge (docs/design.md §5).
 *
 * 1. Validate the whole request (nothing is sent for a bad one).
 * 2. Through shard_call (in-sync policy, batched): pick one in-sync replica
 *    per shard on a registered node (fewest outstanding calls, ties
 *    round-robin: router_pick_replica), group the shards by node and send
 *    each node ONE ShardNode.Search with all the queries and its shards;
 *    every call runs concurrently under the node deadline (client deadline
 *    minus a small margin).
 * 3. As replies land: a shard answered with code 0 is kept (its hits stay in
 *    the fan-out's reply until the end, so nothing is copied); a failed call
 *    or a shard entry with an error code is re-sent at once to another
 *    in-sync replica not tried yet, while the deadline allows.
 * 4. Coverage against min_coverage (the fan-out width, the merge time and
 *    a partial answer are counted in the router's metrics), then per query a k-way merge of the
 *    answering shards' sorted top-k lists with a heap of one cursor per
 *    shard (ascending distance, ties by ascending id). The reply borrows the
 *    nodes' ScoredPoints, so payloads and vectors are not copied either.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hnsw/hnsw.h"
#include "common/metrics/metrics.h"
#include "common/util/clock.h"
#include "router/router.h"
#include "router/shard_call.h"

struct sctx {
    const struct rt_collection *coll;
    const Vecshard__V1__SearchRequest *req;
    uint32_t ef; /* each shard's (shard_ef) */
    const Vecshard__V1__ShardSearchResult **res; /* by shard; owned by the fan-out */
    struct shard_call sc;
};

/*
 * The ef each shard searches with (docs/router.md, "Per-shard ef"). A shard
 * holds about 1/S of the points, and the merge keeps the best k of S lists,
 * so S shards at the requested ef find more of the true top-k than one
 * graph of all the points would. Each shard therefore runs
 * max(k, ceil(ef / S^(1/4))): measured on MNIST (3 shards, ef 40) that
 * stays at or above the single graph's recall at the requested ef, where
 * the narrower ceil(ef / cbrt(S)) fell a hair below it (0.9972 against
 * 0.9973-0.9975, docs/router.md "Per-shard ef"). Unscaled: one shard,
 * automatic ef (target_recall) and filtered searches (a filter thins the
 * graph; its plan needs the width). ef 0 scales the collection's ef_search.
 */
static uint32_t shard_ef(const struct sctx *x)
{
    const Vecshard__V1__SearchRequest *q = x->req;
    uint32_t S = x->coll->shards;
    uint32_t ef = q->ef != 0 ? q->ef : x->coll->ef_search;
    if (S < 2 || q->target_recall > 0 || q->filter != NULL || ef == 0) return q->ef;
    uint32_t e = (uint32_t)ceil((double)ef / sqrt(sqrt((double)S)));
    if (e < q->k) e = q->k;
    return e < ef ? e : q->ef;
}

/* shard_call send: one NodeSearch with all the queries for a node's shards. */
static int ssend(void *arg, struct rpc_fanout *fo, struct rpc_channel *ch, const uint32_t *shards,
                 size_t n, uint64_t epoch, const struct rpc_opts *opts)
{
    struct sctx *x = arg;
    (void)epoch;
    Vecshard__V1__NodeSearchRequest nr = VECSHARD__V1__NODE_SEARCH_REQUEST__INIT;
    nr.collection = x->coll->name;
    nr.shards = (uint32_t *)shards;
    nr.n_shards = n;
    nr.queries = x->req->queries;
    nr.n_queries = x->req->n_queries;
    nr.k = x->req->k;
    nr.ef = x->ef;
    nr.with_payload = x->req->with_payload;
    nr.with_vector = x->req->with_vector;
    nr.filter = x->req->filter;
    nr.with_attributes = x->req->with_attributes;
    nr.debug = x->req->debug && x->req->filter != NULL;
    nr.target_recall = x->req->target_recall;
    return rpc_fanout_start(fo, ch, NODE_SVC "Search", &nr.base,
                            &vecshard__v1__node_search_response__descriptor, opts);
}

/* shard_call answered: keeps shard's result when it has every query. */
static bool sanswered(void *arg, const ProtobufCMessage *m, size_t i, uint32_t shard,
                      const char *node, char *why, size_t whylen)
{
    struct sctx *x = arg;
    const Vecshard__V1__NodeSearchResponse *resp = (const Vecshard__V1__NodeSearchResponse *)m;
    const Vecshard__V1__ShardSearchResult *r = NULL;
    if (resp != NULL && i < resp->n_shards && resp->shards[i]->shard == shard) r = resp->shards[i];
    if (r != NULL && r->code == 0 && r->n_results == x->req->n_queries) {
        x->res[shard] = r;
        return true;
    }
    if (r == NULL)
        snprintf(why, whylen, "node %s: reply without this shard", node);
    else
        snprintf(why, whylen, "node %s: %s: %s", node, rpc_status_name((grpc_status_code)r->code),
                 r->error);
    return false;
}

/* True when shard s answered. */
static bool shard_ok(const struct sctx *x, uint32_t s)
{
    return x->sc.unit[s].state == SHARD_CALL_DONE;
}

/* A merge cursor: the next hit of one shard's list for the current query. */
struct cursor {
    Vecshard__V1__ScoredPoint **hits;
    size_t n, pos;
};

/* True when hit a sorts before hit b (distance, then id). */
static bool hit_less(const Vecshard__V1__ScoredPoint *a, const Vecshard__V1__ScoredPoint *b)
{
    return a->distance < b->distance || (a->distance == b->distance && a->id < b->id);
}

static bool cur_less(const struct cursor *a, const struct cursor *b)
{
    return hit_less(a->hits[a->pos], b->hits[b->pos]);
}

/* Restores the min-heap property below position i. */
static void sift_down(struct cursor *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && cur_less(&h[l], &h[m])) m = l;
        if (l + 1 < n && cur_less(&h[l + 1], &h[m])) m = l + 1;
        if (m == i) return;
        struct cursor t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Merges query q's lists into out (room for k); returns the count. */
static size_t merge_query(struct sctx *x, size_t q, struct cursor *heap,
                          Vecshard__V1__ScoredPoint **out)
{
    size_t n = 0;
    for (uint32_t s = 0; s < x->coll->shards; s++) {
        if (!shard_ok(x, s)) continue;
        const Vecshard__V1__QueryResult *qr = x->res[s]->results[q];
        if (qr->n_hits > 0) heap[n++] = (struct cursor){qr->hits, qr->n_hits, 0};
    }
    for (size_t i = n / 2; i-- > 0;)
        sift_down(heap, n, i);
    size_t got = 0;
    while (n > 0 && got < x->req->k) {
        out[got++] = heap[0].hits[heap[0].pos++];
        if (heap[0].pos == heap[0].n) heap[0] = heap[--n];
        sift_down(heap, n, 0);
    }
    return got;
}

/* Validates the request against the collection. */
static grpc_status_code check_request(struct rpc_call *c, const Vecshard__V1__SearchRequest *req,
                                      const struct rt_collection *coll)
{
    if (req->n_queries == 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "queries is empty");
    if (req->n_queries > ROUTER_MAX_QUERIES)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "queries has %zu entries, the limit is %u per call", req->n_queries,
                              ROUTER_MAX_QUERIES);
    if (req->k == 0 || req->k > ROUTER_MAX_K)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "k is %u, must be 1..%u", req->k,
                              ROUTER_MAX_K);
    if (req->ef > ROUTER_MAX_EF)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "ef is %u, must be 0..%u", req->ef,
                              ROUTER_MAX_EF);
    char terr[HNSW_ERR_MAX];
    if (hnsw_target_recall_check(req->target_recall, req->ef, terr) != HNSW_OK)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", terr);
    if (isnan(req->min_coverage) || req->min_coverage < 0 || req->min_coverage > 1)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "min_coverage is %g, must be 0..1 (0 = 1.0)",
                              (double)req->min_coverage);
    for (size_t i = 0; i < req->n_queries; i++) {
        char what[48];
        snprintf(what, sizeof what, "queries[%zu].vector", i);
        grpc_status_code code =
            router_check_vector(c, what, req->queries[i]->vector, req->queries[i]->n_vector, coll);
        if (code != GRPC_STATUS_OK) return code;
    }
    return router_check_filter(c, req->filter);
}

/* Builds and sets the reply (coverage already checked). */
static grpc_status_code reply(struct sctx *x, struct rpc_call *c, uint32_t ok, uint32_t *missing,
                              uint32_t n_missing)
{
    size_t nq = x->req->n_queries, total = 0;
    for (size_t q = 0; q < nq; q++) {
        size_t avail = 0;
        for (uint32_t s = 0; s < x->coll->shards; s++)
            if (shard_ok(x, s)) avail += x->res[s]->results[q]->n_hits;
        total += avail < x->req->k ? avail : x->req->k;
    }
    Vecshard__V1__QueryResult *qr = calloc(nq, sizeof *qr);
    Vecshard__V1__QueryResult **qrp = calloc(nq, sizeof *qrp);
    Vecshard__V1__FilterPlan **plans = calloc(x->coll->shards + 1, sizeof *plans);
    size_t nplans = 0;
    Vecshard__V1__ScoredPoint **hits = calloc(total + 1, sizeof *hits);
    struct cursor *heap = calloc(x->coll->shards, sizeof *heap);
    grpc_status_code code = GRPC_STATUS_OK;
    if (qr == NULL || qrp == NULL || hits == NULL || heap == NULL || plans == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory merging results");
        goto out;
    }
    size_t used = 0;
    for (size_t q = 0; q < nq; q++) {
        vecshard__v1__query_result__init(&qr[q]);
        qr[q].hits = hits + used;
        qr[q].n_hits = merge_query(x, q, heap, hits + used);
        used += qr[q].n_hits;
        qrp[q] = &qr[q];
    }
    Vecshard__V1__Coverage cov = VECSHARD__V1__COVERAGE__INIT;
    cov.shards_total = x->coll->shards;
    cov.shards_ok = ok;
    cov.missing_shards = missing;
    cov.n_missing_shards = n_missing;
    cov.partial = ok < x->coll->shards;
    Vecshard__V1__SearchResponse resp = VECSHARD__V1__SEARCH_RESPONSE__INIT;
    resp.results = qrp;
    resp.n_results = nq;
    resp.coverage = &cov;
    for (uint32_t s = 0; s < x->coll->shards; s++) /* borrowed from the nodes' replies */
        if (shard_ok(x, s) && x->res[s]->plan != NULL) plans[nplans++] = x->res[s]->plan;
    resp.plans = plans;
    resp.n_plans = nplans;
    Vecshard__V1__AutoEf ae = VECSHARD__V1__AUTO_EF__INIT;
    if (x->req->target_recall > 0) {
        /* The widest ef and the lowest estimate among the answering shards. */
        ae.estimated_recall = 1;
        for (uint32_t s = 0; s < x->coll->shards; s++) {
            if (!shard_ok(x, s)) continue;
            if (x->res[s]->ef_used > ae.ef) ae.ef = x->res[s]->ef_used;
            if (x->res[s]->estimated_recall < ae.estimated_recall)
                ae.estimated_recall = x->res[s]->estimated_recall;
        }
        resp.auto_ef = &ae;
    }
    rpc_call_reply(c, &resp.base);
out:
    free(plans);
    free(qr);
    free(qrp);
    free(hits);
    free(heap);
    return code;
}

/* True when shard s has an in-sync replica on r->local_node, registered. */
static bool local_replica(const struct router *r, const struct rt_view *v,
                          const struct rt_collection *coll, uint32_t s)
{
    const struct cluster_shard *sh = &coll->shard[s];
    if (!sh->present || rt_view_node(v, r->local_node) == NULL) return false;
    for (uint32_t i = 0; i < sh->in_sync.n; i++)
        if (strcmp(sh->in_sync.v[i], r->local_node) == 0) return true;
    return false;
}

bool router_search_cheap(const ProtobufCMessage *m, void *u)
{
    const struct router_method *rm = u;
    struct router *r = rm->r;
    const Vecshard__V1__SearchRequest *req = (const Vecshard__V1__SearchRequest *)m;
    if (r->local_node == NULL || req->n_queries != 1 || req->filter != NULL ||
        req->target_recall != 0 || req->k == 0)
        return false;
    struct rt_view *v = rt_acquire(r->rt);
    const struct rt_collection *coll = rt_view_collection(v, req->collection);
    bool cheap = coll != NULL && coll->shards > 0;
    if (cheap) {
        struct sctx x = {.coll = coll, .req = req};
        uint32_t ef = shard_ef(&x);
        if (ef == 0) ef = coll->ef_search; /* unscaled ef 0: the nodes use the default */
        cheap = (uint64_t)coll->shards * (ef > req->k ? ef : req->k) <= ROUTER_CHEAP_WORK;
    }
    for (uint32_t s = 0; cheap && s < coll->shards; s++)
        cheap = local_replica(r, v, coll, s);
    rt_release(v);
    return cheap;
}

grpc_status_code router_search(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__SearchRequest *req = (const Vecshard__V1__SearchRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    struct sctx x = {.coll = coll, .req = req};
    uint32_t S = coll->shards;
    uint32_t *missing = NULL;
    code = check_request(c, req, coll);
    if (code != GRPC_STATUS_OK) goto out;
    x.ef = shard_ef(&x);
    static const struct shard_call_policy pol = {
        .method = NODE_SVC "Search",
        .batch = true,
        .abort_on_bad_request = true,
        .max_tries = SHARD_CALL_MAX_TRIES,
        .hedge = true,
    };
    static const struct shard_call_ops ops = {.send = ssend, .answered = sanswered};
    int rc = shard_call_init(&x.sc, r, v, coll, &pol, &ops, &x,
                             router_node_deadline(router_deadline(r, c)));
    x.res = calloc(S, sizeof *x.res);
    missing = calloc(S, sizeof *missing);
    if (rc != 0 || x.res == NULL || missing == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (uint32_t s = 0; s < S; s++)
        shard_call_want(&x.sc, s);
    code = shard_call_run(&x.sc);
    metrics_observe(r->m.fanout_shards, NULL, S);
    if (code != GRPC_STATUS_OK) {
        code = rpc_call_error(c, code, "node %s (%s): %s", x.sc.abort_node, x.sc.abort_addr,
                              x.sc.abort_details);
        goto out;
    }
    uint32_t ok, n_missing;
    code = shard_call_coverage(&x.sc, c, "search", req->min_coverage, missing, &n_missing, &ok);
    router_request_search(req->k, req->ef, S, ok);
    if (code != GRPC_STATUS_OK) goto out;
    int64_t t0 = clock_mono_us();
    code = reply(&x, c, ok, missing, n_missing);
    metrics_observe(r->m.merge_seconds, NULL, (double)(clock_mono_us() - t0) / 1e6);
    if (code == GRPC_STATUS_OK && ok < S) metrics_add(r->m.partial, NULL, 1);
out:
    shard_call_free(&x.sc);
    free(x.res);
    free(missing);
    rt_release(v);
    return code;
}
