/*
 * test_client.c — the client object: failover past a dead endpoint,
 * ETCD_EUNAVAILABLE within the timeout (refused and black-holed endpoints),
 * several threads sharing one client, and endpoint list normalisation.
 */
#include "etcd_tests.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A dead endpoint first, the live one second: calls still work. */
static void test_failover(void)
{
    char eps[256];
    etcd_client *c;
    etcd_err err = {{0}};
    etcd_kv kv;

    snprintf(eps, sizeof eps, "http://127.0.0.1:%d,%s", test_dead_port(), g_etcd.url);
    ASSERT_OK(etcd_client_new(eps, 2000, &c, &err), err);
    ASSERT_OK(etcd_put(c, "/t/failover", "ok", 2, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_get(c, "/t/failover", &kv, &err), err);
    CU_ASSERT_STRING_EQUAL(kv.value, "ok");
    etcd_kv_clear(&kv);
    etcd_client_free(c);
}

/* Only dead endpoints: ETCD_EUNAVAILABLE at once, message names them. */
static void test_unreachable(void)
{
    char eps[256];
    etcd_client *c;
    etcd_err err = {{0}};
    etcd_kv kv;
    long long t0;
    int p1 = test_dead_port(), p2 = test_dead_port();

    snprintf(eps, sizeof eps, "http://127.0.0.1:%d,http://127.0.0.1:%d", p1, p2);
    ASSERT_OK(etcd_client_new(eps, 1000, &c, &err), err);
    t0 = test_now_ms();
    CU_ASSERT_EQUAL(etcd_get(c, "/t/x", &kv, &err), ETCD_EUNAVAILABLE);
    CU_ASSERT(test_now_ms() - t0 < 1000);
    CU_ASSERT(strstr(err.msg, "no etcd endpoint reachable") != NULL);
    CU_ASSERT_EQUAL(etcd_put(c, "/t/x", "1", 1, 0, NULL, NULL, NULL), ETCD_EUNAVAILABLE);
    etcd_client_free(c);
}

/* An endpoint that accepts TCP but never answers: the timeout holds. */
static void test_timeout(void)
{
    char eps[128];
    etcd_client *c;
    etcd_err err = {{0}};
    etcd_kv kv;
    long long t0, dt;
    int port = 0, fd = test_black_hole(&port);

    CU_ASSERT_FATAL(fd >= 0);
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d", port);
    ASSERT_OK(etcd_client_new(eps, 400, &c, &err), err);
    t0 = test_now_ms();
    CU_ASSERT_EQUAL(etcd_get(c, "/t/x", &kv, &err), ETCD_EUNAVAILABLE);
    dt = test_now_ms() - t0;
    CU_ASSERT(dt >= 350 && dt < 1500);
    etcd_client_free(c);
    close(fd);
}

struct worker {
    int id;
    int failures;
};

/* Worker: 40 put/get pairs on the shared client. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char key[64], val[32];
    etcd_kv kv;

    for (int i = 0; i < 40; i++) {
        int n = snprintf(val, sizeof val, "%d-%d", w->id, i);
        snprintf(key, sizeof key, "/t/mt/%d", w->id);
        if (etcd_put(g_client, key, val, (size_t)n, 0, NULL, NULL, NULL) ||
            etcd_get(g_client, key, &kv, NULL)) {
            w->failures++;
            continue;
        }
        if (strcmp(kv.value, val)) w->failures++;
        etcd_kv_clear(&kv);
    }
    return NULL;
}

/* Four threads share g_client; every read sees the thread's own write. */
static void test_threads(void)
{
    pthread_t t[4];
    struct worker w[4];
    etcd_kvs r;
    etcd_err err = {{0}};

    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.id = i};
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_EQUAL(w[i].failures, 0);
    }
    ASSERT_OK(etcd_range(g_client, "/t/mt/", 0, &r, &err), err);
    CU_ASSERT_EQUAL(r.n, 4);
    CU_ASSERT_EQUAL(r.kvs[3].version, 40);
    etcd_kvs_free(&r);
}

/* Registers the client suite. */
/* User-given endpoint lists: trimmed, empty entries dropped, http:// added. */
static void test_endpoints_normalise(void)
{
    static const char *cases[][2] = {
        {"127.0.0.1:2379", "http://127.0.0.1:2379"},
        {" a:1 ,, https://b:2 ,", "http://a:1,https://b:2"},
        {"http://c:3", "http://c:3"},
        {" , ", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = etcd_endpoints_normalise(cases[i][0]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(out);
        CU_ASSERT_STRING_EQUAL(out, cases[i][1]);
        free(out);
    }
}

void etcd_tests_client(void)
{
    CU_pSuite s = CU_add_suite("etcd_client", NULL, NULL);

    CU_add_test(s, "failover past a dead endpoint", test_failover);
    CU_add_test(s, "unreachable -> ETCD_EUNAVAILABLE", test_unreachable);
    CU_add_test(s, "silent endpoint -> timeout", test_timeout);
    CU_add_test(s, "threads share one client", test_threads);
    CU_add_test(s, "endpoint lists are normalised", test_endpoints_normalise);
}
