/*
 * node_service_replication.c — the replication handlers, Replicate and
 * TransferShard. Both answer UNIMPLEMENTED until primary/backup replication
 * and shard transfer (docs/design.md §4, §6) land here with the replication
 * issue.
 */
#include "node/node_service.h"

#include "node/node_service_internal.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

/* ------------------------------------------------------------ Replicate, TransferShard */

/* Replicate: arrives with primary/backup replication. */
grpc_status_code node_svc_replicate(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    (void)msg;
    (void)user;
    return rpc_call_error(
        c, GRPC_STATUS_UNIMPLEMENTED,
        "Replicate is not implemented yet: primary/backup replication "
        "(docs/design.md §4) comes with the replication issue; primaries currently "
        "acknowledge after their own WAL append");
}

/* TransferShard: a full copy of a replica for a recovering node (transfer.h). */
grpc_status_code node_svc_transfer_shard(struct rpc_call *c, const ProtobufCMessage *msg,
                                         struct rpc_stream *st, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__TransferShardRequest *req = (const Vecshard__V1__TransferShardRequest *)msg;
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    return transfer_serve(svc->xfer, c, req, st);
}
