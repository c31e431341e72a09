/*
 * router/controller/placement.h — where the replicas of a new collection go:
 * the placement planner, a pure function over a view of the nodes, so that
 * unit tests drive it with hand-built clusters (tests/unit/router). The
 * controller's other planners (failover choice, re-replication, the
 * rebalance plan) will sit beside it in router/controller/.
 *
 * Threading: no state; any thread. Ownership: the ids in struct
 * placement_node and in a plan are borrowed from the view they came from.
 */
#ifndef VS_ROUTER_CONTROLLER_PLACEMENT_H
#define VS_ROUTER_CONTROLLER_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/route_table.h"

/* A node as the placement planner sees it. */
struct placement_node {
    const char *id;     /* borrowed */
    bool healthy;       /* answered the create-time health check */
    unsigned replicas;  /* replicas it holds already, every collection */
    unsigned primaries; /* shards it leads already, every collection */
    bool draining;      /* has a drain mark (docs/rebalance.md §4): gets nothing */
};

/* Fills out[i] (v->n_nodes entries) for the live node v->nodes[i]: its id
 * (borrowed from v), its replica and primary counts, healthy = true,
 * draining from its drain mark. */
void placement_count(const struct rt_view *v, struct placement_node *out);

/*
 * Places S x R replicas of a new collection on the healthy ones of the n
 * nodes (docs/design.md §6; a pure function): distinct nodes per shard,
 * fewest replicas of this collection first, then fewest overall, so no node
 * gets more than ceil(S*R/N) of them (N = healthy nodes); primaries spread
 * the same way. A draining node counts as not eligible, like an unhealthy
 * one. Fills out[s * rf + i] with ids borrowed from nodes, the primary
 * first. Returns 0, or -1 with a message naming the eligible, the unhealthy
 * and the draining nodes when fewer than rf are eligible.
 */
int placement_plan(const struct placement_node *nodes, size_t n, uint32_t shards, uint32_t rf,
                   const char **out, char *err, size_t errlen);

#endif
