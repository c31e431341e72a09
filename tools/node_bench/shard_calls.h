/*
 * shard_calls.h — ShardNode.Write and ShardNode.Search built from the rows
 * of a data set, for the two C clients that drive one node directly:
 * vecshard-bench-node and the integration tests' vs-c-client.
 *
 * Points take the row number as id; vectors are borrowed from the matrix
 * (packed without a copy), so the matrix must outlive the call. Replies
 * belong to the caller (protobuf_c_message_free_unpacked).
 */
#ifndef VS_TOOLS_SHARD_CALLS_H
#define VS_TOOLS_SHARD_CALLS_H

#include <stddef.h>
#include <stdint.h>

#include "common/rpc/rpc.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"
#include "tools/bench/dataset.h"

/* Fills pts[0..n) and ptrs[0..n) with rows [first, first+n) of m as points. */
void shard_calls_points(const struct dataset_matrix *m, size_t first, size_t n,
                        Vecshard__V1__Point *pts, Vecshard__V1__Point **ptrs);

/*
 * One ShardNode.Write of the n points ptrs to shard of collection under
 * epoch. On GRPC_STATUS_OK *lsn (if not NULL) gets the batch's LSN;
 * otherwise st says why.
 */
grpc_status_code shard_calls_write(struct rpc_channel *ch, const char *collection, uint32_t shard,
                                   uint64_t epoch, Vecshard__V1__Point **ptrs, size_t n,
                                   int64_t deadline_ms, uint64_t *lsn, struct rpc_status *st);

/*
 * One ShardNode.Search on shard of collection with the n queries at rows
 * first, first+1, ... of q (wrapping at q->n), k and ef. On GRPC_STATUS_OK
 * *resp is the reply (the caller's); otherwise st says why.
 */
grpc_status_code shard_calls_search(struct rpc_channel *ch, const char *collection, uint32_t shard,
                                    const struct dataset_matrix *q, size_t first, size_t n,
                                    uint32_t k, uint32_t ef, int64_t deadline_ms,
                                    Vecshard__V1__NodeSearchResponse **resp, struct rpc_status *st);

#endif
