/*
 * test_sq8.c — SQ8 quantization: recall floors against exact search for
 * every metric (and no more than a small loss against the float index at
 * the same ef), the integer kernels equal in every family, save/load
 * re-deriving the same codes, training as an index grows, degenerate data
 * (constant dimensions, values outside the trained range), and float
 * vectors moved to a mapped file.
 */
#include "common/hnsw/distance.h"
#include "tests/unit/hnsw/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define N   20000
#define DIM 128
#define NQ  200

/* A fresh SQ8 index. */
static struct hnsw_index *sq8_index(uint32_t dim, enum hnsw_metric metric)
{
    return ts_index_q(dim, metric, 16, 200, HNSW_QUANT_SQ8);
}

static bool trained(struct hnsw_index *idx)
{
    struct hnsw_stats st;
    hnsw_info(idx, &st);
    return st.quant == HNSW_QUANT_SQ8 && st.sq8_trained;
}

/* Recall of SQ8 and float indexes over the same data at ef 64, one build thread. */
static void recall_case(enum hnsw_metric metric)
{
    float *x = ts_clustered(N + NQ, DIM, 50, 7 + metric);
    uint64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++)
        ids[i] = 5 + 3 * i;
    struct hnsw_index *q = sq8_index(DIM, metric), *f = ts_index(DIM, metric, 16, 200);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(q, ids, x, N, 1, NULL), HNSW_OK);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(f, ids, x, N, 1, NULL), HNSW_OK);
    CU_ASSERT(trained(q));
    double rq = ts_recall(q, x + (size_t)N * DIM, NQ, 10, 64, NULL, NULL);
    double rf = ts_recall(f, x + (size_t)N * DIM, NQ, 10, 64, NULL, NULL);
    fprintf(stderr, "[%s: sq8 %.4f, float %.4f] ", hnsw_metric_name(metric), rq, rf);
    CU_ASSERT(rq >= 0.95);
    CU_ASSERT(rq >= rf - 0.015);
    /* Returned distances are exact: equal to the float distance of the id's vector. */
    struct hnsw_result r[10];
    uint32_t n;
    CU_ASSERT_EQUAL(hnsw_search(q, x + (size_t)N * DIM, 10, 64, NULL, NULL, r, &n, NULL), HNSW_OK);
    struct hnsw_result e[10];
    uint32_t ne;
    hnsw_search_exact(f, x + (size_t)N * DIM, 10, NULL, NULL, e, &ne, NULL);
    CU_ASSERT_EQUAL(r[0].id, e[0].id);
    CU_ASSERT(fabsf(r[0].dist - e[0].dist) <= 1e-5f * (1 + fabsf(e[0].dist)));
    ts_assert_check(q);
    hnsw_free(q);
    hnsw_free(f);
    free(ids);
    free(x);
}

static void test_recall_l2(void)
{
    recall_case(HNSW_METRIC_L2);
}

static void test_recall_ip(void)
{
    recall_case(HNSW_METRIC_IP);
}

static void test_recall_cosine(void)
{
    recall_case(HNSW_METRIC_COSINE);
}

/* Every kernel family computes the same integer dot product, tails included. */
static void test_kernels_agree(void)
{
    const struct hnsw_kernel *const *list;
    size_t nk = hnsw_kernels_supported(&list);
    const struct hnsw_kernel *scalar = list[nk - 1];
    int8_t k[1100];
    uint8_t c[1100];
    srand(3);
    for (int i = 0; i < 1100; i++) {
        k[i] = (int8_t)(rand() % 255 - 127);
        c[i] = (uint8_t)(rand() % 256);
    }
    k[0] = -127;
    c[0] = 255; /* the extremes */
    for (size_t n = 1; n <= 1100; n += (n < 140 ? 1 : 37)) {
        int32_t want = scalar->sq8_dot(k, c, n);
        for (size_t f = 0; f < nk; f++)
            if (list[f]->sq8_dot(k, c, n) != want) {
                fprintf(stderr, "%s differs at n %zu\n", list[f]->name, n);
                CU_FAIL("sq8 kernel differs");
                return;
            }
    }
}

/* Save and load: the loaded index re-derives the same codes and answers identically. */
static void test_save_load(void)
{
    char dir[] = "/tmp/vs-hnsw-sq8-XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/index", dir);
    const size_t n = 5000;
    float *x = ts_clustered(n + 50, 32, 20, 11);
    uint64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = i;
    struct hnsw_index *a = sq8_index(32, HNSW_METRIC_L2), *b = NULL;
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(a, ids, x, n, 2, NULL), HNSW_OK);
    for (size_t i = 0; i < 300; i++)
        hnsw_delete(a, ids[i]);
    CU_ASSERT_EQUAL(hnsw_repair(a, 1, NULL), HNSW_OK);
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(hnsw_save(a, path, err), HNSW_OK);
    ts_assert_check(a); /* re-trained at save: codes still match */
    CU_ASSERT_EQUAL_FATAL(hnsw_load(path, &b, err), HNSW_OK);
    CU_ASSERT(trained(b));
    ts_assert_check(b);
    for (int q = 0; q < 50; q++) {
        struct hnsw_result ra[10], rb[10];
        uint32_t na, nb;
        const float *v = x + (n + q) * 32;
        hnsw_search(a, v, 10, 40, NULL, NULL, ra, &na, NULL);
        hnsw_search(b, v, 10, 40, NULL, NULL, rb, &nb, NULL);
        CU_ASSERT_EQUAL(na, nb);
        for (uint32_t i = 0; i < na && i < nb; i++) {
            CU_ASSERT_EQUAL(ra[i].id, rb[i].id);
            CU_ASSERT_EQUAL(ra[i].dist, rb[i].dist);
        }
    }
    hnsw_free(a);
    hnsw_free(b);
    unlink(path);
    rmdir(dir);
    free(ids);
    free(x);
}

/* One insert at a time: floats until HNSW_SQ8_TRAIN_MIN points, codes after, re-trained on growth. */
static void test_trains_as_it_grows(void)
{
    const size_t n = 6000;
    float *x = ts_clustered(n + NQ, 48, 30, 13);
    struct hnsw_index *idx = sq8_index(48, HNSW_METRIC_L2);
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL_FATAL(hnsw_insert(idx, i, x + i * 48, NULL), HNSW_OK);
        if (i == 1000) CU_ASSERT(!trained(idx));
    }
    CU_ASSERT(trained(idx));
    /*
     * Single inserts can leave a point without in-links, floats or not (the
     * same data as a float index leaves the same one); repair reconnects it.
     */
    CU_ASSERT_EQUAL(hnsw_repair(idx, 1, NULL), HNSW_OK);
    ts_assert_check(idx);
    double r = ts_recall(idx, x + n * 48, NQ, 10, 64, NULL, NULL);
    fprintf(stderr, "[recall %.4f] ", r);
    CU_ASSERT(r >= 0.95);
    hnsw_free(idx);
    free(x);
}

/* Constant dimensions (scale 0), zeros, and points far outside the trained range. */
static void test_degenerate(void)
{
    const size_t n = 3000, dim = 16;
    float *x = calloc((n + 10) * dim, sizeof *x);
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < dim; d++)
            x[i * dim + d] = d < 8 ? 7.0f : (float)((i * 31 + d * 17) % 97) / 97.0f;
    uint64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = i;
    struct hnsw_index *idx = sq8_index(dim, HNSW_METRIC_L2);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(idx, ids, x, n, 2, NULL), HNSW_OK);
    CU_ASSERT(trained(idx));
    /* Outliers after training: their codes saturate, but they are found and ranked exactly. */
    float far[16], zero[16] = {0};
    for (size_t d = 0; d < dim; d++)
        far[d] = 1000.0f + (float)d;
    CU_ASSERT_EQUAL(hnsw_insert(idx, 100000, far, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_insert(idx, 100001, zero, NULL), HNSW_OK);
    struct hnsw_result r[5];
    uint32_t nr;
    CU_ASSERT_EQUAL(hnsw_search(idx, far, 5, 64, NULL, NULL, r, &nr, NULL), HNSW_OK);
    CU_ASSERT_EQUAL_FATAL(nr, 5);
    CU_ASSERT_EQUAL(r[0].id, 100000);
    CU_ASSERT_EQUAL(r[0].dist, 0.0f);
    CU_ASSERT_EQUAL(hnsw_search(idx, zero, 5, 64, NULL, NULL, r, &nr, NULL), HNSW_OK);
    CU_ASSERT_EQUAL(r[0].id, 100001);
    CU_ASSERT_EQUAL(r[0].dist, 0.0f);
    ts_assert_check(idx);
    hnsw_free(idx);
    free(ids);
    free(x);
}

/* Float vectors in a mapped file: same answers, less anonymous memory, file gone at once. */
static void test_vector_file(void)
{
    char path[] = "/tmp/vs-hnsw-vecfile-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    float *x = ts_clustered(N + NQ, DIM, 50, 21);
    uint64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++)
        ids[i] = i;
    struct hnsw_index *a = sq8_index(DIM, HNSW_METRIC_L2), *b = sq8_index(DIM, HNSW_METRIC_L2);
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(hnsw_vectors_to_file(b, path, err), HNSW_OK);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0); /* unlinked: scratch only */
    CU_ASSERT_EQUAL(hnsw_vectors_to_file(b, path, err), HNSW_EINVAL);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(a, ids, x, N, 1, NULL), HNSW_OK);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(b, ids, x, N, 1, NULL), HNSW_OK);
    struct hnsw_stats sa, sb;
    hnsw_info(a, &sa);
    hnsw_info(b, &sb);
    CU_ASSERT_EQUAL(sa.file_bytes, 0);
    CU_ASSERT(sb.file_bytes >= (uint64_t)N * DIM * sizeof(float));
    CU_ASSERT(sb.memory_bytes + (uint64_t)N * DIM * sizeof(float) <= sa.memory_bytes);
    double ra = ts_recall(a, x + (size_t)N * DIM, NQ, 10, 64, NULL, NULL);
    double rb = ts_recall(b, x + (size_t)N * DIM, NQ, 10, 64, NULL, NULL);
    CU_ASSERT_EQUAL(ra, rb); /* one build thread: the same graph */
    float v[DIM];
    CU_ASSERT_EQUAL(hnsw_get(b, 17, v), HNSW_OK);
    CU_ASSERT_EQUAL(memcmp(v, x + 17 * DIM, sizeof v), 0);
    ts_assert_check(b);
    hnsw_free(a);
    hnsw_free(b);
    free(ids);
    free(x);
}

void register_sq8_tests(void)
{
    CU_pSuite s = CU_add_suite("hnsw sq8", NULL, NULL);
    CU_add_test(s, "recall@10 >= 0.95 and within 0.015 of float, l2", test_recall_l2);
    CU_add_test(s, "recall@10 >= 0.95 and within 0.015 of float, ip", test_recall_ip);
    CU_add_test(s, "recall@10 >= 0.95 and within 0.015 of float, cosine", test_recall_cosine);
    CU_add_test(s, "the integer kernel is equal in every family", test_kernels_agree);
    CU_add_test(s, "save and load re-derive the same codes", test_save_load);
    CU_add_test(s, "single inserts train at the threshold and on growth", test_trains_as_it_grows);
    CU_add_test(s, "constant dimensions, zeros and outliers", test_degenerate);
    CU_add_test(s, "float vectors in a mapped file", test_vector_file);
}
