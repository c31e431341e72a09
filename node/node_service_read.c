/*
 * node_service_read.c — the read handlers: Search (several shards x several
 * queries, per-shard failures reported per shard) and Get (points of one
 * shard by id). Replies point into the replica's result buffers; check order
 * and reply ownership: node_service.c.
 */
#define _GNU_SOURCE
#include "node/node_service.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/metrics/metrics.h"
#include "common/util/log.h"
#include "node/node_service_internal.h"
#include "common/filter/filter.h"
#include "node/storage/replica.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

/* Upper bound on queries x shards x k hits built for one Search reply. */
#define MAX_REPLY_HITS (16u << 20)

/* ------------------------------------------------------------ Search */

/* INVALID_ARGUMENT unless every query has dim floats that pass hnsw_vector_check. */
static grpc_status_code check_queries(struct rpc_call *c,
                                      const Vecshard__V1__NodeSearchRequest *req,
                                      const struct node_collection *coll)
{
    for (size_t q = 0; q < req->n_queries; q++) {
        const Vecshard__V1__Query *qu = req->queries[q];
        size_t n = qu != NULL ? qu->n_vector : 0;
        if (n != coll->dim)
            return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                                  "queries[%zu].vector has %zu floats, collection dim is %u", q, n,
                                  coll->dim);
        char what[48], err[HNSW_ERR_MAX];
        snprintf(what, sizeof what, "queries[%zu].vector", q);
        if (hnsw_vector_check(coll->metric, coll->dim, qu->vector, what, err) != HNSW_OK)
            return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
    }
    return GRPC_STATUS_OK;
}

static void *scratch_alloc(void *ctx, size_t count, size_t size)
{
    return node_svc_scratch_alloc(ctx, count, size);
}

/* A point's attribute map for a reply, from its blob (scratch memory). -1 on ENOMEM. */
static int fill_attrs(struct node_svc_scratch *s, const struct replica_point *p,
                      const ProtobufCMessageDescriptor *desc, void *out, size_t *n)
{
    if (p->attrs == NULL) return 0;
    return attrs_to_pb(p->attrs, p->attrs_len, desc, scratch_alloc, s, (attrs_entry ***)out, n)
               ? 0
               : -1;
}

/*
 * Compiles the request's filter into *out (NULL when there is none);
 * INVALID_ARGUMENT naming the bad node.
 */
static grpc_status_code compile_filter(struct rpc_call *c, const Vecshard__V1__Filter *f,
                                       struct filter **out)
{
    *out = NULL;
    if (f == NULL) return GRPC_STATUS_OK;
    char err[FILTER_ERR_MAX];
    int rc = filter_compile(f, "filter", out, err, sizeof err);
    if (rc == -2) return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", err);
    if (rc) return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
    return GRPC_STATUS_OK;
}

/* Copies replica hits into a QueryResult (pointing into res). -1 on ENOMEM. */
static int fill_hits(struct node_svc_scratch *s, const struct replica_results *res, uint32_t dim,
                     Vecshard__V1__QueryResult *qr)
{
    vecshard__v1__query_result__init(qr);
    if (res->n == 0) return 0;
    Vecshard__V1__ScoredPoint *sp = node_svc_scratch_alloc(s, res->n, sizeof *sp);
    Vecshard__V1__ScoredPoint **ptrs = node_svc_scratch_alloc(s, res->n, sizeof *ptrs);
    if (sp == NULL || ptrs == NULL) return -1;
    for (uint32_t i = 0; i < res->n; i++) {
        const struct replica_point *p = &res->points[i];
        vecshard__v1__scored_point__init(&sp[i]);
        sp[i].id = p->id;
        sp[i].distance = p->dist;
        if (p->payload != NULL) {
            sp[i].payload.data = (uint8_t *)p->payload;
            sp[i].payload.len = p->payload_len;
        }
        if (p->vector != NULL) {
            sp[i].vector = (float *)p->vector;
            sp[i].n_vector = dim;
        }
        if (fill_attrs(s, p, &vecshard__v1__scored_point__attributes_entry__descriptor,
                       &sp[i].attributes, &sp[i].n_attributes) != 0) return -1;
        ptrs[i] = &sp[i];
    }
    qr->hits = ptrs;
    qr->n_hits = res->n;
    return 0;
}

/* The debug plan of a shard's first query (scratch memory). -1 on ENOMEM. */
static int fill_plan(struct node_svc_scratch *s, uint32_t shard, const struct replica_plan *p,
                     Vecshard__V1__FilterPlan **out)
{
    Vecshard__V1__FilterPlan *fp = node_svc_scratch_alloc(s, 1, sizeof *fp);
    if (fp == NULL) return -1;
    vecshard__v1__filter_plan__init(fp);
    fp->shard = shard;
    fp->plan = (char *)(p->plan ? p->plan : "unfiltered");
    fp->points = p->points;
    fp->estimated_matches = p->estimated;
    fp->scanned = p->scanned;
    fp->ef = p->ef;
    *out = fp;
    return 0;
}

bool node_svc_search_cheap(const ProtobufCMessage *msg, void *user)
{
    (void)user;
    const Vecshard__V1__NodeSearchRequest *req = (const Vecshard__V1__NodeSearchRequest *)msg;
    if (req->filter != NULL || req->target_recall != 0 || req->ef == 0 || req->debug) return false;
    uint64_t width = req->ef > req->k ? req->ef : req->k;
    return (uint64_t)req->n_shards * req->n_queries * width <= NODE_SVC_CHEAP_WORK;
}

/* Search: several shards x several queries; per-shard failures stay per shard. */
grpc_status_code node_svc_search(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__NodeSearchRequest *req = (const Vecshard__V1__NodeSearchRequest *)msg;
    const struct node_config *cfg = svc->cfg;
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->n_shards == 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "shards is empty");
    if (req->n_queries == 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "queries is empty");
    if (req->k < 1 || req->k > cfg->max_k)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "k is %u, must be 1..%u", req->k,
                              cfg->max_k);
    if (req->ef > cfg->max_ef)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "ef is %u, must be at most %u",
                              req->ef, cfg->max_ef);
    char terr[HNSW_ERR_MAX];
    if (hnsw_target_recall_check(req->target_recall, req->ef, terr) != HNSW_OK)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", terr);
    struct node_collection coll;
    if (!node_shards_collection(svc->reg, req->collection, &coll))
        return rpc_call_error(c, GRPC_STATUS_NOT_FOUND, "collection \"%s\" not found on this node",
                              req->collection);
    code = check_queries(c, req, &coll);
    if (code != GRPC_STATUS_OK) return code;
    if ((uint64_t)req->n_queries * req->n_shards * req->k > MAX_REPLY_HITS)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "queries (%zu) x shards (%zu) x k (%u) is over %u hits in one reply",
                              req->n_queries, req->n_shards, req->k, MAX_REPLY_HITS);

    struct filter *filter;
    code = compile_filter(c, req->filter, &filter);
    if (code != GRPC_STATUS_OK) return code;

    size_t nres = req->n_shards * req->n_queries;
    struct node_svc_scratch s = {0};
    struct replica_results *results = calloc(nres, sizeof *results);
    Vecshard__V1__ShardSearchResult *sr = node_svc_scratch_alloc(&s, req->n_shards, sizeof *sr);
    Vecshard__V1__ShardSearchResult **srp = node_svc_scratch_alloc(&s, req->n_shards, sizeof *srp);
    if (results == NULL || sr == NULL || srp == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nres; i++)
        replica_results_init(&results[i]);

    for (size_t si = 0; si < req->n_shards; si++) {
        uint32_t shard = req->shards[si];
        vecshard__v1__shard_search_result__init(&sr[si]);
        srp[si] = &sr[si];
        sr[si].shard = shard;
        struct node_shard_view v;
        struct node_shard *e = node_shards_acquire(svc->reg, req->collection, shard, &v);
        char *emsg = node_svc_scratch_alloc(&s, REPLICA_ERR_MAX, 1);
        if (emsg == NULL) {
            node_shards_release(svc->reg, e);
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        if (e != NULL && v.state == NODE_STATE_DAMAGED) {
            sr[si].code = GRPC_STATUS_DATA_LOSS;
            snprintf(emsg, REPLICA_ERR_MAX, "replica %s/%u is DAMAGED: %.420s", req->collection,
                     shard, v.reason);
            sr[si].error = emsg;
            node_shards_release(svc->reg, e);
            continue;
        }
        if (e == NULL || v.rep == NULL) {
            sr[si].code = e == NULL ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_UNAVAILABLE;
            snprintf(emsg, REPLICA_ERR_MAX, "shard %u of collection \"%s\" is %s on this node",
                     shard, req->collection,
                     e == NULL ? "not hosted"
                     : v.state == NODE_STATE_RECOVERING
                         ? "recovering (a full transfer into it is running)"
                         : "still loading");
            sr[si].error = emsg;
            node_shards_release(svc->reg, e);
            continue;
        }
        Vecshard__V1__QueryResult *qr = node_svc_scratch_alloc(&s, req->n_queries, sizeof *qr);
        Vecshard__V1__QueryResult **qrp = node_svc_scratch_alloc(&s, req->n_queries, sizeof *qrp);
        if (qr == NULL || qrp == NULL) {
            node_shards_release(svc->reg, e);
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        for (size_t q = 0; q < req->n_queries; q++) {
            code = node_svc_check_deadline(c, "while searching");
            if (code != GRPC_STATUS_OK) {
                node_shards_release(svc->reg, e);
                goto out;
            }
            char field[48];
            snprintf(field, sizeof field, "queries[%zu].vector", q);
            struct replica_query rq = {
                .vector = req->queries[q]->vector,
                .len = (uint32_t)req->queries[q]->n_vector,
                .k = req->k,
                .ef = req->ef,
                .with_payload = req->with_payload,
                .with_vector = req->with_vector,
                .with_attributes = req->with_attributes,
                .field = field,
                .filter = filter,
                .target_recall = req->target_recall,
            };
            struct replica_plan plan;
            if (req->debug && q == 0) rq.plan = &plan;
            struct replica_results *res = &results[si * req->n_queries + q];
            int rc = replica_search(v.rep, &rq, res, emsg);
            if (rc != REPLICA_OK) {
                sr[si].code = (uint32_t)replica_code_grpc(rc);
                sr[si].error = emsg;
                break;
            }
            if (fill_hits(&s, res, v.coll.dim, &qr[q]) != 0 ||
                (rq.plan && fill_plan(&s, shard, &plan, &sr[si].plan) != 0)) {
                node_shards_release(svc->reg, e);
                code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
            }
            qrp[q] = &qr[q];
            sr[si].ef_used = res->ef_used;
            sr[si].estimated_recall = res->est_recall;
        }
        if (sr[si].code == 0) {
            sr[si].results = qrp;
            sr[si].n_results = req->n_queries;
        }
        node_shards_release(svc->reg, e);
    }

    Vecshard__V1__NodeSearchResponse resp = VECSHARD__V1__NODE_SEARCH_RESPONSE__INIT;
    resp.shards = srp;
    resp.n_shards = req->n_shards;
    if (rpc_call_reply(c, &resp.base) != 0)
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "reply is larger than the max message size (%llu bytes)",
                              (unsigned long long)cfg->max_message_bytes);
    metrics_add(svc->search_queries, (const char *[]){req->collection},
                (double)(req->n_queries * req->n_shards));
    log_debug("search", "collection=%s shards=%zu queries=%zu k=%u", log_quote(req->collection),
              req->n_shards, req->n_queries, req->k);
out:
    if (results != NULL)
        for (size_t i = 0; i < nres; i++)
            replica_results_free(&results[i]);
    free(results);
    node_svc_scratch_free(&s);
    filter_free(filter);
    return code;
}

/* ------------------------------------------------------------ Get */

/* Get: points of one shard by id. */
grpc_status_code node_svc_get(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__NodeGetRequest *req = (const Vecshard__V1__NodeGetRequest *)msg;
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->n_ids > svc->cfg->max_batch_points)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "ids has %zu entries, at most %u",
                              req->n_ids, svc->cfg->max_batch_points);
    struct node_shard_view v;
    struct node_shard *e = node_svc_borrow(svc, c, req->collection, req->shard, &v, &code);
    if (e == NULL) return code;

    struct replica_results res;
    replica_results_init(&res);
    struct node_svc_scratch s = {0};
    char err[REPLICA_ERR_MAX];
    int rc = replica_get(v.rep, req->ids, (uint32_t)req->n_ids, req->with_payload, req->with_vector,
                         req->with_attributes, &res, err);
    if (rc != REPLICA_OK) {
        code = rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "%s", err);
        goto out;
    }
    Vecshard__V1__NodeGetResponse resp = VECSHARD__V1__NODE_GET_RESPONSE__INIT;
    Vecshard__V1__Point *pts = node_svc_scratch_alloc(&s, res.n, sizeof *pts);
    Vecshard__V1__Point **ptrs = node_svc_scratch_alloc(&s, res.n, sizeof *ptrs);
    if (pts == NULL || ptrs == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < res.n; i++) {
        const struct replica_point *p = &res.points[i];
        vecshard__v1__point__init(&pts[i]);
        pts[i].id = p->id;
        if (p->vector != NULL) {
            pts[i].vector = (float *)p->vector;
            pts[i].n_vector = v.coll.dim;
        }
        if (p->payload != NULL) {
            pts[i].payload.data = (uint8_t *)p->payload;
            pts[i].payload.len = p->payload_len;
        }
        if (fill_attrs(&s, p, &vecshard__v1__point__attributes_entry__descriptor,
                       &pts[i].attributes, &pts[i].n_attributes) != 0) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        ptrs[i] = &pts[i];
    }
    resp.points = ptrs;
    resp.n_points = res.n;
    resp.missing_ids = res.missing;
    resp.n_missing_ids = res.nmissing;
    if (rpc_call_reply(c, &resp.base) != 0)
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "reply is larger than the max message size (%llu bytes)",
                              (unsigned long long)svc->cfg->max_message_bytes);
out:
    replica_results_free(&res);
    node_svc_scratch_free(&s);
    node_shards_release(svc->reg, e);
    return code;
}

/* ------------------------------------------------------------ Count */

/* Count: points matching a filter in several shards; per-shard failures stay per shard. */
grpc_status_code node_svc_count(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__NodeCountRequest *req = (const Vecshard__V1__NodeCountRequest *)msg;
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->n_shards == 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "shards is empty");
    struct filter *filter;
    code = compile_filter(c, req->filter, &filter);
    if (code != GRPC_STATUS_OK) return code;
    struct node_svc_scratch s = {0};
    Vecshard__V1__ShardCount *sc = node_svc_scratch_alloc(&s, req->n_shards, sizeof *sc);
    Vecshard__V1__ShardCount **scp = node_svc_scratch_alloc(&s, req->n_shards, sizeof *scp);
    if (sc == NULL || scp == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t si = 0; si < req->n_shards; si++) {
        uint32_t shard = req->shards[si];
        vecshard__v1__shard_count__init(&sc[si]);
        scp[si] = &sc[si];
        sc[si].shard = shard;
        char *emsg = node_svc_scratch_alloc(&s, REPLICA_ERR_MAX, 1);
        if (emsg == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        struct node_shard_view v;
        struct node_shard *e = node_shards_acquire(svc->reg, req->collection, shard, &v);
        if (e == NULL || v.rep == NULL || v.state == NODE_STATE_DAMAGED) {
            sc[si].code = e == NULL ? GRPC_STATUS_NOT_FOUND
                          : v.state == NODE_STATE_DAMAGED ? GRPC_STATUS_DATA_LOSS
                                                           : GRPC_STATUS_UNAVAILABLE;
            snprintf(emsg, REPLICA_ERR_MAX, "shard %u of collection \"%s\" is %s on this node",
                     shard, req->collection,
                     e == NULL ? "not hosted"
                     : v.state == NODE_STATE_DAMAGED ? "DAMAGED"
                                                     : "loading or recovering");
            sc[si].error = emsg;
            node_shards_release(svc->reg, e);
            continue;
        }
        uint64_t n = 0;
        int rc = replica_count(v.rep, filter, &n, emsg);
        node_shards_release(svc->reg, e);
        if (rc != REPLICA_OK) {
            sc[si].code = (uint32_t)replica_code_grpc(rc);
            sc[si].error = emsg;
            continue;
        }
        sc[si].count = n;
    }
    Vecshard__V1__NodeCountResponse resp = VECSHARD__V1__NODE_COUNT_RESPONSE__INIT;
    resp.shards = scp;
    resp.n_shards = req->n_shards;
    if (rpc_call_reply(c, &resp.base) != 0)
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "reply too large");
out:
    node_svc_scratch_free(&s);
    filter_free(filter);
    return code;
}
