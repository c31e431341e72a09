/*
 * test_cas.c — cluster_shard_update against a real etcd (a throw-away server
 * from tests/unit/etcd/etcd_server.c, started by the suite): a change lands
 * with epoch + 1 and the new mod_revision; a writer that slips in between
 * the read and the write makes it re-read and apply the change on top; a
 * lost race on every try is CLUSTER_CONFLICT; a missing entry is
 * CLUSTER_GONE; a refused change, an unreadable entry and an unreachable
 * etcd leave etcd untouched.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/cluster.h"
#include "tests/unit/cluster/cluster_tests.h"
#include "tests/unit/etcd/etcd_server.h"

#define PREFIX "/cas"

static struct etcd_server srv;
static etcd_client *cli;

/* Starts etcd and a client. */
static int cas_init(void)
{
    char msg[256];
    if (etcd_server_start(&srv, msg, sizeof msg) != 0) {
        fprintf(stderr, "etcd: %s\n", msg);
        return -1;
    }
    return etcd_client_new(srv.url, 3000, &cli, NULL) == ETCD_OK ? 0 : -1;
}

/* Stops both. */
static int cas_clean(void)
{
    etcd_client_free(cli);
    etcd_server_destroy(&srv);
    return 0;
}

/* Writes a shard entry document as is. */
static void put_entry(const char *name, uint32_t shard, const char *json)
{
    char *key = cluster_key_shard(PREFIX, name, shard);
    CU_ASSERT_EQUAL(etcd_put(cli, key, json, strlen(json), 0, NULL, NULL, NULL), ETCD_OK);
    free(key);
}

/* The stored value and mod_revision of a shard entry. */
static char *get_entry(const char *name, uint32_t shard, int64_t *mod_revision)
{
    char *key = cluster_key_shard(PREFIX, name, shard);
    etcd_kv kv = {0};
    char *v = NULL;
    if (etcd_get(cli, key, &kv, NULL) == ETCD_OK) {
        v = strdup(kv.value);
        if (mod_revision != NULL) *mod_revision = kv.mod_revision;
    }
    etcd_kv_clear(&kv);
    free(key);
    return v;
}

/* Change: drop "n2" from in_sync, counting the calls. */
struct drop_arg {
    int calls;
    const char *race_json; /* written behind the updater's back on the first call */
    bool race_always;      /* ... on every call */
};

static int drop_n2(struct cluster_shard *s, void *arg, char *err, size_t errlen)
{
    struct drop_arg *a = arg;
    (void)err, (void)errlen;
    a->calls++;
    if (a->race_json != NULL && (a->calls == 1 || a->race_always)) put_entry("c", 0, a->race_json);
    cluster_ids_remove(&s->in_sync, "n2");
    return 0;
}

/* Change that refuses. */
static int refuse(struct cluster_shard *s, void *arg, char *err, size_t errlen)
{
    (void)s, (void)arg;
    snprintf(err, errlen, "n3 is not a replica");
    return -1;
}

static const char *const ENTRY = "{\"epoch\":3,\"primary\":\"n1\",\"replicas\":[\"n1\",\"n2\"],"
                                 "\"in_sync\":[\"n1\",\"n2\"],\"recovering\":[]}";

/* One try, no race: epoch 3 -> 4, n2 gone, out matches etcd. */
static void test_update(void)
{
    put_entry("c", 0, ENTRY);
    struct drop_arg a = {0};
    struct cluster_shard out;
    char err[256] = "";
    CU_ASSERT_EQUAL(
        cluster_shard_update(cli, PREFIX, "c", 0, 0, drop_n2, &a, &out, err, sizeof err),
        CLUSTER_OK);
    CU_ASSERT_EQUAL(a.calls, 1);
    CU_ASSERT_EQUAL(out.epoch, 4);
    CU_ASSERT_EQUAL(out.in_sync.n, 1);
    int64_t rev = 0;
    char *stored = get_entry("c", 0, &rev);
    CU_ASSERT_PTR_NOT_NULL_FATAL(stored);
    CU_ASSERT_STRING_EQUAL(stored, "{\"epoch\":4,\"primary\":\"n1\",\"replicas\":[\"n1\",\"n2\"],"
                                   "\"in_sync\":[\"n1\"],\"recovering\":[]}");
    CU_ASSERT_EQUAL(out.mod_revision, rev);
    free(stored);
    cluster_shard_clear(&out);
}

/* Another writer between read and write: the second try sees its entry. */
static void test_conflict_retries(void)
{
    put_entry("c", 0, ENTRY);
    struct drop_arg a = {.race_json =
                             "{\"epoch\":7,\"primary\":\"n2\",\"replicas\":[\"n1\",\"n2\"],"
                             "\"in_sync\":[\"n2\",\"n1\"],\"recovering\":[]}"};
    char err[256] = "";
    CU_ASSERT_EQUAL(
        cluster_shard_update(cli, PREFIX, "c", 0, 3, drop_n2, &a, NULL, err, sizeof err),
        CLUSTER_OK);
    CU_ASSERT_EQUAL(a.calls, 2);
    char *stored = get_entry("c", 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(stored);
    CU_ASSERT_STRING_EQUAL(stored, "{\"epoch\":8,\"primary\":\"n2\",\"replicas\":[\"n1\",\"n2\"],"
                                   "\"in_sync\":[\"n1\"],\"recovering\":[]}");
    free(stored);
}

/* A race lost on every try: CONFLICT after exactly max_tries reads. */
static void test_conflict_gives_up(void)
{
    put_entry("c", 0, ENTRY);
    struct drop_arg a = {.race_json = ENTRY, .race_always = true};
    char err[256] = "";
    CU_ASSERT_EQUAL(
        cluster_shard_update(cli, PREFIX, "c", 0, 3, drop_n2, &a, NULL, err, sizeof err),
        CLUSTER_CONFLICT);
    CU_ASSERT_EQUAL(a.calls, 3);
    CU_ASSERT_STRING_EQUAL(err, "shard entry /cas/shards/c/0 changed under 3 tries in a row");
    char *stored = get_entry("c", 0, NULL);
    CU_ASSERT_STRING_EQUAL(stored, ENTRY);
    free(stored);
}

/* Gone, refused, unreadable: status, message, etcd unchanged. */
static void test_refusals(void)
{
    struct drop_arg a = {0};
    char err[256] = "";
    CU_ASSERT_EQUAL(
        cluster_shard_update(cli, PREFIX, "c", 9, 0, drop_n2, &a, NULL, err, sizeof err),
        CLUSTER_GONE);
    CU_ASSERT_STRING_EQUAL(err, "shard entry /cas/shards/c/9 does not exist");
    CU_ASSERT_EQUAL(a.calls, 0);

    put_entry("c", 0, ENTRY);
    int64_t before = 0, after = 0;
    free(get_entry("c", 0, &before));
    CU_ASSERT_EQUAL(
        cluster_shard_update(cli, PREFIX, "c", 0, 0, refuse, NULL, NULL, err, sizeof err),
        CLUSTER_REFUSED);
    CU_ASSERT_STRING_EQUAL(err, "n3 is not a replica");
    free(get_entry("c", 0, &after));
    CU_ASSERT_EQUAL(after, before);

    put_entry("c", 1, "{\"epoch\":\"x\"}");
    CU_ASSERT_EQUAL(
        cluster_shard_update(cli, PREFIX, "c", 1, 0, drop_n2, &a, NULL, err, sizeof err),
        CLUSTER_BAD);
    CU_ASSERT_STRING_EQUAL(err,
                           "/cas/shards/c/1: shard field \"epoch\" is not a non-negative integer");
    CU_ASSERT_EQUAL(a.calls, 0);
    CU_ASSERT_STRING_EQUAL(cluster_status_str(CLUSTER_BAD), "CLUSTER_BAD");
}

/* etcd down: CLUSTER_ETCD, the change never runs. */
static void test_etcd_down(void)
{
    etcd_server_stop(&srv);
    struct drop_arg a = {0};
    char err[256] = "";
    CU_ASSERT_EQUAL(
        cluster_shard_update(cli, PREFIX, "c", 0, 0, drop_n2, &a, NULL, err, sizeof err),
        CLUSTER_ETCD);
    CU_ASSERT_EQUAL(a.calls, 0);
    CU_ASSERT_NSTRING_EQUAL(err, "reading /cas/shards/c/0: ETCD_EUNAVAILABLE", 42);
    char msg[256];
    CU_ASSERT_EQUAL(etcd_server_restart(&srv, msg, sizeof msg), 0);
}

void cluster_tests_cas(void)
{
    CU_pSuite s = CU_add_suite("shard_cas", cas_init, cas_clean);
    CU_add_test(s, "update: epoch + 1, change applied, mod_revision returned", test_update);
    CU_add_test(s, "a racing writer: re-read and apply on top", test_conflict_retries);
    CU_add_test(s, "a race lost on every try: CLUSTER_CONFLICT", test_conflict_gives_up);
    CU_add_test(s, "gone, refused, unreadable leave etcd unchanged", test_refusals);
    CU_add_test(s, "etcd unreachable: CLUSTER_ETCD", test_etcd_down);
}
