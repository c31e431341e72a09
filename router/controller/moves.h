/*
 * router/controller/moves.h — rebalance moves (docs/rebalance.md): planning
 * over a routing view (the planner's input built from the view and the
 * nodes' ShardStatus), queueing moves as etcd documents, and the
 * controller's executor that drives each queued move through its steps.
 *
 * Planning and queueing (moves_plan, moves_queue; moves_plan.c) are used
 * by the Rebalance and Drain RPCs (router/admin.c) on any router and by the
 * controller; the executor (moves_exec_*; moves.c) only by the elected
 * controller (router/controller/controller.c), from its one thread.
 * moves_exec_owns is a pure query over a view (moves_view.c), used by the
 * failover planner too.
 *
 * Ownership: moves_plan's output array and each move's strings belong to
 * the caller (moves_free). Threading: moves_plan and moves_queue are
 * reentrant (any handler thread); a struct moves_exec belongs to the
 * controller thread.
 */
#ifndef VS_ROUTER_CONTROLLER_MOVES_H
#define VS_ROUTER_CONTROLLER_MOVES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster/cluster.h"
#include "router/route_table.h"

struct router;

/* Which moves a plan may contain. */
enum moves_scope {
    MOVES_ALL = 0,    /* drain, then replica balance, then primaries (rebalance.h) */
    MOVES_DRAIN_ONLY, /* only replicas off draining nodes */
};

/*
 * Plans over view v: asks every registered node's ShardStatus (one fan-out,
 * deadline 2 s) for each shard's bytes (its primary's disk_bytes), marks a
 * shard movable when its entry is present, in_sync = replicas, every
 * replica's node registered and no active move in v names it, and calls
 * rebalance_plan. collection "" = every collection, else only that one's
 * shards are planned (counts still per collection). Each out move is
 * QUEUED with id "", origin "", bytes_total = the shard's bytes.
 * Returns 0 with *out (n entries, caller frees with moves_free) and note
 * (why balance cannot be reached, or ""; with MOVES_DRAIN_ONLY only the
 * parts about draining or eligible nodes), or -1 (ENOMEM).
 */
int moves_plan(struct router *r, const struct rt_view *v, const char *collection,
               enum moves_scope scope, struct cluster_move **out, size_t *n, char *note,
               size_t notelen);

/* Frees n moves and the array. */
void moves_free(struct cluster_move *m, size_t n);

/*
 * Writes each of m[0..n) as moves/<id> with a fresh id (cluster_move_id,
 * stored back into m[i].id), state QUEUED, origin, created_at now. One put
 * per move, in order; *revision (optional) gets the etcd revision of the
 * last put (for rt_wait_revision). 0, or -1 with err (etcd unreachable: the moves
 * written before the failure stay queued).
 */
int moves_queue(struct router *r, struct cluster_move *m, size_t n, const char *origin,
                int64_t *revision, char *err, size_t errlen);

/* ------------------------------------------------------------ executor */

struct moves_exec;

/* A new executor for the controller of r (NULL on ENOMEM). */
struct moves_exec *moves_exec_new(struct router *r);
void moves_exec_free(struct moves_exec *x);

/* Forgets in-memory state (at each election: the documents in etcd are the
 * truth, a new controller resumes every RUNNING move from its entry). */
void moves_exec_reset(struct moves_exec *x);

/*
 * One round, on the controller's current view (docs/rebalance.md §2–§3):
 * drives every RUNNING move one step where it can, starts QUEUED ones while
 * fewer than --max-moves run (one per shard), undoes and retries or fails
 * moves whose target is gone or made no progress for --move-timeout-ms,
 * queues drain moves and (with --auto-rebalance on) automatic plans once
 * the cluster has settled, and prunes finished documents beyond the newest
 * 50. still_leading is checked before every etcd write (false: stop at
 * once). Never blocks longer than one ShardStatus fan-out plus the etcd
 * writes it makes.
 */
void moves_exec_tick(struct moves_exec *x, const struct rt_view *v,
                     bool (*still_leading)(void *arg), void *arg);

/*
 * True when the failover planner must leave this (shard, dead node) to the
 * running move: the node is the source of a RUNNING replica move of the
 * shard (the move's switch removes it; a REPLACE would copy it twice).
 */
bool moves_exec_owns(const struct rt_view *v, const char *collection, uint32_t shard,
                     const char *node);

#endif
