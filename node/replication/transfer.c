/*
 * transfer.c — TransferShard sender and receiver jobs (transfer.h).
 * Placeholder until shard transfer lands: starts nothing, serves UNIMPLEMENTED.
 */
#define _GNU_SOURCE
#include "node/replication/transfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct transfers {
    int unused;
};

int transfers_create(const struct transfer_config *cfg, struct transfers **out, char *err,
                     size_t errlen)
{
    (void)cfg;
    *out = calloc(1, sizeof **out);
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void transfers_destroy(struct transfers *t)
{
    free(t);
}

int transfers_start(struct transfers *t, const char *collection, uint32_t shard, uint64_t epoch,
                    const char *primary_id, const char *primary_addr)
{
    (void)t, (void)collection, (void)shard, (void)epoch, (void)primary_id, (void)primary_addr;
    return 0;
}

void transfers_progress(struct transfers *t, const char *collection, uint32_t shard,
                        struct transfer_progress *p)
{
    (void)t, (void)collection, (void)shard;
    memset(p, 0, sizeof *p);
    snprintf(p->last_error, sizeof p->last_error, "shard transfer is not implemented yet");
}

grpc_status_code transfer_serve(struct transfers *t, struct rpc_call *c,
                                const Vecshard__V1__TransferShardRequest *req,
                                struct rpc_stream *st)
{
    (void)t, (void)req, (void)st;
    return rpc_call_error(c, GRPC_STATUS_UNIMPLEMENTED, "TransferShard is not implemented yet");
}
