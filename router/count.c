/*
 * count.c — Count: the number of points matching a filter (docs/filtering.md).
 *
 * Like Search (search.c), through shard_call with the in-sync policy and one
 * ShardNode.Count per node for all the shards picked on it; a shard that
 * fails is re-sent to another in-sync replica. The counts of the shards that
 * answered are summed; coverage against min_coverage as for a search.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "router/router.h"
#include "router/shard_call.h"

struct cctx {
    const struct rt_collection *coll;
    const Vecshard__V1__CountRequest *req;
    uint64_t *count; /* by shard */
    struct shard_call sc;
};

/* shard_call send: one NodeCount for a node's shards. */
static int csend(void *arg, struct rpc_fanout *fo, struct rpc_channel *ch, const uint32_t *shards,
                 size_t n, uint64_t epoch, const struct rpc_opts *opts)
{
    struct cctx *x = arg;
    (void)epoch;
    Vecshard__V1__NodeCountRequest nr = VECSHARD__V1__NODE_COUNT_REQUEST__INIT;
    nr.collection = x->coll->name;
    nr.shards = (uint32_t *)shards;
    nr.n_shards = n;
    nr.filter = x->req->filter;
    return rpc_fanout_start(fo, ch, NODE_SVC "Count", &nr.base,
                            &vecshard__v1__node_count_response__descriptor, opts);
}

/* shard_call answered: keeps the shard's count when it answered with code 0. */
static bool canswered(void *arg, const ProtobufCMessage *m, size_t i, uint32_t shard,
                      const char *node, char *why, size_t whylen)
{
    struct cctx *x = arg;
    const Vecshard__V1__NodeCountResponse *resp = (const Vecshard__V1__NodeCountResponse *)m;
    const Vecshard__V1__ShardCount *r = NULL;
    if (resp != NULL && i < resp->n_shards && resp->shards[i]->shard == shard) r = resp->shards[i];
    if (r != NULL && r->code == 0) {
        x->count[shard] = r->count;
        return true;
    }
    if (r == NULL)
        snprintf(why, whylen, "node %s: reply without this shard", node);
    else
        snprintf(why, whylen, "node %s: %s: %s", node, rpc_status_name((grpc_status_code)r->code),
                 r->error);
    return false;
}

grpc_status_code router_count(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__CountRequest *req = (const Vecshard__V1__CountRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    struct cctx x = {.coll = coll, .req = req};
    uint32_t S = coll->shards, *missing = NULL;
    if (isnan(req->min_coverage) || req->min_coverage < 0 || req->min_coverage > 1) {
        code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "min_coverage is %g, must be 0..1 (0 = 1.0)",
                              (double)req->min_coverage);
        goto out;
    }
    code = router_check_filter(c, req->filter);
    if (code != GRPC_STATUS_OK) goto out;
    static const struct shard_call_policy pol = {
        .method = NODE_SVC "Count",
        .batch = true,
        .abort_on_bad_request = true,
        .max_tries = SHARD_CALL_MAX_TRIES,
    };
    static const struct shard_call_ops ops = {.send = csend, .answered = canswered};
    int rc = shard_call_init(&x.sc, r, v, coll, &pol, &ops, &x,
                             router_node_deadline(router_deadline(r, c)));
    x.count = calloc(S, sizeof *x.count);
    missing = calloc(S, sizeof *missing);
    if (rc != 0 || x.count == NULL || missing == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (uint32_t s = 0; s < S; s++)
        shard_call_want(&x.sc, s);
    code = shard_call_run(&x.sc);
    if (code != GRPC_STATUS_OK) {
        code = rpc_call_error(c, code, "node %s (%s): %s", x.sc.abort_node, x.sc.abort_addr,
                              x.sc.abort_details);
        goto out;
    }
    uint32_t ok, n_missing;
    code = shard_call_coverage(&x.sc, c, "count", req->min_coverage, missing, &n_missing, &ok);
    if (code != GRPC_STATUS_OK) goto out;
    uint64_t total = 0;
    for (uint32_t s = 0; s < S; s++)
        if (x.sc.unit[s].state == SHARD_CALL_DONE) total += x.count[s];
    Vecshard__V1__Coverage cov = VECSHARD__V1__COVERAGE__INIT;
    cov.shards_total = S;
    cov.shards_ok = ok;
    cov.missing_shards = missing;
    cov.n_missing_shards = n_missing;
    cov.partial = ok < S;
    Vecshard__V1__CountResponse resp = VECSHARD__V1__COUNT_RESPONSE__INIT;
    resp.count = total;
    resp.coverage = &cov;
    rpc_call_reply(c, &resp.base);
out:
    shard_call_free(&x.sc);
    free(x.count);
    free(missing);
    rt_release(v);
    return code;
}
