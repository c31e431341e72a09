/*
 * test_rebalance.c — CUnit tests of the rebalance planner
 * (router/controller/rebalance.c, in build/test_router) on hand-built
 * clusters: a balanced cluster plans nothing; scale-out, drain and leave end
 * with even replica and primary counts in the fewest moves; bytes break ties
 * between equal counts; R = 1..3; several collections; shards that are not
 * movable (or have a copy on an unknown node) stay put; an impossible drain
 * says why. Every plan is executed move by move (target added before the
 * source is removed) and checked: no second copy on a node, never fewer
 * than R copies, leader moves only between holders of a copy, and planning
 * again over the result is empty — also on a few hundred random clusters.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/controller/rebalance.h"
#include "tests/unit/router/router_test.h"

#define MAXN 16
#define MAXS 64
#define MAXR 4

/* Interned names, so that a cluster can be copied by value. */
static const char *intern(const char *name)
{
    static char pool[128][16];
    static size_t used;
    for (size_t i = 0; i < used; i++)
        if (strcmp(pool[i], name) == 0) return pool[i];
    CU_ASSERT_FATAL(used < 128);
    snprintf(pool[used], sizeof pool[used], "%s", name);
    return pool[used++];
}

/* A cluster: the planner's input, with storage for the replica lists. */
struct tc {
    struct rebalance_node nodes[MAXN];
    size_t n_nodes;
    struct rebalance_shard shards[MAXS];
    const char *reps[MAXS][MAXR];
    size_t n_shards;
};

/* Points every shard's replica list at the cluster's own storage (after a copy). */
static void tc_fix(struct tc *t)
{
    for (size_t s = 0; s < t->n_shards; s++)
        t->shards[s].replicas = t->reps[s];
}

/* Adds nodes from a space-separated list; a trailing '!' marks one draining. */
static void tc_nodes(struct tc *t, const char *list)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        size_t len = strlen(tok);
        bool drain = tok[len - 1] == '!';
        if (drain) tok[len - 1] = '\0';
        CU_ASSERT_FATAL(t->n_nodes < MAXN);
        t->nodes[t->n_nodes++] = (struct rebalance_node){intern(tok), drain};
    }
}

/* Adds shard `shard` of coll on the space-separated nodes, the first the primary. */
static struct rebalance_shard *tc_shard(struct tc *t, const char *coll, uint32_t shard,
                                        const char *nodes, uint64_t bytes)
{
    CU_ASSERT_FATAL(t->n_shards < MAXS);
    size_t s = t->n_shards++;
    struct rebalance_shard *sh = &t->shards[s];
    *sh = (struct rebalance_shard){.collection = intern(coll),
                                   .shard = shard,
                                   .replicas = t->reps[s],
                                   .bytes = bytes,
                                   .movable = true};
    char buf[128];
    snprintf(buf, sizeof buf, "%s", nodes);
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        CU_ASSERT_FATAL(sh->n_replicas < MAXR);
        t->reps[s][sh->n_replicas++] = intern(tok);
    }
    sh->primary = t->reps[s][0];
    return sh;
}

static const struct rebalance_node *tc_node(const struct tc *t, const char *id)
{
    for (size_t i = 0; i < t->n_nodes; i++)
        if (strcmp(t->nodes[i].id, id) == 0) return &t->nodes[i];
    return NULL;
}

static int slot_of(const struct rebalance_shard *sh, const char *id)
{
    for (size_t r = 0; r < sh->n_replicas; r++)
        if (strcmp(sh->replicas[r], id) == 0) return (int)r;
    return -1;
}

/* The planner may move shard s: the caller's flag, every copy on a known node. */
static bool movable(const struct tc *t, size_t s)
{
    const struct rebalance_shard *sh = &t->shards[s];
    for (size_t r = 0; r < sh->n_replicas && sh->movable; r++)
        if (tc_node(t, sh->replicas[r]) == NULL) return false;
    return sh->movable;
}

/* Copies of coll (NULL: every collection) on node id; primaries when lead. */
static size_t count_on(const struct tc *t, const char *coll, const char *id, bool lead)
{
    size_t n = 0;
    for (size_t s = 0; s < t->n_shards; s++) {
        const struct rebalance_shard *sh = &t->shards[s];
        if (coll != NULL && strcmp(sh->collection, coll) != 0) continue;
        n += lead ? strcmp(sh->primary, id) == 0 : slot_of(sh, id) >= 0;
    }
    return n;
}

/* max − min of count_on over the eligible nodes. */
static size_t spread_of(const struct tc *t, const char *coll, bool lead)
{
    size_t lo = SIZE_MAX, hi = 0;
    for (size_t i = 0; i < t->n_nodes; i++) {
        if (t->nodes[i].draining) continue;
        size_t n = count_on(t, coll, t->nodes[i].id, lead);
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
    }
    return lo == SIZE_MAX ? 0 : hi - lo;
}

/*
 * Executes the plan on t move by move, as the executor would: a replica move
 * first adds `to` (the shard then has R + 1 copies), then removes `from`
 * (back to R). Fails (returns false, with why in err) on a move that does
 * not apply: an unmovable shard, `to` unknown, draining or already holding
 * a copy, `from` holding none, a wrong primary flag, a leader move to a node
 * without a copy or from one that does not lead.
 */
static bool tc_apply(struct tc *t, const struct rebalance_move *m, size_t n, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct rebalance_move *mv = &m[i];
        snprintf(err, errlen, "move %zu (%s shard %zu %s -> %s)", i, rebalance_kind_name(mv->kind),
                 mv->shard, mv->from, mv->to);
        if (mv->shard >= t->n_shards) return false;
        struct rebalance_shard *sh = &t->shards[mv->shard];
        const struct rebalance_node *to = tc_node(t, mv->to);
        size_t r = sh->n_replicas;
        int from = slot_of(sh, mv->from);
        if (!sh->movable || to == NULL || to->draining || from < 0) return false;
        if (mv->kind == REBALANCE_LEADER) {
            if (strcmp(sh->primary, mv->from) != 0 || slot_of(sh, mv->to) < 0 || mv->bytes != 0)
                return false;
            sh->primary = to->id;
            continue;
        }
        if (slot_of(sh, mv->to) >= 0 || mv->primary != (strcmp(sh->primary, mv->from) == 0) ||
            mv->bytes != sh->bytes)
            return false;
        /* adding: R + 1 distinct copies */
        const char *with[MAXR + 1];
        memcpy(with, sh->replicas, r * sizeof *with);
        with[r] = to->id;
        for (size_t a = 0; a <= r; a++)
            for (size_t b = a + 1; b <= r; b++)
                if (strcmp(with[a], with[b]) == 0) return false;
        /* switching: from removed, R copies remain */
        t->reps[mv->shard][from] = to->id;
        if (mv->primary) sh->primary = to->id;
        if (sh->n_replicas != r || slot_of(sh, mv->to) < 0 || slot_of(sh, mv->from) >= 0)
            return false;
    }
    err[0] = '\0';
    return true;
}

/* Plans over t into m (room for cap); returns the count, note in note. */
static size_t plan(const struct tc *t, struct rebalance_move *m, size_t cap, char *note,
                   size_t notelen)
{
    return rebalance_plan(t->nodes, t->n_nodes, t->shards, t->n_shards, m, cap, note, notelen);
}

static size_t replica_moves(const struct rebalance_move *m, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += m[i].kind == REBALANCE_REPLICA;
    return k;
}

/*
 * The fewest replica moves that can balance coll over t's eligible nodes
 * when every shard is movable: each copy on a draining node moves once, and
 * the eligible nodes end at floor or ceiling of the mean, the ceilings on
 * the fullest, so the excess over that end moves once each.
 */
static size_t min_moves(const struct tc *t, const char *coll)
{
    size_t c[MAXN], e = 0, total = 0, drained = 0;
    for (size_t i = 0; i < t->n_nodes; i++) {
        size_t n = count_on(t, coll, t->nodes[i].id, false);
        total += n;
        if (t->nodes[i].draining)
            drained += n;
        else
            c[e++] = n;
    }
    if (e == 0) return 0;
    for (size_t a = 0; a < e; a++) /* descending */
        for (size_t b = a + 1; b < e; b++)
            if (c[b] > c[a]) {
                size_t x = c[a];
                c[a] = c[b];
                c[b] = x;
            }
    size_t lb = drained;
    for (size_t i = 0; i < e; i++) {
        size_t f = total / e + (i < total % e);
        lb += c[i] > f ? c[i] - f : 0;
    }
    return lb;
}

/* Plans over t, checks the plan executes cleanly, applies it to t, checks
 * that planning again is empty; returns the plan's length. */
static size_t plan_apply(struct tc *t, struct rebalance_move *m, size_t cap, char *note,
                         size_t notelen)
{
    size_t n = plan(t, m, cap, note, notelen);
    CU_ASSERT_FATAL(n <= cap);
    char err[200];
    bool ok = tc_apply(t, m, n, err, sizeof err);
    if (!ok) fprintf(stderr, "\n  bad plan: %s\n", err);
    CU_ASSERT(ok);
    struct rebalance_move again[8];
    char note2[512];
    CU_ASSERT_EQUAL(plan(t, again, 8, note2, sizeof note2), 0);
    return n;
}

/* 2 nodes, 12 shards, R = 2, primaries alternating. */
static void two_node_cluster(struct tc *t)
{
    memset(t, 0, sizeof *t);
    tc_nodes(t, "a b");
    for (uint32_t s = 0; s < 12; s++)
        tc_shard(t, "c", s, s % 2 ? "b a" : "a b", 1000);
}

/* Balanced already (replicas and primaries): the plan is empty, no note. */
static void test_balanced_empty(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c");
    const char *sets[] = {"a b", "b c", "c a", "a c", "b a", "c b"};
    for (uint32_t s = 0; s < 6; s++)
        tc_shard(&t, "c", s, sets[s], 100 * (s + 1));
    struct rebalance_move m[8];
    char note[256] = "x";
    CU_ASSERT_EQUAL(plan(&t, m, 8, note, sizeof note), 0);
    CU_ASSERT_STRING_EQUAL(note, "");
    two_node_cluster(&t);
    CU_ASSERT_EQUAL(plan(&t, m, 8, note, sizeof note), 0);
    /* 7 replicas on 3 nodes (3, 2, 2) and 1 primary difference: nothing to do */
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c");
    tc_shard(&t, "c", 0, "a b c", 1);
    tc_shard(&t, "c", 1, "b c", 1);
    tc_shard(&t, "c", 2, "c a", 1);
    CU_ASSERT_EQUAL(plan(&t, m, 8, note, sizeof note), 0);
    CU_ASSERT_EQUAL(plan(&t, NULL, 0, NULL, 0), 0);
}

/* Scale-out 2 -> 4 nodes, 12 shards R = 2: 12 replica moves (the minimum),
 * 6 copies and 3 primaries per node. */
static void test_join(void)
{
    struct tc t;
    two_node_cluster(&t);
    tc_nodes(&t, "c d");
    size_t want = min_moves(&t, "c");
    CU_ASSERT_EQUAL(want, 12);
    struct rebalance_move m[64];
    char note[256];
    size_t n = plan_apply(&t, m, 64, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT_EQUAL(replica_moves(m, n), want);
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(count_on(&t, "c", t.nodes[i].id, false), 6);
        CU_ASSERT_EQUAL(count_on(&t, "c", t.nodes[i].id, true), 3);
    }
    /* the replica moves come first, the leader moves after them */
    for (size_t i = 1; i < n; i++)
        CU_ASSERT(!(m[i - 1].kind == REBALANCE_LEADER && m[i].kind == REBALANCE_REPLICA));
    /* backups before primaries: no replica move carries primaryship here */
    for (size_t i = 0; i < n; i++)
        CU_ASSERT(!m[i].primary);
}

/* The same plan whatever the cap: a short out gets its first moves, the
 * count is the whole plan's. */
static void test_cap_and_determinism(void)
{
    struct tc t;
    two_node_cluster(&t);
    tc_nodes(&t, "c d");
    struct rebalance_move all[64], few[5];
    size_t n = plan(&t, all, 64, NULL, 0);
    CU_ASSERT_EQUAL(plan(&t, few, 5, NULL, 0), n);
    CU_ASSERT_EQUAL(plan(&t, NULL, 0, NULL, 0), n);
    for (size_t i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(few[i].kind, all[i].kind);
        CU_ASSERT_EQUAL(few[i].shard, all[i].shard);
        CU_ASSERT_STRING_EQUAL(few[i].from, all[i].from);
        CU_ASSERT_STRING_EQUAL(few[i].to, all[i].to);
    }
    /* strings are borrowed from the input arrays */
    CU_ASSERT_PTR_EQUAL(all[0].to, tc_node(&t, all[0].to)->id);
}

/* Drain: the draining node ends with nothing, its 6 copies move once each,
 * the others end even (8 each) with primaries even too. */
static void test_drain(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c d!");
    const char *ids = "abcd";
    for (uint32_t s = 0; s < 12; s++) {
        char set[8];
        snprintf(set, sizeof set, "%c %c", ids[s % 4], ids[(s + 1) % 4]);
        tc_shard(&t, "c", s, set, 10 + s);
    }
    CU_ASSERT_EQUAL(count_on(&t, "c", "d", false), 6);
    struct rebalance_move m[64];
    char note[256];
    size_t n = plan_apply(&t, m, 64, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT_EQUAL(replica_moves(m, n), 6);
    CU_ASSERT_EQUAL(count_on(&t, NULL, "d", false), 0);
    CU_ASSERT_EQUAL(count_on(&t, NULL, "d", true), 0);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(count_on(&t, "c", t.nodes[i].id, false), 8);
    CU_ASSERT(spread_of(&t, "c", true) <= 1);
    for (size_t i = 0; i < n; i++)
        if (m[i].kind == REBALANCE_REPLICA) CU_ASSERT_STRING_EQUAL(m[i].from, "d");
}

/* Drain targets are re-routed: draining c2/0 and c2/1 first onto the
 * emptiest nodes would leave c2/3 (whose other copies are on n4 and n5) only
 * a full node, and cost a fifth move; re-routing keeps it at the 4 drains. */
static void test_drain_reroute(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "n0! n1! n2 n3 n4 n5 n6");
    tc_shard(&t, "c2", 0, "n6 n2 n0", 10);
    tc_shard(&t, "c2", 1, "n0 n3 n6", 10);
    tc_shard(&t, "c2", 2, "n3 n1 n2", 10);
    tc_shard(&t, "c2", 3, "n1 n4 n5", 10);
    tc_shard(&t, "c2", 4, "n5 n3 n6", 10);
    CU_ASSERT_EQUAL(min_moves(&t, "c2"), 4);
    struct rebalance_move m[16];
    char note[256];
    size_t n = plan_apply(&t, m, 16, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT_EQUAL(replica_moves(m, n), 4);
    for (size_t i = 2; i < t.n_nodes; i++)
        CU_ASSERT_EQUAL(count_on(&t, "c2", t.nodes[i].id, false), 3);
}

/* Leave: node e is gone and failover re-created its copies on a; the
 * registered nodes are evened again. */
static void test_leave(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c d");
    const char *sets[] = {"a b", "b c", "c d", "d a", "a e", "e b",
                          "c e", "e d", "a c", "b d", "a e", "e c"};
    for (uint32_t s = 0; s < 12; s++) {
        char set[8];
        snprintf(set, sizeof set, "%s", sets[s]);
        char *e = strchr(set, 'e');
        if (e != NULL) *e = 'a';
        if (strcmp(set, "a a") == 0) snprintf(set, sizeof set, "a b");
        tc_shard(&t, "c", s, set, 50);
    }
    size_t a = count_on(&t, "c", "a", false);
    CU_ASSERT(a >= 9);
    size_t want = min_moves(&t, "c");
    struct rebalance_move m[64];
    char note[256];
    size_t n = plan_apply(&t, m, 64, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT_EQUAL(replica_moves(m, n), want);
    for (size_t i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(count_on(&t, "c", t.nodes[i].id, false), 6);
    CU_ASSERT(spread_of(&t, "c", true) <= 1);
}

/* Uneven sizes: among equal counts, the big shard is placed to even bytes,
 * not by index. a holds 10, 10, 10, 1000; b four of 10; c and d join. */
static void test_uneven_bytes(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c d");
    tc_shard(&t, "c", 0, "a", 10);
    tc_shard(&t, "c", 1, "a", 10);
    tc_shard(&t, "c", 2, "a", 10);
    tc_shard(&t, "c", 3, "a", 1000);
    for (uint32_t s = 4; s < 8; s++)
        tc_shard(&t, "c", s, "b", 10);
    struct rebalance_move m[16];
    char note[256];
    size_t n = plan_apply(&t, m, 16, note, sizeof note);
    CU_ASSERT_EQUAL(n, 4);
    /* the first move takes the big shard off the node with the most bytes */
    CU_ASSERT_EQUAL(m[0].shard, 3);
    CU_ASSERT_STRING_EQUAL(m[0].from, "a");
    CU_ASSERT_EQUAL(m[0].bytes, 1000);
    /* every node 2 copies; the big shard's node 1010 bytes, the others 20 */
    uint64_t bytes[4] = {0};
    for (size_t s = 0; s < t.n_shards; s++)
        for (size_t i = 0; i < 4; i++)
            if (slot_of(&t.shards[s], t.nodes[i].id) >= 0) bytes[i] += t.shards[s].bytes;
    size_t big = 0;
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(count_on(&t, "c", t.nodes[i].id, false), 2);
        if (bytes[i] > 1000)
            big++;
        else
            CU_ASSERT_EQUAL(bytes[i], 20);
    }
    CU_ASSERT_EQUAL(big, 1);
}

/* R = 1, 2, 3: 10 shards on 3 nodes, 3 join: balanced in the fewest moves. */
static void test_replication_factors(void)
{
    for (size_t rf = 1; rf <= 3; rf++) {
        struct tc t;
        memset(&t, 0, sizeof t);
        tc_nodes(&t, "a b c");
        const char *ids[] = {"a", "b", "c"};
        for (uint32_t s = 0; s < 10; s++) {
            char set[16] = "";
            for (size_t r = 0; r < rf; r++) {
                strcat(set, ids[(s + r) % 3]);
                strcat(set, " ");
            }
            tc_shard(&t, "c", s, set, 100 + s);
        }
        tc_nodes(&t, "d e f");
        size_t want = min_moves(&t, "c");
        struct rebalance_move m[64];
        char note[256];
        size_t n = plan_apply(&t, m, 64, note, sizeof note);
        CU_ASSERT_STRING_EQUAL(note, "");
        CU_ASSERT_EQUAL(replica_moves(m, n), want);
        CU_ASSERT(spread_of(&t, "c", false) <= 1);
        CU_ASSERT(spread_of(&t, "c", true) <= 1);
        for (size_t s = 0; s < t.n_shards; s++)
            CU_ASSERT_EQUAL(t.shards[s].n_replicas, rf);
    }
}

/* Two collections: each is evened on its own, in the order the array first
 * names them; the totals end even too. */
static void test_collections(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b");
    for (uint32_t s = 0; s < 4; s++) {
        tc_shard(&t, "x", s, s % 2 ? "b a" : "a b", 10);
        tc_shard(&t, "y", s, s % 2 ? "a b" : "b a", 10);
    }
    tc_nodes(&t, "c d");
    struct rebalance_move m[64];
    char note[256];
    size_t n = plan_apply(&t, m, 64, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT_EQUAL(replica_moves(m, n), 8);
    CU_ASSERT(spread_of(&t, "x", false) <= 1);
    CU_ASSERT(spread_of(&t, "y", false) <= 1);
    CU_ASSERT(spread_of(&t, "x", true) <= 1);
    CU_ASSERT(spread_of(&t, "y", true) <= 1);
    for (size_t i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(count_on(&t, NULL, t.nodes[i].id, false), 4);
    /* x's moves, then y's */
    bool in_y = false;
    for (size_t i = 0; i < n; i++) {
        bool y = strcmp(t.shards[m[i].shard].collection, "y") == 0;
        CU_ASSERT(!(in_y && !y));
        in_y = in_y || y;
    }
}

/* A shard that is not movable stays put (but counts where it is); a
 * replica on a node not in the array makes its shard unmovable and counts
 * nowhere. */
static void test_not_movable(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b");
    for (uint32_t s = 0; s < 4; s++)
        tc_shard(&t, "c", s, "a", 10)->movable = s != 0;
    tc_shard(&t, "c", 4, "zz a", 10); /* zz is not registered */
    struct rebalance_move m[16];
    char note[256];
    size_t n = plan_apply(&t, m, 16, note, sizeof note);
    /* a: 5 copies (shard 4's copy on a counts), b: 0: 2 move, never shard 0 or 4 */
    CU_ASSERT_EQUAL(n, 2);
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT(m[i].shard != 0 && m[i].shard != 4);
        CU_ASSERT_STRING_EQUAL(m[i].to, "b");
    }
    CU_ASSERT_STRING_EQUAL(t.shards[4].replicas[0], "zz");
    CU_ASSERT_STRING_EQUAL(note, "");
    /* when only unmovable shards are on the fullest node, the note says so */
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b");
    for (uint32_t s = 0; s < 3; s++)
        tc_shard(&t, "c", s, "a", 10)->movable = s == 0;
    tc_shard(&t, "c", 3, "zz a", 10);
    n = plan_apply(&t, m, 16, note, sizeof note);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_STRING_EQUAL(note, "collection c: replicas stay uneven (1 to 3 per node): no "
                                 "movable shard can go from a fullest node to an emptiest one");
    /* a collection none of whose shards is movable is left alone, silently */
    for (size_t s = 0; s < t.n_shards; s++)
        t.shards[s].movable = false;
    CU_ASSERT_EQUAL(plan(&t, m, 16, note, sizeof note), 0);
    CU_ASSERT_STRING_EQUAL(note, "");
}

/* A drain that cannot finish says why; so does a cluster with no eligible node. */
static void test_impossible_drain(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c!");
    tc_shard(&t, "c", 3, "a b c", 10);
    tc_shard(&t, "c", 4, "c a", 10);
    struct rebalance_move m[16];
    char note[256];
    size_t n = plan_apply(&t, m, 16, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(
        note, "shard c/3 cannot leave draining node c: every eligible node holds a copy");
    CU_ASSERT_EQUAL_FATAL(n, 1); /* shard 4 leaves c for b */
    CU_ASSERT_EQUAL(m[0].shard, 1);
    CU_ASSERT_STRING_EQUAL(m[0].from, "c");
    CU_ASSERT_STRING_EQUAL(m[0].to, "b");
    CU_ASSERT(m[0].primary);
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a! b!");
    tc_shard(&t, "c", 0, "a b", 10);
    tc_shard(&t, "d", 0, "b", 10);
    CU_ASSERT_EQUAL(plan(&t, m, 16, note, sizeof note), 0);
    CU_ASSERT_STRING_EQUAL(note, "no eligible node");
    /* a note that does not fit is cut, never overrun */
    char small[8];
    CU_ASSERT_EQUAL(plan(&t, m, 16, small, sizeof small), 0);
    CU_ASSERT_STRING_EQUAL(small, "no elig");
}

/* Replicas even but every primary on a: leader moves only, each from the
 * primary to a node holding a copy. */
static void test_leader_moves(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c");
    const char *sets[] = {"a b", "a c", "a b", "a c", "b c", "b c"};
    for (uint32_t s = 0; s < 6; s++)
        tc_shard(&t, "c", s, sets[s], 10);
    /* a leads 4, b 2, c 0 */
    struct rebalance_move m[16];
    char note[256];
    size_t n = plan_apply(&t, m, 16, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT(n >= 1);
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(m[i].kind, REBALANCE_LEADER);
        CU_ASSERT_EQUAL(m[i].bytes, 0);
    }
    CU_ASSERT_STRING_EQUAL(m[0].from, "a");
    CU_ASSERT_STRING_EQUAL(m[0].to, "c");
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(count_on(&t, "c", t.nodes[i].id, true), 2);
    /* R = 1: a primary moves with its only copy */
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b");
    for (uint32_t s = 0; s < 4; s++)
        tc_shard(&t, "c", s, "a", 10);
    n = plan_apply(&t, m, 16, note, sizeof note);
    CU_ASSERT_EQUAL(n, 2);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT(m[i].kind == REBALANCE_REPLICA && m[i].primary);
}

/* A chain of leader moves: d holds copies only of shards led by b and c (1
 * each), none of a's (2); a hands one to b, b one to d. */
static void test_leader_chain(void)
{
    struct tc t;
    memset(&t, 0, sizeof t);
    tc_nodes(&t, "a b c d");
    tc_shard(&t, "c", 0, "a b", 10);
    tc_shard(&t, "c", 1, "a c", 10);
    tc_shard(&t, "c", 2, "b d", 10);
    tc_shard(&t, "c", 3, "c d", 10);
    struct rebalance_move m[16];
    char note[256];
    size_t n = plan_apply(&t, m, 16, note, sizeof note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT(m[0].kind == REBALANCE_LEADER && m[0].shard == 0);
    CU_ASSERT_STRING_EQUAL(m[0].from, "a");
    CU_ASSERT_STRING_EQUAL(m[0].to, "b");
    CU_ASSERT(m[1].kind == REBALANCE_LEADER && m[1].shard == 2);
    CU_ASSERT_STRING_EQUAL(m[1].from, "b");
    CU_ASSERT_STRING_EQUAL(m[1].to, "d");
    for (size_t i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(count_on(&t, "c", t.nodes[i].id, true), 1);
    /* the same chain through unmovable shards does not exist: a note */
    t.shards[2].movable = false;
    t.shards[3].movable = false;
    t.shards[0].primary = t.reps[0][0];
    t.shards[2].primary = t.reps[2][0];
    CU_ASSERT_EQUAL(plan(&t, m, 16, note, sizeof note), 0);
    CU_ASSERT_STRING_EQUAL(note, "collection c: primaries stay uneven (0 to 2 per node): no chain "
                                 "of copies leads from a node with 2 more to one with fewer");
}

/* xorshift64: a fixed seed, so failures reproduce. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random clusters: skewed placement, joins, drains, unmovable shards,
 * copies on unknown nodes, 1–3 collections, R = 1..3. Every plan executes
 * cleanly and planning again over its result is empty; with no note, every
 * collection ends even in replicas and primaries, and with every shard
 * movable and no unknown copy it takes the fewest replica moves. */
static void test_random_clusters(void)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    static struct rebalance_move m[1024];
    size_t checked = 0, minimal = 0, noted = 0;
    for (int round = 0; round < 400; round++) {
        struct tc t;
        memset(&t, 0, sizeof t);
        size_t nn = 1 + rnd(&seed) % 12;
        for (size_t i = 0; i < nn; i++) {
            char id[8];
            snprintf(id, sizeof id, "n%zu", i);
            t.nodes[t.n_nodes++] = (struct rebalance_node){intern(id), rnd(&seed) % 6 == 0};
        }
        size_t nc = 1 + rnd(&seed) % 3;
        bool clean = true;                 /* every shard movable, every copy on a known node */
        bool faults = rnd(&seed) % 3 == 0; /* this round has unmovable shards, unknown nodes */
        size_t used = 1 + rnd(&seed) % nn; /* placement skewed onto the first nodes */
        for (size_t c = 0; c < nc && t.n_shards < MAXS; c++) {
            char coll[8];
            snprintf(coll, sizeof coll, "c%zu", c);
            size_t rf = 1 + rnd(&seed) % 3, ns = 1 + rnd(&seed) % 16;
            for (uint32_t s = 0; s < ns && t.n_shards < MAXS; s++) {
                char set[64] = "";
                bool taken[MAXN] = {false};
                for (size_t r = 0; r < rf; r++) {
                    size_t i;
                    if (faults && rnd(&seed) % 12 == 0) {
                        strcat(set, "zz ");
                        clean = false;
                        break;
                    }
                    size_t tries = 0;
                    do
                        i = rnd(&seed) % (tries++ < 8 ? used : nn);
                    while (taken[i] && tries < 64);
                    if (taken[i]) break;
                    taken[i] = true;
                    strcat(set, t.nodes[i].id);
                    strcat(set, " ");
                }
                struct rebalance_shard *sh =
                    tc_shard(&t, coll, s, set[0] ? set : "n0", rnd(&seed) % 5000);
                if (faults && rnd(&seed) % 6 == 0) {
                    sh->movable = false;
                    clean = false;
                }
            }
        }
        /* the order of shards in the array interleaves collections sometimes */
        if (rnd(&seed) % 3 == 0 && t.n_shards > 1) {
            struct rebalance_shard a = t.shards[0];
            const char *ra[MAXR];
            memcpy(ra, t.reps[0], sizeof ra);
            t.shards[0] = t.shards[t.n_shards - 1];
            memcpy(t.reps[0], t.reps[t.n_shards - 1], sizeof ra);
            t.shards[t.n_shards - 1] = a;
            memcpy(t.reps[t.n_shards - 1], ra, sizeof ra);
            tc_fix(&t);
        }
        size_t want[3];
        for (size_t c = 0; c < nc; c++) {
            char coll[8];
            snprintf(coll, sizeof coll, "c%zu", c);
            want[c] = min_moves(&t, coll);
        }
        struct tc before = t;
        tc_fix(&before);
        char note[1024], err[200];
        size_t n = plan(&t, m, 1024, note, sizeof note);
        CU_ASSERT_FATAL(n <= 1024);
        bool ok = tc_apply(&t, m, n, err, sizeof err);
        if (!ok) fprintf(stderr, "\n  round %d: bad plan: %s\n", round, err);
        CU_ASSERT(ok);
        size_t again = plan(&t, NULL, 0, NULL, 0);
        if (again != 0) fprintf(stderr, "\n  round %d: replan has %zu moves\n", round, again);
        CU_ASSERT_EQUAL(again, 0);
        /* the same input gives the same plan */
        static struct rebalance_move m2[1024];
        CU_ASSERT_EQUAL(plan(&before, m2, 1024, NULL, 0), n);
        bool same = true;
        for (size_t i = 0; i < n && same; i++)
            same = m[i].kind == m2[i].kind && m[i].shard == m2[i].shard &&
                   strcmp(m[i].from, m2[i].from) == 0 && strcmp(m[i].to, m2[i].to) == 0 &&
                   m[i].primary == m2[i].primary && m[i].bytes == m2[i].bytes;
        CU_ASSERT(same);
        checked++;
        if (note[0] != '\0') {
            noted++;
            continue;
        }
        for (size_t i = 0; i < t.n_nodes; i++)
            if (t.nodes[i].draining) {
                for (size_t s = 0; s < t.n_shards; s++)
                    if (movable(&t, s) && slot_of(&t.shards[s], t.nodes[i].id) >= 0) {
                        fprintf(stderr, "\n  round %d: shard %zu left on draining %s\n", round, s,
                                t.nodes[i].id);
                        CU_FAIL("a movable copy stays on a draining node without a note");
                    }
            }
        size_t total_moves = 0;
        bool drains = false;
        for (size_t i = 0; i < t.n_nodes; i++)
            drains = drains || t.nodes[i].draining;
        for (size_t c = 0; c < nc; c++) {
            char coll[8];
            snprintf(coll, sizeof coll, "c%zu", c);
            bool any = false;
            for (size_t s = 0; s < t.n_shards; s++)
                any = any || (strcmp(t.shards[s].collection, coll) == 0 && movable(&t, s));
            if (!any) continue;
            CU_ASSERT(spread_of(&t, coll, false) <= 1);
            CU_ASSERT(spread_of(&t, coll, true) <= 1);
            total_moves += want[c];
        }
        if (clean) {
            minimal += !drains;
            if (replica_moves(m, n) != total_moves && !drains)
                fprintf(stderr, "\n  round %d: %zu replica moves, the minimum is %zu\n", round,
                        replica_moves(m, n), total_moves);
            /* a drain's copy constraints can make the count-only bound unreachable */
            CU_ASSERT(drains ? replica_moves(m, n) >= total_moves
                             : replica_moves(m, n) == total_moves);
        }
    }
    /* the generator exercises every branch */
    CU_ASSERT(checked == 400);
    CU_ASSERT(minimal >= 100);
    CU_ASSERT(noted >= 5);
}

/* Many shards and nodes: bounded work (a 1000 × 100 plan in well under a second). */
static void test_large(void)
{
    size_t nn = 100, ns = 1000, rf = 3;
    struct rebalance_node *nodes = calloc(nn, sizeof *nodes);
    struct rebalance_shard *shards = calloc(ns, sizeof *shards);
    const char **reps = calloc(ns * rf, sizeof *reps);
    char(*ids)[8] = calloc(nn, sizeof *ids);
    struct rebalance_move *m = calloc(ns * rf, sizeof *m);
    CU_ASSERT_FATAL(nodes && shards && reps && ids && m);
    for (size_t i = 0; i < nn; i++) {
        snprintf(ids[i], sizeof ids[i], "n%03zu", i);
        nodes[i] = (struct rebalance_node){ids[i], i == 7};
    }
    for (size_t s = 0; s < ns; s++) {
        for (size_t r = 0; r < rf; r++) /* everything on the first 50 nodes */
            reps[s * rf + r] = ids[(s + r * 17) % 50];
        shards[s] = (struct rebalance_shard){"big", (uint32_t)s, reps[s * rf], &reps[s * rf],
                                             rf,    1000 + s,    true};
    }
    char note[256];
    size_t n = rebalance_plan(nodes, nn, shards, ns, m, ns * rf, note, sizeof note);
    if (note[0]) fprintf(stderr, "\n  note: %s\n", note);
    CU_ASSERT_STRING_EQUAL(note, "");
    CU_ASSERT(n >= 1500); /* half of the 3000 copies move to the empty half */
    free(m);
    free(ids);
    free(reps);
    free(shards);
    free(nodes);
}

void register_rebalance_tests(void)
{
    CU_pSuite s = CU_add_suite("rebalance", NULL, NULL);
    CU_add_test(s, "balanced already: empty plan", test_balanced_empty);
    CU_add_test(s, "join 2 -> 4 nodes: even in the fewest moves", test_join);
    CU_add_test(s, "cap and determinism", test_cap_and_determinism);
    CU_add_test(s, "drain: the node ends empty, targets even", test_drain);
    CU_add_test(s, "drain targets re-routed", test_drain_reroute);
    CU_add_test(s, "leave: re-replicated copies evened", test_leave);
    CU_add_test(s, "uneven shard sizes: bytes evened", test_uneven_bytes);
    CU_add_test(s, "R = 1, 2, 3", test_replication_factors);
    CU_add_test(s, "several collections", test_collections);
    CU_add_test(s, "not movable and unknown nodes stay put", test_not_movable);
    CU_add_test(s, "impossible drain and no eligible node: notes", test_impossible_drain);
    CU_add_test(s, "leader moves only between holders", test_leader_moves);
    CU_add_test(s, "leader chains", test_leader_chain);
    CU_add_test(s, "random clusters: valid, minimal, stable", test_random_clusters);
    CU_add_test(s, "1000 shards x 100 nodes", test_large);
}
