/*
 * test_client.c — CUnit runner for libvecshard (build/test_clients_c): every
 * public function against a real cluster (etcd, two vecshard-node processes,
 * one vecshard-router; cluster.h), with exact status codes and router
 * messages for bad input, exact vectors, payloads and counts, an exact
 * search on a hand-made set, a recall floor against brute force on 3,000
 * points in 2 shards, four threads sharing one client, and the docs' quick
 * start linked against libvecshard.so alone. Under `make asan`
 * LeakSanitizer checks that every result's free function releases all of it.
 *
 * Each test creates the collections it needs under its own names and drops
 * them, so the list test can expect an exact set.
 */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/c/vecshard.h"
#include "tests/unit/clients_c/cluster.h"

#define N_NODES 2

static struct tc_cluster cluster;
static struct vecshard_client *vc; /* shared by the tests */

/* Suite set-up: the cluster and one client of its router. */
static int suite_init(void)
{
    char msg[512];
    struct vecshard_error err;
    if (tc_start(&cluster, N_NODES, msg, sizeof msg)) {
        fprintf(stderr, "cluster start failed: %s\n", msg);
        return -1;
    }
    return vecshard_connect(cluster.router.addr, NULL, &vc, &err) == VECSHARD_OK ? 0 : -1;
}

/* Suite tear-down: client closed, processes stopped by pid. */
static int suite_clean(void)
{
    vecshard_close(vc);
    tc_stop(&cluster);
    return 0;
}

/* Creates collection name (dim, shards; other parameters default) or fails the test. */
static void create(const char *name, uint32_t dim, enum vecshard_metric metric, uint32_t shards)
{
    struct vecshard_collection_params p = {.dim = dim, .metric = metric, .shards = shards};
    struct vecshard_error err;
    enum vecshard_code code = vecshard_create_collection(vc, name, &p, NULL, &err);
    if (code != VECSHARD_OK) fprintf(stderr, "create %s: %s\n", name, err.message);
    CU_ASSERT_EQUAL_FATAL(code, VECSHARD_OK);
}

/* Drops collection name or fails the test. */
static void drop(const char *name)
{
    struct vecshard_error err;
    CU_ASSERT_EQUAL(vecshard_drop_collection(vc, name, &err), VECSHARD_OK);
}

/* Asserts code and the exact message of err. */
#define ASSERT_ERR(call, want_code, want_msg)                                                      \
    do {                                                                                           \
        enum vecshard_code c_ = (call);                                                            \
        CU_ASSERT_EQUAL(c_, want_code);                                                            \
        CU_ASSERT_EQUAL(err.code, want_code);                                                      \
        if (strcmp(err.message, want_msg))                                                         \
            fprintf(stderr, "\n  message \"%s\", want \"%s\"\n", err.message, want_msg);           \
        CU_ASSERT_STRING_EQUAL(err.message, want_msg);                                             \
    } while (0)

/* ===================================================================== connection */

/* connect: defaults from $VECSHARD_ROUTER, argument errors, a router that is down. */
static void test_connect(void)
{
    struct vecshard_client *c2;
    struct vecshard_error err;

    setenv("VECSHARD_ROUTER", cluster.router.addr, 1);
    CU_ASSERT_EQUAL_FATAL(vecshard_connect(NULL, NULL, &c2, &err), VECSHARD_OK);
    CU_ASSERT_STRING_EQUAL(vecshard_address(c2), cluster.router.addr);
    CU_ASSERT_STRING_EQUAL(err.message, "");
    struct vecshard_collection_list *l;
    CU_ASSERT_EQUAL(vecshard_list_collections(c2, &l, &err), VECSHARD_OK);
    vecshard_collection_list_free(l);
    vecshard_close(c2);
    unsetenv("VECSHARD_ROUTER");
    CU_ASSERT_EQUAL_FATAL(vecshard_connect("", NULL, &c2, &err), VECSHARD_OK);
    CU_ASSERT_STRING_EQUAL(vecshard_address(c2), VECSHARD_DEFAULT_ADDRESS);
    vecshard_close(c2);

    ASSERT_ERR(vecshard_connect(cluster.router.addr, NULL, NULL, &err), VECSHARD_INVALID_ARGUMENT,
               "out is NULL");
    struct vecshard_options bad = {.timeout_ms = -1};
    ASSERT_ERR(vecshard_connect(cluster.router.addr, &bad, &c2, &err), VECSHARD_INVALID_ARGUMENT,
               "options.timeout_ms is -1, must be >= 0");
    CU_ASSERT_PTR_NULL(c2);

    /* Nobody listens on port 1: the first call fails UNAVAILABLE. */
    struct vecshard_options o = {.timeout_ms = 2000};
    CU_ASSERT_EQUAL_FATAL(vecshard_connect("127.0.0.1:1", &o, &c2, &err), VECSHARD_OK);
    l = (void *)1;
    CU_ASSERT_EQUAL(vecshard_list_collections(c2, &l, &err), VECSHARD_UNAVAILABLE);
    CU_ASSERT_EQUAL(err.code, VECSHARD_UNAVAILABLE);
    CU_ASSERT_PTR_NULL(l);
    vecshard_close(c2);
    vecshard_close(NULL);

    /* wait_for_ready: the call waits for the router until its deadline. */
    struct vecshard_options wait = {.timeout_ms = 300, .wait_for_ready = true};
    CU_ASSERT_EQUAL_FATAL(vecshard_connect("127.0.0.1:1", &wait, &c2, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(vecshard_list_collections(c2, &l, &err), VECSHARD_DEADLINE_EXCEEDED);
    vecshard_close(c2);

    /* max_msg_bytes bounds what the client sends. */
    struct vecshard_options small = {.max_msg_bytes = 1024};
    static float big[400];
    static uint64_t ids[100];
    CU_ASSERT_EQUAL_FATAL(vecshard_connect(cluster.router.addr, &small, &c2, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(vecshard_upsert(c2, "any", ids, big, 100, 4, NULL, NULL, &err),
                    VECSHARD_RESOURCE_EXHAUSTED);
    vecshard_close(c2);

    struct vecshard_collection_list *l2;
    ASSERT_ERR(vecshard_list_collections(NULL, &l2, &err), VECSHARD_INVALID_ARGUMENT,
               "client is NULL");
}

/* Code names and the retryable set. */
static void test_codes(void)
{
    CU_ASSERT_STRING_EQUAL(vecshard_code_name(VECSHARD_OK), "OK");
    CU_ASSERT_STRING_EQUAL(vecshard_code_name(VECSHARD_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    CU_ASSERT_STRING_EQUAL(vecshard_code_name(VECSHARD_NOT_FOUND), "NOT_FOUND");
    CU_ASSERT_STRING_EQUAL(vecshard_code_name(VECSHARD_ALREADY_EXISTS), "ALREADY_EXISTS");
    CU_ASSERT_STRING_EQUAL(vecshard_code_name(VECSHARD_UNAUTHENTICATED), "UNAUTHENTICATED");
    CU_ASSERT_STRING_EQUAL(vecshard_code_name((enum vecshard_code)17), "UNKNOWN_CODE");
    int n = 0;
    for (int code = 0; code <= 16; code++)
        n += vecshard_retryable((enum vecshard_code)code);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_TRUE(vecshard_retryable(VECSHARD_UNAVAILABLE));
    CU_ASSERT_TRUE(vecshard_retryable(VECSHARD_DEADLINE_EXCEEDED));
    CU_ASSERT_TRUE(vecshard_retryable(VECSHARD_CANCELLED));
    CU_ASSERT_TRUE(vecshard_retryable(VECSHARD_ABORTED));
}

/* ===================================================================== collections */

/* create: defaults filled in; ALREADY_EXISTS; INVALID_ARGUMENT naming the field. */
static void test_create(void)
{
    struct vecshard_collection_params p = {.dim = 4};
    struct vecshard_collection_config got;
    struct vecshard_error err;

    CU_ASSERT_EQUAL_FATAL(vecshard_create_collection(vc, "c_create", &p, &got, &err), VECSHARD_OK);
    CU_ASSERT_STRING_EQUAL(got.name, "c_create");
    CU_ASSERT_EQUAL(got.dim, 4);
    CU_ASSERT_EQUAL(got.metric, VECSHARD_METRIC_L2);
    CU_ASSERT_EQUAL(got.m, 16);
    CU_ASSERT_EQUAL(got.ef_construction, 200);
    CU_ASSERT_EQUAL(got.ef_search, 64);
    CU_ASSERT_EQUAL(got.shards, 1);
    CU_ASSERT_EQUAL(got.replicas, 1);
    CU_ASSERT_TRUE(got.created_at > 1700000000000LL);

    ASSERT_ERR(vecshard_create_collection(vc, "c_create", &p, NULL, &err), VECSHARD_ALREADY_EXISTS,
               "collection \"c_create\" already exists");
    struct vecshard_collection_params zero = {0};
    ASSERT_ERR(vecshard_create_collection(vc, "c_zero", &zero, NULL, &err),
               VECSHARD_INVALID_ARGUMENT, "config.dim is 0; it is required (1..65536)");
    struct vecshard_collection_params m1 = {.dim = 4, .m = 1};
    ASSERT_ERR(vecshard_create_collection(vc, "c_m1", &m1, NULL, &err), VECSHARD_INVALID_ARGUMENT,
               "config.m is 1, must be 2..128");
    CU_ASSERT_EQUAL(vecshard_create_collection(vc, "bad name", &p, NULL, &err),
                    VECSHARD_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "config.name"));
    ASSERT_ERR(vecshard_create_collection(vc, NULL, &p, NULL, &err), VECSHARD_INVALID_ARGUMENT,
               "name is NULL");
    ASSERT_ERR(vecshard_create_collection(vc, "c_null", NULL, NULL, &err),
               VECSHARD_INVALID_ARGUMENT, "params is NULL");
    struct vecshard_collection_params r3 = {.dim = 4, .replicas = N_NODES + 1};
    CU_ASSERT_EQUAL(vecshard_create_collection(vc, "c_r3", &r3, NULL, &err),
                    VECSHARD_FAILED_PRECONDITION);

    struct vecshard_collection_params full = {.dim = 3,
                                              .metric = VECSHARD_METRIC_COSINE,
                                              .m = 8,
                                              .ef_construction = 50,
                                              .ef_search = 20,
                                              .shards = 3,
                                              .replicas = 2};
    CU_ASSERT_EQUAL_FATAL(vecshard_create_collection(vc, "c_full", &full, &got, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(got.dim, 3);
    CU_ASSERT_EQUAL(got.metric, VECSHARD_METRIC_COSINE);
    CU_ASSERT_EQUAL(got.m, 8);
    CU_ASSERT_EQUAL(got.ef_construction, 50);
    CU_ASSERT_EQUAL(got.ef_search, 20);
    CU_ASSERT_EQUAL(got.shards, 3);
    CU_ASSERT_EQUAL(got.replicas, 2);
    drop("c_create");
    drop("c_full");
}

/* list and describe: the exact set, sorted; shard placement; NOT_FOUND. */
static void test_list_describe(void)
{
    struct vecshard_error err;
    struct vecshard_collection_list *l;
    create("l_b", 8, VECSHARD_METRIC_IP, 1);
    create("l_a", 4, VECSHARD_METRIC_L2, 2);

    CU_ASSERT_EQUAL_FATAL(vecshard_list_collections(vc, &l, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL_FATAL(l->n_collections, 2);
    CU_ASSERT_STRING_EQUAL(l->collections[0].name, "l_a");
    CU_ASSERT_EQUAL(l->collections[0].dim, 4);
    CU_ASSERT_EQUAL(l->collections[0].shards, 2);
    CU_ASSERT_STRING_EQUAL(l->collections[1].name, "l_b");
    CU_ASSERT_EQUAL(l->collections[1].metric, VECSHARD_METRIC_IP);
    vecshard_collection_list_free(l);
    vecshard_collection_list_free(NULL);

    struct vecshard_collection_info *info;
    CU_ASSERT_EQUAL_FATAL(vecshard_describe_collection(vc, "l_a", &info, &err), VECSHARD_OK);
    CU_ASSERT_STRING_EQUAL(info->config.name, "l_a");
    CU_ASSERT_EQUAL(info->count, 0);
    CU_ASSERT_EQUAL_FATAL(info->n_shards, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct vecshard_shard_info *s = &info->shards[i];
        CU_ASSERT_STRING_EQUAL(s->collection, "l_a");
        CU_ASSERT_EQUAL(s->shard, i);
        CU_ASSERT_EQUAL(strncmp(s->primary, "node-", 5), 0);
        CU_ASSERT_EQUAL_FATAL(s->n_replicas, 1);
        CU_ASSERT_STRING_EQUAL(s->replicas[0], s->primary);
        CU_ASSERT_EQUAL_FATAL(s->n_in_sync, 1);
        CU_ASSERT_STRING_EQUAL(s->in_sync[0], s->primary);
        CU_ASSERT_EQUAL(s->n_recovering, 0);
        CU_ASSERT_PTR_NOT_NULL(s->primary_state_reason);
    }
    vecshard_collection_info_free(info);
    vecshard_collection_info_free(NULL);

    info = (void *)1;
    ASSERT_ERR(vecshard_describe_collection(vc, "nope", &info, &err), VECSHARD_NOT_FOUND,
               "collection \"nope\" not found");
    CU_ASSERT_PTR_NULL(info);
    uint64_t n = 7;
    ASSERT_ERR(vecshard_count(vc, "nope", &n, &err), VECSHARD_NOT_FOUND,
               "collection \"nope\" not found");
    CU_ASSERT_EQUAL(n, 0);
    ASSERT_ERR(vecshard_count(vc, "l_a", NULL, &err), VECSHARD_INVALID_ARGUMENT, "count is NULL");
    ASSERT_ERR(vecshard_describe_collection(vc, "l_a", NULL, &err), VECSHARD_INVALID_ARGUMENT,
               "out is NULL");
    drop("l_a");
    drop("l_b");
    CU_ASSERT_EQUAL_FATAL(vecshard_list_collections(vc, &l, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(l->n_collections, 0);
    vecshard_collection_list_free(l);
}

/* drop: then NOT_FOUND for describe and a second drop. */
static void test_drop(void)
{
    struct vecshard_error err;
    struct vecshard_collection_info *info;
    create("d_one", 2, VECSHARD_METRIC_L2, 1);
    CU_ASSERT_EQUAL(vecshard_drop_collection(vc, "d_one", &err), VECSHARD_OK);
    CU_ASSERT_STRING_EQUAL(err.message, "");
    ASSERT_ERR(vecshard_describe_collection(vc, "d_one", &info, &err), VECSHARD_NOT_FOUND,
               "collection \"d_one\" not found");
    ASSERT_ERR(vecshard_drop_collection(vc, "d_one", &err), VECSHARD_NOT_FOUND,
               "collection \"d_one\" not found");
    ASSERT_ERR(vecshard_drop_collection(vc, NULL, &err), VECSHARD_INVALID_ARGUMENT, "name is NULL");
}

/* ===================================================================== points */

/* upsert, get, delete, count: exact vectors, payloads, missing ids and counts. */
static void test_points(void)
{
    enum { N = 100, D = 4 };
    static uint64_t ids[N];
    static float vec[N * D];
    static char text[N][16];
    static struct vecshard_bytes pay[N];
    struct vecshard_error err;
    uint32_t done = 0;
    uint64_t count = 0;

    create("p_pts", D, VECSHARD_METRIC_L2, 2);
    for (int i = 0; i < N; i++) {
        ids[i] = (uint64_t)i;
        for (int j = 0; j < D; j++)
            vec[i * D + j] = (float)i + 0.25f * (float)j;
        snprintf(text[i], sizeof text[i], "p%d", i);
        pay[i] = (struct vecshard_bytes){text[i], strlen(text[i])};
    }
    CU_ASSERT_EQUAL_FATAL(vecshard_upsert(vc, "p_pts", ids, vec, N, D, pay, &done, &err),
                          VECSHARD_OK);
    CU_ASSERT_EQUAL(done, N);
    CU_ASSERT_EQUAL(vecshard_count(vc, "p_pts", &count, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(count, N);

    uint64_t want[] = {7, 1000, 5, 7};
    struct vecshard_points *got;
    CU_ASSERT_EQUAL_FATAL(vecshard_get(vc, "p_pts", want, 4, true, true, &got, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL_FATAL(got->n_points, 2);
    CU_ASSERT_EQUAL(got->points[0].id, 7);
    CU_ASSERT_EQUAL(got->points[1].id, 5);
    for (int k = 0; k < 2; k++) {
        const struct vecshard_point *p = &got->points[k];
        CU_ASSERT_EQUAL_FATAL(p->dim, D);
        CU_ASSERT_EQUAL(memcmp(p->vector, &vec[p->id * D], D * sizeof(float)), 0);
        CU_ASSERT_EQUAL_FATAL(p->payload_len, strlen(text[p->id]));
        CU_ASSERT_EQUAL(memcmp(p->payload, text[p->id], p->payload_len), 0);
    }
    CU_ASSERT_EQUAL_FATAL(got->n_missing, 1);
    CU_ASSERT_EQUAL(got->missing_ids[0], 1000);
    vecshard_points_free(got);
    CU_ASSERT_EQUAL_FATAL(vecshard_get(vc, "p_pts", want, 1, false, false, &got, &err),
                          VECSHARD_OK);
    CU_ASSERT_EQUAL_FATAL(got->n_points, 1);
    CU_ASSERT_PTR_NULL(got->points[0].vector);
    CU_ASSERT_PTR_NULL(got->points[0].payload);
    CU_ASSERT_EQUAL(got->n_missing, 0);
    vecshard_points_free(got);
    vecshard_points_free(NULL);

    /* Replace id 7: new vector, no payload; the count does not change. */
    float v7[D] = {-1, -2, -3, -4};
    CU_ASSERT_EQUAL(vecshard_upsert(vc, "p_pts", &ids[7], v7, 1, D, NULL, &done, &err),
                    VECSHARD_OK);
    CU_ASSERT_EQUAL(done, 1);
    CU_ASSERT_EQUAL_FATAL(vecshard_get(vc, "p_pts", &ids[7], 1, true, true, &got, &err),
                          VECSHARD_OK);
    CU_ASSERT_EQUAL_FATAL(got->n_points, 1);
    CU_ASSERT_EQUAL(memcmp(got->points[0].vector, v7, sizeof v7), 0);
    CU_ASSERT_PTR_NULL(got->points[0].payload);
    vecshard_points_free(got);
    CU_ASSERT_EQUAL(vecshard_count(vc, "p_pts", &count, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(count, N);

    uint64_t del[] = {5, 6, 5000};
    uint32_t deleted = 0;
    CU_ASSERT_EQUAL(vecshard_delete(vc, "p_pts", del, 3, &deleted, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(deleted, 3);
    CU_ASSERT_EQUAL(vecshard_count(vc, "p_pts", &count, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(count, N - 2);
    CU_ASSERT_EQUAL_FATAL(vecshard_get(vc, "p_pts", del, 2, false, false, &got, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(got->n_points, 0);
    CU_ASSERT_EQUAL_FATAL(got->n_missing, 2);
    CU_ASSERT_EQUAL(got->missing_ids[0], 5);
    CU_ASSERT_EQUAL(got->missing_ids[1], 6);
    vecshard_points_free(got);

    /* Errors: the router's messages name the field. */
    float v3[3] = {1, 2, 3}, vnan[D] = {1, NAN, 0, 0};
    ASSERT_ERR(vecshard_upsert(vc, "p_pts", ids, v3, 1, 3, NULL, &done, &err),
               VECSHARD_INVALID_ARGUMENT, "points[0].vector has 3 floats, collection dim is 4");
    ASSERT_ERR(vecshard_upsert(vc, "p_pts", ids, vnan, 1, D, NULL, &done, &err),
               VECSHARD_INVALID_ARGUMENT, "points[0].vector[1] is NaN");
    ASSERT_ERR(vecshard_upsert(vc, "p_pts", ids, vec, 0, D, NULL, &done, &err),
               VECSHARD_INVALID_ARGUMENT, "points is empty");
    ASSERT_ERR(vecshard_upsert(vc, "p_pts", NULL, vec, 1, D, NULL, &done, &err),
               VECSHARD_INVALID_ARGUMENT, "ids is NULL (n 1)");
    ASSERT_ERR(vecshard_upsert(vc, "p_pts", ids, NULL, 2, D, NULL, &done, &err),
               VECSHARD_INVALID_ARGUMENT, "vectors is NULL (n 2, dim 4)");
    ASSERT_ERR(vecshard_upsert(vc, "p_none", ids, vec, 1, D, NULL, &done, &err), VECSHARD_NOT_FOUND,
               "collection \"p_none\" not found");
    CU_ASSERT_EQUAL(done, 0);
    ASSERT_ERR(vecshard_delete(vc, "p_pts", ids, 0, &deleted, &err), VECSHARD_INVALID_ARGUMENT,
               "ids is empty");
    ASSERT_ERR(vecshard_delete(vc, "p_none", ids, 1, &deleted, &err), VECSHARD_NOT_FOUND,
               "collection \"p_none\" not found");
    got = (void *)1;
    ASSERT_ERR(vecshard_get(vc, "p_pts", ids, 0, false, false, &got, &err),
               VECSHARD_INVALID_ARGUMENT, "ids is empty");
    CU_ASSERT_PTR_NULL(got);
    ASSERT_ERR(vecshard_get(vc, "p_none", ids, 1, false, false, &got, &err), VECSHARD_NOT_FOUND,
               "collection \"p_none\" not found");
    drop("p_pts");
}

/* ===================================================================== search */

/* search on four hand-placed points: exact ids, distances, payloads, vectors. */
static void test_search_exact(void)
{
    uint64_t ids[] = {1, 2, 3, 4};
    float vec[] = {0, 0, 1, 0, 0, 2, 3, 3};
    struct vecshard_bytes pay[] = {{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}};
    struct vecshard_error err;
    struct vecshard_search_result *r;

    create("s_exact", 2, VECSHARD_METRIC_L2, 1);
    CU_ASSERT_EQUAL_FATAL(vecshard_upsert(vc, "s_exact", ids, vec, 4, 2, pay, NULL, &err),
                          VECSHARD_OK);
    float q[] = {0.1f, 0, 3, 2.5f};
    struct vecshard_search_params p = {.k = 3, .with_payload = true, .with_vector = true};
    CU_ASSERT_EQUAL_FATAL(vecshard_search(vc, "s_exact", q, 2, 2, &p, &r, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL_FATAL(r->n_queries, 2);
    CU_ASSERT_EQUAL_FATAL(r->k, 3);
    CU_ASSERT_EQUAL_FATAL(r->n_hits[0], 3);
    CU_ASSERT_EQUAL_FATAL(r->n_hits[1], 3);
    const struct vecshard_hit *h = r->hits;
    CU_ASSERT_EQUAL(h[0].id, 1);
    CU_ASSERT_EQUAL(h[1].id, 2);
    CU_ASSERT_EQUAL(h[2].id, 3);
    CU_ASSERT_DOUBLE_EQUAL(h[0].distance, 0.01, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(h[1].distance, 0.81, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(h[2].distance, 4.01, 1e-6);
    CU_ASSERT_EQUAL_FATAL(h[1].payload_len, 1);
    CU_ASSERT_EQUAL(memcmp(h[1].payload, "b", 1), 0);
    CU_ASSERT_EQUAL_FATAL(h[2].dim, 2);
    CU_ASSERT_EQUAL(memcmp(h[2].vector, &vec[4], 2 * sizeof(float)), 0);
    h = r->hits + r->k; /* query 1, (3, 2.5): 4 at 0.25, 3 at 9.25, 2 at 10.25 */
    CU_ASSERT_EQUAL(h[0].id, 4);
    CU_ASSERT_DOUBLE_EQUAL(h[0].distance, 0.25, 1e-6);
    CU_ASSERT_EQUAL(h[1].id, 3);
    CU_ASSERT_DOUBLE_EQUAL(h[1].distance, 9.25, 1e-6);
    CU_ASSERT_EQUAL(h[2].id, 2);
    CU_ASSERT_DOUBLE_EQUAL(h[2].distance, 10.25, 1e-6);
    CU_ASSERT_EQUAL(r->coverage.shards_total, 1);
    CU_ASSERT_EQUAL(r->coverage.shards_ok, 1);
    CU_ASSERT_EQUAL(r->coverage.n_missing, 0);
    CU_ASSERT_FALSE(r->coverage.partial);
    vecshard_search_result_free(r);
    vecshard_search_result_free(NULL);

    /* Defaults (params NULL: k 10): all four points, no payloads or vectors. */
    CU_ASSERT_EQUAL_FATAL(vecshard_search(vc, "s_exact", q, 1, 2, NULL, &r, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(r->k, 10);
    CU_ASSERT_EQUAL_FATAL(r->n_hits[0], 4);
    CU_ASSERT_EQUAL(r->hits[3].id, 4);
    CU_ASSERT_PTR_NULL(r->hits[0].payload);
    CU_ASSERT_PTR_NULL(r->hits[0].vector);
    vecshard_search_result_free(r);

    struct vecshard_search_params big = {.k = 10001};
    r = (void *)1;
    ASSERT_ERR(vecshard_search(vc, "s_exact", q, 1, 2, &big, &r, &err), VECSHARD_INVALID_ARGUMENT,
               "k is 10001, must be 1..10000");
    CU_ASSERT_PTR_NULL(r);
    ASSERT_ERR(vecshard_search(vc, "s_exact", q, 1, 1, NULL, &r, &err), VECSHARD_INVALID_ARGUMENT,
               "queries[0].vector has 1 floats, collection dim is 2");
    ASSERT_ERR(vecshard_search(vc, "s_exact", q, 0, 2, NULL, &r, &err), VECSHARD_INVALID_ARGUMENT,
               "queries is empty");
    ASSERT_ERR(vecshard_search(vc, "s_none", q, 1, 2, NULL, &r, &err), VECSHARD_NOT_FOUND,
               "collection \"s_none\" not found");
    ASSERT_ERR(vecshard_search(vc, "s_exact", NULL, 1, 2, NULL, &r, &err),
               VECSHARD_INVALID_ARGUMENT, "queries is NULL (n 1, dim 2)");
    ASSERT_ERR(vecshard_search(vc, "s_exact", q, 1, 2, NULL, NULL, &err), VECSHARD_INVALID_ARGUMENT,
               "out is NULL");
    drop("s_exact");
}

/* xorshift64* in [0, 1): the test's fixed pseudo-random data. */
static float rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (float)((*s * 2685821657736338717ull) >> 40) / (float)(1 << 24);
}

/* Squared L2 distance. */
static float l2(const float *a, const float *b, int d)
{
    float s = 0;
    for (int j = 0; j < d; j++)
        s += (a[j] - b[j]) * (a[j] - b[j]);
    return s;
}

/* recall@10 of 50 queries over 3,000 points in 2 shards against brute force. */
static void test_search_recall(void)
{
    enum { N = 3000, D = 16, NQ = 50, K = 10, BATCH = 1000 };
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    uint64_t *ids = malloc(sizeof(uint64_t) * N), seed = 42;
    struct vecshard_error err;
    CU_ASSERT_FATAL(base && qs && ids);
    for (int i = 0; i < N * D; i++)
        base[i] = rnd(&seed);
    for (int i = 0; i < NQ * D; i++)
        qs[i] = rnd(&seed);
    for (int i = 0; i < N; i++)
        ids[i] = 1000000 + (uint64_t)i;

    create("s_recall", D, VECSHARD_METRIC_L2, 2);
    for (int lo = 0; lo < N; lo += BATCH)
        CU_ASSERT_EQUAL(vecshard_upsert(vc, "s_recall", ids + lo, base + (size_t)lo * D, BATCH, D,
                                        NULL, NULL, &err),
                        VECSHARD_OK);
    uint64_t count;
    CU_ASSERT_EQUAL(vecshard_count(vc, "s_recall", &count, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(count, N);

    struct vecshard_search_params p = {.k = K, .ef = 128};
    struct vecshard_search_result *r;
    CU_ASSERT_EQUAL_FATAL(vecshard_search(vc, "s_recall", qs, NQ, D, &p, &r, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(r->coverage.shards_total, 2);
    CU_ASSERT_EQUAL(r->coverage.shards_ok, 2);
    size_t hit = 0;
    for (int q = 0; q < NQ; q++) {
        /* Exact top K by selection over all points. */
        int best[K];
        float bd[K];
        int nb = 0;
        for (int i = 0; i < N; i++) {
            float d = l2(qs + q * D, base + (size_t)i * D, D);
            if (nb == K && d >= bd[K - 1]) continue;
            int at = nb < K ? nb++ : K - 1;
            while (at > 0 && bd[at - 1] > d) {
                bd[at] = bd[at - 1];
                best[at] = best[at - 1];
                at--;
            }
            bd[at] = d;
            best[at] = i;
        }
        CU_ASSERT_EQUAL(r->n_hits[q], K);
        const struct vecshard_hit *h = r->hits + (size_t)q * r->k;
        for (uint32_t j = 0; j < r->n_hits[q]; j++) {
            int row = (int)(h[j].id - 1000000);
            CU_ASSERT_FATAL(row >= 0 && row < N);
            CU_ASSERT_DOUBLE_EQUAL(h[j].distance, l2(qs + q * D, base + (size_t)row * D, D), 1e-4);
            if (j) CU_ASSERT(h[j].distance >= h[j - 1].distance);
            for (int b = 0; b < K; b++)
                hit += best[b] == row;
        }
    }
    double recall = (double)hit / (NQ * K);
    printf("\n  recall@10 (3000 x 16-d, 2 shards, ef 128) = %.4f\n", recall);
    CU_ASSERT(recall >= 0.95);
    vecshard_search_result_free(r);
    drop("s_recall");
    free(base);
    free(qs);
    free(ids);
}

/* ===================================================================== threads */

/* One thread's share of test_threads. */
struct thread_arg {
    int t;
    enum vecshard_code code;
};

/* Upserts ids t*500 .. t*500+499 in five calls through the shared client. */
static void *upsert_thread(void *p)
{
    struct thread_arg *a = p;
    uint64_t ids[100];
    float vec[100 * 2];
    struct vecshard_error err;
    a->code = VECSHARD_OK;
    for (int b = 0; b < 5 && a->code == VECSHARD_OK; b++) {
        for (int i = 0; i < 100; i++) {
            ids[i] = (uint64_t)(a->t * 500 + b * 100 + i);
            vec[2 * i] = (float)ids[i];
            vec[2 * i + 1] = 1;
        }
        a->code = vecshard_upsert(vc, "t_par", ids, vec, 100, 2, NULL, NULL, &err);
    }
    return NULL;
}

/* Four threads share one client: every write lands, the count is exact. */
static void test_threads(void)
{
    pthread_t th[4];
    struct thread_arg a[4];
    struct vecshard_error err;
    create("t_par", 2, VECSHARD_METRIC_L2, 2);
    for (int t = 0; t < 4; t++) {
        a[t].t = t;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, upsert_thread, &a[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        CU_ASSERT_EQUAL(a[t].code, VECSHARD_OK);
    }
    uint64_t count;
    CU_ASSERT_EQUAL(vecshard_count(vc, "t_par", &count, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(count, 2000);
    drop("t_par");
}

/* ===================================================================== cluster */

/* cluster status (all and one collection) and a dry-run rebalance. */
static void test_status_rebalance(void)
{
    struct vecshard_error err;
    struct vecshard_cluster_status *st;
    create("st_a", 2, VECSHARD_METRIC_L2, 2);
    create("st_b", 2, VECSHARD_METRIC_L2, 1);

    CU_ASSERT_EQUAL_FATAL(vecshard_cluster_status(vc, NULL, &st, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL_FATAL(st->n_nodes, N_NODES);
    for (size_t i = 0; i < st->n_nodes; i++) {
        char id[32];
        snprintf(id, sizeof id, "node-%zu", i);
        CU_ASSERT_STRING_EQUAL(st->nodes[i].id, id);
        CU_ASSERT_STRING_EQUAL(st->nodes[i].addr, cluster.nodes[i].addr);
        CU_ASSERT_TRUE(st->nodes[i].alive);
        CU_ASSERT_TRUE(st->nodes[i].started_at > 0);
    }
    CU_ASSERT_EQUAL(st->nodes[0].replicas + st->nodes[1].replicas, 3);
    CU_ASSERT_EQUAL_FATAL(st->n_collections, 2);
    CU_ASSERT_STRING_EQUAL(st->collections[0].name, "st_a");
    CU_ASSERT_STRING_EQUAL(st->collections[1].name, "st_b");
    CU_ASSERT_EQUAL_FATAL(st->n_shards, 3);
    CU_ASSERT_STRING_EQUAL(st->shards[2].collection, "st_b");
    CU_ASSERT_TRUE(st->revision > 0);
    CU_ASSERT_PTR_NOT_NULL(st->controller); /* "" until routers elect a controller */
    vecshard_cluster_status_free(st);
    vecshard_cluster_status_free(NULL);

    CU_ASSERT_EQUAL_FATAL(vecshard_cluster_status(vc, "st_a", &st, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL_FATAL(st->n_shards, 2);
    CU_ASSERT_STRING_EQUAL(st->shards[0].collection, "st_a");
    CU_ASSERT_EQUAL(st->shards[1].shard, 1);
    vecshard_cluster_status_free(st);

    /* Routers without the controller answer UNIMPLEMENTED (docs/router.md);
     * with it, a dry run plans without starting. */
    struct vecshard_rebalance_plan *plan = (void *)1;
    enum vecshard_code code = vecshard_rebalance(vc, true, NULL, &plan, &err);
    if (code == VECSHARD_UNIMPLEMENTED) {
        CU_ASSERT_PTR_NULL(plan);
        CU_ASSERT_EQUAL(strncmp(err.message, "Rebalance comes with the controller issue", 41), 0);
    } else {
        CU_ASSERT_EQUAL_FATAL(code, VECSHARD_OK);
        CU_ASSERT_FALSE(plan->started);
        for (size_t i = 0; i < plan->n_moves; i++)
            CU_ASSERT_STRING_NOT_EQUAL(plan->moves[i].from_node, plan->moves[i].to_node);
        vecshard_rebalance_plan_free(plan);
    }
    vecshard_rebalance_plan_free(NULL);
    ASSERT_ERR(vecshard_rebalance(vc, true, NULL, NULL, &err), VECSHARD_INVALID_ARGUMENT,
               "out is NULL");
    ASSERT_ERR(vecshard_cluster_status(vc, NULL, NULL, &err), VECSHARD_INVALID_ARGUMENT,
               "out is NULL");
    drop("st_a");
    drop("st_b");
}

/* ===================================================================== shared library */

/* The docs' quick start, linked against libvecshard.so only, run on the router. */
static void test_shared_library(void)
{
    const char *dir =
        getenv("VS_BUILD") && *getenv("VS_BUILD") ? getenv("VS_BUILD") : VS_TEST_BUILD;
    char cmd[1024], out[256] = "";
    snprintf(cmd, sizeof cmd, "VECSHARD_ROUTER=%s %s/vecshard-c-example", cluster.router.addr, dir);
    FILE *f = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    CU_ASSERT_EQUAL(pclose(f), 0);
    CU_ASSERT_STRING_EQUAL(out, "id 1 distance 0.01\nid 2 distance 0.81\n");
    uint64_t count;
    struct vecshard_error err;
    CU_ASSERT_EQUAL(vecshard_count(vc, "demo", &count, &err), VECSHARD_OK);
    CU_ASSERT_EQUAL(count, 3);
    drop("demo");
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("libvecshard", suite_init, suite_clean);
    CU_add_test(s, "connect", test_connect);
    CU_add_test(s, "codes", test_codes);
    CU_add_test(s, "create", test_create);
    CU_add_test(s, "list_describe", test_list_describe);
    CU_add_test(s, "drop", test_drop);
    CU_add_test(s, "points", test_points);
    CU_add_test(s, "search_exact", test_search_exact);
    CU_add_test(s, "search_recall", test_search_recall);
    CU_add_test(s, "threads", test_threads);
    CU_add_test(s, "status_rebalance", test_status_rebalance);
    CU_add_test(s, "shared_library", test_shared_library);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
