/*
 * collections.c — libvecshard's collection and cluster calls: create, drop,
 * list, describe, count, cluster status, rebalance and drain.
 *
 * Configurations are copied into fixed structs (names are at most 64
 * bytes); everything else with strings (shard entries, nodes, moves) points
 * into the unpacked reply, which the result keeps until its free function.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/c/client_internal.h"

/* A description and the reply its strings point into. */
struct info_impl {
    struct vecshard_collection_info pub; /* first: the public pointer */
    ProtobufCMessage *reply;
};

/* A cluster status and its reply. */
struct status_impl {
    struct vecshard_cluster_status pub;
    ProtobufCMessage *reply;
};

/* A rebalance plan and its reply. */
struct plan_impl {
    struct vecshard_rebalance_plan pub;
    ProtobufCMessage *reply;
};

/* A new array of n nodes pointing into in[] (NULL on ENOMEM or n == 0). */
static struct vecshard_node_info *nodes_of(Vecshard__V1__NodeInfo *const *in, size_t n)
{
    struct vecshard_node_info *out = n ? calloc(n, sizeof *out) : NULL;
    for (size_t i = 0; out && i < n; i++)
        out[i] = (struct vecshard_node_info){
            .id = in[i]->id,
            .addr = in[i]->addr,
            .alive = in[i]->alive,
            .replicas = in[i]->replicas,
            .primaries = in[i]->primaries,
            .version = in[i]->version,
            .started_at = in[i]->started_at,
            .draining = in[i]->draining,
            .bytes = in[i]->bytes,
            .points = in[i]->points,
            .answered = in[i]->answered,
        };
    return out;
}

/* A new array of n moves pointing into in[] (NULL on ENOMEM or n == 0). */
static struct vecshard_replica_move *moves_of(Vecshard__V1__ReplicaMove *const *in, size_t n)
{
    struct vecshard_replica_move *out = n ? calloc(n, sizeof *out) : NULL;
    for (size_t i = 0; out && i < n; i++) {
        const Vecshard__V1__ReplicaMove *m = in[i];
        out[i] = (struct vecshard_replica_move){
            .collection = m->collection,
            .shard = m->shard,
            .from_node = m->from_node,
            .to_node = m->to_node,
            .primary = m->primary,
            .id = m->id,
            .kind = m->kind,
            .state = (enum vecshard_move_state)m->state,
            .step = m->step,
            .bytes_total = m->bytes_total,
            .bytes_done = m->bytes_done,
            .eta_ms = m->eta_ms,
            .attempts = m->attempts,
            .reason = m->reason,
            .origin = m->origin,
            .created_at = m->created_at,
            .started_at = m->started_at,
            .finished_at = m->finished_at,
        };
    }
    return out;
}

const char *vecshard_move_state_name(enum vecshard_move_state st)
{
    static const char *const names[] = {"planned", "queued", "running",
                                        "done",    "failed", "cancelled"};
    return (unsigned)st < sizeof names / sizeof names[0] ? names[st] : "?";
}

/* INVALID_ARGUMENT for a NULL collection name. */
static enum vecshard_code need_name(const char *name, struct vecshard_error *err)
{
    if (!name) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "name is NULL");
    return VECSHARD_OK;
}

/* ===================================================================== create, drop */

/* CreateCollection. */
enum vecshard_code vecshard_create_collection(struct vecshard_client *c, const char *name,
                                              const struct vecshard_collection_params *params,
                                              struct vecshard_collection_config *out,
                                              struct vecshard_error *err)
{
    if (need_name(name, err)) return VECSHARD_INVALID_ARGUMENT;
    if (!params) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "params is NULL");
    Vecshard__V1__CollectionConfig cfg = VECSHARD__V1__COLLECTION_CONFIG__INIT;
    cfg.name = (char *)name;
    cfg.dim = params->dim;
    cfg.metric = (Vecshard__V1__Metric)params->metric;
    cfg.m = params->m;
    cfg.ef_construction = params->ef_construction;
    cfg.ef_search = params->ef_search;
    cfg.shards = params->shards;
    cfg.replication_factor = params->replicas;
    cfg.quantization = (Vecshard__V1__Quantization)params->quantization;
    Vecshard__V1__CreateCollectionRequest req = VECSHARD__V1__CREATE_COLLECTION_REQUEST__INIT;
    req.config = &cfg;

    ProtobufCMessage *resp;
    enum vecshard_code code =
        vsc_call(c, VSC_METHOD("CreateCollection"), &req.base,
                 &vecshard__v1__create_collection_response__descriptor, &resp, err);
    if (code != VECSHARD_OK) return code;
    const Vecshard__V1__CollectionConfig *got =
        ((Vecshard__V1__CreateCollectionResponse *)resp)->config;
    if (out) vsc_config(out, got ? got : &cfg);
    protobuf_c_message_free_unpacked(resp, NULL);
    return VECSHARD_OK;
}

/* DropCollection. */
enum vecshard_code vecshard_drop_collection(struct vecshard_client *c, const char *name,
                                            struct vecshard_error *err)
{
    if (need_name(name, err)) return VECSHARD_INVALID_ARGUMENT;
    Vecshard__V1__DropCollectionRequest req = VECSHARD__V1__DROP_COLLECTION_REQUEST__INIT;
    req.name = (char *)name;
    ProtobufCMessage *resp;
    enum vecshard_code code =
        vsc_call(c, VSC_METHOD("DropCollection"), &req.base,
                 &vecshard__v1__drop_collection_response__descriptor, &resp, err);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

/* ===================================================================== list */

/* ListCollections, configs copied. */
enum vecshard_code vecshard_list_collections(struct vecshard_client *c,
                                             struct vecshard_collection_list **out,
                                             struct vecshard_error *err)
{
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    Vecshard__V1__ListCollectionsRequest req = VECSHARD__V1__LIST_COLLECTIONS_REQUEST__INIT;
    ProtobufCMessage *resp;
    enum vecshard_code code =
        vsc_call(c, VSC_METHOD("ListCollections"), &req.base,
                 &vecshard__v1__list_collections_response__descriptor, &resp, err);
    if (code != VECSHARD_OK) return code;
    const Vecshard__V1__ListCollectionsResponse *r = (Vecshard__V1__ListCollectionsResponse *)resp;
    struct vecshard_collection_list *l = calloc(1, sizeof *l);
    if (l && r->n_collections) l->collections = calloc(r->n_collections, sizeof *l->collections);
    if (!l || (r->n_collections && !l->collections)) {
        free(l);
        protobuf_c_message_free_unpacked(resp, NULL);
        return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for %zu collections",
                        r->n_collections);
    }
    l->n_collections = r->n_collections;
    for (size_t i = 0; i < r->n_collections; i++)
        vsc_config(&l->collections[i], r->collections[i]);
    protobuf_c_message_free_unpacked(resp, NULL);
    *out = l;
    return VECSHARD_OK;
}

/* Frees a list. */
void vecshard_collection_list_free(struct vecshard_collection_list *l)
{
    if (!l) return;
    free(l->collections);
    free(l);
}

/* ===================================================================== describe, count */

/* DescribeCollection; shard entries point into the reply. */
enum vecshard_code vecshard_describe_collection(struct vecshard_client *c, const char *name,
                                                struct vecshard_collection_info **out,
                                                struct vecshard_error *err)
{
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (need_name(name, err)) return VECSHARD_INVALID_ARGUMENT;
    Vecshard__V1__DescribeCollectionRequest req = VECSHARD__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
    req.name = (char *)name;
    ProtobufCMessage *resp;
    enum vecshard_code code =
        vsc_call(c, VSC_METHOD("DescribeCollection"), &req.base,
                 &vecshard__v1__describe_collection_response__descriptor, &resp, err);
    if (code != VECSHARD_OK) return code;
    const Vecshard__V1__DescribeCollectionResponse *r =
        (Vecshard__V1__DescribeCollectionResponse *)resp;
    struct info_impl *in = calloc(1, sizeof *in);
    if (in) in->pub.shards = vsc_shards(r->shards, r->n_shards);
    if (in) in->pub.nodes = nodes_of(r->nodes, r->n_nodes);
    if (!in || (r->n_shards && !in->pub.shards) || (r->n_nodes && !in->pub.nodes)) {
        if (in) free(in->pub.shards);
        free(in);
        protobuf_c_message_free_unpacked(resp, NULL);
        return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for %zu shards",
                        r->n_shards);
    }
    in->reply = resp;
    vsc_config(&in->pub.config, r->config);
    in->pub.count = r->count;
    in->pub.n_shards = r->n_shards;
    in->pub.n_nodes = r->n_nodes;
    *out = &in->pub;
    return VECSHARD_OK;
}

/* Frees a description and its reply. */
void vecshard_collection_info_free(struct vecshard_collection_info *info)
{
    if (!info) return;
    struct info_impl *in = (struct info_impl *)info;
    free(in->pub.shards);
    free(in->pub.nodes);
    protobuf_c_message_free_unpacked(in->reply, NULL);
    free(in);
}

/* The description's point count. */
enum vecshard_code vecshard_count(struct vecshard_client *c, const char *name, uint64_t *count,
                                  struct vecshard_error *err)
{
    if (!count) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "count is NULL");
    struct vecshard_collection_info *info;
    enum vecshard_code code = vecshard_describe_collection(c, name, &info, err);
    *count = code == VECSHARD_OK ? info->count : 0;
    vecshard_collection_info_free(info);
    return code;
}

/* ===================================================================== cluster */

/* ClusterStatus; nodes and shards point into the reply. */
enum vecshard_code vecshard_cluster_status(struct vecshard_client *c, const char *collection,
                                           struct vecshard_cluster_status **out,
                                           struct vecshard_error *err)
{
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    Vecshard__V1__ClusterStatusRequest req = VECSHARD__V1__CLUSTER_STATUS_REQUEST__INIT;
    req.collection = (char *)(collection ? collection : "");
    ProtobufCMessage *resp;
    enum vecshard_code code =
        vsc_call(c, VSC_METHOD("ClusterStatus"), &req.base,
                 &vecshard__v1__cluster_status_response__descriptor, &resp, err);
    if (code != VECSHARD_OK) return code;
    const Vecshard__V1__ClusterStatusResponse *r = (Vecshard__V1__ClusterStatusResponse *)resp;
    struct status_impl *s = calloc(1, sizeof *s);
    if (!s) goto enomem;
    s->reply = resp;
    s->pub.nodes = nodes_of(r->nodes, r->n_nodes);
    s->pub.moves = moves_of(r->moves, r->n_moves);
    s->pub.collections =
        r->n_collections ? calloc(r->n_collections, sizeof *s->pub.collections) : NULL;
    s->pub.shards = vsc_shards(r->shards, r->n_shards);
    if ((r->n_nodes && !s->pub.nodes) || (r->n_collections && !s->pub.collections) ||
        (r->n_shards && !s->pub.shards) || (r->n_moves && !s->pub.moves)) {
        vecshard_cluster_status_free(&s->pub);
        return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for the cluster status");
    }
    s->pub.n_nodes = r->n_nodes;
    s->pub.n_moves = r->n_moves;
    s->pub.n_collections = r->n_collections;
    for (size_t i = 0; i < r->n_collections; i++)
        vsc_config(&s->pub.collections[i], r->collections[i]);
    s->pub.n_shards = r->n_shards;
    s->pub.controller = r->controller ? r->controller : "";
    s->pub.revision = r->revision;
    *out = &s->pub;
    return VECSHARD_OK;
enomem:
    protobuf_c_message_free_unpacked(resp, NULL);
    return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for the cluster status");
}

/* Frees a cluster status and its reply. */
void vecshard_cluster_status_free(struct vecshard_cluster_status *st)
{
    if (!st) return;
    struct status_impl *s = (struct status_impl *)st;
    free(s->pub.nodes);
    free(s->pub.collections);
    free(s->pub.shards);
    free(s->pub.moves);
    protobuf_c_message_free_unpacked(s->reply, NULL);
    free(s);
}

/* Rebalance; moves point into the reply. */
enum vecshard_code vecshard_rebalance(struct vecshard_client *c, bool dry_run,
                                      const char *collection, struct vecshard_rebalance_plan **out,
                                      struct vecshard_error *err)
{
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    Vecshard__V1__RebalanceRequest req = VECSHARD__V1__REBALANCE_REQUEST__INIT;
    req.dry_run = dry_run;
    req.collection = (char *)(collection ? collection : "");
    ProtobufCMessage *resp;
    enum vecshard_code code = vsc_call(c, VSC_METHOD("Rebalance"), &req.base,
                                       &vecshard__v1__rebalance_response__descriptor, &resp, err);
    if (code != VECSHARD_OK) return code;
    const Vecshard__V1__RebalanceResponse *r = (Vecshard__V1__RebalanceResponse *)resp;
    struct plan_impl *p = calloc(1, sizeof *p);
    if (p) p->pub.moves = moves_of(r->moves, r->n_moves);
    if (!p || (r->n_moves && !p->pub.moves)) {
        free(p);
        protobuf_c_message_free_unpacked(resp, NULL);
        return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for %zu moves",
                        r->n_moves);
    }
    p->reply = resp;
    p->pub.n_moves = r->n_moves;
    p->pub.started = r->started;
    p->pub.note = r->note ? r->note : "";
    *out = &p->pub;
    return VECSHARD_OK;
}

/* Frees a plan and its reply. */
void vecshard_rebalance_plan_free(struct vecshard_rebalance_plan *plan)
{
    if (!plan) return;
    struct plan_impl *p = (struct plan_impl *)plan;
    free(p->pub.moves);
    protobuf_c_message_free_unpacked(p->reply, NULL);
    free(p);
}

/* ===================================================================== drain */

/* Drain; the answer is copied into *out. */
enum vecshard_code vecshard_drain(struct vecshard_client *c, const char *node_id, bool undrain,
                                  struct vecshard_drain_state *out, struct vecshard_error *err)
{
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!node_id) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "node_id is NULL");
    Vecshard__V1__DrainRequest req = VECSHARD__V1__DRAIN_REQUEST__INIT;
    req.node_id = (char *)node_id;
    req.undrain = undrain;
    ProtobufCMessage *resp;
    enum vecshard_code code = vsc_call(c, VSC_METHOD("Drain"), &req.base,
                                       &vecshard__v1__drain_response__descriptor, &resp, err);
    if (code != VECSHARD_OK) return code;
    const Vecshard__V1__DrainResponse *r = (Vecshard__V1__DrainResponse *)resp;
    out->draining = r->draining;
    out->replicas_left = r->replicas_left;
    out->empty = r->empty;
    snprintf(out->note, sizeof out->note, "%s", r->note ? r->note : "");
    protobuf_c_message_free_unpacked(resp, NULL);
    return VECSHARD_OK;
}
