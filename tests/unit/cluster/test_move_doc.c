/*
 * test_move_doc.c — the drain mark and rebalance move documents
 * (common/cluster/move_doc.c, docs/rebalance.md §2, §4): byte-exact format,
 * round trip, defaults, a refusal naming the field for every malformed
 * document, the ids' order, and the keys' classifier.
 */
#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/cluster.h"
#include "tests/unit/cluster/cluster_tests.h"

static const char move_json[] =
    "{\"id\":\"1795256510502-00007\",\"collection\":\"docs\",\"shard\":3,\"from\":\"n1\","
    "\"to\":\"n4\",\"kind\":\"replica\",\"primary\":true,\"state\":\"running\","
    "\"step\":\"copying\",\"attempts\":2,\"reason\":\"attempt 1: target gone\","
    "\"origin\":\"auto\",\"bytes_total\":123456789,\"created_at\":1795256510502,"
    "\"started_at\":1795256511000,\"finished_at\":0}";

/* A full document parses field by field and formats back byte for byte. */
static void test_move_round_trip(void)
{
    struct cluster_move m, c;
    char err[200] = "";
    CU_ASSERT_EQUAL_FATAL(cluster_move_parse(move_json, strlen(move_json), &m, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(m.id, "1795256510502-00007");
    CU_ASSERT_STRING_EQUAL(m.name, "docs");
    CU_ASSERT_EQUAL(m.shard, 3);
    CU_ASSERT_STRING_EQUAL(m.from, "n1");
    CU_ASSERT_STRING_EQUAL(m.to, "n4");
    CU_ASSERT_EQUAL(m.kind, CLUSTER_MOVE_REPLICA);
    CU_ASSERT_TRUE(m.primary);
    CU_ASSERT_EQUAL(m.state, CLUSTER_MOVE_RUNNING);
    CU_ASSERT_TRUE(cluster_move_active(&m));
    CU_ASSERT_STRING_EQUAL(m.step, "copying");
    CU_ASSERT_EQUAL(m.attempts, 2);
    CU_ASSERT_STRING_EQUAL(m.reason, "attempt 1: target gone");
    CU_ASSERT_STRING_EQUAL(m.origin, "auto");
    CU_ASSERT_EQUAL(m.bytes_total, 123456789);
    CU_ASSERT_EQUAL(m.created_at, 1795256510502LL);
    CU_ASSERT_EQUAL(m.started_at, 1795256511000LL);
    CU_ASSERT_EQUAL(m.finished_at, 0);
    char *s = cluster_move_format(&m);
    CU_ASSERT_STRING_EQUAL(s, move_json);
    free(s);
    CU_ASSERT_EQUAL_FATAL(cluster_move_copy(&c, &m), 0);
    cluster_move_clear(&m);
    s = cluster_move_format(&c);
    CU_ASSERT_STRING_EQUAL(s, move_json);
    free(s);
    CU_ASSERT_EQUAL(cluster_move_set(&c.reason, "replaced"), 0);
    CU_ASSERT_STRING_EQUAL(c.reason, "replaced");
    cluster_move_clear(&c);
    CU_ASSERT_PTR_NULL(c.from);
}

/* A minimal document takes the defaults: replica, queued, manual. */
static void test_move_defaults(void)
{
    const char *doc =
        "{\"id\":\"a\",\"collection\":\"c\",\"shard\":\"0\",\"from\":\"x\",\"to\":\"y\"}";
    struct cluster_move m;
    char err[200];
    CU_ASSERT_EQUAL_FATAL(cluster_move_parse(doc, strlen(doc), &m, err, sizeof err), 0);
    CU_ASSERT_EQUAL(m.kind, CLUSTER_MOVE_REPLICA);
    CU_ASSERT_EQUAL(m.state, CLUSTER_MOVE_QUEUED);
    CU_ASSERT_FALSE(m.primary);
    CU_ASSERT_STRING_EQUAL(m.origin, "manual");
    CU_ASSERT_STRING_EQUAL(m.step, "");
    CU_ASSERT_STRING_EQUAL(m.reason, "");
    cluster_move_clear(&m);
}

/* Every malformed field is refused by name, and nothing is left allocated. */
static void test_move_bad(void)
{
    const char *base = "\"id\":\"a\",\"collection\":\"c\",\"shard\":1,\"from\":\"x\",\"to\":\"y\"";
    struct {
        const char *extra, *want;
    } bad[] = {
        {NULL, "move is not a JSON object"},
        {",\"kind\":\"swap\"", "move field \"kind\" is missing or invalid"},
        {",\"state\":\"paused\"", "move field \"state\" is missing or invalid"},
        {",\"primary\":1", "move field \"primary\" is missing or invalid"},
        {",\"attempts\":-1", "move field \"attempts\" is missing or invalid"},
        {",\"bytes_total\":\"many\"", "move field \"bytes_total\" is missing or invalid"},
        {",\"started_at\":1.5", "move field \"started_at\" is missing or invalid"},
        {",\"reason\":7", "move field \"reason\" is missing or invalid"},
    };
    char doc[512], err[200];
    struct cluster_move m;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bad[i].extra == NULL)
            snprintf(doc, sizeof doc, "[1]");
        else
            snprintf(doc, sizeof doc, "{%s%s}", base, bad[i].extra);
        err[0] = '\0';
        CU_ASSERT_EQUAL(cluster_move_parse(doc, strlen(doc), &m, err, sizeof err), -1);
        CU_ASSERT_STRING_EQUAL(err, bad[i].want);
        CU_ASSERT_PTR_NULL(m.from);
    }
    static const char *const missing[] = {"id", "collection", "from", "to"};
    for (size_t i = 0; i < 4; i++) {
        char want[80];
        snprintf(want, sizeof want, "move field \"%s\" is missing or invalid", missing[i]);
        snprintf(doc, sizeof doc,
                 "{\"id\":\"a\",\"collection\":\"c\",\"from\":\"x\",\"to\":\"y\"}");
        char *f = strstr(doc, missing[i]);
        f[0] = 'X'; /* rename the field so it is missing */
        CU_ASSERT_EQUAL(cluster_move_parse(doc, strlen(doc), &m, err, sizeof err), -1);
        CU_ASSERT_STRING_EQUAL(err, want);
    }
    const char *badname = "{\"id\":\"a\",\"collection\":\"no/slash\",\"from\":\"x\",\"to\":\"y\"}";
    CU_ASSERT_EQUAL(cluster_move_parse(badname, strlen(badname), &m, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "move field \"collection\" is missing or invalid");
}

/* Ids sort by creation time, then sequence; names of kinds and states. */
static void test_move_ids_names(void)
{
    char a[CLUSTER_MOVE_ID_MAX + 1], b[CLUSTER_MOVE_ID_MAX + 1], c[CLUSTER_MOVE_ID_MAX + 1];
    cluster_move_id(a, 999999999999LL, 5);
    cluster_move_id(b, 1795256510502LL, 2);
    cluster_move_id(c, 1795256510502LL, 10);
    CU_ASSERT_STRING_EQUAL(a, "0999999999999-00005");
    CU_ASSERT_TRUE(strcmp(a, b) < 0 && strcmp(b, c) < 0);
    enum cluster_move_state st;
    for (int i = CLUSTER_MOVE_QUEUED; i <= CLUSTER_MOVE_CANCELLED; i++) {
        CU_ASSERT_EQUAL(cluster_move_state_parse(cluster_move_state_name(i), &st), 0);
        CU_ASSERT_EQUAL((int)st, i);
    }
    CU_ASSERT_EQUAL(cluster_move_state_parse("QUEUED", &st), -1);
    enum cluster_move_kind k;
    CU_ASSERT_EQUAL(cluster_move_kind_parse("leader", &k), 0);
    CU_ASSERT_EQUAL(k, CLUSTER_MOVE_LEADER);
    CU_ASSERT_STRING_EQUAL(cluster_move_kind_name(CLUSTER_MOVE_REPLICA), "replica");
}

/* The drain mark, and the keys of both documents. */
static void test_drain_and_keys(void)
{
    const char *doc = "{\"node_id\":\"n2\",\"since\":1795256510502}";
    struct cluster_drain d;
    char err[200];
    CU_ASSERT_EQUAL_FATAL(cluster_drain_parse(doc, strlen(doc), &d, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(d.node_id, "n2");
    CU_ASSERT_EQUAL(d.since, 1795256510502LL);
    char *s = cluster_drain_format(&d);
    CU_ASSERT_STRING_EQUAL(s, doc);
    free(s);
    cluster_drain_clear(&d);
    const char *bad = "{\"since\":1}";
    CU_ASSERT_EQUAL(cluster_drain_parse(bad, strlen(bad), &d, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "drain field \"node_id\" is missing or not a non-empty string");

    s = cluster_key_drain("/vs", "n2");
    CU_ASSERT_STRING_EQUAL(s, "/vs/drain/n2");
    free(s);
    s = cluster_key_move("/vs", "1795256510502-00007");
    CU_ASSERT_STRING_EQUAL(s, "/vs/moves/1795256510502-00007");
    free(s);
    struct cluster_key k;
    CU_ASSERT_EQUAL(cluster_key_parse("drain/n2", &k), CLUSTER_KEY_DRAIN);
    CU_ASSERT_STRING_EQUAL(k.node_id, "n2");
    CU_ASSERT_EQUAL(cluster_key_parse("moves/1795256510502-00007", &k), CLUSTER_KEY_MOVE);
    CU_ASSERT_STRING_EQUAL(k.move_id, "1795256510502-00007");
    CU_ASSERT_EQUAL(cluster_key_parse("drain/", &k), CLUSTER_KEY_OTHER);
    CU_ASSERT_EQUAL(cluster_key_parse("drain/a/b", &k), CLUSTER_KEY_OTHER);
    CU_ASSERT_EQUAL(cluster_key_parse("moves/", &k), CLUSTER_KEY_OTHER);
    CU_ASSERT_EQUAL(cluster_key_parse("moves/a b", &k), CLUSTER_KEY_OTHER);
    CU_ASSERT_EQUAL(cluster_key_parse("moves/a/b", &k), CLUSTER_KEY_OTHER);
}

void cluster_tests_move_doc(void)
{
    CU_pSuite s = CU_add_suite("move_doc", NULL, NULL);
    CU_add_test(s, "move document: bytes, round trip, copy, set", test_move_round_trip);
    CU_add_test(s, "move document: defaults", test_move_defaults);
    CU_add_test(s, "move document: every bad field named", test_move_bad);
    CU_add_test(s, "move ids sort by creation; kind and state names", test_move_ids_names);
    CU_add_test(s, "drain mark, drain and move keys", test_drain_and_keys);
}
