/*
 * router/controller/failover.h — the controller's pure planners
 * (docs/replication.md §7): which in-sync replica to promote when a
 * primary's node is gone, which node receives a replacement replica, and the
 * list of actions a view of the cluster calls for. Pure functions over a
 * routing-table view, so unit tests (tests/unit/router) drive them with
 * hand-built clusters; router/controller/controller.c acts on them.
 *
 * Threading: no state; any thread. Ownership: every string in a candidate,
 * a missing-node record or an action is borrowed from the view (or the
 * caller's arrays) it came from.
 */
#ifndef VS_ROUTER_CONTROLLER_FAILOVER_H
#define VS_ROUTER_CONTROLLER_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/route_table.h"

/* What one candidate's node answered to ShardStatus for the shard. */
struct failover_candidate {
    const char *node_id; /* borrowed */
    bool answered;       /* its node answered and reported this replica */
    bool ready;          /* state READY */
    uint64_t lsn;        /* last applied LSN */
    uint64_t epoch;      /* epoch the replica holds */
};

/*
 * Promotion choice for shard sh of view v: among the candidates that are
 * members of sh->in_sync, registered in v, not sh->primary, answered and
 * READY, the one with the highest LSN (ties: fewest primaries in v, then
 * node id). Returns its index in cands, or -1 with why in reason ("no live
 * in-sync replica", "in-sync replicas not READY: b=RECOVERING" ...).
 */
int failover_choose(const struct rt_view *v, const struct cluster_shard *sh,
                    const struct failover_candidate *cands, size_t n, char *reason,
                    size_t reasonlen);

/*
 * Re-replication target for shard sh: the node registered in v, not
 * draining (rt_view_draining), that holds no copy of it (not in replicas)
 * with the fewest replicas overall (ties: node id). NULL when every such
 * node already holds one.
 */
const char *failover_replace_target(const struct rt_view *v, const struct cluster_shard *sh);

/* A node the controller has seen missing from the view since since_ms. */
struct failover_missing {
    const char *node_id; /* borrowed */
    int64_t since_ms;
};

/* What the controller should do about one shard. */
enum failover_kind {
    FAILOVER_PROMOTE = 0,  /* primary's node gone: promote an in-sync replica */
    FAILOVER_DROP_IN_SYNC, /* a dead backup is still in in_sync: remove it */
    FAILOVER_REPLACE,      /* a replica's node gone past the grace: re-create it elsewhere */
    FAILOVER_WAIT,         /* nothing can be done yet (reason says why) */
};

/* One planned action; strings borrowed from the view. */
struct failover_action {
    enum failover_kind kind;
    const struct rt_collection *coll;
    uint32_t shard;
    const char *node;   /* the dead node (PROMOTE: the old primary, may be "") */
    const char *to;     /* REPLACE: the new replica's node; NULL otherwise */
    const char *reason; /* static text */
};

/* "failover", "drop_in_sync", "replace", "wait" (the log's decision=). */
const char *failover_kind_name(enum failover_kind k);

/*
 * The actions view v calls for, given the nodes seen missing (and since
 * when), the time now and the grace period (--replace-after-ms), per present
 * shard entry:
 *   - primary not registered: PROMOTE when some other in-sync member is
 *     registered, else WAIT ("no live in-sync replica");
 *   - otherwise, per replica whose node is not registered: REPLACE (onto
 *     failover_replace_target) once it has been missing for grace_ms and
 *     some node can take it; else DROP_IN_SYNC while it is still in
 *     in_sync; else WAIT (within the grace, or no node to take it). A
 *     replica whose node is the source of a RUNNING move of the shard
 *     (moves_exec_owns) is never REPLACEd: the move's switch removes it.
 * REPLACE assumes the registered primary is READY; the caller checks that
 * with ShardStatus before acting.
 * A node not in `missing` counts as missing since now. Writes at most cap
 * actions to out and returns how many there are in all (call again with a
 * bigger out when the result exceeds cap).
 */
size_t failover_plan(const struct rt_view *v, const struct failover_missing *missing,
                     size_t n_missing, int64_t now_ms, int64_t grace_ms,
                     struct failover_action *out, size_t cap);

#endif
