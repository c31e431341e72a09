/*
 * test_placement.c — CUnit tests of the router's placement planner
 * (router/controller/placement.c, in build/test_router) on hand-built clusters: a newly
 * joined empty node does not take every shard, a node that failed the
 * health check takes none, no shard has two copies on one node, primaries
 * are spread, the per-collection cap ceil(S*R/N) holds over thousands of
 * random clusters, and too few healthy nodes is an error naming them.
 */
#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#include "router/controller/placement.h"
#include "tests/unit/router/router_test.h"

#define MAXN 8

/* Replicas (and primaries) of the plan per node index. */
static void tally(const struct placement_node *nodes, size_t n, const char **plan, uint32_t shards,
                  uint32_t rf, unsigned *reps, unsigned *prims)
{
    memset(reps, 0, n * sizeof *reps);
    memset(prims, 0, n * sizeof *prims);
    for (uint32_t s = 0; s < shards; s++)
        for (uint32_t r = 0; r < rf; r++)
            for (size_t i = 0; i < n; i++)
                if (strcmp(plan[s * rf + r], nodes[i].id) == 0) {
                    reps[i]++;
                    if (r == 0) prims[i]++;
                }
}

/* 4 shards, R=1, on two full nodes and a newly joined empty one: 1/1/2. */
static void test_new_empty_node_does_not_take_all(void)
{
    struct placement_node nodes[] = {{"a", true, 10, 10}, {"b", true, 10, 10}, {"c", true, 0, 0}};
    const char *plan[4];
    char err[256];
    CU_ASSERT_EQUAL_FATAL(placement_plan(nodes, 3, 4, 1, plan, err, sizeof err), 0);
    unsigned reps[3], prims[3];
    tally(nodes, 3, plan, 4, 1, reps, prims);
    CU_ASSERT_EQUAL(reps[0], 1);
    CU_ASSERT_EQUAL(reps[1], 1);
    CU_ASSERT_EQUAL(reps[2], 2);
}

/* A node that failed the health check gets nothing; the rest share evenly. */
static void test_unhealthy_node_skipped(void)
{
    struct placement_node nodes[] = {{"a", true, 3, 3}, {"b", false, 0, 0}, {"c", true, 3, 3}};
    const char *plan[4];
    char err[256];
    CU_ASSERT_EQUAL_FATAL(placement_plan(nodes, 3, 4, 1, plan, err, sizeof err), 0);
    unsigned reps[3], prims[3];
    tally(nodes, 3, plan, 4, 1, reps, prims);
    CU_ASSERT_EQUAL(reps[0], 2);
    CU_ASSERT_EQUAL(reps[1], 0);
    CU_ASSERT_EQUAL(reps[2], 2);
}

/* R=2, 3 shards on 3 empty nodes: two replicas and one primary each, never
 * both copies of a shard on one node. */
static void test_rf2_distinct_and_primaries_spread(void)
{
    struct placement_node nodes[] = {{"a", true, 0, 0}, {"b", true, 0, 0}, {"c", true, 0, 0}};
    const char *plan[6];
    char err[256];
    CU_ASSERT_EQUAL_FATAL(placement_plan(nodes, 3, 3, 2, plan, err, sizeof err), 0);
    for (int s = 0; s < 3; s++)
        CU_ASSERT_STRING_NOT_EQUAL(plan[2 * s], plan[2 * s + 1]);
    unsigned reps[3], prims[3];
    tally(nodes, 3, plan, 3, 2, reps, prims);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(reps[i], 2);
        CU_ASSERT_EQUAL(prims[i], 1);
    }
}

/* Two empty nodes and one loaded one, 3 shards x R=2: ordering by overall
 * load alone would put shards 0 and 1 both on {a, b}, leaving shard 2 with
 * no second node under the cap; the plan uses every node twice. */
static void test_rf2_loaded_node_still_used(void)
{
    struct placement_node nodes[] = {{"a", true, 0, 0}, {"b", true, 0, 0}, {"c", true, 100, 50}};
    const char *plan[6];
    char err[256];
    CU_ASSERT_EQUAL_FATAL(placement_plan(nodes, 3, 3, 2, plan, err, sizeof err), 0);
    unsigned reps[3], prims[3];
    tally(nodes, 3, plan, 3, 2, reps, prims);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(reps[i], 2);
    for (int s = 0; s < 3; s++)
        CU_ASSERT_STRING_NOT_EQUAL(plan[2 * s], plan[2 * s + 1]);
}

/* Fewer healthy nodes than R: -1, the message names both groups. */
static void test_too_few_healthy(void)
{
    struct placement_node nodes[] = {{"a", true, 0, 0}, {"b", false, 0, 0}, {"c", false, 0, 0}};
    const char *plan[2];
    char err[256];
    CU_ASSERT_EQUAL(placement_plan(nodes, 3, 1, 2, plan, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "replication_factor 2 needs 2 healthy nodes, 1 is (a); "
                                "not answering the health check: b, c");
    CU_ASSERT_EQUAL(placement_plan(nodes, 0, 1, 1, plan, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "replication_factor 1 needs 1 healthy nodes, 0 are");
}

/* A draining node gets nothing, even the emptiest; too few left names it. */
static void test_draining_node_skipped(void)
{
    struct placement_node nodes[] = {
        {"a", true, 5, 5, false}, {"b", true, 5, 5, false}, {"c", true, 0, 0, true}};
    const char *plan[4 * 2];
    char err[256];
    CU_ASSERT_EQUAL_FATAL(placement_plan(nodes, 3, 4, 2, plan, err, sizeof err), 0);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_STRING_NOT_EQUAL(plan[i], "c");
    nodes[1].healthy = false;
    CU_ASSERT_EQUAL(placement_plan(nodes, 3, 1, 2, plan, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "replication_factor 2 needs 2 healthy nodes, 1 is (a); "
                                "not answering the health check: b; "
                                "draining (vecshard undrain NODE to use it): c");
}

/* Random clusters: every invariant of the plan, 20,000 times. */
static void test_random_invariants(void)
{
    static const char *ids[MAXN] = {"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"};
    const char *plan[40 * 4];
    char err[256];
    srand(7);
    int planned = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 1 + (size_t)(rand() % MAXN);
        struct placement_node nodes[MAXN];
        size_t healthy = 0;
        for (size_t i = 0; i < n; i++) {
            nodes[i] = (struct placement_node){ids[i], rand() % 5 != 0, (unsigned)(rand() % 30), 0};
            nodes[i].primaries = nodes[i].replicas / 2;
            healthy += nodes[i].healthy;
        }
        uint32_t shards = 1 + (uint32_t)(rand() % 40), rf = 1 + (uint32_t)(rand() % 4);
        int rc = placement_plan(nodes, n, shards, rf, plan, err, sizeof err);
        CU_ASSERT_EQUAL(rc, healthy >= rf ? 0 : -1);
        if (rc != 0) continue;
        planned++;
        unsigned reps[MAXN], prims[MAXN];
        tally(nodes, n, plan, shards, rf, reps, prims);
        unsigned cap = (unsigned)((shards * rf + healthy - 1) / healthy);
        unsigned pcap = (unsigned)((shards + healthy - 1) / healthy);
        unsigned sum = 0;
        for (size_t i = 0; i < n; i++) {
            CU_ASSERT(nodes[i].healthy || reps[i] == 0);
            CU_ASSERT(reps[i] <= cap);
            CU_ASSERT(prims[i] <= pcap + 1);
            sum += reps[i];
        }
        CU_ASSERT_EQUAL(sum, shards * rf);
        for (uint32_t s = 0; s < shards; s++)
            for (uint32_t a = 0; a < rf; a++)
                for (uint32_t b = a + 1; b < rf; b++)
                    CU_ASSERT(strcmp(plan[s * rf + a], plan[s * rf + b]) != 0);
    }
    CU_ASSERT(planned > 10000);
}

void register_placement_tests(void)
{
    CU_pSuite s = CU_add_suite("placement", NULL, NULL);
    CU_add_test(s, "new empty node does not take every shard",
                test_new_empty_node_does_not_take_all);
    CU_add_test(s, "unhealthy node skipped", test_unhealthy_node_skipped);
    CU_add_test(s, "R=2: distinct nodes, primaries spread", test_rf2_distinct_and_primaries_spread);
    CU_add_test(s, "R=2: loaded node still used", test_rf2_loaded_node_still_used);
    CU_add_test(s, "too few healthy nodes", test_too_few_healthy);
    CU_add_test(s, "draining node skipped", test_draining_node_skipped);
    CU_add_test(s, "random clusters: invariants", test_random_invariants);
}
