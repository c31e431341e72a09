/*
 * test_lease.c — lease grant/keep-alive/revoke/time-to-live and the keeper
 * thread: an unkept lease expires and takes its key, a kept one stays, a
 * revoked one deletes its key at once and the keeper reports the loss.
 */
#include "etcd_tests.h"

#include <pthread.h>
#include <stdatomic.h>

struct lost {
    atomic_int calls;
    _Atomic int64_t lease;
    atomic_int why;
};

/* Keeper callback: record the loss. */
static void on_lost(void *arg, int64_t lease, etcd_status why)
{
    struct lost *l = arg;

    atomic_store(&l->lease, lease);
    atomic_store(&l->why, (int)why);
    atomic_fetch_add(&l->calls, 1);
}

/* Grant, attach a key, read TTL, keep alive once. */
static void test_grant_attach(void)
{
    etcd_err err = {{0}};
    int64_t id = 0, ttl = 0, granted = 0;
    etcd_kv kv;

    ASSERT_OK(etcd_lease_grant(g_client, 10, &id, &ttl, &err), err);
    CU_ASSERT(id != 0);
    CU_ASSERT_EQUAL(ttl, 10);
    ASSERT_OK(etcd_put(g_client, "/t/lease/attached", "n1", 2, id, NULL, NULL, &err), err);
    ASSERT_OK(etcd_get(g_client, "/t/lease/attached", &kv, &err), err);
    CU_ASSERT_EQUAL(kv.lease, id);
    etcd_kv_clear(&kv);
    ASSERT_OK(etcd_lease_ttl(g_client, id, &ttl, &granted, &err), err);
    CU_ASSERT(ttl > 0 && ttl <= 10);
    CU_ASSERT_EQUAL(granted, 10);
    ASSERT_OK(etcd_lease_keepalive(g_client, id, &ttl, &err), err);
    CU_ASSERT_EQUAL(ttl, 10);
    ASSERT_OK(etcd_lease_revoke(g_client, id, &err), err);
    CU_ASSERT_EQUAL(etcd_get(g_client, "/t/lease/attached", &kv, NULL), ETCD_ENOTFOUND);
    /* A gone lease: every call says ETCD_ELEASE. */
    CU_ASSERT_EQUAL(etcd_lease_keepalive(g_client, id, &ttl, &err), ETCD_ELEASE);
    CU_ASSERT_EQUAL(etcd_lease_revoke(g_client, id, NULL), ETCD_ELEASE);
    CU_ASSERT_EQUAL(etcd_lease_ttl(g_client, id, &ttl, NULL, NULL), ETCD_ELEASE);
    CU_ASSERT_EQUAL(etcd_put(g_client, "/t/lease/x", "1", 1, id, NULL, NULL, NULL), ETCD_ELEASE);
    CU_ASSERT_EQUAL(etcd_lease_grant(g_client, 0, &id, NULL, NULL), ETCD_EINVAL);
}

/* Two 2 s leases: the unkept one expires with its key, the kept one lives. */
static void test_expiry_and_keeper(void)
{
    etcd_err err = {{0}};
    int64_t a = 0, b = 0, ttl = 0;
    struct lost lost = {0};
    etcd_lease_keeper *k = NULL;
    etcd_kv kv;
    long long t0 = test_now_ms(), gone_at = 0;

    ASSERT_OK(etcd_lease_grant(g_client, 2, &a, NULL, &err), err);
    ASSERT_OK(etcd_lease_grant(g_client, 2, &b, &ttl, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/lease/unkept", "a", 1, a, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/lease/kept", "b", 1, b, NULL, NULL, &err), err);
    ASSERT_OK(etcd_lease_keeper_start(g_client, b, ttl, on_lost, &lost, &k, &err), err);

    while (test_now_ms() - t0 < 6000) {
        etcd_status st = etcd_get(g_client, "/t/lease/unkept", &kv, NULL);
        etcd_kv_clear(&kv);
        if (st == ETCD_ENOTFOUND) {
            gone_at = test_now_ms() - t0;
            break;
        }
        test_sleep_ms(100);
    }
    CU_ASSERT(gone_at >= 1500 && gone_at < 6000);
    CU_ASSERT_EQUAL(etcd_lease_keepalive(g_client, a, NULL, NULL), ETCD_ELEASE);
    /* Well past b's TTL: still alive thanks to the keeper. */
    while (test_now_ms() - t0 < 3500)
        test_sleep_ms(50);
    ASSERT_OK(etcd_get(g_client, "/t/lease/kept", &kv, &err), err);
    CU_ASSERT_EQUAL(kv.lease, b);
    etcd_kv_clear(&kv);
    ASSERT_OK(etcd_lease_ttl(g_client, b, &ttl, NULL, &err), err);
    CU_ASSERT(ttl > 0);
    CU_ASSERT_EQUAL(atomic_load(&lost.calls), 0);

    /* Revoke behind the keeper's back: key gone now, loss reported soon. */
    ASSERT_OK(etcd_lease_revoke(g_client, b, &err), err);
    CU_ASSERT_EQUAL(etcd_get(g_client, "/t/lease/kept", &kv, NULL), ETCD_ENOTFOUND);
    t0 = test_now_ms();
    while (atomic_load(&lost.calls) == 0 && test_now_ms() - t0 < 3000)
        test_sleep_ms(20);
    CU_ASSERT_EQUAL(atomic_load(&lost.calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&lost.lease), b);
    CU_ASSERT_EQUAL(atomic_load(&lost.why), ETCD_ELEASE);
    etcd_lease_keeper_stop(k);
    CU_ASSERT_EQUAL(atomic_load(&lost.calls), 1);
}

/* Stopping a healthy keeper is prompt and reports nothing. */
static void test_keeper_stop(void)
{
    etcd_err err = {{0}};
    int64_t id = 0;
    struct lost lost = {0};
    etcd_lease_keeper *k = NULL;
    long long t0;

    ASSERT_OK(etcd_lease_grant(g_client, 30, &id, NULL, &err), err);
    ASSERT_OK(etcd_lease_keeper_start(g_client, id, 30, on_lost, &lost, &k, &err), err);
    test_sleep_ms(50);
    t0 = test_now_ms();
    etcd_lease_keeper_stop(k);
    CU_ASSERT(test_now_ms() - t0 < 200);
    CU_ASSERT_EQUAL(atomic_load(&lost.calls), 0);
    ASSERT_OK(etcd_lease_revoke(g_client, id, &err), err);
}

/* Registers the lease suite. */
void etcd_tests_lease(void)
{
    CU_pSuite s = CU_add_suite("etcd_lease", NULL, NULL);

    CU_add_test(s, "grant, attach, ttl, keepalive, revoke", test_grant_attach);
    CU_add_test(s, "expiry deletes key; keeper keeps; loss reported", test_expiry_and_keeper);
    CU_add_test(s, "keeper stops promptly", test_keeper_stop);
}
