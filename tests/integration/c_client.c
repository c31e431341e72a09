/*
 * c_client.c — vs-c-client: the integration tests' C client of one
 * vecshard-node. It upserts every row of an .fvecs file into one shard
 * (id = row number, optional payload "row-<n>") with ShardNode.Write in
 * batches, searches the queries of a second .fvecs file with
 * ShardNode.Search (several queries per call), and prints one JSON line:
 *
 *   {"points":N,"dim":D,"queries":Q,"k":K,"ef":E,"recall":R,
 *    "upsert_seconds":S,"search_seconds":S,"last_lsn":L}
 *
 * recall is recall@k against the .ivecs ground truth (base row numbers).
 * It exists to prove that the C stack a router will use — common/rpc and
 * the protobuf-c messages — interoperates with the node, so it uses those
 * and nothing else (files are read with tools/bench/dataset, requests built
 * with tools/node_bench/shard_calls, shared with vecshard-bench-node). Exit status:
 * 0 after a full run, 1 on any failed call (the gRPC status is printed on
 * stderr, e.g. "write: NOT_FOUND: ..."), 2 on bad usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/flags.h"
#include "common/rpc/rpc.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"
#include "tools/bench/dataset.h"
#include "tools/node_bench/shard_calls.h"

#define CALL_TIMEOUT_MS 60000

struct opts {
    const char *addr, *collection, *base, *query, *gt;
    uint32_t shard, k, ef, batch, per_call;
    uint64_t epoch;
    int payloads;
};

/* Prints the usage text to f. */
static void usage(FILE *f)
{
    fprintf(f, "usage: vs-c-client --addr HOST:PORT --collection NAME --base B.fvecs\n"
               "         --query Q.fvecs --gt GT.ivecs [--shard 0] [--epoch 1] [--k 10]\n"
               "         [--ef 64] [--batch 1000] [--per-call 16] [--payloads]\n");
}

/* Fills *o from argv; 0 or -1 (message printed). */
static int parse_args(int argc, char **argv, struct opts *o)
{
    const char *f = NULL;

    *o = (struct opts){.k = 10, .ef = 64, .batch = 1000, .per_call = 16, .epoch = 1};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        f = argv[i];
        uint64_t n = 0;
        if (!strcmp(f, "--payloads")) {
            o->payloads = 1;
            continue;
        }
        if (!v) goto bad;
        i++;
        if (!strcmp(f, "--addr"))
            o->addr = v;
        else if (!strcmp(f, "--collection"))
            o->collection = v;
        else if (!strcmp(f, "--base"))
            o->base = v;
        else if (!strcmp(f, "--query"))
            o->query = v;
        else if (!strcmp(f, "--gt"))
            o->gt = v;
        else if (!flags_parse_u64(v, false, &n))
            goto bad;
        else if (!strcmp(f, "--shard"))
            o->shard = (uint32_t)n;
        else if (!strcmp(f, "--epoch"))
            o->epoch = n;
        else if (!strcmp(f, "--k"))
            o->k = (uint32_t)n;
        else if (!strcmp(f, "--ef"))
            o->ef = (uint32_t)n;
        else if (!strcmp(f, "--batch"))
            o->batch = (uint32_t)n;
        else if (!strcmp(f, "--per-call"))
            o->per_call = (uint32_t)n;
        else
            goto bad;
    }
    if (o->addr && o->collection && o->base && o->query && o->gt && o->k && o->batch && o->per_call)
        return 0;
    fprintf(stderr, "vs-c-client: missing or zero required flag\n");
    usage(stderr);
    return -1;
bad:
    fprintf(stderr, "vs-c-client: bad flag or value: %s\n", f);
    usage(stderr);
    return -1;
}

/* Prints a failed call's status; returns -1. */
static int call_failed(const char *what, const struct rpc_status *st)
{
    fprintf(stderr, "vs-c-client: %s: %s: %s\n", what, rpc_status_name(st->code), st->details);
    return -1;
}

/* Upserts rows [0, n) in batches; *last_lsn gets the last batch's LSN. */
static int upsert_all(struct rpc_channel *ch, const struct opts *o,
                      const struct dataset_matrix *base, uint64_t *last_lsn)
{
    Vecshard__V1__Point *pts = calloc(o->batch, sizeof *pts);
    Vecshard__V1__Point **ptrs = calloc(o->batch, sizeof *ptrs);
    char(*payload)[32] = calloc(o->batch, sizeof *payload);
    int rc = -1;

    if (!pts || !ptrs || !payload) {
        fprintf(stderr, "vs-c-client: out of memory\n");
        goto done;
    }
    for (size_t lo = 0; lo < base->n; lo += o->batch) {
        size_t cnt = base->n - lo < o->batch ? base->n - lo : o->batch;
        struct rpc_status st;

        shard_calls_points(base, lo, cnt, pts, ptrs);
        for (size_t j = 0; o->payloads && j < cnt; j++) {
            int len = snprintf(payload[j], sizeof payload[j], "row-%zu", lo + j);
            pts[j].payload.data = (uint8_t *)payload[j];
            pts[j].payload.len = (size_t)len;
        }
        if (shard_calls_write(ch, o->collection, o->shard, o->epoch, ptrs, cnt,
                              rpc_deadline_in(CALL_TIMEOUT_MS), last_lsn, &st) != GRPC_STATUS_OK) {
            call_failed("write", &st);
            goto done;
        }
    }
    rc = 0;
done:
    free(pts);
    free(ptrs);
    free(payload);
    return rc;
}

/* Searches every query (per_call per Search); adds recall@k over them to *sum. */
static int search_all(struct rpc_channel *ch, const struct opts *o, const struct dataset_matrix *q,
                      const struct dataset_ids *gt, double *sum)
{
    uint64_t *ids = calloc(o->k, sizeof *ids);
    int rc = -1;

    if (!ids) {
        fprintf(stderr, "vs-c-client: out of memory\n");
        goto done;
    }
    *sum = 0;
    for (size_t lo = 0; lo < q->n; lo += o->per_call) {
        size_t cnt = q->n - lo < o->per_call ? q->n - lo : o->per_call;
        Vecshard__V1__NodeSearchResponse *resp = NULL;
        struct rpc_status st;

        if (shard_calls_search(ch, o->collection, o->shard, q, lo, cnt, o->k, o->ef,
                               rpc_deadline_in(CALL_TIMEOUT_MS), &resp, &st) != GRPC_STATUS_OK) {
            call_failed("search", &st);
            goto done;
        }
        if (resp->n_shards != 1 || resp->shards[0]->code != 0 ||
            resp->shards[0]->n_results != cnt) {
            fprintf(stderr, "vs-c-client: search: shard answered code %u (%s), %zu results\n",
                    resp->n_shards ? resp->shards[0]->code : 0,
                    resp->n_shards ? resp->shards[0]->error : "no shard entry",
                    resp->n_shards ? resp->shards[0]->n_results : 0);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            goto done;
        }
        for (size_t j = 0; j < cnt; j++) {
            Vecshard__V1__QueryResult *r = resp->shards[0]->results[j];
            uint32_t n = r->n_hits < o->k ? (uint32_t)r->n_hits : o->k;
            for (uint32_t h = 0; h < n; h++)
                ids[h] = r->hits[h]->id;
            *sum += dataset_recall(gt->data + (lo + j) * gt->k, o->k, ids, n);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    rc = 0;
done:
    free(ids);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct dataset_matrix base = {0}, query = {0};
    struct dataset_ids gt = {0};
    struct rpc_client *cl = NULL;
    char err[DATASET_ERR_MAX];
    uint64_t last_lsn = 0;
    double sum = 0, t0, t1, t2;
    int rc = 1;

    if (parse_args(argc, argv, &o)) return 2;
    if (dataset_read_fvecs(o.base, &base, err) || dataset_read_fvecs(o.query, &query, err) ||
        dataset_read_ivecs(o.gt, &gt, err)) {
        fprintf(stderr, "vs-c-client: %s\n", err);
        goto done;
    }
    if (gt.n < query.n || gt.k < o.k || query.dim != base.dim) {
        fprintf(stderr, "vs-c-client: ground truth or query file does not fit the base\n");
        goto done;
    }
    cl = rpc_client_create(NULL);
    struct rpc_channel *ch = cl ? rpc_client_channel(cl, o.addr) : NULL;
    if (!ch) {
        fprintf(stderr, "vs-c-client: cannot create a gRPC client\n");
        goto done;
    }
    t0 = (double)rpc_now_ms() / 1e3;
    if (upsert_all(ch, &o, &base, &last_lsn)) goto done;
    t1 = (double)rpc_now_ms() / 1e3;
    if (search_all(ch, &o, &query, &gt, &sum)) goto done;
    t2 = (double)rpc_now_ms() / 1e3;
    printf("{\"points\":%zu,\"dim\":%u,\"queries\":%zu,\"k\":%u,\"ef\":%u,\"recall\":%.5f,"
           "\"upsert_seconds\":%.3f,\"search_seconds\":%.3f,\"last_lsn\":%" PRIu64 "}\n",
           base.n, base.dim, query.n, o.k, o.ef, query.n ? sum / (double)query.n : 0.0, t1 - t0,
           t2 - t1, last_lsn);
    rc = 0;
done:
    if (cl) rpc_client_destroy(cl);
    dataset_matrix_free(&base);
    dataset_matrix_free(&query);
    dataset_ids_free(&gt);
    return rc;
}
