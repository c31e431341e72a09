/*
 * node_service.c — the ShardNode handlers: request validation, the status
 * codes of docs/design.md §8, and translation between protobuf-c messages and the
 * replica API. This file owns what every handler shares (the scratch list,
 * the common checks, borrow, placement trailers) and node_service_register;
 * the handlers live by RPC group in node_service_write.c (Write),
 * node_service_read.c (Search, Get), node_service_status.c (ShardStatus,
 * NodeStatus) and node_service_replication.c (Replicate, TransferShard).
 *
 * Every handler checks in the same order, so a caller can rely on which
 * error wins: malformed request (INVALID_ARGUMENT naming the field) →
 * collection / shard not here (NOT_FOUND) → replica damaged (DATA_LOSS,
 * "replica <coll>/<shard> is DAMAGED: <reason>") → replica still loading
 * (UNAVAILABLE) → write-path placement checks (stale epoch, not primary) → the replica's own
 * validation of the payload (dim, NaN/Inf, payload and batch size) → the operation. A bad request
 * never changes state and never stops the server.
 *
 * Replies point into the replica's result buffers (vectors, payloads)
 * instead of copying them; the reply is packed by rpc_call_reply before the
 * handler frees those buffers. Small per-reply structs come from a `scratch`
 * list freed at the end of the handler.
 */
#define _GNU_SOURCE
#include "node/node_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_service_internal.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

#define SVC "/vecshard.v1.ShardNode/"

/* ------------------------------------------------------------ scratch memory */

/* calloc that records the block in s; NULL on ENOMEM. */
void *node_svc_scratch_alloc(struct node_svc_scratch *s, size_t count, size_t size)
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
void node_svc_scratch_free(struct node_svc_scratch *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ shared checks */

/* INVALID_ARGUMENT unless name is a valid collection name (the framework
 * already refused a NUL inside it, so strlen is its full length). */
grpc_status_code node_svc_check_collection_name(struct rpc_call *c, const char *name)
{
    char err[160];
    if (cluster_name_check("collection", name, name != NULL ? strlen(name) : 0, err, sizeof err))
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
    return GRPC_STATUS_OK;
}

/* DEADLINE_EXCEEDED if the call's deadline has passed. */
grpc_status_code node_svc_check_deadline(struct rpc_call *c, const char *what)
{
    int64_t d = rpc_call_deadline_ms(c);
    if (d != 0 && rpc_now_ms() >= d)
        return rpc_call_error(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded %s", what);
    return GRPC_STATUS_OK;
}

/*
 * Borrows (collection, shard) for a single-shard call. On failure returns
 * NULL and sets *code: NOT_FOUND (collection unknown / shard not hosted),
 * DATA_LOSS (damaged) or UNAVAILABLE (loading, recovering).
 */
struct node_shard *node_svc_borrow(struct node_service *svc, struct rpc_call *c,
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
        *code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE, "shard %u of collection \"%s\" is %s",
                               shard, collection,
                               view->state == NODE_STATE_RECOVERING
                                   ? "recovering on this node (a full transfer into it is running)"
                                   : "still loading on this node");
        return NULL;
    }
    return e;
}

/* Sets the vs-epoch (and vs-primary) trailers of a placement error. */
void node_svc_placement_trailers(struct rpc_call *c, const struct node_shard_view *v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v->epoch);
    rpc_call_add_trailer(c, "vs-epoch", buf);
    if (v->primary[0] != '\0') rpc_call_add_trailer(c, "vs-primary", v->primary);
}

/* Registers every ShardNode method. */
int node_service_register(struct rpc_server *s, struct node_service *svc)
{
    int rc = 0;
    rc |= rpc_server_add_unary(s, SVC "Write", &vecshard__v1__write_request__descriptor,
                               node_svc_write, svc, 0);
    rc |= rpc_server_add_unary(s, SVC "Replicate", &vecshard__v1__replicate_request__descriptor,
                               node_svc_replicate, svc, 0);
    rc |= rpc_server_add_unary(s, SVC "Search", &vecshard__v1__node_search_request__descriptor,
                               node_svc_search, svc, 0);
    rc |= rpc_server_add_unary(s, SVC "Get", &vecshard__v1__node_get_request__descriptor,
                               node_svc_get, svc, 0);
    rc |=
        rpc_server_add_unary(s, SVC "ShardStatus", &vecshard__v1__shard_status_request__descriptor,
                             node_svc_shard_status, svc, 0);
    rc |= rpc_server_add_stream(s, SVC "TransferShard",
                                &vecshard__v1__transfer_shard_request__descriptor,
                                node_svc_transfer_shard, svc, 0);
    rc |= rpc_server_add_unary(s, SVC "NodeStatus", &vecshard__v1__node_status_request__descriptor,
                               node_svc_node_status, svc, 0);
    return rc != 0 ? -1 : 0;
}
