/*
 * shard_calls.c — ShardNode requests from data set rows (see shard_calls.h).
 */
#include "tools/node_bench/shard_calls.h"

#include <stdio.h>
#include <stdlib.h>

/* Rows as points: id = row number, vector borrowed. */
void shard_calls_points(const struct dataset_matrix *m, size_t first, size_t n,
                        Vecshard__V1__Point *pts, Vecshard__V1__Point **ptrs)
{
    for (size_t j = 0; j < n; j++) {
        vecshard__v1__point__init(&pts[j]);
        pts[j].id = first + j;
        pts[j].n_vector = m->dim; /* points into the matrix: packed without a copy */
        pts[j].vector = m->data + (first + j) * m->dim;
        ptrs[j] = &pts[j];
    }
}

/* One Write of upserts only. */
grpc_status_code shard_calls_write(struct rpc_channel *ch, const char *collection, uint32_t shard,
                                   uint64_t epoch, Vecshard__V1__Point **ptrs, size_t n,
                                   int64_t deadline_ms, uint64_t *lsn, struct rpc_status *st)
{
    Vecshard__V1__WriteBatch batch = VECSHARD__V1__WRITE_BATCH__INIT;
    Vecshard__V1__WriteRequest req = VECSHARD__V1__WRITE_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    struct rpc_opts ro = {.deadline_ms = deadline_ms};

    batch.n_upserts = n;
    batch.upserts = ptrs;
    req.collection = (char *)collection;
    req.shard = shard;
    req.epoch = epoch;
    req.batch = &batch;
    grpc_status_code code = rpc_unary(ch, "/vecshard.v1.ShardNode/Write", &req.base,
                                      &vecshard__v1__write_response__descriptor, &resp, &ro, st);
    if (code != GRPC_STATUS_OK) return code;
    if (lsn) *lsn = ((Vecshard__V1__WriteResponse *)resp)->lsn;
    protobuf_c_message_free_unpacked(resp, NULL);
    return GRPC_STATUS_OK;
}

/* One Search of n consecutive query rows on one shard. */
grpc_status_code shard_calls_search(struct rpc_channel *ch, const char *collection, uint32_t shard,
                                    const struct dataset_matrix *q, size_t first, size_t n,
                                    uint32_t k, uint32_t ef, int64_t deadline_ms,
                                    Vecshard__V1__NodeSearchResponse **resp, struct rpc_status *st)
{
    Vecshard__V1__NodeSearchRequest req = VECSHARD__V1__NODE_SEARCH_REQUEST__INIT;
    struct rpc_opts ro = {.deadline_ms = deadline_ms};
    /* One block for both arrays: n is the caller's choice, too big for the stack. */
    Vecshard__V1__Query *qs = malloc(n * (sizeof *qs + sizeof(Vecshard__V1__Query *)));
    Vecshard__V1__Query **qp = (Vecshard__V1__Query **)(qs + n);

    *resp = NULL;
    if (qs == NULL) {
        st->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(st->details, sizeof st->details, "out of memory");
        st->trailers[0] = '\0';
        return st->code;
    }
    for (size_t j = 0; j < n; j++) {
        vecshard__v1__query__init(&qs[j]);
        qs[j].n_vector = q->dim;
        qs[j].vector = q->data + ((first + j) % q->n) * q->dim;
        qp[j] = &qs[j];
    }
    req.collection = (char *)collection;
    req.n_shards = 1;
    req.shards = &shard;
    req.n_queries = n;
    req.queries = qp;
    req.k = k;
    req.ef = ef;
    grpc_status_code code = rpc_unary(ch, "/vecshard.v1.ShardNode/Search", &req.base,
                                      &vecshard__v1__node_search_response__descriptor,
                                      (ProtobufCMessage **)resp, &ro, st);
    free(qs);
    return code;
}
