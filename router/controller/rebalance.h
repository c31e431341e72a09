/*
 * router/controller/rebalance.h — the rebalance planner (docs/rebalance.md
 * §1): which replicas to move so that every collection's replicas are even
 * across the eligible nodes (max − min ≤ 1), draining nodes end empty,
 * primaries are spread the same way, and bytes are evened where the counts
 * leave a choice — with the fewest moves. A pure function over plain
 * arrays, so unit tests (tests/unit/router/test_rebalance.c) drive it with
 * hand-built clusters; the Rebalance RPC (router/admin.c) and the
 * controller (router/controller/moves.c) both call it.
 *
 * Threading: no state; any thread. Ownership: every string in a move is
 * borrowed from the nodes and shards arrays it was planned over.
 */
#ifndef VS_ROUTER_CONTROLLER_REBALANCE_H
#define VS_ROUTER_CONTROLLER_REBALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A registered node as the planner sees it. */
struct rebalance_node {
    const char *id; /* borrowed; unique */
    bool draining;  /* receives nothing; every replica on it is to move off */
};

/* One shard as the planner sees it. */
struct rebalance_shard {
    const char *collection; /* borrowed */
    uint32_t shard;
    const char *primary;         /* borrowed; one of replicas */
    const char *const *replicas; /* borrowed; n_replicas distinct node ids, primary included */
    size_t n_replicas;
    uint64_t bytes; /* size of one copy (the primary's disk bytes); 0 = unknown */
    /*
     * The shard may be moved: its entry is fully in sync (in_sync =
     * replicas), every replica's node is registered, no move of it is
     * queued or running. A shard that is not movable still counts where its
     * replicas are, but none of its replicas is moved.
     */
    bool movable;
};

/* What a move does. */
enum rebalance_kind {
    REBALANCE_REPLICA = 0, /* copy the shard to `to`, then remove it from `from` */
    REBALANCE_LEADER,      /* hand primaryship from `from` to `to` (both hold a copy) */
};

/* One planned move. */
struct rebalance_move {
    enum rebalance_kind kind;
    size_t shard;     /* index into the shards array */
    const char *from; /* borrowed from nodes/shards */
    const char *to;   /* borrowed from nodes */
    bool primary;     /* REPLICA: from is the shard's primary (primaryship goes to `to`) */
    uint64_t bytes;   /* the shard's bytes (REPLICA); 0 for LEADER */
};

/*
 * Plans over nodes[0..n_nodes) (the registered ones; a replica on a node not
 * in the array counts nowhere and its shard is treated as not movable, as is
 * a shard with two copies on one node or a primary that is not one of its
 * registered replicas) and shards[0..n_shards). The rule
 * (docs/rebalance.md §1), per collection in the order the shards array
 * first lists each one, skipping a collection with no movable shard:
 *
 *   1. every movable replica on a draining node moves to an eligible
 *      (registered, not draining) node that holds no copy of the shard, the
 *      one with the fewest replicas of the collection (earlier drain targets
 *      are re-routed when every such node holds a copy);
 *   2. while the collection's replica counts over the eligible nodes differ
 *      by 2 or more, one replica moves from a node with the most to a node
 *      with the fewest that holds no copy;
 *   3. while its primary counts over the eligible nodes differ by 2 or
 *      more, primaryship moves (LEADER) to a node with the fewest from a
 *      node leading at least 2 more, whose shard it holds a copy of, or
 *      along the shortest chain of such hand-overs.
 *
 * Choices: a backup before a primary (a primary's move also moves
 * primaryship: primary = true, and step 3 sees it); among equal targets,
 * fewest replicas of every collection, then fewest bytes, then id; among
 * equal sources, most replicas of every collection, most bytes, id; among
 * candidate shards, the one that best evens the bytes of source and target,
 * then the lowest index. Leader moves: targets by fewest primaries of the
 * collection, then of every collection, then id; sources by most primaries
 * of the collection, then of every collection, then id; then the lowest
 * shard index. Moves are simulated as
 * planned, so later choices see earlier moves, and a plan never puts two
 * copies of a shard on one node. A plan over an already balanced cluster is
 * empty, and so is a plan over the result of applying a plan. Deterministic
 * for a given input.
 *
 * Writes at most cap moves to out (execution order: per collection, drains,
 * then replica moves, then leader moves) and returns how many the plan has
 * in all (call again with a bigger out when it exceeds cap). note
 * (optional) gets "" or why the plan cannot reach the rule's goal, parts
 * joined by "; " and cut at notelen: "shard c/3 cannot leave draining node
 * b: every eligible node holds a copy"; "no eligible node"; "collection c:
 * replicas stay uneven (2 to 5 per node): ..."; "collection c: primaries
 * stay uneven (0 to 2 per node): ..." (replicas: shards that are not
 * movable block it; primaries: those, or no copy of a shard led by a
 * fuller node on any emptier one). Out of memory: 0 moves, note "out of
 * memory".
 */
size_t rebalance_plan(const struct rebalance_node *nodes, size_t n_nodes,
                      const struct rebalance_shard *shards, size_t n_shards,
                      struct rebalance_move *out, size_t cap, char *note, size_t notelen);

/* "replica" or "leader" (ReplicaMove.kind, the move documents). */
const char *rebalance_kind_name(enum rebalance_kind k);

#endif
