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
#include <unistd.h>

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

/*
 * Searches q with k = ef = BIG_K: asserts BIG_K hits, all finite, and that at
 * least 99% of them are at exact search's distance for their rank (the
 * search is approximate: with two build threads, a few copies of the next
 * vector out may be missed in a run; the copies of q itself never are).
 */
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
    uint32_t bad = 0, zero_exact = 0, zero_got = 0;
    for (uint32_t i = 0; i < na && i < nb; i++) {
        CU_ASSERT(isfinite(a[i].dist));
        bad += a[i].dist != b[i].dist;
        zero_exact += b[i].dist == b[0].dist;
        zero_got += a[i].dist == b[0].dist;
    }
    if (bad) fprintf(stderr, "\n%s: %u of %u distances differ from exact search\n", what, bad, na);
    CU_ASSERT(bad * 100 <= BIG_K);
    CU_ASSERT_EQUAL(zero_got, zero_exact); /* every copy at the nearest distance is found */
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

/* Inserts rows [from, to) of x (ids 100 + row) in batches of `batch` with two threads. */
static void insert_rows(struct hnsw_index *idx, const float *x, uint32_t dim, size_t from,
                        size_t to, size_t batch)
{
    uint64_t ids[500];
    char err[HNSW_ERR_MAX] = "";
    for (size_t i = from; i < to; i += batch) {
        size_t m = to - i < batch ? to - i : batch;
        for (size_t j = 0; j < m; j++)
            ids[j] = 100 + i + j;
        int rc = hnsw_insert_batch(idx, ids, x + i * dim, m, 2, err);
        if (rc) fprintf(stderr, "\nbatch at row %zu: %s\n", i, err);
        CU_ASSERT_EQUAL_FATAL(rc, HNSW_OK);
    }
}

/*
 * The copy table survives a save/load and a repair: copies inserted after
 * either (in batches too small for the reachability sweep) still join their
 * vector's one ring, so k = 1,000 finds every copy of each query.
 */
static void test_copies_after_load_and_repair(void)
{
    size_t n;
    uint32_t dim;
    float *x = make_dataset(DS_DUP10, &n, &dim);
    for (int m = HNSW_METRIC_L2; m <= HNSW_METRIC_COSINE; m++) {
        struct hnsw_index *idx = ts_index(dim, (enum hnsw_metric)m, 16, 200);
        insert_rows(idx, x, dim, 0, 3000, 500);
        char dir[] = "/tmp/vs-hnsw-dup-XXXXXX", path[64], err[HNSW_ERR_MAX] = "";
        CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/idx", dir);
        CU_ASSERT_EQUAL_FATAL(hnsw_save(idx, path, err), HNSW_OK);
        hnsw_free(idx);
        idx = NULL;
        int rc = hnsw_load(path, &idx, err);
        if (rc) fprintf(stderr, "\nhnsw_load: %s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, HNSW_OK);
        remove(path);
        rmdir(dir);
        insert_rows(idx, x, dim, 3000, 5000, 100);
        ts_assert_check(idx);
        for (uint32_t q = 0; q < 10; q++)
            assert_exact_big_k(idx, x + (size_t)q * dim, "copy after load");
        /* Delete a third of the rows (the ring loses many links), repair, insert more. */
        for (size_t i = 0; i < 5000; i += 3)
            CU_ASSERT_EQUAL(hnsw_delete(idx, 100 + i), HNSW_OK);
        CU_ASSERT_EQUAL_FATAL(hnsw_repair(idx, 2, err), HNSW_OK);
        insert_rows(idx, x, dim, 5000, 7000, 100);
        ts_assert_check(idx);
        for (uint32_t q = 0; q < 10; q++)
            assert_exact_big_k(idx, x + (size_t)q * dim, "copy after repair");
        hnsw_free(idx);
    }
    free(x);
}

/* Under cosine a norm that underflows is refused for points, batches and queries. */
static void test_cosine_tiny_norm(void)
{
    struct hnsw_index *idx = ts_index(4, HNSW_METRIC_COSINE, 16, 200);
    float tiny[4] = {1e-45f, 1e-45f, 0, 0}, sub[4] = {1e-39f, 0, 0, 0}, ok[4] = {1e-30f, 0, 0, 0};
    char err[HNSW_ERR_MAX] = "";
    CU_ASSERT_EQUAL(hnsw_insert(idx, 1, tiny, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "vector has norm"));
    CU_ASSERT_EQUAL(hnsw_insert(idx, 2, sub, err), HNSW_EINVAL);
    float rows[3 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 1e-45f, 1e-45f, 0, 0};
    uint64_t ids[3] = {10, 11, 12};
    CU_ASSERT_EQUAL(hnsw_insert_batch(idx, ids, rows, 3, 1, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "vectors[2] has norm"));
    CU_ASSERT_EQUAL(hnsw_count(idx), 0);
    /* A small but normal norm normalises exactly. */
    CU_ASSERT_EQUAL(hnsw_insert(idx, 3, ok, err), HNSW_OK);
    float got[4];
    CU_ASSERT_EQUAL(hnsw_get(idx, 3, got), HNSW_OK);
    CU_ASSERT(got[0] == 1.0f && got[1] == 0 && got[2] == 0 && got[3] == 0);
    struct hnsw_result res[4];
    uint32_t n = 9;
    CU_ASSERT_EQUAL(hnsw_search(idx, tiny, 4, 10, NULL, NULL, res, &n, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "query has norm"));
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(hnsw_search(idx, ok, 4, 10, NULL, NULL, res, &n, err), HNSW_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT(n == 1 && res[0].id == 3 && isfinite(res[0].dist) && fabsf(res[0].dist) < 1e-6f);
    hnsw_free(idx);
}

/* |x| > HNSW_MAX_ABS is refused under every metric; at the bound distances stay finite. */
static void test_huge_components(void)
{
    enum { D = 8192 };
    float *a = malloc(D * sizeof *a), *b = malloc(D * sizeof *b);
    for (int m = HNSW_METRIC_L2; m <= HNSW_METRIC_COSINE; m++) {
        struct hnsw_index *idx = ts_index(D, (enum hnsw_metric)m, 16, 200);
        char err[HNSW_ERR_MAX] = "";
        for (int j = 0; j < D; j++) {
            a[j] = j % 2 ? HNSW_MAX_ABS : -HNSW_MAX_ABS;
            b[j] = -a[j];
        }
        CU_ASSERT_EQUAL(hnsw_insert(idx, 1, a, err), HNSW_OK);
        CU_ASSERT_EQUAL(hnsw_insert(idx, 2, b, err), HNSW_OK);
        struct hnsw_result res[2];
        uint32_t n = 0;
        CU_ASSERT_EQUAL(hnsw_search(idx, a, 2, 10, NULL, NULL, res, &n, err), HNSW_OK);
        CU_ASSERT_EQUAL(n, 2);
        for (uint32_t i = 0; i < n; i++)
            CU_ASSERT(isfinite(res[i].dist));
        CU_ASSERT(n == 2 && res[0].id == 1 && res[1].id == 2);
        b[7] = 2e16f;
        CU_ASSERT_EQUAL(hnsw_insert(idx, 3, b, err), HNSW_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "vector[7] is 2e+16, outside +-1e+16"));
        CU_ASSERT_EQUAL(hnsw_search(idx, b, 2, 10, NULL, NULL, res, &n, err), HNSW_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "query[7] is 2e+16"));
        b[7] = -3e38f;
        CU_ASSERT_EQUAL(hnsw_insert(idx, 3, b, err), HNSW_EINVAL);
        CU_ASSERT_EQUAL(hnsw_count(idx), 2);
        hnsw_free(idx);
    }
    free(a);
    free(b);
}

void register_degenerate_tests(void)
{
    CU_pSuite s = CU_add_suite("degenerate", NULL, NULL);
    CU_add_test(s, "10 vectors x 900: batches insert, k=1000 finds 1000 exact", test_dup10);
    CU_add_test(s, "one-hot x 5000: batches insert, k=1000 finds 1000 exact", test_onehot);
    CU_add_test(s, "3000 copies among 5000: batches insert, k=1000 finds 1000", test_mix);
    CU_add_test(s, "copies join one ring after save/load and after repair",
                test_copies_after_load_and_repair);
    CU_add_test(s, "cosine refuses a norm that underflows (points and queries)",
                test_cosine_tiny_norm);
    CU_add_test(s, "|x| > 1e16 refused, distances at the bound finite", test_huge_components);
}
