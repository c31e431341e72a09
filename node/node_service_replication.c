/*
 * node_service_replication.c — the replication handlers, Replicate and
 * TransferShard (docs/replication.md §4, §6). TransferShard streams a full
 * copy (transfer.h); Replicate so far only starts a transfer into a replica
 * (action TRANSFER) and answers UNIMPLEMENTED otherwise until primary/backup
 * replication lands here.
 */
#include "node/node_service.h"

#include "node/node_service_internal.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

/* ------------------------------------------------------------ Replicate, TransferShard */

/*
 * Replicate: only action TRANSFER so far (docs/replication.md §4: start pulling a full copy from
 * primary_addr, answer TRANSFERRING with the progress); the rest arrives with primary/backup
 * replication.
 */
grpc_status_code node_svc_replicate(struct rpc_call *c, const ProtobufCMessage *msg, void *user)
{
    struct node_service *svc = user;
    const Vecshard__V1__ReplicateRequest *req = (const Vecshard__V1__ReplicateRequest *)msg;
    if (req->action != VECSHARD__V1__REPLICATE_ACTION__REPLICATE_ACTION_TRANSFER)
        return rpc_call_error(
            c, GRPC_STATUS_UNIMPLEMENTED,
            "Replicate is not implemented yet: primary/backup replication "
            "(docs/design.md §4) comes with the replication issue; primaries currently "
            "acknowledge after their own WAL append");
    grpc_status_code code = node_svc_check_collection_name(c, req->collection);
    if (code != GRPC_STATUS_OK) return code;
    if (req->primary_addr == NULL || req->primary_addr[0] == '\0')
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "primary_addr is required with action TRANSFER");
    if (transfers_start(svc->xfer, req->collection, req->shard, req->epoch, req->primary,
                        req->primary_addr) != 0)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start the transfer");
    struct transfer_progress tp;
    transfers_progress(svc->xfer, req->collection, req->shard, &tp);
    Vecshard__V1__ReplicateResponse resp = VECSHARD__V1__REPLICATE_RESPONSE__INIT;
    resp.result = VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_TRANSFERRING;
    resp.transfer_bytes_done = tp.bytes_done;
    resp.transfer_bytes_total = tp.bytes_total;
    if (rpc_call_reply(c, &resp.base) != 0)
        return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "reply too large");
    return GRPC_STATUS_OK;
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
