/*
 * node_service_internal.h — what the ShardNode handler files
 * (node/node_service*.c) share; not part of the public API (that is
 * node_service.h). The helpers are defined in node_service.c, the handlers
 * in their RPC group's file and registered by node_service_register.
 *
 * Ownership: a handler runs on one rpc worker thread per call and owns its
 * node_svc_scratch list; nothing here keeps state between calls. `svc` (the
 * handlers' `user`) is owned by main and outlives the server; a replica
 * borrowed with node_svc_borrow must be given back with node_shards_release
 * before the handler returns. Replies may point into scratch blocks and the
 * replica's result buffers: rpc_call_reply packs them before they are freed.
 */
#ifndef VS_NODE_SERVICE_INTERNAL_H
#define VS_NODE_SERVICE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/rpc/rpc.h"
#include "node/node_service.h"
#include "node/node_shards.h"

/* A list of allocations released together at the end of a handler. */
struct node_svc_scratch {
    void **v;
    size_t n, cap;
};

/* calloc that records the block in s; NULL on ENOMEM. */
void *node_svc_scratch_alloc(struct node_svc_scratch *s, size_t count, size_t size);

/* Frees every block of s. */
void node_svc_scratch_free(struct node_svc_scratch *s);

/* INVALID_ARGUMENT unless name is a valid collection name. */
grpc_status_code node_svc_check_collection_name(struct rpc_call *c, const char *name);

/* DEADLINE_EXCEEDED if the call's deadline has passed. */
grpc_status_code node_svc_check_deadline(struct rpc_call *c, const char *what);

/*
 * Borrows (collection, shard) for a single-shard call. On failure returns
 * NULL and sets *code: NOT_FOUND, DATA_LOSS (damaged) or UNAVAILABLE
 * (loading). On success the caller releases it with node_shards_release.
 */
struct node_shard *node_svc_borrow(struct node_service *svc, struct rpc_call *c,
                                   const char *collection, uint32_t shard,
                                   struct node_shard_view *view, grpc_status_code *code);

/* Sets the vs-epoch (and vs-primary) trailers of a placement error. */
void node_svc_placement_trailers(struct rpc_call *c, const struct node_shard_view *v);

/* The handlers; `user` is the struct node_service. node_service_write.c: */

/* Write: a batch for one shard, accepted only by its primary; acked once in_sync has it. */
grpc_status_code node_svc_write(struct rpc_call *c, const ProtobufCMessage *msg, void *user);

/* node_service_read.c: */

/* Search: several shards x several queries; per-shard failures stay per shard. */
grpc_status_code node_svc_search(struct rpc_call *c, const ProtobufCMessage *msg, void *user);

/* Shards x queries x max(ef, k) at most this: a search cheap enough for the
 * poller (an ef-512 query on one shard is well under a millisecond). */
#define NODE_SVC_CHEAP_WORK 512

/* rpc_cheap_fn of Search: an explicit ef, no filter, no automatic ef, no
 * debug plan, and shards x queries x max(ef, k) <= NODE_SVC_CHEAP_WORK. */
bool node_svc_search_cheap(const ProtobufCMessage *msg, void *user);

/* Get: points of one shard by id. */
grpc_status_code node_svc_get(struct rpc_call *c, const ProtobufCMessage *msg, void *user);

/* Count: points matching a filter in several shards; per-shard failures stay per shard. */
grpc_status_code node_svc_count(struct rpc_call *c, const ProtobufCMessage *msg, void *user);

/* node_service_status.c: */

/* ShardStatus: LSN, epoch, counts, role and state of matching replicas. */
grpc_status_code node_svc_shard_status(struct rpc_call *c, const ProtobufCMessage *msg, void *user);

/* NodeStatus: identity and resource use. */
grpc_status_code node_svc_node_status(struct rpc_call *c, const ProtobufCMessage *msg, void *user);

/* node_service_replication.c: */

/* Replicate: the backup side of docs/replication.md §4. */
grpc_status_code node_svc_replicate(struct rpc_call *c, const ProtobufCMessage *msg, void *user);

/* TransferShard: streams a full copy of a replica (transfer.h). */
grpc_status_code node_svc_transfer_shard(struct rpc_call *c, const ProtobufCMessage *msg,
                                         struct rpc_stream *st, void *user);

#endif
