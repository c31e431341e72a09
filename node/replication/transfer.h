/*
 * transfer.h — full copies of a replica between nodes (docs/replication.md,
 * "Transfer"): the TransferShard sender and the receiver's background jobs.
 *
 * Sender: transfer_serve runs inside the TransferShard handler. It pins the
 * newest on-disk snapshot (an open descriptor) and opens a WAL iterator after
 * it at the same moment, so neither a background snapshot nor WAL deletion
 * can change what the stream sends; then streams the snapshot in chunks of at
 * most 1 MiB with a CRC-32C each, the WAL records up to the LSN at the start
 * of the call, and an `end` message, under the --transfer-max-mbps limit.
 *
 * Receiver: transfers_start starts one job per (collection, shard) (a second
 * start while one runs is a no-op). The job pulls the stream from the
 * primary into a staging folder next to the replica's, verifies every CRC,
 * fsyncs, and hands the folder to node_shards_install, which swaps it in
 * (the old folder goes to the trash) and opens it as a READY backup. A job
 * that fails (either side killed, stream cut, CRC mismatch) removes its
 * staging folder and ends with the error kept for transfers_progress; the
 * primary asks again. Staging folders left by a crash are removed at start-up
 * (transfers_create). Nothing staged is ever served: the replica stays
 * RECOVERING (no reads, no in_sync) until installed.
 *
 * Threading: every call is thread-safe; jobs run on their own threads;
 * transfers_destroy cancels running jobs and joins them.
 */
#ifndef VS_NODE_TRANSFER_H
#define VS_NODE_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/rpc/rpc.h"
#include "node/node_shards.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

struct transfer_config {
    struct node_shards *reg;    /* borrowed */
    struct rpc_client *rpc;     /* borrowed: calls to the primary */
    const char *data_dir;       /* copied */
    const char *node_id;        /* copied; sent as TransferShardRequest.node_id */
    uint64_t max_bytes_per_sec; /* sender's limit (--transfer-max-mbps); 0 = unlimited */
};

struct transfers;

/* Creates the transfer machinery and removes staging folders left by a crash. 0, or -1 with err. */
int transfers_create(const struct transfer_config *cfg, struct transfers **out, char *err,
                     size_t errlen);

/* Cancels running jobs, waits for them, frees t. NULL is a no-op. */
void transfers_destroy(struct transfers *t);

/*
 * Receiver: starts pulling (collection, shard) from primary_addr unless a job
 * for it runs already. epoch is the caller's current epoch for the shard.
 * 0, or -1 on ENOMEM.
 */
int transfers_start(struct transfers *t, const char *collection, uint32_t shard, uint64_t epoch,
                    const char *primary_id, const char *primary_addr);

/* Progress of (collection, shard) on this node, receiver side. */
struct transfer_progress {
    bool running;
    uint64_t bytes_done, bytes_total;
    uint64_t completed;   /* transfers installed since start-up */
    char last_error[256]; /* why the last job failed; "" if none */
};

/* Fills *p (all zero when no job ever ran for it). */
void transfers_progress(struct transfers *t, const char *collection, uint32_t shard,
                        struct transfer_progress *p);

/* Counters of this node's transfers since start-up (metrics). */
struct transfer_stats {
    uint32_t receiving;                    /* receiver jobs running */
    uint32_t sending;                      /* TransferShard streams being served */
    uint64_t received_bytes, sent_bytes;   /* snapshot + WAL record bytes */
    uint64_t received_ok, received_failed; /* receiver jobs installed / failed */
    uint64_t sent_ok, sent_failed;         /* streams sent in full / stopped */
};

/* Fills *st (atomics and one short lock section; no I/O). */
void transfers_stats(struct transfers *t, struct transfer_stats *st);

/* Sender: streams the replica for the TransferShard handler; returns the call's status. */
grpc_status_code transfer_serve(struct transfers *t, struct rpc_call *c,
                                const Vecshard__V1__TransferShardRequest *req,
                                struct rpc_stream *st);

#endif
