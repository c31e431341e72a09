/*
 * test_watch.c — the watch thread: PUT/DELETE with prev_kv, prompt stop,
 * resume after a forced reconnect and after an etcd restart (every event
 * exactly once, in order), the compaction -> re-list path, and dead-stream
 * detection against a server that never answers, and etcd_watch_live
 * across an etcd stop and restart.
 */
#include "etcd_tests.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_REC 64

struct rec_event {
    etcd_event_type type;
    char key[64];
    char value[32];
    char prev[32]; /* "" when no prev_kv */
    int64_t mod_revision;
};

struct rec {
    pthread_mutex_t gate; /* held by a test to park the watch thread in on_events */
    pthread_mutex_t mu;   /* protects everything below */
    struct rec_event ev[MAX_REC];
    int n;
    int relists;
    int snap_n;
    char snap_keys[8][64];
    int64_t snap_rev;
    int64_t min_rev_after_relist; /* first event revision after a relist */
    int errors;
};

/* Watch callback: record each event. */
static void on_events(void *arg, const etcd_event *evs, size_t n, int64_t revision)
{
    struct rec *r = arg;

    (void)revision;
    pthread_mutex_lock(&r->gate);
    pthread_mutex_unlock(&r->gate);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n && r->n < MAX_REC; i++) {
        struct rec_event *e = &r->ev[r->n++];
        e->type = evs[i].type;
        snprintf(e->key, sizeof e->key, "%s", evs[i].kv.key);
        snprintf(e->value, sizeof e->value, "%s", evs[i].kv.value);
        snprintf(e->prev, sizeof e->prev, "%s", evs[i].prev_kv.key ? evs[i].prev_kv.value : "");
        e->mod_revision = evs[i].kv.mod_revision;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Watch callback: record the snapshot. */
static void on_relist(void *arg, const etcd_kvs *snap)
{
    struct rec *r = arg;

    pthread_mutex_lock(&r->mu);
    r->relists++;
    r->snap_n = (int)snap->n;
    for (size_t i = 0; i < snap->n && i < 8; i++)
        snprintf(r->snap_keys[i], sizeof r->snap_keys[i], "%s", snap->kvs[i].key);
    r->snap_rev = snap->revision;
    pthread_mutex_unlock(&r->mu);
}

/* Watch callback: count stream breaks. */
static void on_error(void *arg, etcd_status why, const char *msg)
{
    struct rec *r = arg;

    (void)why;
    (void)msg;
    pthread_mutex_lock(&r->mu);
    r->errors++;
    pthread_mutex_unlock(&r->mu);
}

/* Reads one counter under the lock. */
static int rec_get(struct rec *r, const int *field)
{
    int v;

    pthread_mutex_lock(&r->mu);
    v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

/* Waits until *field >= n or ms pass. */
static void wait_for(struct rec *r, const int *field, int n, long ms)
{
    long long t0 = test_now_ms();

    while (rec_get(r, field) < n && test_now_ms() - t0 < ms)
        test_sleep_ms(20);
}

/* Starts a watch on prefix from rev with the recorder; waits until created. */
static etcd_watch *start(struct rec *r, const char *prefix, int64_t rev, long idle_ms)
{
    etcd_watch_opts o = {.prefix = prefix,
                         .start_revision = rev,
                         .prev_kv = true,
                         .progress_notify = true,
                         .idle_timeout_ms = idle_ms,
                         .on_events = on_events,
                         .on_relist = on_relist,
                         .on_error = on_error,
                         .arg = r};
    etcd_watch *w = NULL;
    etcd_err err = {{0}};
    long long t0 = test_now_ms();

    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->gate, NULL);
    if (etcd_watch_start(g_client, &o, &w, &err)) {
        fprintf(stderr, "watch start: %s\n", err.msg);
        return NULL;
    }
    while (rev == 0 && etcd_watch_next_revision(w) == 0 && test_now_ms() - t0 < 3000)
        test_sleep_ms(10);
    return w;
}

/* Puts key=value, failing the test on error. */
static int64_t put(const char *key, const char *value)
{
    etcd_err err = {{0}};
    int64_t rev = 0;
    etcd_status st = etcd_put(g_client, key, value, strlen(value), 0, NULL, &rev, &err);

    if (st) fprintf(stderr, "put %s: %s\n", key, err.msg);
    CU_ASSERT_EQUAL(st, ETCD_OK);
    return rev;
}

/* PUT, PUT with prev, DELETE with prev: exact events; stop is prompt. */
static void test_events(void)
{
    struct rec r = {0};
    etcd_watch *w = start(&r, "/t/w1/", 0, 0);
    int64_t r1, r2, r3 = 0;
    long long t0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    r1 = put("/t/w1/a", "1");
    put("/t/w1x", "outside");
    r2 = put("/t/w1/a", "2");
    CU_ASSERT_EQUAL(etcd_delete(g_client, "/t/w1/a", false, NULL, NULL), ETCD_OK);
    r3 = r2 + 1;
    wait_for(&r, &r.n, 3, 3000);
    test_sleep_ms(100);
    CU_ASSERT_EQUAL_FATAL(rec_get(&r, &r.n), 3);
    CU_ASSERT_EQUAL(r.ev[0].type, ETCD_EVENT_PUT);
    CU_ASSERT_STRING_EQUAL(r.ev[0].key, "/t/w1/a");
    CU_ASSERT_STRING_EQUAL(r.ev[0].value, "1");
    CU_ASSERT_STRING_EQUAL(r.ev[0].prev, "");
    CU_ASSERT_EQUAL(r.ev[0].mod_revision, r1);
    CU_ASSERT_EQUAL(r.ev[1].type, ETCD_EVENT_PUT);
    CU_ASSERT_STRING_EQUAL(r.ev[1].value, "2");
    CU_ASSERT_STRING_EQUAL(r.ev[1].prev, "1");
    CU_ASSERT_EQUAL(r.ev[1].mod_revision, r2);
    CU_ASSERT_EQUAL(r.ev[2].type, ETCD_EVENT_DELETE);
    CU_ASSERT_STRING_EQUAL(r.ev[2].key, "/t/w1/a");
    CU_ASSERT_STRING_EQUAL(r.ev[2].prev, "2");
    CU_ASSERT_EQUAL(r.ev[2].mod_revision, r3);
    CU_ASSERT_EQUAL(etcd_watch_next_revision(w), r3 + 1);
    CU_ASSERT_EQUAL(r.relists, 0);
    t0 = test_now_ms();
    etcd_watch_stop(w);
    CU_ASSERT(test_now_ms() - t0 < 500);
}

/* Checks r holds exactly keys prefix+"0".."n-1", in order, increasing revisions. */
static void check_sequence(struct rec *r, const char *prefix, int n)
{
    char key[64];

    pthread_mutex_lock(&r->mu);
    CU_ASSERT_EQUAL(r->n, n);
    for (int i = 0; i < r->n && i < n; i++) {
        snprintf(key, sizeof key, "%s%d", prefix, i);
        CU_ASSERT_STRING_EQUAL(r->ev[i].key, key);
        CU_ASSERT_EQUAL(r->ev[i].type, ETCD_EVENT_PUT);
        if (i) CU_ASSERT(r->ev[i].mod_revision > r->ev[i - 1].mod_revision);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Forced reconnects between writes: every event once, in order. */
static void test_reconnect_resume(void)
{
    struct rec r = {0};
    etcd_watch *w = start(&r, "/t/wr/", 0, 3000);
    char key[32];

    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "/t/wr/%d", i);
        put(key, "v");
        if (i % 2) etcd_watch_reconnect(w);
    }
    wait_for(&r, &r.n, 6, 3000);
    test_sleep_ms(300);
    check_sequence(&r, "/t/wr/", 6);
    CU_ASSERT(rec_get(&r, &r.errors) >= 1);
    etcd_watch_stop(w);
}

/*
 * etcd stopped and restarted on the same ports and data while the watch
 * thread is parked in a callback: the events written meanwhile must arrive
 * after it reconnects (resume from the last revision + 1), each once.
 */
static void test_restart_resume(void)
{
    struct rec r = {0};
    etcd_watch *w = start(&r, "/t/wx/", 0, 3000);
    char key[32], msg[256];

    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    put("/t/wx/0", "before");
    put("/t/wx/1", "before");
    wait_for(&r, &r.n, 2, 3000);
    CU_ASSERT_EQUAL(rec_get(&r, &r.n), 2);
    pthread_mutex_lock(&r.gate);
    put("/t/wx/2", "parked");
    test_sleep_ms(200); /* the watch thread now waits on the gate */
    etcd_server_stop(&g_etcd);
    CU_ASSERT_EQUAL_FATAL(etcd_server_restart(&g_etcd, msg, sizeof msg), 0);
    for (int i = 3; i < 6; i++) {
        snprintf(key, sizeof key, "/t/wx/%d", i);
        put(key, "after");
    }
    CU_ASSERT_EQUAL(rec_get(&r, &r.n), 2);
    pthread_mutex_unlock(&r.gate);
    wait_for(&r, &r.n, 6, 5000);
    test_sleep_ms(300);
    check_sequence(&r, "/t/wx/", 6);
    CU_ASSERT(rec_get(&r, &r.errors) >= 1);
    CU_ASSERT_EQUAL(r.relists, 0);
    etcd_watch_stop(w);
}

/* Polls etcd_watch_live until it equals want (up to ms); returns the last answer. */
static bool wait_live(etcd_watch *w, bool want, long ms, int64_t *since)
{
    bool live = etcd_watch_live(w, since);
    for (long t = 0; live != want && t < ms; t += 20) {
        test_sleep_ms(20);
        live = etcd_watch_live(w, since);
    }
    return live;
}

/* etcd_watch_live: up once etcd answers "created", down (with a new since)
 * while etcd is stopped, up again after it restarts, without any event. */
static void test_liveness(void)
{
    struct rec r = {0};
    int64_t since0 = 0, since1 = 0, since2 = 0;
    char msg[256];
    etcd_watch *w = start(&r, "/t/live/", 0, 3000);

    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_TRUE(wait_live(w, true, 3000, &since0));
    etcd_server_stop(&g_etcd);
    CU_ASSERT_FALSE(wait_live(w, false, 3000, &since1));
    CU_ASSERT(since1 >= since0);
    CU_ASSERT_EQUAL_FATAL(etcd_server_restart(&g_etcd, msg, sizeof msg), 0);
    CU_ASSERT_TRUE(wait_live(w, true, 5000, &since2));
    CU_ASSERT(since2 >= since1);
    CU_ASSERT_EQUAL(rec_get(&r, &r.n), 0);
    etcd_watch_stop(w);
}

/* Watching from a compacted revision re-lists, then streams new events. */
static void test_compaction_relist(void)
{
    struct rec r = {0};
    etcd_watch *w;
    etcd_err err = {{0}};
    int64_t first, now, later;

    first = put("/t/wc/a", "1");
    put("/t/wc/b", "2");
    CU_ASSERT_EQUAL(etcd_delete(g_client, "/t/wc/a", false, NULL, NULL), ETCD_OK);
    now = put("/t/wc/c", "3");
    ASSERT_OK(etcd_compact(g_client, now, true, &err), err);
    w = start(&r, "/t/wc/", first, 3000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    wait_for(&r, &r.relists, 1, 3000);
    CU_ASSERT_EQUAL_FATAL(rec_get(&r, &r.relists), 1);
    pthread_mutex_lock(&r.mu);
    CU_ASSERT_EQUAL(r.snap_n, 2);
    CU_ASSERT_STRING_EQUAL(r.snap_keys[0], "/t/wc/b");
    CU_ASSERT_STRING_EQUAL(r.snap_keys[1], "/t/wc/c");
    CU_ASSERT(r.snap_rev >= now);
    CU_ASSERT_EQUAL(r.n, 0); /* nothing replayed from compacted history */
    pthread_mutex_unlock(&r.mu);

    later = put("/t/wc/d", "4");
    wait_for(&r, &r.n, 1, 3000);
    test_sleep_ms(100);
    pthread_mutex_lock(&r.mu);
    CU_ASSERT_EQUAL(r.n, 1);
    CU_ASSERT_STRING_EQUAL(r.ev[0].key, "/t/wc/d");
    CU_ASSERT_EQUAL(r.ev[0].mod_revision, later);
    pthread_mutex_unlock(&r.mu);
    CU_ASSERT_EQUAL(etcd_watch_next_revision(w), later + 1);
    etcd_watch_stop(w);
}

/* A server that never answers: the idle timeout breaks and retries. */
static void test_dead_stream(void)
{
    struct rec r = {0};
    etcd_client *c = NULL;
    etcd_watch *w = NULL;
    etcd_err err = {{0}};
    char eps[64];
    int port = 0, fd = test_black_hole(&port);
    etcd_watch_opts o = {.prefix = "/t/dead/",
                         .idle_timeout_ms = 300,
                         .on_events = on_events,
                         .on_relist = on_relist,
                         .on_error = on_error,
                         .arg = &r};
    long long t0;

    CU_ASSERT_FATAL(fd >= 0);
    pthread_mutex_init(&r.mu, NULL);
    pthread_mutex_init(&r.gate, NULL);
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d", port);
    ASSERT_OK(etcd_client_new(eps, 1000, &c, &err), err);
    ASSERT_OK(etcd_watch_start(c, &o, &w, &err), err);
    wait_for(&r, &r.errors, 2, 3000);
    CU_ASSERT(rec_get(&r, &r.errors) >= 2);
    t0 = test_now_ms();
    etcd_watch_stop(w);
    CU_ASSERT(test_now_ms() - t0 < 500);
    etcd_client_free(c);
    close(fd);
    /* Bad options are refused. */
    o.on_relist = NULL;
    CU_ASSERT_EQUAL(etcd_watch_start(g_client, &o, &w, NULL), ETCD_EINVAL);
}

/* Registers the watch suite. */
void etcd_tests_watch(void)
{
    CU_pSuite s = CU_add_suite("etcd_watch", NULL, NULL);

    CU_add_test(s, "PUT/DELETE with prev_kv, prompt stop", test_events);
    CU_add_test(s, "resume after forced reconnects", test_reconnect_resume);
    CU_add_test(s, "compaction -> relist -> resume", test_compaction_relist);
    CU_add_test(s, "dead stream detected", test_dead_stream);
    CU_add_test(s, "resume across etcd restart", test_restart_resume);
    CU_add_test(s, "liveness follows the stream across an etcd restart", test_liveness);
}
