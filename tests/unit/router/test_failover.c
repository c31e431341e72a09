/*
 * test_failover.c — CUnit tests of the controller's planners
 * (router/controller/failover.c, in build/test_router) on hand-built views:
 * the promotion choice (highest LSN among READY in-sync members, ties by
 * fewest primaries then id, never a replica outside in_sync, never an
 * unregistered or unanswered one), the re-replication target (no second copy
 * on a node, fewest replicas, ties by id) and the action list (failover,
 * dead backup dropped from in_sync, replacement only past the grace period
 * and only with a live primary, R = 1 never re-replicated from nothing,
 * never onto a draining node, never for the dead source of a running move).
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "router/controller/failover.h"
#include "tests/unit/router/router_test.h"

#define MAXS 4

/* A hand-built view: registered nodes (sorted ids) and one collection. */
struct tview {
    struct rt_view v;
    struct rt_node nodes[8];
    struct rt_collection coll;
    struct cluster_shard shard[MAXS];
};

/* Fills ids from a space-separated list of node ids (strings are static tokens). */
static void ids_of(struct cluster_ids *ids, char **store, const char *list)
{
    static char buf[64][16];
    static int used;
    ids->v = store;
    ids->n = 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        size_t n = strcspn(p, " ");
        char *slot = buf[used++ % 64];
        snprintf(slot, 16, "%.*s", (int)n, p);
        store[ids->n++] = slot;
        p += n;
    }
}

/* Per-shard id storage of a tview. */
static char *store_r[MAXS][8], *store_i[MAXS][8];

/* Builds a view of registered nodes `live` and shards given as
 * "primary|replicas|in_sync" strings. */
static void tview_init(struct tview *t, const char *live, const char *const *shards, uint32_t n)
{
    memset(t, 0, sizeof *t);
    static char ids[8][16];
    const char *p = live;
    while (*p) {
        size_t len = strcspn(p, " ");
        snprintf(ids[t->v.n_nodes], 16, "%.*s", (int)len, p);
        t->nodes[t->v.n_nodes].id = ids[t->v.n_nodes];
        t->nodes[t->v.n_nodes].addr = "127.0.0.1:1";
        t->v.n_nodes++;
        p += len;
        while (*p == ' ')
            p++;
    }
    t->v.nodes = t->nodes;
    static char prim[MAXS][16];
    for (uint32_t s = 0; s < n; s++) {
        char r[64], i[64];
        CU_ASSERT_FATAL(sscanf(shards[s], "%15[^|]|%63[^|]|%63[^|]", prim[s], r, i) == 3);
        if (strcmp(prim[s], "-") == 0) prim[s][0] = '\0';
        t->shard[s].present = true;
        t->shard[s].epoch = 7;
        t->shard[s].primary = prim[s];
        ids_of(&t->shard[s].replicas, store_r[s], r);
        ids_of(&t->shard[s].in_sync, store_i[s], i);
    }
    t->coll.name = "c";
    t->coll.shards = n;
    t->coll.replication_factor = t->shard[0].replicas.n;
    t->coll.shard = t->shard;
    t->v.colls = &t->coll;
    t->v.n_colls = 1;
}

/* Highest LSN wins among READY in-sync members. */
static void test_choose_highest_lsn(void)
{
    struct tview t;
    const char *sh[] = {"a|a b c|a b c"};
    tview_init(&t, "b c", sh, 1);
    struct failover_candidate c[] = {{"b", true, true, 10, 7}, {"c", true, true, 12, 7}};
    char why[256];
    CU_ASSERT_EQUAL(failover_choose(&t.v, &t.shard[0], c, 2, why, sizeof why), 1);
}

/* Equal LSNs: the node leading fewer shards, then the smaller id. */
static void test_choose_ties(void)
{
    struct tview t;
    const char *sh[] = {"a|a b c|a b c", "b|b c|b c"};
    tview_init(&t, "b c", sh, 2);
    struct failover_candidate c[] = {{"b", true, true, 5, 7}, {"c", true, true, 5, 7}};
    char why[256];
    CU_ASSERT_EQUAL(failover_choose(&t.v, &t.shard[0], c, 2, why, sizeof why), 1);
    const char *sh2[] = {"a|a b c|a b c"};
    tview_init(&t, "b c", sh2, 1);
    CU_ASSERT_EQUAL(failover_choose(&t.v, &t.shard[0], c, 2, why, sizeof why), 0);
}

/* A replica outside in_sync is never promoted, whatever its LSN. */
static void test_choose_not_in_sync(void)
{
    struct tview t;
    const char *sh[] = {"a|a b c|a b"};
    tview_init(&t, "b c", sh, 1);
    struct failover_candidate c[] = {{"b", true, true, 3, 7}, {"c", true, true, 99, 7}};
    char why[256];
    CU_ASSERT_EQUAL(failover_choose(&t.v, &t.shard[0], c, 2, why, sizeof why), 0);
}

/* Unregistered, unanswered or not-READY members are skipped; none left is -1 with a reason. */
static void test_choose_none(void)
{
    struct tview t;
    const char *sh[] = {"a|a b c|a b c"};
    tview_init(&t, "b c", sh, 1);
    struct failover_candidate c[] = {{"b", false, false, 0, 0}, {"c", true, false, 50, 7}};
    char why[256];
    CU_ASSERT_EQUAL(failover_choose(&t.v, &t.shard[0], c, 2, why, sizeof why), -1);
    CU_ASSERT_STRING_EQUAL(why, "no READY in-sync replica: b=no_answer c=not_ready");
    tview_init(&t, "c", sh, 1); /* b dead: only c, not READY */
    struct failover_candidate d[] = {{"b", true, true, 80, 7}, {"c", true, false, 50, 7}};
    CU_ASSERT_EQUAL(failover_choose(&t.v, &t.shard[0], d, 2, why, sizeof why), -1);
    CU_ASSERT_STRING_EQUAL(why, "no READY in-sync replica: c=not_ready");
    tview_init(&t, "x", sh, 1);
    CU_ASSERT_EQUAL(failover_choose(&t.v, &t.shard[0], d, 2, why, sizeof why), -1);
    CU_ASSERT_STRING_EQUAL(why, "no live in-sync replica");
}

/* The target holds no copy, has the fewest replicas, ties by id; NULL when all hold one. */
static void test_replace_target(void)
{
    struct tview t;
    const char *sh[] = {"a|a b|a b", "c|c d|c d", "c|c b|c b"};
    tview_init(&t, "a c d e f", sh, 3);
    /* shard 0 (a, b): c has 2, d 1, e and f 0 -> e (id before f) */
    CU_ASSERT_STRING_EQUAL(failover_replace_target(&t.v, &t.shard[0]), "e");
    const char *sh2[] = {"a|a b|a b", "a|a d|a d"};
    tview_init(&t, "a b d", sh2, 2);
    CU_ASSERT_STRING_EQUAL(failover_replace_target(&t.v, &t.shard[0]), "d");
    CU_ASSERT_STRING_EQUAL(failover_replace_target(&t.v, &t.shard[1]), "b");
    const char *sh3[] = {"a|a b|a b"};
    tview_init(&t, "a b", sh3, 1);
    CU_ASSERT_PTR_NULL(failover_replace_target(&t.v, &t.shard[0]));
}

/* Dead primary with a live in-sync backup: one PROMOTE naming it. */
static void test_plan_failover(void)
{
    struct tview t;
    const char *sh[] = {"a|a b|a b", "b|b a|b"};
    tview_init(&t, "b c", sh, 2);
    struct failover_action out[8];
    size_t n = failover_plan(&t.v, NULL, 0, 1000, 60000, out, 8);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_PROMOTE);
    CU_ASSERT_EQUAL(out[0].shard, 0);
    CU_ASSERT_STRING_EQUAL(out[0].node, "a");
    /* shard 1: live primary b, dead backup a not in in_sync, within grace */
    CU_ASSERT_EQUAL(out[1].kind, FAILOVER_WAIT);
    CU_ASSERT_STRING_EQUAL(out[1].node, "a");
    CU_ASSERT_STRING_EQUAL(out[1].reason, "node gone, within the grace period");
}

/* Dead primary and dead in-sync backup, one live in-sync: PROMOTE; none live: WAIT. */
static void test_plan_dead_primary_and_backup(void)
{
    struct tview t;
    const char *sh[] = {"a|a b c|a b c", "a|a b|a b"};
    tview_init(&t, "c", sh, 2);
    struct failover_action out[8];
    size_t n = failover_plan(&t.v, NULL, 0, 1000, 60000, out, 8);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_PROMOTE);
    CU_ASSERT_EQUAL(out[1].kind, FAILOVER_WAIT);
    CU_ASSERT_STRING_EQUAL(out[1].reason, "no live in-sync replica");
}

/* A dead backup still in in_sync is dropped within the grace, replaced after it. */
static void test_plan_drop_then_replace(void)
{
    struct tview t;
    const char *sh[] = {"a|a b|a b"};
    tview_init(&t, "a c", sh, 1);
    struct failover_missing m[] = {{"b", 1000}};
    struct failover_action out[4];
    size_t n = failover_plan(&t.v, m, 1, 1000 + 59999, 60000, out, 4);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_DROP_IN_SYNC);
    CU_ASSERT_STRING_EQUAL(out[0].node, "b");
    n = failover_plan(&t.v, m, 1, 1000 + 60000, 60000, out, 4);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_REPLACE);
    CU_ASSERT_STRING_EQUAL(out[0].node, "b");
    CU_ASSERT_STRING_EQUAL(out[0].to, "c");
    /* not in the missing list: missing since now, so never past a grace > 0 */
    n = failover_plan(&t.v, NULL, 0, 1000 + 60000, 60000, out, 4);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_DROP_IN_SYNC);
}

/* Past the grace with no node free to take the copy: drop from in_sync, then wait. */
static void test_plan_no_target(void)
{
    struct tview t;
    const char *sh[] = {"a|a b|a b", "a|a b|a"};
    tview_init(&t, "a", sh, 2);
    struct failover_missing m[] = {{"b", 0}};
    struct failover_action out[4];
    size_t n = failover_plan(&t.v, m, 1, 100000, 60000, out, 4);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_DROP_IN_SYNC);
    CU_ASSERT_EQUAL(out[1].kind, FAILOVER_WAIT);
    CU_ASSERT_STRING_EQUAL(out[1].reason, "no registered node without a copy");
}

/* R = 1 whose node is gone: no promotion and no replacement, however long. */
static void test_plan_r1_never_from_nothing(void)
{
    struct tview t;
    const char *sh[] = {"a|a|a"};
    tview_init(&t, "b c", sh, 1);
    struct failover_missing m[] = {{"a", 0}};
    struct failover_action out[4];
    size_t n = failover_plan(&t.v, m, 1, 10000000, 1000, out, 4);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_WAIT);
    CU_ASSERT_STRING_EQUAL(out[0].reason, "no live in-sync replica");
}

/* Healthy shards need nothing; a short out array still reports the full count. */
static void test_plan_healthy_and_cap(void)
{
    struct tview t;
    const char *sh[] = {"a|a b|a b", "b|b a|b a"};
    tview_init(&t, "a b", sh, 2);
    struct failover_action out[2];
    CU_ASSERT_EQUAL(failover_plan(&t.v, NULL, 0, 0, 0, out, 2), 0);
    const char *sh2[] = {"x|x a|x a", "y|y b|y b", "a|a z|a z"};
    tview_init(&t, "a b", sh2, 3);
    CU_ASSERT_EQUAL(failover_plan(&t.v, NULL, 0, 0, 60000, out, 1), 3);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_PROMOTE);
    CU_ASSERT_STRING_EQUAL(failover_kind_name(FAILOVER_DROP_IN_SYNC), "drop_in_sync");
}

/* A draining node never receives a replacement copy, even with the fewest replicas. */
static void test_replace_target_not_draining(void)
{
    struct tview t;
    const char *sh[] = {"a|a b|a b", "c|c d|c d"};
    tview_init(&t, "a c d e f", sh, 2);
    struct cluster_drain dr[] = {{"e", 1}};
    t.v.drains = dr;
    t.v.n_drains = 1;
    /* e and f hold none; e is draining -> f */
    CU_ASSERT_STRING_EQUAL(failover_replace_target(&t.v, &t.shard[0]), "f");
    struct cluster_drain dr2[] = {{"e", 1}, {"f", 1}};
    t.v.drains = dr2;
    t.v.n_drains = 2;
    /* c has 1, d 1: both eligible -> c (id) */
    CU_ASSERT_STRING_EQUAL(failover_replace_target(&t.v, &t.shard[0]), "c");
    const char *sh2[] = {"a|a b|a b"};
    tview_init(&t, "a c", sh2, 1); /* b gone, c the only node without a copy, draining */
    struct cluster_drain dr3[] = {{"c", 1}};
    t.v.drains = dr3;
    t.v.n_drains = 1;
    CU_ASSERT_PTR_NULL(failover_replace_target(&t.v, &t.shard[0]));
    /* and the plan waits instead of replacing onto it */
    struct failover_missing m[] = {{"b", 0}};
    struct failover_action out[4];
    t.shard[0].in_sync.n = 1; /* b already dropped from in_sync */
    size_t n = failover_plan(&t.v, m, 1, 100000, 60000, out, 4);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_WAIT);
}

/* The dead source of a RUNNING replica move is left to the move: no REPLACE. */
static void test_plan_move_owns_source(void)
{
    struct tview t;
    const char *sh[] = {"a|a b c|a b"};
    tview_init(&t, "a c d", sh, 1);
    struct cluster_move mv = {.id = "1",
                              .name = "c",
                              .shard = 0,
                              .from = "b",
                              .to = "c",
                              .kind = CLUSTER_MOVE_REPLICA,
                              .state = CLUSTER_MOVE_RUNNING};
    t.v.moves = &mv;
    t.v.n_moves = 1;
    struct failover_missing m[] = {{"b", 0}};
    struct failover_action out[4];
    size_t n = failover_plan(&t.v, m, 1, 100000, 60000, out, 4);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_DROP_IN_SYNC); /* shrinking in_sync is still done */
    t.shard[0].in_sync.n = 1;
    n = failover_plan(&t.v, m, 1, 100000, 60000, out, 4);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_WAIT);
    CU_ASSERT_STRING_EQUAL(out[0].reason, "source of a running move (its switch removes it)");
    /* queued (not running), or another shard's: replaced as usual */
    mv.state = CLUSTER_MOVE_QUEUED;
    n = failover_plan(&t.v, m, 1, 100000, 60000, out, 4);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_REPLACE);
    CU_ASSERT_STRING_EQUAL(out[0].to, "d");
    mv.state = CLUSTER_MOVE_RUNNING;
    mv.shard = 1;
    n = failover_plan(&t.v, m, 1, 100000, 60000, out, 4);
    CU_ASSERT_EQUAL(out[0].kind, FAILOVER_REPLACE);
}

void register_failover_tests(void)
{
    CU_pSuite s = CU_add_suite("failover", NULL, NULL);
    CU_add_test(s, "choose: highest LSN", test_choose_highest_lsn);
    CU_add_test(s, "choose: ties by primaries, then id", test_choose_ties);
    CU_add_test(s, "choose: never outside in_sync", test_choose_not_in_sync);
    CU_add_test(s, "choose: no candidate, with reasons", test_choose_none);
    CU_add_test(s, "replace target: no second copy, fewest, id", test_replace_target);
    CU_add_test(s, "plan: failover of a dead primary", test_plan_failover);
    CU_add_test(s, "plan: dead primary + dead backup", test_plan_dead_primary_and_backup);
    CU_add_test(s, "plan: drop from in_sync, replace after grace", test_plan_drop_then_replace);
    CU_add_test(s, "plan: no node to replace onto", test_plan_no_target);
    CU_add_test(s, "plan: R=1 never re-replicated from nothing", test_plan_r1_never_from_nothing);
    CU_add_test(s, "plan: healthy shards, count beyond cap", test_plan_healthy_and_cap);
    CU_add_test(s, "replace target: never a draining node", test_replace_target_not_draining);
    CU_add_test(s, "plan: a running move's dead source is left to it", test_plan_move_owns_source);
}
