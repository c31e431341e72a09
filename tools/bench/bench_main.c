/*
 * bench_main.c — vecshard-bench, engine mode: builds one HNSW index over a
 * data set with hnsw_insert_batch and sweeps search widths, reporting build
 * time, memory, recall@k, QPS and latency percentiles.
 *
 * The flags, the data handling and the measuring loop are shared with the
 * hnswlib peer (bench_args.c, bench_report.c), so the two binaries differ
 * only in the engine calls here. Ids are base row numbers, which is what the
 * ground truth holds. The capacity is set to the base size up front, as the
 * peer's max_elements is, so neither pays for growth during the build.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/hnsw/hnsw.h"
#include "tools/bench/bench_args.h"
#include "tools/bench/bench_report.h"

/* Search state handed to the measuring loop: the index. */
struct engine_ctx {
    struct hnsw_index *idx;
};

/* bench_search_fn over hnsw_search. */
static int engine_search(void *ctx, const float *query, uint32_t k, uint32_t ef, uint64_t *ids,
                         uint32_t *n, char *err)
{
    struct engine_ctx *c = ctx;
    char herr[HNSW_ERR_MAX];
    /* on the stack: the throughput pass calls from several threads (k <= 10,000) */
    struct hnsw_result res[k];
    int st = hnsw_search(c->idx, query, k, ef, NULL, NULL, res, n, herr);
    if (st != HNSW_OK) {
        snprintf(err, DATASET_ERR_MAX, "hnsw_search: %.200s", herr);
        return st;
    }
    for (uint32_t i = 0; i < *n; i++)
        ids[i] = res[i].id;
    return 0;
}

/* Builds the index over d->base, timing it; fills *b. */
static int build_index(const struct bench_args *a, const struct bench_data *d,
                       struct hnsw_index **out, struct bench_build *b, char *err)
{
    struct hnsw_params p;
    hnsw_params_init(&p);
    p.dim = d->base.dim;
    p.metric = (enum hnsw_metric)a->metric;
    p.M = a->M;
    p.ef_construction = a->ef_construction;
    p.initial_capacity = d->base.n > UINT32_MAX ? UINT32_MAX : (uint32_t)d->base.n;
    p.quant = (enum hnsw_quant)hnsw_quant_parse(a->quant);

    uint64_t *ids = malloc(d->base.n * sizeof(uint64_t));
    if (!ids) {
        snprintf(err, HNSW_ERR_MAX, "out of memory for %zu ids", d->base.n);
        return HNSW_ENOMEM;
    }
    for (size_t i = 0; i < d->base.n; i++)
        ids[i] = i;

    long long rss0 = bench_rss_bytes();
    double t0 = bench_now();
    int st = hnsw_create(&p, out, err);
    if (st == HNSW_OK && a->vector_file) {
        st = hnsw_vectors_to_file(*out, a->vector_file, err);
        if (st != HNSW_OK) {
            hnsw_free(*out);
            *out = NULL;
        }
    }
    if (st == HNSW_OK) {
        st = hnsw_insert_batch(*out, ids, d->base.data, d->base.n, a->threads, err);
        if (st != HNSW_OK) {
            hnsw_free(*out);
            *out = NULL;
        }
    }
    double t1 = bench_now();
    long long rss1 = bench_rss_bytes();
    free(ids);
    if (st != HNSW_OK) return st;

    b->seconds = t1 - t0;
    b->threads = a->threads;
    b->n = d->base.n;
    b->dim = d->base.dim;
    b->bytes = hnsw_memory_bytes(*out);
    b->rss_bytes = rss0 >= 0 && rss1 >= 0 ? rss1 - rss0 : -1;
    b->engine = "vecshard";
    b->kernel = hnsw_kernel_name();
    return HNSW_OK;
}

/* Entry point: prepare the data, build, sweep ef. */
int main(int argc, char **argv)
{
    struct bench_args a;
    struct bench_data d;
    int rc = bench_prepare(argc, argv, &a, &d);
    if (rc >= 0) return rc;

    char err[HNSW_ERR_MAX > DATASET_ERR_MAX ? HNSW_ERR_MAX : DATASET_ERR_MAX] = "";
    struct hnsw_index *idx = NULL;
    struct bench_build b;
    struct engine_ctx ctx = {NULL};
    rc = 1;
    if (build_index(&a, &d, &idx, &b, err) != HNSW_OK) {
        fprintf(stderr, "vecshard-bench: build failed: %s\n", err);
        goto done;
    }
    bench_print_build(&a, &b);
    ctx.idx = idx;
    for (size_t i = 0; i < a.n_ef; i++) {
        struct bench_search s;
        if (bench_run_search(&a, &d, engine_search, &ctx, a.ef[i], &s, err) != 0) {
            fprintf(stderr, "vecshard-bench: ef %u: %s\n", a.ef[i], err);
            goto done;
        }
        bench_print_search(&a, &s, i == 0);
    }
    rc = 0;
done:
    hnsw_free(idx);
    bench_data_free(&d);
    return rc;
}
