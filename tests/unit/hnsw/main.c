/*
 * main.c — CUnit runner for the HNSW engine's unit tests (build/test_hnsw).
 */
#include "tests/unit/hnsw/test_support.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* splitmix64: the tests' deterministic random source. */
uint64_t ts_rand(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Standard normal by Box-Muller. */
double ts_gauss(uint64_t *s)
{
    double u = ((ts_rand(s) >> 11) + 1) * 0x1.0p-53, v = (ts_rand(s) >> 11) * 0x1.0p-53;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

float *ts_clustered(size_t n, uint32_t dim, uint32_t clusters, uint64_t seed)
{
    float *c = malloc((size_t)clusters * dim * sizeof *c);
    float *x = malloc(n * dim * sizeof *x);
    CU_ASSERT_FATAL(c && x);
    for (size_t i = 0; i < (size_t)clusters * dim; i++)
        c[i] = (float)((ts_rand(&seed) >> 11) * 0x1.0p-53);
    for (size_t i = 0; i < n; i++) {
        size_t k = ts_rand(&seed) % clusters;
        for (uint32_t j = 0; j < dim; j++)
            x[i * dim + j] = c[k * dim + j] + (float)(0.06 * ts_gauss(&seed));
    }
    free(c);
    return x;
}

struct hnsw_index *ts_index(uint32_t dim, enum hnsw_metric metric, uint32_t M, uint32_t efc)
{
    return ts_index_q(dim, metric, M, efc, HNSW_QUANT_NONE);
}

struct hnsw_index *ts_index_q(uint32_t dim, enum hnsw_metric metric, uint32_t M, uint32_t efc,
                              enum hnsw_quant quant)
{
    struct hnsw_params p;
    struct hnsw_index *idx = NULL;
    char err[HNSW_ERR_MAX];
    hnsw_params_init(&p);
    p.dim = dim;
    p.metric = metric;
    p.M = M;
    p.ef_construction = efc;
    p.quant = quant;
    int rc = hnsw_create(&p, &idx, err);
    if (rc) fprintf(stderr, "hnsw_create: %s\n", err);
    CU_ASSERT_FATAL(rc == HNSW_OK);
    return idx;
}

double ts_recall(struct hnsw_index *idx, const float *q, size_t nq, uint32_t k, uint32_t ef,
                 hnsw_filter_fn filter, void *ctx)
{
    struct hnsw_result *a = malloc(k * sizeof *a), *b = malloc(k * sizeof *b);
    uint32_t dim = hnsw_dim(idx);
    uint64_t hits = 0, total = 0;
    for (size_t i = 0; i < nq; i++) {
        uint32_t na, nb;
        CU_ASSERT_EQUAL_FATAL(hnsw_search(idx, q + i * dim, k, ef, filter, ctx, a, &na, NULL), 0);
        CU_ASSERT_EQUAL_FATAL(hnsw_search_exact(idx, q + i * dim, k, filter, ctx, b, &nb, NULL), 0);
        CU_ASSERT_EQUAL(na, nb);
        for (uint32_t x = 0; x < nb; x++)
            for (uint32_t y = 0; y < na; y++)
                if (a[y].id == b[x].id) {
                    hits++;
                    break;
                }
        total += nb;
    }
    free(a);
    free(b);
    return total ? (double)hits / (double)total : 1.0;
}

void ts_assert_check(struct hnsw_index *idx)
{
    char err[HNSW_ERR_MAX] = "";
    int rc = hnsw_check(idx, err);
    if (rc) fprintf(stderr, "\nhnsw_check: %s\n", err);
    CU_ASSERT_EQUAL(rc, HNSW_OK);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    register_distance_tests();
    register_index_tests();
    register_delete_tests();
    register_io_tests();
    register_degenerate_tests();
    register_sq8_tests();
    register_tune_tests();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
