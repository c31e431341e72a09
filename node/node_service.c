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
 * Every handler runs inside one wrapper (call_begin / call_end, set up by
 * node_service_register): it takes the caller's request id from the
 * x-request-id metadata into the thread's log context, so every line logged
 * while the call runs carries request_id=, and times the call for the
 * --slow-query-ms line. The fields of that line (collection, shard, shards,
 * k, ef) are read from the request by name through the protobuf-c
 * descriptor, so no handler repeats it.
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
#include <time.h>

#include "common/util/log.h"
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

/* ------------------------------------------------------------ request id and timing */

/* Monotonic seconds, sub-millisecond resolution. */
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Start of a call: the caller's request id becomes this thread's log context. */
static double call_begin(struct rpc_call *c)
{
    char id[LOG_REQUEST_ID_MAX + 2];
    long n = rpc_call_metadata(c, RPC_REQUEST_ID_MD, id, sizeof id);
    log_set_request_id(n > 0 && log_request_id_valid(id, (size_t)n) ? id : NULL);
    return mono_s();
}

/* The field `name` of msg (NULL when the message has none), with its descriptor. */
static const void *field_of(const ProtobufCMessage *msg, const char *name,
                            const ProtobufCFieldDescriptor **fd)
{
    *fd = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
    return *fd != NULL ? (const char *)msg + (*fd)->offset : NULL;
}

/* Appends " key=value" for the uint32 field `name` of msg, if it has one. */
static void slow_u32(char *buf, size_t size, size_t *pos, const ProtobufCMessage *msg,
                     const char *name)
{
    const ProtobufCFieldDescriptor *fd;
    const void *p = field_of(msg, name, &fd);
    if (p == NULL || fd->type != PROTOBUF_C_TYPE_UINT32 || *pos >= size) return;
    if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
        *pos += (size_t)snprintf(buf + *pos, size - *pos, " %s=%u", name, *(const uint32_t *)p);
        return;
    }
    size_t n = *(const size_t *)((const char *)msg + fd->quantifier_offset);
    const uint32_t *v = *(uint32_t *const *)p;
    *pos += (size_t)snprintf(buf + *pos, size - *pos, " %s=", name);
    for (size_t i = 0; i < n && *pos < size; i++)
        *pos += (size_t)snprintf(buf + *pos, size - *pos, i ? ",%u" : "%u", v[i]);
    if (n == 0 && *pos < size) *pos += (size_t)snprintf(buf + *pos, size - *pos, "all");
}

/* End of a call: the slow-request line when a unary call took longer than --slow-query-ms
 * (a TransferShard stream lasts as long as the copy; it logs its own "transfer sent" line). */
static void call_end(const struct node_svc_method *m, const ProtobufCMessage *req, double t0,
                     grpc_status_code code)
{
    double ms = (mono_s() - t0) * 1000.0;
    uint64_t limit = m->svc->cfg->slow_query_ms;
    if (m->unary != NULL && limit > 0 && ms >= (double)limit && log_enabled(LOG_WARN)) {
        char extra[512] = "";
        size_t pos = 0;
        const char *coll = NULL;
        if (req != NULL) {
            const ProtobufCFieldDescriptor *fd;
            const void *p = field_of(req, "collection", &fd);
            if (p != NULL && fd->type == PROTOBUF_C_TYPE_STRING) coll = *(char *const *)p;
            slow_u32(extra, sizeof extra, &pos, req, "shard");
            slow_u32(extra, sizeof extra, &pos, req, "shards");
            slow_u32(extra, sizeof extra, &pos, req, "k");
            slow_u32(extra, sizeof extra, &pos, req, "ef");
        }
        log_warn("slow request", "method=%s collection=%s%s duration_ms=%.1f code=%s", m->name,
                 log_quote(coll != NULL ? coll : ""), extra, ms, rpc_status_name(code));
    }
    log_set_request_id(NULL);
}

/* The unary handler every unary method is registered with: the method's handler, wrapped. */
static grpc_status_code wrap_unary(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    const struct node_svc_method *m = user;
    double t0 = call_begin(c);
    grpc_status_code code = m->unary(c, req, m->svc);
    call_end(m, req, t0, code);
    return code;
}

/* The same for server-streaming methods. */
static grpc_status_code wrap_stream(struct rpc_call *c, const ProtobufCMessage *req,
                                    struct rpc_stream *st, void *user)
{
    const struct node_svc_method *m = user;
    double t0 = call_begin(c);
    grpc_status_code code = m->stream(c, req, st, m->svc);
    call_end(m, req, t0, code);
    return code;
}

/* The ShardNode methods: name, request type, handler. */
static const struct {
    const char *name;
    const ProtobufCMessageDescriptor *desc;
    rpc_unary_fn unary;
    rpc_stream_fn stream;
} methods[NODE_SVC_METHODS] = {
    {"Write", &vecshard__v1__write_request__descriptor, node_svc_write, NULL},
    {"Replicate", &vecshard__v1__replicate_request__descriptor, node_svc_replicate, NULL},
    {"Search", &vecshard__v1__node_search_request__descriptor, node_svc_search, NULL},
    {"Get", &vecshard__v1__node_get_request__descriptor, node_svc_get, NULL},
    {"Count", &vecshard__v1__node_count_request__descriptor, node_svc_count, NULL},
    {"ShardStatus", &vecshard__v1__shard_status_request__descriptor, node_svc_shard_status, NULL},
    {"TransferShard", &vecshard__v1__transfer_shard_request__descriptor, NULL,
     node_svc_transfer_shard},
    {"NodeStatus", &vecshard__v1__node_status_request__descriptor, node_svc_node_status, NULL},
};

/* Registers every ShardNode method, each inside the request-id and timing wrapper. */
int node_service_register(struct rpc_server *s, struct node_service *svc)
{
    int rc = 0;
    for (int i = 0; i < NODE_SVC_METHODS; i++) {
        struct node_svc_method *m = &svc->methods[i];
        *m = (struct node_svc_method){methods[i].name, methods[i].unary, methods[i].stream, svc};
        char path[64];
        snprintf(path, sizeof path, SVC "%s", m->name);
        /* peers' replication and transfer are never refused by --max-concurrent-requests */
        unsigned fl = m->stream != NULL || strcmp(m->name, "Replicate") == 0 ? RPC_NO_LIMIT : 0;
        rc |= m->unary != NULL ? rpc_server_add_unary(s, path, methods[i].desc, wrap_unary, m, fl)
                               : rpc_server_add_stream(s, path, methods[i].desc, wrap_stream, m, fl);
        /* a single short search answers on the poller when the pool is idle */
        if (m->unary == node_svc_search) rc |= rpc_server_set_cheap(s, path, node_svc_search_cheap);
    }
    return rc != 0 ? -1 : 0;
}
