/*
 * router/controller/rebalance.c — the rebalance planner (rebalance.h,
 * docs/rebalance.md §1). STUB: plans nothing yet.
 */
#include "router/controller/rebalance.h"

#include <stdio.h>

size_t rebalance_plan(const struct rebalance_node *nodes, size_t n_nodes,
                      const struct rebalance_shard *shards, size_t n_shards,
                      struct rebalance_move *out, size_t cap, char *note, size_t notelen)
{
    (void)nodes, (void)n_nodes, (void)shards, (void)n_shards, (void)out, (void)cap;
    if (note != NULL && notelen > 0) note[0] = '\0';
    return 0;
}

const char *rebalance_kind_name(enum rebalance_kind k)
{
    return k == REBALANCE_LEADER ? "leader" : "replica";
}
