/*
 * admin.c — the VecShard calls about collections and the cluster:
 * CreateCollection (validation, a health check of every live node, placement
 * on the healthy ones, one etcd txn), DropCollection,
 * ListCollections, DescribeCollection and ClusterStatus (Rebalance and
 * Drain are in rebalance_rpc.c, which also fills ClusterStatus.moves).
 *
 * Reads come from the cached routing table (the controller election's
 * holder too); only Create and Drop talk to etcd (and answer UNAVAILABLE
 * without it). Per-shard LSNs
 * and counts are asked from the primaries with ShardStatus, best effort: a
 * primary that does not answer in time contributes zeros. ClusterStatus also
 * asks every registered node (one call per node, concurrently) and joins the
 * answers with the primary's peers[] into replica_status
 * (docs/replication.md §10) and into each node's bytes and points;
 * DescribeCollection shares that code for one collection.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"
#include "proto/grpc_health/v1/health.pb-c.h"
#include "router/controller/placement.h"
#include "router/router.h"

/* ------------------------------------------------------------ primary status */

/* One shard whose primary's ShardStatus is wanted. */
struct shard_ref {
    const struct rt_collection *coll;
    uint32_t shard;
    bool answered;
    uint64_t lsn, count;
    int state;        /* Vecshard__V1__ReplicaState */
    char reason[256]; /* its state_reason */
};

/*
 * Asks ShardStatus (restricted to `collection` unless it is "") of the node
 * of every primary named by refs and, with `all`, of every registered node
 * (replicas, and nodes holding none, for their bytes and points): one call
 * per node, concurrently, until deadline. Fills the refs
 * whose primary answered. replies (optional; v->n_nodes entries) keeps the
 * per-node answers for the caller, who frees them with
 * router_shard_status_free; without it they are freed here.
 */
static void primary_status(struct router *r, const struct rt_view *v, struct shard_ref *refs,
                           size_t n, bool all, const char *collection, int64_t deadline,
                           Vecshard__V1__ShardStatusResponse **replies)
{
    bool *want = calloc(v->n_nodes + 1, sizeof *want);
    Vecshard__V1__ShardStatusResponse **st =
        replies != NULL ? replies : calloc(v->n_nodes + 1, sizeof *st);
    if (want == NULL || st == NULL) goto out;
    for (size_t i = 0; i < v->n_nodes && all; i++)
        want[i] = true;
    for (size_t i = 0; i < n; i++) {
        const struct cluster_shard *sh = &refs[i].coll->shard[refs[i].shard];
        const struct rt_node *node = sh->primary[0] ? rt_view_node(v, sh->primary) : NULL;
        if (node != NULL) want[node - v->nodes] = true;
    }
    router_shard_status(r, v, want, collection, deadline, st);
    for (size_t i = 0; i < n; i++) {
        const struct cluster_shard *sh = &refs[i].coll->shard[refs[i].shard];
        const struct rt_node *node = sh->primary[0] ? rt_view_node(v, sh->primary) : NULL;
        const Vecshard__V1__ShardReplicaStatus *rs =
            node != NULL
                ? router_replica_status(st[node - v->nodes], refs[i].coll->name, refs[i].shard)
                : NULL;
        if (rs == NULL) continue;
        refs[i].answered = true;
        refs[i].lsn = rs->lsn;
        refs[i].count = rs->count;
        refs[i].state = rs->state;
        snprintf(refs[i].reason, sizeof refs[i].reason, "%s",
                 rs->state_reason != NULL ? rs->state_reason : "");
    }
out:
    if (replies == NULL && st != NULL) {
        router_shard_status_free(st, v->n_nodes);
        free(st);
    }
    free(want);
}

/* Deadline of best-effort status calls: the call's, but at most 2 s away. */
static int64_t status_deadline(struct router *r, struct rpc_call *c)
{
    int64_t d = router_node_deadline(router_deadline(r, c));
    int64_t cap = rpc_now_ms() + 2000;
    return d < cap ? d : cap;
}

/* ------------------------------------------------------------ message builders */

/* Fills a CollectionConfig from a cached collection (strings borrowed). */
static void config_from(Vecshard__V1__CollectionConfig *out, const struct rt_collection *c)
{
    vecshard__v1__collection_config__init(out);
    out->name = c->name;
    out->dim = c->dim;
    out->metric = (Vecshard__V1__Metric)c->metric;
    out->m = c->m;
    out->ef_construction = c->ef_construction;
    out->ef_search = c->ef_search;
    out->shards = c->shards;
    out->replication_factor = c->replication_factor;
    out->created_at = c->created_at;
    out->quantization = (Vecshard__V1__Quantization)c->quant;
}

/* "READY", "DAMAGED", ... for a ReplicaState; "" when unknown (no answer). */
static const char *state_name(bool answered, int state)
{
    const ProtobufCEnumValue *v =
        answered
            ? protobuf_c_enum_descriptor_get_value(&vecshard__v1__replica_state__descriptor, state)
            : NULL;
    const char *prefix = "REPLICA_STATE_";
    if (v == NULL) return "";
    return strncmp(v->name, prefix, strlen(prefix)) == 0 ? v->name + strlen(prefix) : v->name;
}

/* Fills a ShardInfo from a cached shard and its primary's answer (strings borrowed). */
static void shard_info_from(Vecshard__V1__ShardInfo *out, const struct rt_collection *c, uint32_t s,
                            const struct shard_ref *ref)
{
    const struct cluster_shard *sh = &c->shard[s];
    vecshard__v1__shard_info__init(out);
    out->collection = c->name;
    out->shard = s;
    out->epoch = sh->epoch;
    out->primary = sh->present ? sh->primary : "";
    out->replicas = sh->replicas.v;
    out->n_replicas = sh->replicas.n;
    out->in_sync = sh->in_sync.v;
    out->n_in_sync = sh->in_sync.n;
    out->recovering = sh->recovering.v;
    out->n_recovering = sh->recovering.n;
    out->lsn = ref->lsn;
    out->primary_state = (char *)state_name(ref->answered, ref->state);
    out->primary_state_reason = (char *)ref->reason;
}

/* The primary's peers[] entry for node id, or NULL. */
static const Vecshard__V1__ReplicaPeerStatus *peer_of(const Vecshard__V1__ShardReplicaStatus *p,
                                                      const char *id)
{
    for (size_t i = 0; p != NULL && i < p->n_peers; i++)
        if (strcmp(p->peers[i]->node_id, id) == 0) return p->peers[i];
    return NULL;
}

/*
 * Fills out[j] (one per replica of shard s, pointers in outp) from each
 * replica's own ShardStatus and the primary's peers[] entry for it (replies:
 * per node of v). Strings are borrowed from v and the replies.
 */
static void replica_infos(const struct rt_view *v, const struct rt_collection *c, uint32_t s,
                          Vecshard__V1__ShardStatusResponse *const *replies,
                          Vecshard__V1__ReplicaInfo *out, Vecshard__V1__ReplicaInfo **outp)
{
    const struct cluster_shard *sh = &c->shard[s];
    const struct rt_node *pn = sh->primary[0] ? rt_view_node(v, sh->primary) : NULL;
    const Vecshard__V1__ShardReplicaStatus *prs =
        pn != NULL ? router_replica_status(replies[pn - v->nodes], c->name, s) : NULL;
    for (uint32_t j = 0; j < sh->replicas.n; j++) {
        Vecshard__V1__ReplicaInfo *ri = &out[j];
        vecshard__v1__replica_info__init(ri);
        outp[j] = ri;
        const char *id = sh->replicas.v[j];
        const struct rt_node *node = rt_view_node(v, id);
        const Vecshard__V1__ShardReplicaStatus *rs =
            node != NULL ? router_replica_status(replies[node - v->nodes], c->name, s) : NULL;
        bool primary = strcmp(id, sh->primary) == 0;
        const Vecshard__V1__ReplicaPeerStatus *peer = primary ? NULL : peer_of(prs, id);
        ri->node_id = (char *)id;
        ri->alive = node != NULL;
        ri->role = primary ? "primary" : "backup";
        ri->state = (char *)state_name(rs != NULL, rs != NULL ? rs->state : 0);
        ri->in_sync = cluster_ids_has(&sh->in_sync, id);
        ri->lsn = rs != NULL ? rs->lsn : peer != NULL ? peer->acked_lsn : 0;
        if (peer != NULL)
            ri->lag = peer->lag;
        else if (!primary && prs != NULL && rs != NULL && prs->lsn > rs->lsn)
            ri->lag = prs->lsn - rs->lsn;
        ri->recovery = rs != NULL && rs->recovery != NULL ? rs->recovery : "";
        ri->transfer_bytes_done = rs != NULL     ? rs->transfer_bytes_done
                                  : peer != NULL ? peer->transfer_bytes_done
                                                 : 0;
        ri->transfer_bytes_total = rs != NULL     ? rs->transfer_bytes_total
                                   : peer != NULL ? peer->transfer_bytes_total
                                                  : 0;
        ri->bytes = rs != NULL ? rs->disk_bytes : 0;
        ri->points = rs != NULL ? rs->count : 0;
        if (node == NULL)
            ri->reason = "node not registered";
        else if (rs == NULL)
            ri->reason = "node did not answer ShardStatus";
        else if (rs->state == VECSHARD__V1__REPLICA_STATE__REPLICA_STATE_DAMAGED)
            ri->reason = rs->state_reason;
        else if (ri->in_sync)
            ri->reason = "";
        else if (peer != NULL && peer->reason != NULL && peer->reason[0])
            ri->reason = peer->reason;
        else if (ri->recovery[0])
            ri->reason = (char *)ri->recovery;
        else
            ri->reason = "not in in_sync";
    }
}

/* ------------------------------------------------------------ CreateCollection */

/* Validates and defaults the requested config into *out (name borrowed). */
static grpc_status_code check_config(struct rpc_call *c, const Vecshard__V1__CollectionConfig *in,
                                     Vecshard__V1__CollectionConfig *out)
{
    if (in == NULL) return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "config is missing");
    grpc_status_code code = router_check_name(c, "config.name", in->name);
    if (code != GRPC_STATUS_OK) return code;
    *out = *in;
    if (in->dim == 0)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.dim is 0; it is required (1..65536)");
    if (in->dim > 65536)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.dim is %u, the maximum is 65536", in->dim);
    if ((int)in->metric < 0 || (int)in->metric > 2)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.metric %d is not METRIC_L2, METRIC_IP or METRIC_COSINE",
                              (int)in->metric);
    if ((int)in->quantization < 0 || (int)in->quantization > 1)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.quantization %d is not QUANTIZATION_NONE or QUANTIZATION_SQ8",
                              (int)in->quantization);
    if (out->m == 0) out->m = 16;
    if (out->m < 2 || out->m > 128)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "config.m is %u, must be 2..128",
                              out->m);
    if (out->ef_construction == 0) out->ef_construction = 200;
    if (out->ef_construction > ROUTER_MAX_EF)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.ef_construction is %u, must be 1..%u", out->ef_construction,
                              ROUTER_MAX_EF);
    if (out->ef_search == 0) out->ef_search = 64;
    if (out->ef_search > ROUTER_MAX_EF)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.ef_search is %u, must be 1..%u", out->ef_search,
                              ROUTER_MAX_EF);
    if (out->shards == 0) out->shards = 1;
    if (out->shards > ROUTER_MAX_SHARDS)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.shards is %u, must be 1..%u (the collection and its shard "
                              "keys are written in one etcd transaction)",
                              out->shards, ROUTER_MAX_SHARDS);
    if (out->replication_factor == 0) out->replication_factor = 1;
    if (out->replication_factor > ROUTER_MAX_RF)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "config.replication_factor is %u, must be 1..%u",
                              out->replication_factor, ROUTER_MAX_RF);
    return GRPC_STATUS_OK;
}

/* The collection key's JSON (caller frees). */
static char *config_json(const Vecshard__V1__CollectionConfig *cfg)
{
    struct cluster_collection doc = {
        .dim = cfg->dim,
        .metric = (enum cluster_metric)cfg->metric,
        .m = cfg->m,
        .ef_construction = cfg->ef_construction,
        .ef_search = cfg->ef_search,
        .shards = cfg->shards,
        .replication_factor = cfg->replication_factor,
        .created_at = cfg->created_at,
        .quant = (uint32_t)cfg->quantization,
    };
    snprintf(doc.name, sizeof doc.name, "%s", cfg->name);
    return cluster_collection_format(&doc);
}

/* A new shard entry's JSON: epoch 1, in_sync = replicas (every copy is empty,
 * so every one holds every acknowledged write; docs/replication.md §1), caller frees. */
static char *shard_json(const char *const *nodes, uint32_t rf)
{
    struct cluster_shard doc = {
        .present = true,
        .epoch = 1,
        .primary = (char *)nodes[0],
        .replicas = {(char **)nodes, rf},
        .in_sync = {(char **)nodes, rf},
    };
    return cluster_shard_format(&doc);
}

/* Waits (best effort) until every primary of coll reports its replica READY. */
static void wait_ready(struct router *r, const char *name, int64_t until)
{
    while (rpc_now_ms() < until) {
        struct rt_view *v = rt_acquire(r->rt);
        const struct rt_collection *coll = rt_view_collection(v, name);
        if (coll == NULL) {
            rt_release(v);
            return;
        }
        struct shard_ref *refs = calloc(coll->shards, sizeof *refs);
        if (refs == NULL) {
            rt_release(v);
            return;
        }
        for (uint32_t s = 0; s < coll->shards; s++)
            refs[s] = (struct shard_ref){.coll = coll, .shard = s};
        int64_t d = rpc_now_ms() + 1000;
        primary_status(r, v, refs, coll->shards, false, name, d < until ? d : until, NULL);
        bool all = true;
        for (uint32_t s = 0; s < coll->shards && all; s++)
            all = refs[s].answered &&
                  refs[s].state == VECSHARD__V1__REPLICA_STATE__REPLICA_STATE_READY;
        free(refs);
        rt_release(v);
        if (all) return;
        router_sleep_ms(50);
    }
    log_warn("collection created, but not every primary reported its replica ready in time",
             "collection=%s", name);
}

/*
 * Sets pn[i].healthy (pn indexed like v->nodes) to whether node i answers
 * Health/Check SERVING within ROUTER_HEALTH_MS (and before deadline), all
 * nodes asked at once: a node that is registered but stopped, hung or just
 * killed (its lease not yet expired) gets no replica of a new collection.
 */
static void health_check(struct router *r, const struct rt_view *v, struct placement_node *pn,
                         int64_t deadline)
{
    int64_t until = rpc_now_ms() + ROUTER_HEALTH_MS;
    if (until > router_node_deadline(deadline)) until = router_node_deadline(deadline);
    struct rpc_fanout *fo = rpc_fanout_create();
    int *by_call = calloc(v->n_nodes + 1, sizeof *by_call);
    for (size_t i = 0; i < v->n_nodes; i++)
        pn[i].healthy = false;
    if (fo == NULL || by_call == NULL) goto out;
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "";
    /* wait_for_ready: a channel still backing off from an earlier failure
     * gets the whole budget to reconnect instead of failing at once. */
    struct rpc_opts opts = router_node_opts(until);
    opts.wait_for_ready = true;
    for (size_t i = 0; i < v->n_nodes; i++) {
        struct rpc_channel *ch = rpc_client_channel(r->client, v->nodes[i].addr);
        if (ch == NULL) continue;
        int idx = rpc_fanout_start(fo, ch, RPC_HEALTH_CHECK, &req.base,
                                   &grpc__health__v1__health_check_response__descriptor, &opts);
        if (idx >= 0) by_call[idx] = (int)i;
    }
    rpc_fanout_wait(fo, until);
    for (int k = 0; k < rpc_fanout_count(fo); k++) {
        const Grpc__Health__V1__HealthCheckResponse *resp =
            (const Grpc__Health__V1__HealthCheckResponse *)rpc_fanout_response(fo, k);
        size_t i = (size_t)by_call[k];
        pn[i].healthy =
            resp != NULL &&
            resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        if (!pn[i].healthy)
            log_warn("node failed the health check; no replica of the new collection goes there",
                     "node=%s addr=%s status=%s", v->nodes[i].id, v->nodes[i].addr,
                     resp != NULL ? "NOT_SERVING"
                                  : rpc_status_name(rpc_fanout_status(fo, k)->code));
    }
out:
    rpc_fanout_destroy(fo);
    free(by_call);
}

grpc_status_code router_create_collection(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__CreateCollectionRequest *req =
        (const Vecshard__V1__CreateCollectionRequest *)m;
    Vecshard__V1__CollectionConfig cfg;
    grpc_status_code code = check_config(c, req->config, &cfg);
    if (code != GRPC_STATUS_OK) return code;
    int64_t deadline = router_deadline(r, c);

    struct rt_view *v = rt_acquire(r->rt);
    char **keys = NULL, **vals = NULL;
    const char **plan = NULL;
    struct placement_node *pn = NULL;
    char *coll_val = NULL;
    etcd_op *ops = NULL;
    etcd_txn_result tr = {0};
    uint32_t S = cfg.shards, R = cfg.replication_factor;
    if (rt_view_collection(v, cfg.name) != NULL) {
        code = rpc_call_error(c, GRPC_STATUS_ALREADY_EXISTS, "collection \"%s\" already exists",
                              cfg.name);
        goto out;
    }
    plan = calloc((size_t)S * R, sizeof *plan);
    keys = calloc(S + 1, sizeof *keys);
    vals = calloc(S, sizeof *vals);
    ops = calloc(S + 1, sizeof *ops);
    pn = calloc(v->n_nodes + 1, sizeof *pn);
    if (plan == NULL || keys == NULL || vals == NULL || ops == NULL || pn == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    placement_count(v, pn);
    health_check(r, v, pn, deadline);
    char err[512];
    if (placement_plan(pn, v->n_nodes, S, R, plan, err, sizeof err) != 0) {
        code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION,
                              "cannot place collection "
                              "\"%s\": %s",
                              cfg.name, err);
        goto out;
    }
    cfg.created_at = router_unix_ms();
    coll_val = config_json(&cfg);
    keys[S] = cluster_key_collection(r->cfg->etcd_prefix, cfg.name);
    if (coll_val == NULL || keys[S] == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    ops[0] = (etcd_op){
        .type = ETCD_OP_PUT, .key = keys[S], .value = coll_val, .value_len = strlen(coll_val)};
    for (uint32_t s = 0; s < S; s++) {
        keys[s] = cluster_key_shard(r->cfg->etcd_prefix, cfg.name, s);
        vals[s] = shard_json(plan + (size_t)s * R, R);
        if (keys[s] == NULL || vals[s] == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        ops[s + 1] = (etcd_op){
            .type = ETCD_OP_PUT, .key = keys[s], .value = vals[s], .value_len = strlen(vals[s])};
    }
    etcd_cmp absent = {
        .key = keys[S], .target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL, .number = 0};
    etcd_err eerr;
    etcd_status st = etcd_txn(r->etcd, &absent, 1, ops, S + 1, NULL, 0, &tr, &eerr);
    if (st != ETCD_OK) {
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                              "etcd is needed to create a collection and did not answer: %s",
                              eerr.msg);
        goto out;
    }
    if (!tr.succeeded) {
        code = rpc_call_error(c, GRPC_STATUS_ALREADY_EXISTS, "collection \"%s\" already exists",
                              cfg.name);
        goto out;
    }
    log_info("created collection", "collection=%s dim=%u metric=%s shards=%u rf=%u revision=%lld",
             cfg.name, cfg.dim, cluster_metric_name((enum cluster_metric)cfg.metric), S, R,
             (long long)tr.revision);
    rt_wait_revision(r->rt, tr.revision, 2000);
    int64_t until = router_node_deadline(deadline), cap = rpc_now_ms() + 5000;
    wait_ready(r, cfg.name, until < cap ? until : cap);

    Vecshard__V1__CreateCollectionResponse resp = VECSHARD__V1__CREATE_COLLECTION_RESPONSE__INIT;
    resp.config = &cfg;
    rpc_call_reply(c, &resp.base);
    code = GRPC_STATUS_OK;
out:
    etcd_txn_result_free(&tr);
    for (uint32_t s = 0; keys != NULL && s <= S; s++)
        free(keys[s]);
    for (uint32_t s = 0; vals != NULL && s < S; s++)
        free(vals[s]);
    free(keys);
    free(vals);
    free(ops);
    free(plan);
    free(pn);
    free(coll_val);
    rt_release(v);
    return code;
}

/* ------------------------------------------------------------ DropCollection */

grpc_status_code router_drop_collection(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__DropCollectionRequest *req = (const Vecshard__V1__DropCollectionRequest *)m;
    grpc_status_code code = router_check_name(c, "name", req->name);
    if (code != GRPC_STATUS_OK) return code;
    char *key = cluster_key_collection(r->cfg->etcd_prefix, req->name);
    char *shards = cluster_key_shards_of(r->cfg->etcd_prefix, req->name);
    if (key == NULL || shards == NULL) {
        free(key);
        free(shards);
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    etcd_cmp exists = {
        .key = key, .target = ETCD_CMP_CREATE, .result = ETCD_CMP_GREATER, .number = 0};
    etcd_op ops[2] = {{.type = ETCD_OP_DELETE, .key = key},
                      {.type = ETCD_OP_DELETE, .key = shards, .prefix = true}};
    etcd_txn_result tr = {0};
    etcd_err eerr;
    etcd_status st = etcd_txn(r->etcd, &exists, 1, ops, 2, NULL, 0, &tr, &eerr);
    if (st != ETCD_OK)
        code =
            rpc_call_error(c, GRPC_STATUS_UNAVAILABLE,
                           "etcd is needed to drop a collection and did not answer: %s", eerr.msg);
    else if (!tr.succeeded)
        code = rpc_call_error(c, GRPC_STATUS_NOT_FOUND, "collection \"%s\" not found", req->name);
    else {
        log_info("dropped collection", "collection=%s revision=%lld", req->name,
                 (long long)tr.revision);
        rt_wait_revision(r->rt, tr.revision, 2000);
        Vecshard__V1__DropCollectionResponse resp = VECSHARD__V1__DROP_COLLECTION_RESPONSE__INIT;
        rpc_call_reply(c, &resp.base);
    }
    etcd_txn_result_free(&tr);
    free(key);
    free(shards);
    return code;
}

/* ------------------------------------------------------------ List / Describe */

grpc_status_code router_list_collections(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    (void)m;
    struct rt_view *v = rt_acquire(r->rt);
    Vecshard__V1__CollectionConfig *cfgs = calloc(v->n_colls + 1, sizeof *cfgs);
    Vecshard__V1__CollectionConfig **ptrs = calloc(v->n_colls + 1, sizeof *ptrs);
    grpc_status_code code = GRPC_STATUS_OK;
    if (cfgs == NULL || ptrs == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < v->n_colls; i++) {
            config_from(&cfgs[i], &v->colls[i]);
            ptrs[i] = &cfgs[i];
        }
        Vecshard__V1__ListCollectionsResponse resp = VECSHARD__V1__LIST_COLLECTIONS_RESPONSE__INIT;
        resp.collections = ptrs;
        resp.n_collections = v->n_colls;
        rpc_call_reply(c, &resp.base);
    }
    free(cfgs);
    free(ptrs);
    rt_release(v);
    return code;
}

/* ------------------------------------------------------------ status tables */

/* A node for the status lists: registered, or only named in shard entries. */
struct status_node {
    const char *id;
    const struct rt_node *reg; /* NULL: not registered (dead) */
    uint32_t replicas, primaries;
};

static int cmp_status_node(const void *a, const void *b)
{
    return strcmp(((const struct status_node *)a)->id, ((const struct status_node *)b)->id);
}

/* Finds or adds id in list (n entries, room guaranteed by the caller). */
static struct status_node *status_node_of(struct status_node *list, size_t *n, const char *id)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i].id, id) == 0) return &list[i];
    list[*n] = (struct status_node){.id = id};
    return &list[(*n)++];
}

/* Room for the node table of v: registered nodes plus every replica named. */
static size_t node_room(const struct rt_view *v)
{
    size_t n = v->n_nodes + 1;
    for (size_t i = 0; i < v->n_colls; i++)
        for (uint32_t s = 0; s < v->colls[i].shards; s++)
            n += v->colls[i].shard[s].replicas.n + 1;
    return n;
}

/*
 * The node table of a status answer, sorted by id, into sn (room:
 * node_room): with `registered`, every registered node; then every node
 * named by the shard entries of `only` (NULL = every collection), with its
 * replica and primary counts there. Returns the count.
 */
static size_t status_nodes(const struct rt_view *v, const struct rt_collection *only,
                           bool registered, struct status_node *sn)
{
    size_t n = 0;
    for (size_t i = 0; i < v->n_nodes && registered; i++)
        status_node_of(sn, &n, v->nodes[i].id)->reg = &v->nodes[i];
    for (size_t i = 0; i < v->n_colls; i++) {
        const struct rt_collection *coll = &v->colls[i];
        if (only != NULL && only != coll) continue;
        for (uint32_t s = 0; s < coll->shards; s++) {
            const struct cluster_shard *sh = &coll->shard[s];
            for (uint32_t j = 0; j < sh->replicas.n; j++) {
                struct status_node *x = status_node_of(sn, &n, sh->replicas.v[j]);
                x->reg = rt_view_node(v, x->id);
                x->replicas++;
            }
            if (sh->primary != NULL && sh->primary[0] != '\0')
                status_node_of(sn, &n, sh->primary)->primaries++;
        }
    }
    qsort(sn, n, sizeof *sn, cmp_status_node);
    return n;
}

/*
 * Fills ni[i] / nip[i] from sn[0..n): registration, counts, the drain mark,
 * and bytes and points summed over the node's ShardStatus reply (replies per
 * node of v; answered when it replied). Strings borrowed from v.
 */
static void node_infos(const struct rt_view *v, const struct status_node *sn, size_t n,
                       Vecshard__V1__ShardStatusResponse *const *replies,
                       Vecshard__V1__NodeInfo *ni, Vecshard__V1__NodeInfo **nip)
{
    for (size_t i = 0; i < n; i++) {
        const struct rt_node *reg = sn[i].reg;
        const Vecshard__V1__ShardStatusResponse *st = reg != NULL ? replies[reg - v->nodes] : NULL;
        vecshard__v1__node_info__init(&ni[i]);
        ni[i].id = (char *)sn[i].id;
        ni[i].alive = reg != NULL;
        ni[i].addr = reg != NULL ? reg->addr : "";
        ni[i].version = reg != NULL ? reg->version : "";
        ni[i].started_at = reg != NULL ? reg->started_at : 0;
        ni[i].replicas = sn[i].replicas;
        ni[i].primaries = sn[i].primaries;
        ni[i].draining = rt_view_draining(v, sn[i].id);
        ni[i].answered = st != NULL;
        for (size_t k = 0; st != NULL && k < st->n_shards; k++) {
            ni[i].bytes += st->shards[k]->disk_bytes;
            ni[i].points += st->shards[k]->count;
        }
        nip[i] = &ni[i];
    }
}

/*
 * Fills si[i] / sip[i] for refs[0..n), each with its replica_status from
 * replies (ri / rip: room for every replica of those shards).
 */
static void shard_infos(const struct rt_view *v, const struct shard_ref *refs, size_t n,
                        Vecshard__V1__ShardStatusResponse *const *replies,
                        Vecshard__V1__ShardInfo *si, Vecshard__V1__ShardInfo **sip,
                        Vecshard__V1__ReplicaInfo *ri, Vecshard__V1__ReplicaInfo **rip)
{
    for (size_t i = 0, used = 0; i < n; i++) {
        shard_info_from(&si[i], refs[i].coll, refs[i].shard, &refs[i]);
        replica_infos(v, refs[i].coll, refs[i].shard, replies, &ri[used], &rip[used]);
        si[i].replica_status = &rip[used];
        si[i].n_replica_status = refs[i].coll->shard[refs[i].shard].replicas.n;
        used += si[i].n_replica_status;
        sip[i] = &si[i];
    }
}

/* ------------------------------------------------------------ Describe */

grpc_status_code router_describe_collection(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__DescribeCollectionRequest *req =
        (const Vecshard__V1__DescribeCollectionRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "name", req->name, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    uint32_t S = coll->shards;
    size_t room = node_room(v);
    struct shard_ref *refs = calloc(S, sizeof *refs);
    Vecshard__V1__ShardInfo *infos = calloc(S, sizeof *infos);
    Vecshard__V1__ShardInfo **ptrs = calloc(S, sizeof *ptrs);
    Vecshard__V1__ShardStatusResponse **replies = calloc(v->n_nodes + 1, sizeof *replies);
    struct status_node *sn = calloc(room, sizeof *sn);
    Vecshard__V1__NodeInfo *ni = calloc(room, sizeof *ni);
    Vecshard__V1__NodeInfo **nip = calloc(room, sizeof *nip);
    Vecshard__V1__ReplicaInfo *ri = calloc(room, sizeof *ri);
    Vecshard__V1__ReplicaInfo **rip = calloc(room, sizeof *rip);
    if (!refs || !infos || !ptrs || !replies || !sn || !ni || !nip || !ri || !rip) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (uint32_t s = 0; s < S; s++)
        refs[s] = (struct shard_ref){.coll = coll, .shard = s};
    primary_status(r, v, refs, S, true, coll->name, status_deadline(r, c), replies);
    Vecshard__V1__DescribeCollectionResponse resp =
        VECSHARD__V1__DESCRIBE_COLLECTION_RESPONSE__INIT;
    Vecshard__V1__CollectionConfig cfg;
    config_from(&cfg, coll);
    resp.config = &cfg;
    shard_infos(v, refs, S, replies, infos, ptrs, ri, rip);
    for (uint32_t s = 0; s < S; s++)
        resp.count += refs[s].count;
    resp.shards = ptrs;
    resp.n_shards = S;
    size_t n_sn = status_nodes(v, coll, false, sn);
    node_infos(v, sn, n_sn, replies, ni, nip);
    resp.nodes = nip;
    resp.n_nodes = n_sn;
    rpc_call_reply(c, &resp.base);
out:
    free(refs);
    free(infos);
    free(ptrs);
    router_shard_status_free(replies, replies != NULL ? v->n_nodes : 0);
    free(replies);
    free(sn);
    free(ni);
    free(nip);
    free(ri);
    free(rip);
    rt_release(v);
    return code;
}

/* ------------------------------------------------------------ ClusterStatus */

grpc_status_code router_cluster_status(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__ClusterStatusRequest *req = (const Vecshard__V1__ClusterStatusRequest *)m;
    struct rt_view *v;
    const struct rt_collection *only = NULL;
    grpc_status_code code;
    if (req->collection != NULL && req->collection[0] != '\0') {
        code = router_collection(r, c, "collection", req->collection, &v, &only);
        if (code != GRPC_STATUS_OK) return code;
    } else {
        v = rt_acquire(r->rt);
    }
    size_t room = node_room(v), n_shards = 0;
    for (size_t i = 0; i < v->n_colls; i++)
        if (only == NULL || only == &v->colls[i]) n_shards += v->colls[i].shards;
    struct status_node *sn = calloc(room, sizeof *sn);
    Vecshard__V1__NodeInfo *ni = calloc(room, sizeof *ni);
    Vecshard__V1__NodeInfo **nip = calloc(room, sizeof *nip);
    Vecshard__V1__CollectionConfig *cc = calloc(v->n_colls + 1, sizeof *cc);
    Vecshard__V1__CollectionConfig **ccp = calloc(v->n_colls + 1, sizeof *ccp);
    struct shard_ref *refs = calloc(n_shards + 1, sizeof *refs);
    Vecshard__V1__ShardInfo *si = calloc(n_shards + 1, sizeof *si);
    Vecshard__V1__ShardInfo **sip = calloc(n_shards + 1, sizeof *sip);
    Vecshard__V1__ShardStatusResponse **replies = calloc(v->n_nodes + 1, sizeof *replies);
    Vecshard__V1__ReplicaInfo *ri = calloc(room, sizeof *ri);
    Vecshard__V1__ReplicaInfo **rip = calloc(room, sizeof *rip);
    Vecshard__V1__ReplicaMove *mv = calloc(v->n_moves + 1, sizeof *mv);
    Vecshard__V1__ReplicaMove **mvp = calloc(v->n_moves + 1, sizeof *mvp);
    if (!sn || !ni || !nip || !cc || !ccp || !refs || !si || !sip || !replies || !ri || !rip ||
        !mv || !mvp) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < v->n_colls; i++)
        for (uint32_t s = 0; s < v->colls[i].shards; s++)
            if (only == NULL || only == &v->colls[i])
                refs[k++] = (struct shard_ref){.coll = &v->colls[i], .shard = s};
    /* Every collection's replicas, whatever `only` says: the node totals and
     * the progress of moves of any collection come from these answers. */
    primary_status(r, v, refs, n_shards, true, "", status_deadline(r, c), replies);

    Vecshard__V1__ClusterStatusResponse resp = VECSHARD__V1__CLUSTER_STATUS_RESPONSE__INIT;
    size_t n_sn = status_nodes(v, NULL, true, sn);
    node_infos(v, sn, n_sn, replies, ni, nip);
    resp.nodes = nip;
    resp.n_nodes = n_sn;
    for (size_t i = 0; i < v->n_colls; i++) {
        config_from(&cc[i], &v->colls[i]);
        ccp[i] = &cc[i];
    }
    resp.collections = ccp;
    resp.n_collections = v->n_colls;
    shard_infos(v, refs, n_shards, replies, si, sip, ri, rip);
    resp.shards = sip;
    resp.n_shards = n_shards;
    resp.moves = mvp;
    resp.n_moves = router_status_moves(v, replies, mv, mvp);
    char leader[300];
    controller_leader(r, r->controller, leader, sizeof leader);
    resp.controller = leader;
    resp.revision = v->revision;
    rpc_call_reply(c, &resp.base);
    code = GRPC_STATUS_OK;
out:
    free(sn);
    free(ni);
    free(nip);
    free(cc);
    free(ccp);
    free(refs);
    free(si);
    free(sip);
    router_shard_status_free(replies, replies != NULL ? v->n_nodes : 0);
    free(replies);
    free(ri);
    free(rip);
    free(mv);
    free(mvp);
    rt_release(v);
    return code;
}
