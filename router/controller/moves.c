/*
 * router/controller/moves.c — the controller's move executor (moves.h,
 * docs/rebalance.md §2–§3). STUB: executes nothing yet.
 */
#include "router/controller/moves.h"

#include <stdlib.h>

struct moves_exec {
    struct router *r;
};

struct moves_exec *moves_exec_new(struct router *r)
{
    struct moves_exec *x = calloc(1, sizeof *x);
    if (x != NULL) x->r = r;
    return x;
}

void moves_exec_free(struct moves_exec *x)
{
    free(x);
}

void moves_exec_reset(struct moves_exec *x)
{
    (void)x;
}

void moves_exec_tick(struct moves_exec *x, const struct rt_view *v,
                     bool (*still_leading)(void *arg), void *arg)
{
    (void)x, (void)v, (void)still_leading, (void)arg;
}

bool moves_exec_owns(const struct rt_view *v, const char *collection, uint32_t shard,
                     const char *node)
{
    (void)v, (void)collection, (void)shard, (void)node;
    return false;
}
