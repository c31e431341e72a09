/*
 * test_degenerate.c — duplicate-heavy data and vectors at the edge of float
 * range. Three data sets that once left most of a graph unreachable (10
 * distinct vectors repeated 900 times; one-hot vectors cycling through the
 * 128 axes; 3,000 copies of one vector among 5,000): every batch inserts,
 * hnsw_check finds every point reachable, and a search with k = ef = 1,000
 * returns exactly 1,000 hits whose distances equal the exact search's. And
 * the value rules: components beyond HNSW_MAX_ABS, cosine norms that are 0,
 * subnormal or non-finite, are refused for points and queries alike, and no
 * search ever returns a non-finite distance.
 */
#include "tests/unit/hnsw/test_support.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DUP_DIM    32
#define ONEHOT_DIM 128
#define BIG_K      1000

enum dataset { DS_DUP10, DS_ONEHOT, DS_MIX };

/* splitmix64 step. */
static uint64_t mix64(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A uniform float in [-1, 1). */
static float unif(uint64_t *s)
{
    return (float)((mix64(s) >> 11) * 0x1.0p-52 - 1.0);
}

/* Builds the data set: *n points of *dim floats (caller frees). */
static float *make_dataset(enum dataset ds, size_t *n, uint32_t *dim)
{
    uint64_t seed = 7 + ds;
    if (ds == DS_DUP10) {
        *n = 9000, *dim = DUP_DIM;
        float base[10][DUP_DIM];
        for (int b = 0; b < 10; b++)
            for (int j = 0; j < DUP_DIM; j++)
                base[b][j] = unif(&seed);
        float *x = malloc(*n * DUP_DIM * sizeof *x);
        for (size_t i = 0; i < *n; i++)
            memcpy(x + i * DUP_DIM, base[i % 10], sizeof base[0]);
        return x;
    }
    if (ds == DS_ONEHOT) {
        *n = 5000, *dim = ONEHOT_DIM;
        float *x = calloc(*n * ONEHOT_DIM, sizeof *x);
        for (size_t i = 0; i < *n; i++)
            x[i * ONEHOT_DIM + i % ONEHOT_DIM] = 1.0f;
        return x;
    }
    *n = 5000, *dim = DUP_DIM;
    float one[DUP_DIM];
    for (int j = 0; j < DUP_DIM; j++)
        one[j] = unif(&seed);
    float *x = malloc(*n * DUP_DIM * sizeof *x);
    for (size_t i = 0; i < *n; i++) {
        if (i % 5 < 3)
            memcpy(x + i * DUP_DIM, one, sizeof one);
        else
            for (int j = 0; j < DUP_DIM; j++)
                x[i * DUP_DIM + j] = unif(&seed);
    }
    return x;
}

/* Searches q with k = ef = BIG_K; asserts BIG_K hits whose distances equal exact search's. */
static void assert_exact_big_k(struct hnsw_index *idx, const float *q, const char *what)
{
    static struct hnsw_result a[BIG_K], b[BIG_K];
    uint32_t na = 0, nb = 0;
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(hnsw_search(idx, q, BIG_K, BIG_K, NULL, NULL, a, &na, err), HNSW_OK);
    CU_ASSERT_EQUAL_FATAL(hnsw_search_exact(idx, q, BIG_K, NULL, NULL, b, &nb, err), HNSW_OK);
    CU_ASSERT_EQUAL(nb, BIG_K);
    if (na != BIG_K) fprintf(stderr, "\n%s: %u hits, want %u\n", what, na, BIG_K);
    CU_ASSERT_EQUAL(na, BIG_K);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < na && i < nb; i++)
        bad += a[i].dist != b[i].dist || !isfinite(a[i].dist);
    if (bad) fprintf(stderr, "\n%s: %u of %u distances differ from exact search\n", what, bad, na);
    CU_ASSERT_EQUAL(bad, 0);
}

/*
 * Recall@BIG_K by distance: the share of hits no farther than exact
 * search's k-th (with thousands of copies tied, which ids are returned
 * among them is arbitrary). Asserts BIG_K hits and finite distances.
 */
static double tie_recall(struct hnsw_index *idx, const float *q)
{
    static struct hnsw_result a[BIG_K], b[BIG_K];
    uint32_t na = 0, nb = 0, good = 0;
    CU_ASSERT_EQUAL_FATAL(hnsw_search(idx, q, BIG_K, BIG_K, NULL, NULL, a, &na, NULL), HNSW_OK);
    CU_ASSERT_EQUAL_FATAL(hnsw_search_exact(idx, q, BIG_K, NULL, NULL, b, &nb, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(na, BIG_K);
    CU_ASSERT_EQUAL_FATAL(nb, BIG_K);
    for (uint32_t i = 0; i < na; i++) {
        CU_ASSERT(isfinite(a[i].dist));
        good += a[i].dist <= b[BIG_K - 1].dist;
    }
    return (double)good / BIG_K;
}

/* Inserts the data set in batches of `batch` rows, then checks reachability and big-k searches. */
static void degenerate_case(enum dataset ds, enum hnsw_metric metric, size_t batch)
{
    size_t n;
    uint32_t dim;
    float *x = make_dataset(ds, &n, &dim);
    uint64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = 100 + i;
    struct hnsw_index *idx = ts_index(dim, metric, 16, 200);
    char err[HNSW_ERR_MAX] = "";
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        int rc = hnsw_insert_batch(idx, ids + i, x + i * dim, m, 2, err);
        if (rc) fprintf(stderr, "\nbatch at row %zu: %s\n", i, err);
        CU_ASSERT_EQUAL_FATAL(rc, HNSW_OK);
    }
    CU_ASSERT_EQUAL(hnsw_count(idx), n);
    ts_assert_check(idx);
    /* Queries: the duplicated vectors themselves (ties), and for the mix a few random points. */
    uint32_t nq = ds == DS_DUP10 ? 10 : ds == DS_ONEHOT ? 8 : 1;
    for (uint32_t q = 0; q < nq; q++)
        assert_exact_big_k(idx, x + (size_t)q * dim, "duplicated vector");
    if (ds == DS_MIX) {
        /* Random points: all 1,000 hits, and recall@1000 (by distance) against exact search. */
        double r = 0;
        for (size_t q = 0; q < 8; q++)
            r += tie_recall(idx, x + (3 + 5 * q) * DUP_DIM) / 8;
        fprintf(stderr, "[%s, batches of %zu: recall@1000 %.4f] ", hnsw_metric_name(metric), batch,
                r);
        CU_ASSERT(r >= 0.97);
    }
    hnsw_free(idx);
    free(ids);
    free(x);
}

/* Every data set under every metric, one batch and batches of 500. */
static void degenerate_all(enum dataset ds)
{
    for (int m = HNSW_METRIC_L2; m <= HNSW_METRIC_COSINE; m++) {
        degenerate_case(ds, (enum hnsw_metric)m, 100000);
        degenerate_case(ds, (enum hnsw_metric)m, 500);
    }
}

static void test_dup10(void)
{
    degenerate_all(DS_DUP10);
}

static void test_onehot(void)
{
    degenerate_all(DS_ONEHOT);
}

static void test_mix(void)
{
    degenerate_all(DS_MIX);
}

void register_degenerate_tests(void)
{
    CU_pSuite s = CU_add_suite("degenerate", NULL, NULL);
    CU_add_test(s, "10 vectors x 900: batches insert, k=1000 finds 1000 exact", test_dup10);
    CU_add_test(s, "one-hot x 5000: batches insert, k=1000 finds 1000 exact", test_onehot);
    CU_add_test(s, "3000 copies among 5000: batches insert, k=1000 finds 1000", test_mix);
}
