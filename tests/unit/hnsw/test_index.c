/*
 * test_index.c — building and searching: recall floors against exact search
 * for every metric with one and two build threads, upsert, filters, growth
 * from a tiny capacity, searches running during inserts, and argument
 * validation.
 */
#include "tests/unit/hnsw/test_support.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define N   20000
#define DIM 128
#define NQ  200

/* Builds N clustered points with `threads` threads and checks recall@10 at ef 64. */
static void recall_case(enum hnsw_metric metric, int threads)
{
    float *x = ts_clustered(N + NQ, DIM, 50, 42 + metric);
    uint64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++)
        ids[i] = 1000 + 7 * i;
    struct hnsw_index *idx = ts_index(DIM, metric, 16, 200);
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(idx, ids, x, N, threads, err), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_count(idx), N);
    double r = ts_recall(idx, x + (size_t)N * DIM, NQ, 10, 64, NULL, NULL);
    fprintf(stderr, "[%s, %d thread(s): recall@10 %.4f] ", hnsw_metric_name(metric), threads, r);
    CU_ASSERT(r >= 0.95);
    ts_assert_check(idx);
    hnsw_free(idx);
    free(ids);
    free(x);
}

static void test_recall_l2_1(void)
{
    recall_case(HNSW_METRIC_L2, 1);
}
static void test_recall_l2_2(void)
{
    recall_case(HNSW_METRIC_L2, 2);
}
static void test_recall_ip_1(void)
{
    recall_case(HNSW_METRIC_IP, 1);
}
static void test_recall_ip_2(void)
{
    recall_case(HNSW_METRIC_IP, 2);
}
static void test_recall_cos_1(void)
{
    recall_case(HNSW_METRIC_COSINE, 1);
}
static void test_recall_cos_2(void)
{
    recall_case(HNSW_METRIC_COSINE, 2);
}

/* Inserting an existing id replaces its vector; the old one is never returned. */
static void test_upsert_replaces(void)
{
    float *x = ts_clustered(2001, 16, 10, 3);
    struct hnsw_index *idx = ts_index(16, HNSW_METRIC_L2, 8, 64);
    for (uint64_t i = 0; i < 2000; i++)
        CU_ASSERT_EQUAL_FATAL(hnsw_insert(idx, i, x + i * 16, NULL), HNSW_OK);
    float *old = x + 5 * 16, *new = x + 2000 * 16, got[16];
    CU_ASSERT_EQUAL(hnsw_insert(idx, 5, new, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_count(idx), 2000);
    CU_ASSERT_EQUAL(hnsw_get(idx, 5, got), HNSW_OK);
    CU_ASSERT_EQUAL(memcmp(got, new, sizeof got), 0);
    struct hnsw_result r[5];
    uint32_t n;
    CU_ASSERT_EQUAL(hnsw_search(idx, new, 1, 64, NULL, NULL, r, &n, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(r[0].id, 5);
    CU_ASSERT_DOUBLE_EQUAL(r[0].dist, 0.0, 1e-6);
    /* Near the old vector, id 5 may appear only at its new distance. */
    CU_ASSERT_EQUAL(hnsw_search(idx, old, 5, 64, NULL, NULL, r, &n, NULL), HNSW_OK);
    for (uint32_t i = 0; i < n; i++)
        if (r[i].id == 5) CU_ASSERT(r[i].dist > 1e-6);
    ts_assert_check(idx);
    hnsw_free(idx);
    free(x);
}

/* Filter: only even ids. */
static bool even_only(uint64_t id, void *ctx)
{
    (void)ctx;
    return id % 2 == 0;
}

static void test_filter(void)
{
    float *x = ts_clustered(5100, 32, 20, 9);
    uint64_t *ids = malloc(5000 * sizeof *ids);
    for (uint64_t i = 0; i < 5000; i++)
        ids[i] = i;
    struct hnsw_index *idx = ts_index(32, HNSW_METRIC_L2, 16, 100);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(idx, ids, x, 5000, 2, NULL), HNSW_OK);
    struct hnsw_result r[10];
    uint32_t n;
    for (int q = 0; q < 100; q++) {
        CU_ASSERT_EQUAL(hnsw_search(idx, x + (5000 + q) * 32, 10, 64, even_only, NULL, r, &n, NULL),
                        HNSW_OK);
        CU_ASSERT_EQUAL(n, 10);
        for (uint32_t i = 0; i < n; i++)
            CU_ASSERT_EQUAL(r[i].id % 2, 0);
    }
    CU_ASSERT(ts_recall(idx, x + 5000 * 32, 100, 10, 64, even_only, NULL) >= 0.95);
    hnsw_free(idx);
    free(ids);
    free(x);
}

/* A capacity of 1 grows to 5000 points one insert at a time. */
static void test_growth(void)
{
    struct hnsw_params p;
    struct hnsw_index *idx;
    hnsw_params_init(&p);
    p.dim = 24;
    p.initial_capacity = 1;
    CU_ASSERT_EQUAL_FATAL(hnsw_create(&p, &idx, NULL), HNSW_OK);
    float *x = ts_clustered(5100, 24, 10, 11);
    for (uint64_t i = 0; i < 5000; i++)
        CU_ASSERT_EQUAL_FATAL(hnsw_insert(idx, i, x + i * 24, NULL), HNSW_OK);
    struct hnsw_stats st;
    hnsw_info(idx, &st);
    CU_ASSERT_EQUAL(st.count, 5000);
    CU_ASSERT(st.capacity >= 5000);
    CU_ASSERT(st.memory_bytes > 5000 * 24 * sizeof(float));
    CU_ASSERT(ts_recall(idx, x + 5000 * 24, 100, 10, 64, NULL, NULL) >= 0.95);
    hnsw_free(idx);
    free(x);
}

struct concurrent {
    struct hnsw_index *idx;
    const float *x;
    int failures;
};

/* Searches repeatedly while another thread inserts. */
static void *searcher(void *arg)
{
    struct concurrent *c = arg;
    struct hnsw_result r[10];
    uint32_t n;
    for (int i = 0; i < 3000; i++) {
        if (hnsw_search(c->idx, c->x + (i % 1000) * 32, 10, 32, NULL, NULL, r, &n, NULL))
            c->failures++;
        for (uint32_t j = 1; j < n; j++)
            if (r[j].dist < r[j - 1].dist) c->failures++;
    }
    return NULL;
}

static void test_search_during_inserts(void)
{
    float *x = ts_clustered(8000, 32, 20, 5);
    uint64_t *ids = malloc(8000 * sizeof *ids);
    for (uint64_t i = 0; i < 8000; i++)
        ids[i] = i;
    struct hnsw_index *idx = ts_index(32, HNSW_METRIC_L2, 12, 100);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(idx, ids, x, 1000, 1, NULL), HNSW_OK);
    struct concurrent c = {idx, x, 0};
    pthread_t t;
    pthread_create(&t, NULL, searcher, &c);
    CU_ASSERT_EQUAL(hnsw_insert_batch(idx, ids + 1000, x + 1000 * 32, 7000, 2, NULL), HNSW_OK);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(c.failures, 0);
    CU_ASSERT_EQUAL(hnsw_count(idx), 8000);
    ts_assert_check(idx);
    hnsw_free(idx);
    free(ids);
    free(x);
}

/* Later rows win when a batch repeats an id. */
static void test_batch_duplicates(void)
{
    float x[4 * 4] = {0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0};
    uint64_t ids[4] = {1, 2, 1, 3};
    struct hnsw_index *idx = ts_index(4, HNSW_METRIC_L2, 4, 16);
    CU_ASSERT_EQUAL(hnsw_insert_batch(idx, ids, x, 4, 2, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_count(idx), 3);
    float got[4];
    CU_ASSERT_EQUAL(hnsw_get(idx, 1, got), HNSW_OK);
    CU_ASSERT_EQUAL(memcmp(got, x + 8, sizeof got), 0);
    hnsw_free(idx);
}

static void test_invalid_arguments(void)
{
    struct hnsw_params p;
    struct hnsw_index *idx;
    char err[HNSW_ERR_MAX];
    hnsw_params_init(&p);
    p.dim = 0;
    CU_ASSERT_EQUAL(hnsw_create(&p, &idx, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dim"));
    CU_ASSERT_PTR_NULL(idx);
    p.dim = 4;
    p.M = 1;
    CU_ASSERT_EQUAL(hnsw_create(&p, &idx, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "M"));
    p.M = 16;
    p.metric = (enum hnsw_metric)7;
    CU_ASSERT_EQUAL(hnsw_create(&p, &idx, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "metric"));

    idx = ts_index(4, HNSW_METRIC_COSINE, 16, 100);
    float ok[4] = {1, 2, 3, 4}, bad[4] = {1, NAN, 3, 4}, inf[4] = {INFINITY, 0, 0, 0},
          zero[4] = {0};
    CU_ASSERT_EQUAL(hnsw_insert(idx, 1, ok, err), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_insert(idx, 2, bad, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "vector[1] is NaN"));
    CU_ASSERT_EQUAL(hnsw_insert(idx, 2, inf, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "infinite"));
    CU_ASSERT_EQUAL(hnsw_insert(idx, 2, zero, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "zeros"));
    uint64_t ids[2] = {7, 8};
    float two[8] = {1, 1, 1, 1, 1, NAN, 1, 1};
    CU_ASSERT_EQUAL(hnsw_insert_batch(idx, ids, two, 2, 1, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "vectors[1][1]"));
    CU_ASSERT_FALSE(hnsw_contains(idx, 7)); /* nothing of a rejected batch lands */

    struct hnsw_result r[4];
    uint32_t n = 99;
    CU_ASSERT_EQUAL(hnsw_search(idx, ok, 0, 10, NULL, NULL, r, &n, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "k must be"));
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(hnsw_search(idx, ok, 1, HNSW_MAX_EF + 1, NULL, NULL, r, &n, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ef must be"));
    CU_ASSERT_EQUAL(hnsw_search(idx, bad, 1, 10, NULL, NULL, r, &n, err), HNSW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "query[1]"));
    CU_ASSERT_EQUAL(hnsw_search(idx, ok, 1, 10, NULL, NULL, r, &n, err), HNSW_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(hnsw_delete(idx, 12345), HNSW_ENOTFOUND);
    CU_ASSERT_EQUAL(hnsw_get(idx, 12345, ok), HNSW_ENOTFOUND);
    hnsw_free(idx);
    hnsw_free(NULL);
}

static void test_empty_index(void)
{
    struct hnsw_index *idx = ts_index(3, HNSW_METRIC_L2, 16, 100);
    float q[3] = {1, 2, 3};
    struct hnsw_result r[2];
    uint32_t n = 5;
    CU_ASSERT_EQUAL(hnsw_search(idx, q, 2, 10, NULL, NULL, r, &n, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(n, 0);
    ts_assert_check(idx);
    double rec;
    CU_ASSERT_EQUAL(hnsw_self_recall(idx, 10, 10, 10, &rec, NULL), HNSW_OK);
    hnsw_free(idx);
}

void register_index_tests(void)
{
    CU_pSuite s = CU_add_suite("index", NULL, NULL);
    CU_add_test(s, "recall@10 >= 0.95, l2, 1 build thread", test_recall_l2_1);
    CU_add_test(s, "recall@10 >= 0.95, l2, 2 build threads", test_recall_l2_2);
    CU_add_test(s, "recall@10 >= 0.95, ip, 1 build thread", test_recall_ip_1);
    CU_add_test(s, "recall@10 >= 0.95, ip, 2 build threads", test_recall_ip_2);
    CU_add_test(s, "recall@10 >= 0.95, cosine, 1 build thread", test_recall_cos_1);
    CU_add_test(s, "recall@10 >= 0.95, cosine, 2 build threads", test_recall_cos_2);
    CU_add_test(s, "upsert replaces the vector", test_upsert_replaces);
    CU_add_test(s, "filter excludes ids and keeps recall", test_filter);
    CU_add_test(s, "capacity grows without a rebuild", test_growth);
    CU_add_test(s, "searches run during inserts", test_search_during_inserts);
    CU_add_test(s, "a batch's later duplicate wins", test_batch_duplicates);
    CU_add_test(s, "invalid arguments are errors, not crashes", test_invalid_arguments);
    CU_add_test(s, "an empty index searches to nothing", test_empty_index);
}
