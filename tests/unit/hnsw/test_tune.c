/*
 * test_tune.c — automatic ef: over several data sets (uniform, clustered,
 * gaussian under cosine, an SQ8 index) and targets 0.90 / 0.95 / 0.99, the
 * ef that hnsw_calibrate's curve over past queries picks, measured on
 * fresh queries of the same distribution, reaches the target within 0.01
 * and is at most 1.3x the smallest ef that reaches it on those queries; the
 * leave-one-out curve over the index's own points (no past queries yet)
 * also reaches the target. The graphs are weak on
 * purpose (M 8, efC 60; uniform data M 16, efC 100), so recall spans the
 * ladder instead of being 1 from ef = k.
 */
#include "tests/unit/hnsw/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define NQ 300
#define K  10

static double unif(uint64_t *s)
{
    return (double)(ts_rand(s) >> 11) * 0x1.0p-53;
}

enum shape { UNIFORM, CLUSTERED, GAUSSIAN };

/* n points: uniform in [0,1)^dim, 40 clusters with sigma 0.25, or standard gaussian. */
static float *make(enum shape sh, size_t n, uint32_t dim, uint64_t seed)
{
    float *x = malloc(n * dim * sizeof *x), *c = malloc(40 * (size_t)dim * sizeof *c);
    uint64_t s = seed;
    for (size_t i = 0; i < 40 * (size_t)dim; i++)
        c[i] = (float)unif(&s);
    for (size_t i = 0; i < n; i++) {
        size_t cl = ts_rand(&s) % 40;
        for (uint32_t d = 0; d < dim; d++)
            x[i * dim + d] = sh == UNIFORM     ? (float)unif(&s)
                             : sh == CLUSTERED ? c[cl * dim + d] + (float)(0.25 * ts_gauss(&s))
                                               : (float)ts_gauss(&s);
    }
    free(c);
    return x;
}

static void tune_case(const char *name, enum shape sh, uint32_t n, uint32_t dim,
                      enum hnsw_metric metric, enum hnsw_quant quant, uint32_t M, uint32_t efc)
{
    /* n points, NQ past queries for the calibration, NQ fresh ones to measure. */
    float *x = make(sh, n + 2 * NQ, dim, 1234 + (uint64_t)sh * 7 + dim);
    uint64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = i;
    struct hnsw_index *idx = ts_index_q(dim, metric, M, efc, quant);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(idx, ids, x, n, 1, NULL), HNSW_OK); /* one graph */
    struct hnsw_recall_curve c, own;
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(hnsw_calibrate(idx, K, x + (n + NQ) * dim, NQ, 0, 2048, 99, &c, err),
                          HNSW_OK);
    CU_ASSERT(c.n >= 2 && c.past_queries && c.queries == NQ);
    /* The fallback without past queries: leave-one-out on the index's own points. */
    CU_ASSERT_EQUAL_FATAL(hnsw_calibrate(idx, K, NULL, 0, 300, 2048, 99, &own, err), HNSW_OK);
    CU_ASSERT(!own.past_queries && own.queries == 300);
    const float *q = x + n * dim;
    static const double targets[] = {0.90, 0.95, 0.99};
    for (size_t t = 0; t < 3; t++) {
        double est;
        uint32_t ef = hnsw_curve_pick(&c, targets[t], &est);
        double got = ts_recall(idx, q, NQ, K, ef, NULL, NULL);
        /* The smallest ef meeting the target on these queries, in steps of ~3%. */
        uint32_t best = 0;
        for (uint32_t e = K; e <= 4 * ef + 64 && !best; e += 1 + e / 32)
            if (ts_recall(idx, q, NQ, K, e, NULL, NULL) >= targets[t]) best = e;
        double oest;
        uint32_t oef = hnsw_curve_pick(&own, targets[t], &oest);
        double ogot = ts_recall(idx, q, NQ, K, oef, NULL, NULL);
        fprintf(stderr,
                "\n    [%s target %.2f: ef %u measured %.4f; smallest %u; own points: ef %u "
                "measured %.4f]",
                name, targets[t], ef, got, best, oef, ogot);
        CU_ASSERT(got >= targets[t] - 0.01);
        CU_ASSERT(best > 0 && ef <= 1.3 * best + 1e-9);
        /* Leave-one-out is conservative: it meets the target, at a wider ef. */
        CU_ASSERT(ogot >= targets[t] - 0.01);
    }
    hnsw_free(idx);
    free(ids);
    free(x);
}

static void test_uniform(void)
{
    tune_case("uniform 16-d l2", UNIFORM, 20000, 16, HNSW_METRIC_L2, HNSW_QUANT_NONE, 16, 100);
}

static void test_clustered(void)
{
    tune_case("clustered 48-d l2", CLUSTERED, 20000, 48, HNSW_METRIC_L2, HNSW_QUANT_NONE, 8, 60);
}

static void test_gaussian_cosine(void)
{
    tune_case("gaussian 32-d cosine", GAUSSIAN, 20000, 32, HNSW_METRIC_COSINE, HNSW_QUANT_NONE, 8,
              60);
}

static void test_sq8(void)
{
    tune_case("clustered 48-d l2 sq8", CLUSTERED, 20000, 48, HNSW_METRIC_L2, HNSW_QUANT_SQ8, 8, 60);
}

/* Degenerate inputs: an empty index, k above the count. */
static void test_small(void)
{
    struct hnsw_index *idx = ts_index(4, HNSW_METRIC_L2, 16, 100);
    struct hnsw_recall_curve c;
    CU_ASSERT_EQUAL(hnsw_calibrate(idx, 10, NULL, 0, 100, 500, 1, &c, NULL), HNSW_OK);
    double est;
    CU_ASSERT_EQUAL(hnsw_curve_pick(&c, 0.95, &est), 10);
    float v[4] = {1, 2, 3, 4};
    for (uint64_t i = 0; i < 5; i++) {
        v[0] = (float)i;
        CU_ASSERT_EQUAL(hnsw_insert(idx, i, v, NULL), HNSW_OK);
    }
    CU_ASSERT_EQUAL(hnsw_calibrate(idx, 10, NULL, 0, 100, 500, 1, &c, NULL), HNSW_OK);
    CU_ASSERT(c.queries >= 1 && !c.past_queries);
    CU_ASSERT_EQUAL(hnsw_curve_pick(&c, 0.99, &est), 10);
    CU_ASSERT_EQUAL(est, 1.0);
    CU_ASSERT_EQUAL(hnsw_calibrate(idx, 0, NULL, 0, 100, 500, 1, &c, NULL), HNSW_EINVAL);
    hnsw_free(idx);
}

void register_tune_tests(void)
{
    CU_pSuite s = CU_add_suite("hnsw automatic ef", NULL, NULL);
    CU_add_test(s, "uniform data", test_uniform);
    CU_add_test(s, "clustered data", test_clustered);
    CU_add_test(s, "gaussian data under cosine", test_gaussian_cosine);
    CU_add_test(s, "an SQ8 index", test_sq8);
    CU_add_test(s, "empty and tiny indexes", test_small);
}
