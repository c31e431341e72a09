/*
 * test_delete.c — deletes: a deleted id is never returned again, recall
 * over the remaining points holds before repair (>= 0.90) and after it
 * (>= 0.95), repair leaves a valid graph, and freed slots are reused.
 */
#include "tests/unit/hnsw/test_support.h"

#include <stdio.h>
#include <stdlib.h>

#define N   20000
#define DIM 128
#define NQ  200

static void test_delete_half(void)
{
    float *x = ts_clustered(N + NQ, DIM, 50, 77);
    uint64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++)
        ids[i] = i;
    struct hnsw_index *idx = ts_index(DIM, HNSW_METRIC_L2, 16, 200);
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(idx, ids, x, N, 2, err), HNSW_OK);
    for (uint64_t i = 0; i < N; i += 2)
        CU_ASSERT_EQUAL(hnsw_delete(idx, i), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_delete(idx, 0), HNSW_ENOTFOUND);
    CU_ASSERT_EQUAL(hnsw_count(idx), N / 2);
    CU_ASSERT_EQUAL(hnsw_deleted_count(idx), N / 2);
    CU_ASSERT_FALSE(hnsw_contains(idx, 4));

    const float *q = x + (size_t)N * DIM;
    struct hnsw_result r[10];
    uint32_t n;
    int returned_deleted = 0;
    for (size_t i = 0; i < NQ; i++) {
        CU_ASSERT_EQUAL(hnsw_search(idx, q + i * DIM, 10, 64, NULL, NULL, r, &n, NULL), HNSW_OK);
        CU_ASSERT_EQUAL(n, 10);
        for (uint32_t j = 0; j < n; j++)
            returned_deleted += r[j].id % 2 == 0;
    }
    CU_ASSERT_EQUAL(returned_deleted, 0);
    double before = ts_recall(idx, q, NQ, 10, 64, NULL, NULL);
    ts_assert_check(idx);

    CU_ASSERT_EQUAL(hnsw_repair(idx, 2, err), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_deleted_count(idx), 0);
    double after = ts_recall(idx, q, NQ, 10, 64, NULL, NULL);
    fprintf(stderr, "[recall before repair %.4f, after %.4f] ", before, after);
    CU_ASSERT(before >= 0.90);
    CU_ASSERT(after >= 0.95);
    ts_assert_check(idx);
    for (size_t i = 0; i < NQ; i++) {
        CU_ASSERT_EQUAL(hnsw_search(idx, q + i * DIM, 10, 64, NULL, NULL, r, &n, NULL), HNSW_OK);
        for (uint32_t j = 0; j < n; j++)
            returned_deleted += r[j].id % 2 == 0;
    }
    CU_ASSERT_EQUAL(returned_deleted, 0);

    /* Re-inserting the deleted half reuses the freed slots: capacity stays. */
    struct hnsw_stats st0, st1;
    hnsw_info(idx, &st0);
    CU_ASSERT_EQUAL(st0.free_slots, N / 2);
    for (uint64_t i = 0; i < N; i += 2)
        CU_ASSERT_EQUAL_FATAL(hnsw_insert(idx, i, x + i * DIM, NULL), HNSW_OK);
    hnsw_info(idx, &st1);
    CU_ASSERT_EQUAL(st1.capacity, st0.capacity);
    CU_ASSERT_EQUAL(st1.free_slots, 0);
    CU_ASSERT_EQUAL(st1.count, N);
    CU_ASSERT(ts_recall(idx, q, NQ, 10, 64, NULL, NULL) >= 0.95);
    CU_ASSERT_EQUAL(hnsw_repair(idx, 2, err), HNSW_OK);
    ts_assert_check(idx);
    hnsw_free(idx);
    free(ids);
    free(x);
}

/* Deleting everything, including the entry point, leaves an empty, valid index. */
static void test_delete_all(void)
{
    float *x = ts_clustered(500, 8, 5, 1);
    struct hnsw_index *idx = ts_index(8, HNSW_METRIC_L2, 8, 50);
    for (uint64_t i = 0; i < 500; i++)
        CU_ASSERT_EQUAL_FATAL(hnsw_insert(idx, i, x + i * 8, NULL), HNSW_OK);
    for (uint64_t i = 0; i < 500; i++)
        CU_ASSERT_EQUAL(hnsw_delete(idx, i), HNSW_OK);
    struct hnsw_result r[3];
    uint32_t n = 9;
    CU_ASSERT_EQUAL(hnsw_search(idx, x, 3, 10, NULL, NULL, r, &n, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(hnsw_repair(idx, 1, NULL), HNSW_OK);
    ts_assert_check(idx);
    CU_ASSERT_EQUAL(hnsw_insert(idx, 42, x, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_search(idx, x, 3, 10, NULL, NULL, r, &n, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(r[0].id, 42);
    ts_assert_check(idx);
    hnsw_free(idx);
    free(x);
}

/* hnsw_ids lists exactly the live ids: none when empty, deleted ones absent, upserts once. */
static void test_ids(void)
{
    float *x = ts_clustered(300, 8, 3, 2);
    struct hnsw_index *idx = ts_index(8, HNSW_METRIC_L2, 8, 50);
    uint64_t *ids = (uint64_t *)1, n = 7;
    CU_ASSERT_EQUAL(hnsw_ids(idx, &ids, &n), HNSW_OK);
    CU_ASSERT_PTR_NULL(ids);
    CU_ASSERT_EQUAL(n, 0);
    for (uint64_t i = 0; i < 300; i++)
        CU_ASSERT_EQUAL_FATAL(hnsw_insert(idx, i * 1000003, x + i * 8, NULL), HNSW_OK);
    for (uint64_t i = 0; i < 300; i += 3)
        CU_ASSERT_EQUAL(hnsw_delete(idx, i * 1000003), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_insert(idx, 1000003, x, NULL), HNSW_OK); /* an upsert of a live id */
    CU_ASSERT_EQUAL(hnsw_ids(idx, &ids, &n), HNSW_OK);
    CU_ASSERT_EQUAL_FATAL(n, 200);
    uint8_t seen[300] = {0};
    for (uint64_t k = 0; k < n; k++) {
        CU_ASSERT_EQUAL_FATAL(ids[k] % 1000003, 0);
        uint64_t i = ids[k] / 1000003;
        CU_ASSERT_FATAL(i < 300 && i % 3 != 0 && !seen[i]);
        seen[i] = 1;
    }
    free(ids);
    hnsw_free(idx);
    free(x);
}

void register_delete_tests(void)
{
    CU_pSuite s = CU_add_suite("delete", NULL, NULL);
    CU_add_test(s, "delete half: never returned, recall before/after repair, slot reuse",
                test_delete_half);
    CU_add_test(s, "delete everything, then insert again", test_delete_all);
    CU_add_test(s, "hnsw_ids: exactly the live ids", test_ids);
}
