/*
 * node_service.c — the ShardNode handlers: request validation, the status
 * codes of docs/design.md §8, and translation between protobuf-c messages and the
 * replica API.
 *
 * Every handler checks in the same order, so a caller can rely on which
 * error wins: malformed request (INVALID_ARGUMENT naming the field) →
 * collection / shard not here (NOT_FOUND) → replica damaged (DATA_LOSS,
 * "replica <coll>/<shard> is DAMAGED: <reason>") → replica still loading
 * (UNAVAILABLE) → write-path placement checks (stale epoch, not primary,
 * fenced) → the replica's own validation of the payload (dim, NaN/Inf,
 * payload and batch size) → the operation. A bad request never changes
 * state and never stops the server.
 *
 * Replies point into the replica's result buffers (vectors, payloads)
 * instead of copying them; the reply is packed by rpc_call_reply before the
 * handler frees those buffers. Small per-reply structs come from a `scratch`
 * list freed at the end of the handler.
 */
#define _GNU_SOURCE
#include "node/node_service.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util/log.h"
#include "node/storage/replica.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

#define SVC "/vecshard.v1.ShardNode/"
/* Upper bound on queries x shards x k hits built for one Search reply. */
#define MAX_REPLY_HITS (16u << 20)

/* ------------------------------------------------------------ scratch memory */

/* A list of allocations released together at the end of a handler. */
struct scratch {
    void **v;
    size_t n, cap;
};

/* calloc that records the block in s; NULL on ENOMEM. */
static void *scratch_alloc(struct scratch *s, size_t count, size_t size)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        void **v = realloc(s->v, cap * sizeof *v);
        if (v == NULL) return NULL;
        s->v = v;
        s->cap = cap;
    }
    void *p = calloc(count ? count : 1, size);
    if (p != NULL) s->v[s->n++] = p;
    return p;
}

/* Frees every block of s. */
static void scratch_free(struct scratch *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ shared checks */

/* INVALID_ARGUMENT unless name is a valid collection name (the framework
 * already refused a NUL inside it, so strlen is its full length). */
static grpc_status_code check_collection_name(struct rpc_call *c, const char *name)
{
    char err[160];
    if (cluster_name_check("collection", name, name != NULL ? strlen(name) : 0, err, sizeof err))
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
    return GRPC_STATUS_OK;
}

/* DEADLINE_EXCEEDED if the call's deadline has passed. */
static grpc_status_code check_deadline(struct rpc_call *c, const char *what)
{
    int64_t d = rpc_call_deadline_ms(c);
    if (d != 0 && rpc_now_ms() >= d)
        return rpc_call_error(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded %s", what);
    return GRPC_STATUS_OK;
}

/*
 * Borrows (collection, shard) for a single-shard call. On failure returns
 * NULL and sets *code: NOT_FOUND (collection unknown / shard not hosted),
 * DATA_LOSS (damaged) or UNAVAILABLE (loading).
 */
static struct node_shard *borrow(struct node_service *svc, struct rpc_call *c,
                                 const char *collection, uint32_t shard,
                                 struct node_shard_view *view, grpc_status_code *code)
{
    struct node_shard *e = node_shards_acquire(svc->reg, collection, shard, view);
    if (e == NULL) {
        struct node_collection coll;
        if (!node_shards_collection(svc->reg, collection, &coll))
            *code = rpc_call_error(c, GRPC_STATUS_NOT_FOUND,
                                   "collection \"%s\" not found on this node", collection);
        else
            *code = rpc_call_error(c, GRPC_STATUS_NOT_FOUND,
                                   "shard %u of collection \"%s\" is not hosted on this node",
                                   shard, collection);
        return NULL;
    }
    if (view->state == NODE_STATE_DAMAGED) {
        node_shards_release(svc->reg, e);
        *code = rpc_call_error(c, GRPC_STATUS_DATA_LOSS, "replica %s/%u is DAMAGED: %s", collection,
                               shard, view->reason);
        return NULL;
    }
    if (view->rep == NULL) {
        node_shards_release(svc->reg, e);
        *code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                               "shard %u of collection \"%s\" is still loading on this node", shard,
                               collection);
        return NULL;
    }
    return e;
}

/* Sets the vs-epoch (and vs-primary) trailers of a placement error. */
static void placement_trailers(struct rpc_call *c, const struct node_shard_view *v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v->epoch);
    rpc_call_add_trailer(c, "vs-epoch", buf);
    if (v->primary[0] != '\0') rpc_call_add_trailer(c, "vs-primary", v->primary);
}

/* ------------------------------------------------------------ Write */

/* Write: a batch for one shard, accepted only by its (unfenced) primary. */
static grpc_status_code handle_write(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__WriteRequest *req = (const Vecshard__V1__WriteRequest *)msg;
    grpc_status_code code = check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->batch == NULL)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "batch is missing");

    struct node_shard_view v;
    struct node_shard *e = borrow(svc, c, req->collection, req->shard, &v, &code);
    if (e == NULL) return code;

    if (req->epoch < v.epoch) {
        placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION, "stale epoch %llu, current %llu",
                              (unsigned long long)req->epoch, (unsigned long long)v.epoch);
        goto out;
    }
    if (req->epoch > v.epoch) {
        /* The caller saw a newer shard map than ours: our role may be gone. */
        placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "epoch %llu is newer than this node's %llu for %s/%u; the node has "
                              "not seen that shard map yet, retry",
                              (unsigned long long)req->epoch, (unsigned long long)v.epoch,
                              req->collection, req->shard);
        goto out;
    }
    if (v.role == NODE_ROLE_UNKNOWN) {
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "node %s does not know its role for %s/%u yet: the shard map has "
                              "not been read from etcd since start-up",
                              svc->cfg->node_id, req->collection, req->shard);
        goto out;
    }
    if (v.role != NODE_ROLE_PRIMARY) {
        placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION,
                              "node %s is not the primary of %s/%u at epoch %llu; the primary is "
                              "%s",
                              svc->cfg->node_id, req->collection, req->shard,
                              (unsigned long long)v.epoch,
                              v.primary[0] != '\0' ? v.primary : "unknown");
        goto out;
    }
    if (v.state == NODE_STATE_FENCED) {
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "node %s is fenced: its etcd lease was lost, so it accepts no "
                              "writes until it registers again",
                              svc->cfg->node_id);
        goto out;
    }
    code = check_deadline(c, "before the write");
    if (code != GRPC_STATUS_OK) goto out;

    char err[REPLICA_ERR_MAX];
    uint64_t lsn = 0;
    int rc = replica_write(v.rep, v.epoch, req->batch, &lsn, err);
    if (rc != REPLICA_OK) {
        code = rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "%s", err);
        if (rc == REPLICA_EUNAPPLIED) {
            /*
             * The batch is in the WAL but not (fully) in memory: serving on
             * would answer from a state the log does not describe. Stop now
             * (no snapshot, no clean close); the next start replays it.
             */
            log_error("stopping: a logged batch could not be applied",
                      "collection=%s shard=%u error=%s", req->collection, req->shard,
                      log_quote(err));
            _exit(NODE_EXIT_UNAPPLIED);
        }
        if (rc == REPLICA_EIO || rc == REPLICA_EFAILED || rc == REPLICA_ENOMEM ||
            rc == REPLICA_EINTERNAL)
            log_error("write failed", "collection=%s shard=%u code=%s error=%s", req->collection,
                      req->shard, replica_code_str(rc), log_quote(err));
        goto out;
    }
    Vecshard__V1__WriteResponse resp = VECSHARD__V1__WRITE_RESPONSE__INIT;
    resp.lsn = lsn;
    resp.epoch = v.epoch;
    if (rpc_call_reply(c, &resp.base) != 0)
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot build the reply");
    log_debug("write", "collection=%s shard=%u lsn=%llu upserts=%zu deletes=%zu", req->collection,
              req->shard, (unsigned long long)lsn, req->batch->n_upserts, req->batch->n_deletes);
out:
    node_shards_release(svc->reg, e);
    return code;
}

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

/* Copies replica hits into a QueryResult (pointing into res). -1 on ENOMEM. */
static int fill_hits(struct scratch *s, const struct replica_results *res, uint32_t dim,
                     Vecshard__V1__QueryResult *qr)
{
    vecshard__v1__query_result__init(qr);
    if (res->n == 0) return 0;
    Vecshard__V1__ScoredPoint *sp = scratch_alloc(s, res->n, sizeof *sp);
    Vecshard__V1__ScoredPoint **ptrs = scratch_alloc(s, res->n, sizeof *ptrs);
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
        ptrs[i] = &sp[i];
    }
    qr->hits = ptrs;
    qr->n_hits = res->n;
    return 0;
}

/* Search: several shards x several queries; per-shard failures stay per shard. */
static grpc_status_code handle_search(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__NodeSearchRequest *req = (const Vecshard__V1__NodeSearchRequest *)msg;
    const struct node_config *cfg = svc->cfg;
    grpc_status_code code = check_collection_name(c, req->collection);
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

    size_t nres = req->n_shards * req->n_queries;
    struct scratch s = {0};
    struct replica_results *results = calloc(nres, sizeof *results);
    Vecshard__V1__ShardSearchResult *sr = scratch_alloc(&s, req->n_shards, sizeof *sr);
    Vecshard__V1__ShardSearchResult **srp = scratch_alloc(&s, req->n_shards, sizeof *srp);
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
        char *emsg = scratch_alloc(&s, REPLICA_ERR_MAX, 1);
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
                     shard, req->collection, e == NULL ? "not hosted" : "still loading");
            sr[si].error = emsg;
            node_shards_release(svc->reg, e);
            continue;
        }
        Vecshard__V1__QueryResult *qr = scratch_alloc(&s, req->n_queries, sizeof *qr);
        Vecshard__V1__QueryResult **qrp = scratch_alloc(&s, req->n_queries, sizeof *qrp);
        if (qr == NULL || qrp == NULL) {
            node_shards_release(svc->reg, e);
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        for (size_t q = 0; q < req->n_queries; q++) {
            code = check_deadline(c, "while searching");
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
                .field = field,
            };
            struct replica_results *res = &results[si * req->n_queries + q];
            int rc = replica_search(v.rep, &rq, res, emsg);
            if (rc != REPLICA_OK) {
                sr[si].code = (uint32_t)replica_code_grpc(rc);
                sr[si].error = emsg;
                break;
            }
            if (fill_hits(&s, res, v.coll.dim, &qr[q]) != 0) {
                node_shards_release(svc->reg, e);
                code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
            }
            qrp[q] = &qr[q];
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
out:
    if (results != NULL)
        for (size_t i = 0; i < nres; i++)
            replica_results_free(&results[i]);
    free(results);
    scratch_free(&s);
    return code;
}

/* ------------------------------------------------------------ Get */

/* Get: points of one shard by id. */
static grpc_status_code handle_get(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__NodeGetRequest *req = (const Vecshard__V1__NodeGetRequest *)msg;
    grpc_status_code code = check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->n_ids > svc->cfg->max_batch_points)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "ids has %zu entries, at most %u",
                              req->n_ids, svc->cfg->max_batch_points);
    struct node_shard_view v;
    struct node_shard *e = borrow(svc, c, req->collection, req->shard, &v, &code);
    if (e == NULL) return code;

    struct replica_results res;
    replica_results_init(&res);
    struct scratch s = {0};
    char err[REPLICA_ERR_MAX];
    int rc = replica_get(v.rep, req->ids, (uint32_t)req->n_ids, req->with_payload, req->with_vector,
                         &res, err);
    if (rc != REPLICA_OK) {
        code = rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "%s", err);
        goto out;
    }
    Vecshard__V1__NodeGetResponse resp = VECSHARD__V1__NODE_GET_RESPONSE__INIT;
    Vecshard__V1__Point *pts = scratch_alloc(&s, res.n, sizeof *pts);
    Vecshard__V1__Point **ptrs = scratch_alloc(&s, res.n, sizeof *ptrs);
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
    scratch_free(&s);
    node_shards_release(svc->reg, e);
    return code;
}

/* ------------------------------------------------------------ status */

/* ShardStatus: LSN, epoch, counts, role and state of matching replicas. */
static grpc_status_code handle_shard_status(struct rpc_call *c, const ProtobufCMessage *msg,
                                            void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__ShardStatusRequest *req = (const Vecshard__V1__ShardStatusRequest *)msg;
    bool has_coll = req->collection != NULL && req->collection[0] != '\0';
    if (!has_coll && req->n_shards > 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "shards is set but collection is empty");
    if (has_coll && !cluster_name_ok(req->collection, strlen(req->collection)))
        return check_collection_name(c, req->collection);

    struct node_shard_view *views = NULL;
    long n = node_shards_list(svc->reg, req->collection, req->shards, req->n_shards, &views);
    if (n < 0) return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    struct scratch s = {0};
    grpc_status_code code = GRPC_STATUS_OK;
    Vecshard__V1__ShardReplicaStatus *st = scratch_alloc(&s, (size_t)n, sizeof *st);
    Vecshard__V1__ShardReplicaStatus **stp = scratch_alloc(&s, (size_t)n, sizeof *stp);
    char **names = scratch_alloc(&s, (size_t)n, sizeof *names);
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
        }
        node_shards_release(svc->reg, e);
    }
    Vecshard__V1__ShardStatusResponse resp = VECSHARD__V1__SHARD_STATUS_RESPONSE__INIT;
    resp.shards = stp;
    resp.n_shards = (size_t)n;
    if (rpc_call_reply(c, &resp.base) != 0)
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "reply too large");
out:
    scratch_free(&s);
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
static grpc_status_code handle_node_status(struct rpc_call *c, const ProtobufCMessage *msg,
                                           void *user)
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
    resp.fenced = node_shards_fenced(svc->reg);
    if (rpc_call_reply(c, &resp.base) != 0)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "reply too large");
    return GRPC_STATUS_OK;
}

/* ------------------------------------------------------------ not yet */

/* Replicate: arrives with primary/backup replication. */
static grpc_status_code handle_replicate(struct rpc_call *c, const ProtobufCMessage *msg,
                                         void *user)
{
    (void)msg;
    (void)user;
    return rpc_call_error(
        c, GRPC_STATUS_UNIMPLEMENTED,
        "Replicate is not implemented yet: primary/backup replication "
        "(docs/design.md §4) comes with the replication issue; primaries currently "
        "acknowledge after their own WAL append");
}

/* TransferShard: arrives with replica recovery and moves. */
static grpc_status_code handle_transfer(struct rpc_call *c, const ProtobufCMessage *msg,
                                        struct rpc_stream *st, void *user)
{
    (void)msg;
    (void)st;
    (void)user;
    return rpc_call_error(c, GRPC_STATUS_UNIMPLEMENTED,
                          "TransferShard is not implemented yet: shard transfer for recovery "
                          "and moves (docs/design.md §6) comes with the replication issue");
}

/* Registers every ShardNode method. */
int node_service_register(struct rpc_server *s, struct node_service *svc)
{
    int rc = 0;
    rc |= rpc_server_add_unary(s, SVC "Write", &vecshard__v1__write_request__descriptor,
                               handle_write, svc, 0);
    rc |= rpc_server_add_unary(s, SVC "Replicate", &vecshard__v1__replicate_request__descriptor,
                               handle_replicate, svc, RPC_INLINE);
    rc |= rpc_server_add_unary(s, SVC "Search", &vecshard__v1__node_search_request__descriptor,
                               handle_search, svc, 0);
    rc |= rpc_server_add_unary(s, SVC "Get", &vecshard__v1__node_get_request__descriptor,
                               handle_get, svc, 0);
    rc |=
        rpc_server_add_unary(s, SVC "ShardStatus", &vecshard__v1__shard_status_request__descriptor,
                             handle_shard_status, svc, 0);
    rc |= rpc_server_add_stream(s, SVC "TransferShard",
                                &vecshard__v1__transfer_shard_request__descriptor, handle_transfer,
                                svc, RPC_INLINE);
    rc |= rpc_server_add_unary(s, SVC "NodeStatus", &vecshard__v1__node_status_request__descriptor,
                               handle_node_status, svc, 0);
    return rc != 0 ? -1 : 0;
}
