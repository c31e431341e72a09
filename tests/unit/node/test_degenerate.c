/*
 * test_degenerate.c — a replica fed duplicate-heavy data and edge values.
 * 3,000 copies of one vector among 5,000 points, with payloads, in batches
 * of 500 on two build threads (as the node applies them): every batch is
 * acknowledged, every point and payload is there, a search with k = ef =
 * 1,000 returns 1,000 hits, reopening (WAL replay) twice gives the same
 * points, and writes go on after; 10 vectors x 900 in one batch likewise. Value rules: a cosine
 * norm that underflows and components beyond 1e16 are REPLICA_EVALUE naming the point, for upserts
 * and queries; engine failures map to the right codes.
 */
#include "tests/unit/node/node_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DDIM   32
#define DN     5000
#define DBATCH 500

/* Opens dir for a DDIM collection under metric with two build threads. */
static struct replica *open_dup(const char *dir, enum hnsw_metric metric)
{
    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "dups";
    c.hnsw.dim = DDIM;
    c.hnsw.metric = metric;
    c.build_threads = 2;
    c.fsync = WAL_FSYNC_NONE;
    return tn_open(&c);
}

/* The vector of id: a copy of one vector for 3 ids in 5, else its own. */
static void dup_vector(uint64_t id, float *out)
{
    tn_vector(id % 5 < 3 ? 0 : id, 1, DDIM, out);
}

/* Checks that all DN points are there with their vectors (as stored) and payloads. */
static void check_points(struct replica *r, const float *stored)
{
    static uint64_t ids[DN];
    for (uint64_t i = 0; i < DN; i++)
        ids[i] = i;
    struct replica_results res;
    replica_results_init(&res);
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(replica_get(r, ids, DN, true, true, false, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL(res.n, DN);
    CU_ASSERT_EQUAL(res.nmissing, 0);
    uint32_t bad_pay = 0, bad_vec = 0;
    for (uint32_t i = 0; i < res.n; i++) {
        char want[16];
        int len = snprintf(want, sizeof want, "p%06u", (unsigned)res.points[i].id);
        bad_pay += res.points[i].payload_len != (uint32_t)len ||
                   memcmp(res.points[i].payload, want, (size_t)len) != 0;
        if (stored)
            bad_vec += memcmp(res.points[i].vector, stored + res.points[i].id * DDIM,
                              DDIM * sizeof(float)) != 0;
    }
    CU_ASSERT_EQUAL(bad_pay, 0);
    CU_ASSERT_EQUAL(bad_vec, 0);
    replica_results_free(&res);
}

/* Searches the copied vector with k = ef = 1000: 1000 hits, all copies, all at one distance. */
static void check_big_k(struct replica *r)
{
    float q[DDIM];
    dup_vector(0, q);
    struct replica_results res;
    replica_results_init(&res);
    char err[REPLICA_ERR_MAX];
    struct replica_query rq = {.vector = q, .len = DDIM, .k = 1000, .ef = 1000};
    CU_ASSERT_EQUAL_FATAL(replica_search(r, &rq, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL(res.n, 1000);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < res.n; i++)
        bad += res.points[i].id % 5 >= 3 || res.points[i].dist != res.points[0].dist ||
               !isfinite(res.points[i].dist);
    CU_ASSERT_EQUAL(bad, 0);
    replica_results_free(&res);
}

/* One metric: ten batches of 500 with payloads, then two reopens and a write. */
static void dup_case(enum hnsw_metric metric)
{
    char *dir = tn_tmpdir();
    struct replica *r = open_dup(dir, metric);
    static uint64_t ids[DBATCH];
    static uint8_t pay[DBATCH][16];
    char err[REPLICA_ERR_MAX];
    for (uint64_t b = 0; b < DN / DBATCH; b++) {
        for (uint64_t i = 0; i < DBATCH; i++)
            ids[i] = b * DBATCH + i;
        struct tn_batch *t = tn_batch_new(DDIM, ids, DBATCH, 1, NULL, 0);
        for (size_t i = 0; i < DBATCH; i++) {
            dup_vector(ids[i], t->pts[i].vector);
            t->pts[i].payload.len =
                (size_t)snprintf((char *)pay[i], sizeof pay[i], "p%06u", (unsigned)ids[i]);
            t->pts[i].payload.data = pay[i];
        }
        uint64_t lsn = 0;
        int rc = replica_write(r, 1, &t->b, &lsn, err);
        if (rc) fprintf(stderr, "\n%s batch %u: %s\n", hnsw_metric_name(metric), (unsigned)b, err);
        CU_ASSERT_EQUAL_FATAL(rc, REPLICA_OK);
        CU_ASSERT_EQUAL(lsn, b + 1);
        tn_batch_free(t);
    }
    struct replica_stat st;
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.count, DN);
    CU_ASSERT_EQUAL(st.payloads, DN);
    CU_ASSERT_FALSE(st.failed);
    check_big_k(r);
    /* The stored (normalised under cosine) vectors, to compare after replay. */
    float *stored = malloc((size_t)DN * DDIM * sizeof *stored);
    static uint64_t all[DN];
    for (uint64_t i = 0; i < DN; i++)
        all[i] = i;
    struct replica_results res;
    replica_results_init(&res);
    CU_ASSERT_EQUAL_FATAL(replica_get(r, all, DN, false, true, false, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL_FATAL(res.n, DN);
    for (uint32_t i = 0; i < res.n; i++)
        memcpy(stored + res.points[i].id * DDIM, res.points[i].vector, DDIM * sizeof(float));
    replica_results_free(&res);
    check_points(r, stored);
    replica_close(r, NULL);

    /* No snapshot was taken: each open replays all ten records, with the same result. */
    for (int round = 0; round < 2; round++) {
        struct replica_recovery rec;
        struct replica_config c;
        replica_config_init(&c);
        c.dir = dir;
        c.collection = "dups";
        c.hnsw.dim = DDIM;
        c.hnsw.metric = metric;
        c.build_threads = 2;
        CU_ASSERT_EQUAL_FATAL(replica_open(&c, &r, &rec, err), REPLICA_OK);
        CU_ASSERT_EQUAL(rec.replayed, DN / DBATCH);
        CU_ASSERT_EQUAL(rec.lsn, DN / DBATCH);
        replica_status(r, &st);
        CU_ASSERT_EQUAL(st.count, DN);
        check_points(r, stored);
        check_big_k(r);
        if (round == 1) {
            ids[0] = DN + 1;
            struct tn_batch *t = tn_batch_new(DDIM, ids, 1, 1, NULL, 0);
            uint64_t lsn = 0;
            CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_OK);
            CU_ASSERT_EQUAL(lsn, DN / DBATCH + 1);
            tn_batch_free(t);
        }
        replica_close(r, NULL);
    }
    free(stored);
    tn_rmdir(dir);
    free(dir);
}

/*
 * 10 distinct vectors x 900 in one batch (the engine's reachability sweep
 * runs on it): acknowledged, applied in full with payloads, the replica
 * keeps taking writes, and a random query with k = ef = 1000 gets 1000.
 */
static void dup10_case(enum hnsw_metric metric)
{
    char *dir = tn_tmpdir();
    struct replica *r = open_dup(dir, metric);
    enum { N = 9000 };
    static uint64_t ids[N];
    static uint8_t pay[N][16];
    for (uint64_t i = 0; i < N; i++)
        ids[i] = i;
    struct tn_batch *t = tn_batch_new(DDIM, ids, N, 1, NULL, 0);
    for (size_t i = 0; i < N; i++) {
        tn_vector(i % 10, 1, DDIM, t->pts[i].vector);
        t->pts[i].payload.len =
            (size_t)snprintf((char *)pay[i], sizeof pay[i], "p%06u", (unsigned)i);
        t->pts[i].payload.data = pay[i];
    }
    char err[REPLICA_ERR_MAX];
    uint64_t lsn = 0;
    int rc = replica_write(r, 1, &t->b, &lsn, err);
    if (rc) fprintf(stderr, "\n%s: %s\n", hnsw_metric_name(metric), err);
    CU_ASSERT_EQUAL(rc, REPLICA_OK);
    struct replica_stat st;
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.count, N);
    CU_ASSERT_EQUAL(st.payloads, N);
    CU_ASSERT_FALSE(st.failed);
    float q[DDIM];
    tn_vector(12345, 1, DDIM, q);
    struct replica_results res;
    replica_results_init(&res);
    struct replica_query rq = {.vector = q, .len = DDIM, .k = 1000, .ef = 1000};
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL(res.n, 1000);
    replica_results_free(&res);
    tn_batch_free(t);
    ids[0] = N;
    t = tn_batch_new(DDIM, ids, 1, 1, NULL, 0);
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_OK);
    CU_ASSERT_EQUAL(lsn, 2);
    tn_batch_free(t);
    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_duplicates(void)
{
    for (int m = HNSW_METRIC_L2; m <= HNSW_METRIC_COSINE; m++) {
        dup_case((enum hnsw_metric)m);
        dup10_case((enum hnsw_metric)m);
    }
}

/* Tiny cosine norms and huge components are REPLICA_EVALUE naming the point. */
static void test_value_rules(void)
{
    char *dir = tn_tmpdir();
    struct replica *r = open_dup(dir, HNSW_METRIC_COSINE);
    uint64_t ids[5] = {1, 2, 3, 4, 5}, lsn = 0;
    char err[REPLICA_ERR_MAX];
    struct tn_batch *t = tn_batch_new(DDIM, ids, 5, 1, NULL, 0);
    float saved[DDIM];
    memcpy(saved, t->pts[3].vector, sizeof saved);
    memset(t->pts[3].vector, 0, sizeof saved);
    t->pts[3].vector[0] = t->pts[3].vector[1] = 1e-45f;
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_EVALUE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "batch.upserts[3].vector has norm"));
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EVALUE), 3);
    memcpy(t->pts[3].vector, saved, sizeof saved);
    t->pts[3].vector[2] = -2e16f;
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_EVALUE);
    CU_ASSERT_STRING_EQUAL(err, "batch.upserts[3].vector[2] is -2e+16, outside +-1e+16");
    t->pts[3].vector[2] = 1e16f; /* the bound itself is fine */
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_OK);
    CU_ASSERT_EQUAL(lsn, 1);

    float q[DDIM] = {1e-45f, 1e-45f};
    struct replica_results res;
    replica_results_init(&res);
    struct replica_query rq = {.vector = q, .len = DDIM, .k = 5, .field = "queries[1].vector"};
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_EVALUE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "queries[1].vector has norm"));
    q[0] = 1;
    q[5] = 3e17f;
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_EVALUE);
    CU_ASSERT_STRING_EQUAL(err, "queries[1].vector[5] is 3e+17, outside +-1e+16");
    q[5] = 0;
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL(res.n, 5);
    for (uint32_t i = 0; i < res.n; i++)
        CU_ASSERT(isfinite(res.points[i].dist));
    replica_results_free(&res);

    /* Engine failures: only allocation is "out of memory". */
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_ENOMEM), 8);
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EFULL), 8);
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EUNAPPLIED), 13);
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EINTERNAL), 13);
    replica_close(r, NULL);
    tn_batch_free(t);
    tn_rmdir(dir);
    free(dir);
}

void register_degenerate_tests(void)
{
    CU_pSuite s = CU_add_suite("degenerate", NULL, NULL);
    CU_add_test(s, "copies with payloads: all acked, k=1000 gives 1000, replay twice, writes go on",
                test_duplicates);
    CU_add_test(s, "tiny cosine norms and |x| > 1e16 are EVALUE naming the point",
                test_value_rules);
}
