/*
 * search.c — Search: fan-out to one replica per shard, retry, bounded k-way
 * merge (docs/design.md §5).
 *
 * 1. Validate the whole request (nothing is sent for a bad one).
 * 2. Pick one in-sync replica per shard on a registered node (fewest
 *    outstanding calls, ties round-robin: router_pick_replica), group the
 *    shards by node and send each node ONE ShardNode.Search with all the
 *    queries and its shards; every call runs concurrently on one rpc_fanout
 *    under the node deadline (client deadline minus a small margin).
 * 3. As replies land: a shard answered with code 0 is kept (its hits stay in
 *    the fan-out's reply until the end, so nothing is copied); a failed call
 *    or a shard entry with an error code is re-sent at once to another
 *    in-sync replica not tried yet, while the deadline allows.
 * 4. Coverage against min_coverage, then per query a k-way merge of the
 *    answering shards' sorted top-k lists with a heap of one cursor per
 *    shard (ascending distance, ties by ascending id). The reply borrows the
 *    nodes' ScoredPoints, so payloads and vectors are not copied either.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"
#include "router/router.h"

#define MAX_TRIES 16 /* replicas tried per shard */

enum shard_state { SH_PENDING, SH_RUNNING, SH_OK, SH_MISSING };

/* One shard of the collection during a search. */
struct sstate {
    enum shard_state state;
    const char *tried[MAX_TRIES]; /* node ids (borrowed from the view) */
    int n_tried;
    const Vecshard__V1__ShardSearchResult *res; /* owned by the fan-out */
    char why[200];                              /* last failure */
};

/* One node call: the node and the shards it carries. */
struct scall {
    const struct rt_node *node;
    uint32_t *shards;
    size_t n;
    bool finished; /* its reply was handled (and its load released) */
};

struct sctx {
    struct router *r;
    const struct rt_view *v;
    const struct rt_collection *coll;
    const Vecshard__V1__SearchRequest *req;
    struct sstate *sh;
    int *extra; /* shards this request assigned per node (index in v->nodes) */
    struct rpc_fanout *fo;
    struct scall *calls;
    int n_calls, cap_calls;
    int64_t deadline;
};

/* Assigns the listed shards to replicas and starts one call per node. */
static void assign(struct sctx *x, const uint32_t *list, size_t n)
{
    size_t nn = x->v->n_nodes;
    uint32_t **per = calloc(nn + 1, sizeof *per);
    size_t *cnt = calloc(nn + 1, sizeof *cnt);
    if (per == NULL || cnt == NULL) goto oom;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = list[i];
        struct sstate *st = &x->sh[s];
        char why[200];
        const struct rt_node *node =
            st->n_tried < MAX_TRIES ? router_pick_replica(x->r, x->v, x->coll, s, st->tried,
                                                          st->n_tried, x->extra, why, sizeof why)
                                    : NULL;
        if (node == NULL) {
            st->state = SH_MISSING;
            if (st->why[0] == '\0' || st->n_tried == 0)
                snprintf(st->why, sizeof st->why, "no live in-sync replica: %.170s", why);
            continue;
        }
        size_t k = (size_t)(node - x->v->nodes);
        if (per[k] == NULL && (per[k] = calloc(n, sizeof **per)) == NULL) goto oom;
        per[k][cnt[k]++] = s;
        st->tried[st->n_tried++] = node->id;
        st->state = SH_RUNNING;
        x->extra[k]++;
    }
    struct rpc_opts opts = {.deadline_ms = x->deadline};
    for (size_t k = 0; k < nn; k++) {
        if (cnt[k] == 0) continue;
        const struct rt_node *node = &x->v->nodes[k];
        Vecshard__V1__NodeSearchRequest nr = VECSHARD__V1__NODE_SEARCH_REQUEST__INIT;
        nr.collection = x->coll->name;
        nr.shards = per[k];
        nr.n_shards = cnt[k];
        nr.queries = x->req->queries;
        nr.n_queries = x->req->n_queries;
        nr.k = x->req->k;
        nr.ef = x->req->ef;
        nr.with_payload = x->req->with_payload;
        nr.with_vector = x->req->with_vector;
        struct rpc_channel *ch = rpc_client_channel(x->r->client, node->addr);
        int idx = -1;
        if (x->n_calls == x->cap_calls) {
            int cap = x->cap_calls ? 2 * x->cap_calls : 16;
            struct scall *nc = realloc(x->calls, (size_t)cap * sizeof *nc);
            if (nc == NULL) goto oom;
            x->calls = nc;
            x->cap_calls = cap;
        }
        if (ch != NULL)
            idx = rpc_fanout_start(x->fo, ch, NODE_SVC "Search", &nr.base,
                                   &vecshard__v1__node_search_response__descriptor, &opts);
        if (idx < 0 || idx != x->n_calls) {
            for (size_t i = 0; i < cnt[k]; i++) {
                x->sh[per[k][i]].state = SH_MISSING;
                snprintf(x->sh[per[k][i]].why, sizeof x->sh[0].why, "out of memory");
            }
            free(per[k]);
            continue;
        }
        x->calls[x->n_calls++] = (struct scall){node, per[k], cnt[k], false};
        per[k] = NULL;
        router_load_add(x->r, node->id, 1);
    }
    free(per);
    free(cnt);
    return;
oom:
    for (size_t k = 0; per != NULL && k < nn; k++)
        free(per[k]);
    free(per);
    free(cnt);
    for (size_t i = 0; i < n; i++) {
        x->sh[list[i]].state = SH_MISSING;
        snprintf(x->sh[list[i]].why, sizeof x->sh[0].why, "out of memory");
    }
}

/*
 * Handles the end of call idx; shards to retry are appended to retry.
 * Returns OK, or a call-level error that must fail the whole search
 * (INVALID_ARGUMENT / RESOURCE_EXHAUSTED from a node, set on c).
 */
static grpc_status_code on_reply(struct sctx *x, struct rpc_call *c, int idx, uint32_t *retry,
                                 size_t *n_retry)
{
    struct scall *call = &x->calls[idx];
    const struct rpc_status *st = rpc_fanout_status(x->fo, idx);
    call->finished = true;
    router_load_add(x->r, call->node->id, -1);
    const Vecshard__V1__NodeSearchResponse *resp =
        (const Vecshard__V1__NodeSearchResponse *)rpc_fanout_response(x->fo, idx);
    if (st->code == GRPC_STATUS_INVALID_ARGUMENT || st->code == GRPC_STATUS_RESOURCE_EXHAUSTED)
        return rpc_call_error(c, st->code, "node %s (%s): %s", call->node->id, call->node->addr,
                              st->details);
    for (size_t i = 0; i < call->n; i++) {
        uint32_t s = call->shards[i];
        struct sstate *ss = &x->sh[s];
        const Vecshard__V1__ShardSearchResult *r = NULL;
        if (st->code == GRPC_STATUS_OK && resp != NULL && i < resp->n_shards &&
            resp->shards[i]->shard == s)
            r = resp->shards[i];
        if (r != NULL && r->code == 0 && r->n_results == x->req->n_queries) {
            ss->state = SH_OK;
            ss->res = r;
            continue;
        }
        if (st->code != GRPC_STATUS_OK)
            snprintf(ss->why, sizeof ss->why, "node %s: %s: %.120s", call->node->id,
                     rpc_status_name(st->code), st->details);
        else if (r == NULL)
            snprintf(ss->why, sizeof ss->why, "node %s: reply without this shard", call->node->id);
        else
            snprintf(ss->why, sizeof ss->why, "node %s: %s: %.120s", call->node->id,
                     rpc_status_name((grpc_status_code)r->code), r->error);
        log_debug("retrying search shard", "collection=%s shard=%u failed_on=%s error=%s",
                  x->coll->name, s, call->node->id, log_quote(ss->why));
        ss->state = SH_PENDING;
        retry[(*n_retry)++] = s;
    }
    return GRPC_STATUS_OK;
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
        if (x->sh[s].state != SH_OK) continue;
        const Vecshard__V1__QueryResult *qr = x->sh[s].res->results[q];
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
    return GRPC_STATUS_OK;
}

/* Builds and sets the reply (coverage already checked). */
static grpc_status_code reply(struct sctx *x, struct rpc_call *c, uint32_t ok, uint32_t *missing,
                              uint32_t n_missing)
{
    size_t nq = x->req->n_queries, total = 0;
    for (size_t q = 0; q < nq; q++) {
        size_t avail = 0;
        for (uint32_t s = 0; s < x->coll->shards; s++)
            if (x->sh[s].state == SH_OK) avail += x->sh[s].res->results[q]->n_hits;
        total += avail < x->req->k ? avail : x->req->k;
    }
    Vecshard__V1__QueryResult *qr = calloc(nq, sizeof *qr);
    Vecshard__V1__QueryResult **qrp = calloc(nq, sizeof *qrp);
    Vecshard__V1__ScoredPoint **hits = calloc(total + 1, sizeof *hits);
    struct cursor *heap = calloc(x->coll->shards, sizeof *heap);
    grpc_status_code code = GRPC_STATUS_OK;
    if (qr == NULL || qrp == NULL || hits == NULL || heap == NULL) {
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
    rpc_call_reply(c, &resp.base);
out:
    free(qr);
    free(qrp);
    free(hits);
    free(heap);
    return code;
}

grpc_status_code router_search(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__SearchRequest *req = (const Vecshard__V1__SearchRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    struct sctx x = {.r = r, .v = v, .coll = coll, .req = req};
    uint32_t S = coll->shards;
    uint32_t *list = NULL, *missing = NULL;
    code = check_request(c, req, coll);
    if (code != GRPC_STATUS_OK) goto out;
    x.deadline = router_node_deadline(router_deadline(r, c));
    x.sh = calloc(S, sizeof *x.sh);
    x.extra = calloc(v->n_nodes + 1, sizeof *x.extra);
    list = calloc(S, sizeof *list);
    missing = calloc(S, sizeof *missing);
    x.fo = rpc_fanout_create();
    if (x.sh == NULL || x.extra == NULL || list == NULL || missing == NULL || x.fo == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (uint32_t s = 0; s < S; s++)
        list[s] = s;
    assign(&x, list, S);
    for (;;) {
        int idx = rpc_fanout_next(x.fo, x.deadline);
        if (idx < 0) break;
        size_t n_retry = 0;
        code = on_reply(&x, c, idx, list, &n_retry);
        if (code != GRPC_STATUS_OK) goto out;
        if (n_retry > 0) {
            if (rpc_now_ms() < x.deadline) {
                assign(&x, list, n_retry);
            } else {
                for (size_t i = 0; i < n_retry; i++)
                    x.sh[list[i]].state = SH_MISSING;
            }
        }
    }
    /* Calls still running at the deadline: their shards are missing. */
    for (int i = 0; i < x.n_calls; i++) {
        if (x.calls[i].finished) continue;
        for (size_t j = 0; j < x.calls[i].n; j++) {
            struct sstate *ss = &x.sh[x.calls[i].shards[j]];
            if (ss->state != SH_RUNNING) continue;
            ss->state = SH_MISSING;
            snprintf(ss->why, sizeof ss->why, "node %s: no answer before the deadline",
                     x.calls[i].node->id);
        }
    }
    uint32_t ok = 0, n_missing = 0;
    for (uint32_t s = 0; s < S; s++) {
        if (x.sh[s].state == SH_OK)
            ok++;
        else
            missing[n_missing++] = s;
    }
    double mc = req->min_coverage == 0 ? 1.0 : (double)req->min_coverage;
    uint32_t need = (uint32_t)ceil(mc * S - 1e-9);
    if (ok < need) {
        struct router_msg msg = {0};
        router_msg_add(&msg, "search covered %u of %u shards, min_coverage %g needs %u: missing ",
                       ok, S, mc, need);
        for (uint32_t i = 0; i < n_missing; i++)
            router_msg_add(&msg, "%sshard %u (%s)", i ? ", " : "", missing[i],
                           x.sh[missing[i]].why[0] ? x.sh[missing[i]].why : "unknown");
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE, "%s", msg.buf);
        goto out;
    }
    code = reply(&x, c, ok, missing, n_missing);
out:
    if (x.fo != NULL) rpc_fanout_destroy(x.fo);
    for (int i = 0; i < x.n_calls; i++) {
        if (!x.calls[i].finished) router_load_add(r, x.calls[i].node->id, -1);
        free(x.calls[i].shards);
    }
    free(x.calls);
    free(x.sh);
    free(x.extra);
    free(list);
    free(missing);
    rt_release(v);
    return code;
}
