/*
 * test_election.c — two candidates in one election: the first leads, the
 * second blocks until the first resigns, an observer sees both leaders once
 * each in order, and a cancelled campaign returns promptly and withdraws.
 */
#include "etcd_tests.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define ELECTION "/t/election"

struct seen {
    pthread_mutex_t mu; /* protects values and n */
    char values[8][16];
    int n;
};

/* Observer callback: record the leader's value. */
static void on_leader(void *arg, const etcd_kv *kv)
{
    struct seen *s = arg;

    pthread_mutex_lock(&s->mu);
    if (s->n < 8) snprintf(s->values[s->n++], sizeof s->values[0], "%s", kv->value);
    pthread_mutex_unlock(&s->mu);
}

/* Number of leaders observed so far. */
static int seen_count(struct seen *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

struct candidate {
    const char *value;
    int64_t lease;
    etcd_cancel *cancel;
    etcd_leader leader;
    etcd_status st;
    atomic_bool done;
    long long done_at;
};

/* Thread: one blocking campaign. */
static void *campaign_main(void *arg)
{
    struct candidate *c = arg;

    c->st = etcd_campaign(g_client, ELECTION, c->value, strlen(c->value), c->lease, c->cancel,
                          &c->leader, NULL);
    c->done_at = test_now_ms();
    atomic_store(&c->done, true);
    return NULL;
}

/* Waits until pred-like count reaches n or ms pass. */
static void wait_seen(struct seen *s, int n, long ms)
{
    long long t0 = test_now_ms();

    while (seen_count(s) < n && test_now_ms() - t0 < ms)
        test_sleep_ms(20);
}

/* The whole election life cycle with two candidates and an observer. */
static void test_election(void)
{
    etcd_err err = {{0}};
    struct seen seen = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct candidate a = {.value = "node-a"}, b = {.value = "node-b"};
    etcd_observe *obs = NULL;
    pthread_t tb;
    etcd_kv kv;
    long long t0;

    CU_ASSERT_EQUAL(etcd_election_leader(g_client, ELECTION, &kv, &err), ETCD_ENOTFOUND);
    ASSERT_OK(etcd_lease_grant(g_client, 10, &a.lease, NULL, &err), err);
    ASSERT_OK(etcd_lease_grant(g_client, 10, &b.lease, NULL, &err), err);
    ASSERT_OK(etcd_observe_start(g_client, ELECTION, 0, on_leader, NULL, &seen, &obs, &err), err);

    campaign_main(&a);
    ASSERT_OK(a.st, err);
    CU_ASSERT_STRING_EQUAL(a.leader.name, ELECTION);
    CU_ASSERT(strncmp(a.leader.key, ELECTION "/", strlen(ELECTION) + 1) == 0);
    CU_ASSERT_EQUAL(a.leader.lease, a.lease);
    CU_ASSERT(a.leader.rev > 0);
    ASSERT_OK(etcd_election_leader(g_client, ELECTION, &kv, &err), err);
    CU_ASSERT_STRING_EQUAL(kv.value, "node-a");
    CU_ASSERT_STRING_EQUAL(kv.key, a.leader.key);
    CU_ASSERT_EQUAL(kv.lease, a.lease);
    etcd_kv_clear(&kv);

    pthread_create(&tb, NULL, campaign_main, &b);
    test_sleep_ms(300);
    CU_ASSERT_FALSE(atomic_load(&b.done)); /* blocked behind a */
    wait_seen(&seen, 1, 2000);
    CU_ASSERT_EQUAL(seen_count(&seen), 1);

    t0 = test_now_ms();
    ASSERT_OK(etcd_resign(g_client, &a.leader, &err), err);
    pthread_join(tb, NULL);
    CU_ASSERT_EQUAL(b.st, ETCD_OK);
    CU_ASSERT(b.done_at - t0 < 2000);
    CU_ASSERT_EQUAL(b.leader.lease, b.lease);
    ASSERT_OK(etcd_election_leader(g_client, ELECTION, &kv, &err), err);
    CU_ASSERT_STRING_EQUAL(kv.value, "node-b");
    etcd_kv_clear(&kv);

    wait_seen(&seen, 2, 2000);
    test_sleep_ms(200); /* a duplicate would show up now */
    CU_ASSERT_EQUAL_FATAL(seen_count(&seen), 2);
    CU_ASSERT_STRING_EQUAL(seen.values[0], "node-a");
    CU_ASSERT_STRING_EQUAL(seen.values[1], "node-b");
    t0 = test_now_ms();
    etcd_observe_stop(obs);
    CU_ASSERT(test_now_ms() - t0 < 500);

    ASSERT_OK(etcd_resign(g_client, &b.leader, &err), err);
    CU_ASSERT_EQUAL(etcd_election_leader(g_client, ELECTION, &kv, NULL), ETCD_ENOTFOUND);
    etcd_leader_clear(&a.leader);
    etcd_leader_clear(&b.leader);
    etcd_lease_revoke(g_client, a.lease, NULL);
    etcd_lease_revoke(g_client, b.lease, NULL);
}

/* A blocked campaign is cancelled promptly and its candidacy withdrawn. */
static void test_campaign_cancel(void)
{
    etcd_err err = {{0}};
    struct candidate a = {.value = "holder"}, c = {.value = "waiter"};
    pthread_t tc;
    etcd_kv kv;
    etcd_status st = ETCD_OK;
    long long t0;

    ASSERT_OK(etcd_lease_grant(g_client, 10, &a.lease, NULL, &err), err);
    ASSERT_OK(etcd_lease_grant(g_client, 10, &c.lease, NULL, &err), err);
    campaign_main(&a);
    ASSERT_OK(a.st, err);
    c.cancel = etcd_cancel_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.cancel);
    pthread_create(&tc, NULL, campaign_main, &c);
    test_sleep_ms(300);
    CU_ASSERT_FALSE(atomic_load(&c.done));
    t0 = test_now_ms();
    etcd_cancel_fire(c.cancel);
    pthread_join(tc, NULL);
    CU_ASSERT_EQUAL(c.st, ETCD_ECANCELED);
    CU_ASSERT(c.done_at - t0 < 500);
    CU_ASSERT_PTR_NULL(c.leader.key);

    /* After a resigns nobody leads: the cancelled candidate is gone. */
    ASSERT_OK(etcd_resign(g_client, &a.leader, &err), err);
    t0 = test_now_ms();
    while (test_now_ms() - t0 < 2000) {
        st = etcd_election_leader(g_client, ELECTION, &kv, NULL);
        etcd_kv_clear(&kv);
        if (st == ETCD_ENOTFOUND) break;
        test_sleep_ms(50);
    }
    CU_ASSERT_EQUAL(st, ETCD_ENOTFOUND);
    etcd_leader_clear(&a.leader);
    etcd_cancel_free(c.cancel);
    etcd_lease_revoke(g_client, a.lease, NULL);
    etcd_lease_revoke(g_client, c.lease, NULL);
}

/* Registers the election suite. */
void etcd_tests_election(void)
{
    CU_pSuite s = CU_add_suite("etcd_election", NULL, NULL);

    CU_add_test(s, "campaign/leader/resign/observe, two candidates", test_election);
    CU_add_test(s, "campaign cancel withdraws", test_campaign_cancel);
}
