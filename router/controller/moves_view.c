/*
 * router/controller/moves_view.c — pure queries over the moves of a routing
 * view (moves.h): which dead node a running move owns. Apart from moves.c so
 * the failover planner (failover.c) and its unit tests use it without the
 * executor's etcd and RPC machinery.
 *
 * Threading: no state; any thread. Strings are borrowed from the view.
 */
#include <string.h>

#include "router/controller/moves.h"

bool moves_exec_owns(const struct rt_view *v, const char *collection, uint32_t shard,
                     const char *node)
{
    for (size_t i = 0; i < v->n_moves; i++) {
        const struct cluster_move *m = &v->moves[i];
        if (m->state == CLUSTER_MOVE_RUNNING && m->kind == CLUSTER_MOVE_REPLICA &&
            m->shard == shard && m->from != NULL && strcmp(m->from, node) == 0 &&
            strcmp(m->name, collection) == 0)
            return true;
    }
    return false;
}
