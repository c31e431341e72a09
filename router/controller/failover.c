/*
 * router/controller/failover.c — the controller's planners
 * (docs/replication.md §7): promotion choice, re-replication target and the
 * per-view action list. Pure functions; router/controller/controller.c asks
 * the nodes, re-checks each action's precondition inside its shard-entry CAS
 * and logs the decisions.
 *
 * Only in-sync members are ever promoted: an acknowledged write is on every
 * one of them, so the highest LSN among them holds every acknowledged write.
 * A replica is replaced only while its shard has a live primary (the new copy
 * is transferred from it), so an R = 1 shard whose node is gone is never
 * "re-replicated from nothing": it waits for its node.
 */
#include "router/controller/failover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/controller/moves.h"
#include "router/controller/placement.h"

/* Shards v's node `id` leads (for ties between promotion candidates). */
static unsigned primaries_of(const struct rt_view *v, const char *id)
{
    unsigned n = 0;
    for (size_t c = 0; c < v->n_colls; c++)
        for (uint32_t s = 0; s < v->colls[c].shards; s++)
            if (strcmp(v->colls[c].shard[s].primary, id) == 0) n++;
    return n;
}

/* Appends "sep text" to reason (truncating silently). */
static void reason_add(char *reason, size_t len, const char *text)
{
    size_t off = strlen(reason);
    if (off < len) snprintf(reason + off, len - off, "%s%s", off > 0 ? " " : "", text);
}

int failover_choose(const struct rt_view *v, const struct cluster_shard *sh,
                    const struct failover_candidate *cands, size_t n, char *reason,
                    size_t reasonlen)
{
    int best = -1;
    unsigned best_prim = 0;
    bool any_live = false;
    if (reasonlen > 0) reason[0] = '\0';
    char not_ready[200] = "";
    for (size_t i = 0; i < n; i++) {
        const struct failover_candidate *c = &cands[i];
        if (!cluster_ids_has(&sh->in_sync, c->node_id) || strcmp(c->node_id, sh->primary) == 0 ||
            rt_view_node(v, c->node_id) == NULL)
            continue;
        any_live = true;
        if (!c->answered || !c->ready) {
            char one[160];
            snprintf(one, sizeof one, "%s=%s", c->node_id,
                     !c->answered ? "no_answer" : "not_ready");
            reason_add(not_ready, sizeof not_ready, one);
            continue;
        }
        unsigned prim = primaries_of(v, c->node_id);
        if (best < 0 || c->lsn > cands[best].lsn ||
            (c->lsn == cands[best].lsn &&
             (prim < best_prim ||
              (prim == best_prim && strcmp(c->node_id, cands[best].node_id) < 0)))) {
            best = (int)i;
            best_prim = prim;
        }
    }
    if (best >= 0) return best;
    if (!any_live)
        snprintf(reason, reasonlen, "no live in-sync replica");
    else
        snprintf(reason, reasonlen, "no READY in-sync replica: %s", not_ready);
    return -1;
}

const char *failover_replace_target(const struct rt_view *v, const struct cluster_shard *sh)
{
    struct placement_node *pn = calloc(v->n_nodes + 1, sizeof *pn);
    if (pn == NULL) return NULL;
    placement_count(v, pn);
    const char *best = NULL;
    unsigned best_n = 0;
    for (size_t i = 0; i < v->n_nodes; i++) { /* v->nodes is sorted by id: ties go to the first */
        if (cluster_ids_has(&sh->replicas, pn[i].id) || rt_view_draining(v, pn[i].id)) continue;
        if (best == NULL || pn[i].replicas < best_n) {
            best = pn[i].id;
            best_n = pn[i].replicas;
        }
    }
    free(pn);
    return best;
}

const char *failover_kind_name(enum failover_kind k)
{
    switch (k) {
    case FAILOVER_PROMOTE:
        return "failover";
    case FAILOVER_DROP_IN_SYNC:
        return "drop_in_sync";
    case FAILOVER_REPLACE:
        return "replace";
    case FAILOVER_WAIT:
        return "wait";
    }
    return "?";
}

/* Since when `id` has been missing (now when it is not in the list). */
static int64_t missing_since(const struct failover_missing *m, size_t n, const char *id,
                             int64_t now)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].node_id, id) == 0) return m[i].since_ms;
    return now;
}

/* Stores an action at out[k] when there is room; returns k + 1. */
static size_t emit(struct failover_action *out, size_t cap, size_t k, struct failover_action a)
{
    if (k < cap) out[k] = a;
    return k + 1;
}

size_t failover_plan(const struct rt_view *v, const struct failover_missing *missing,
                     size_t n_missing, int64_t now_ms, int64_t grace_ms,
                     struct failover_action *out, size_t cap)
{
    size_t k = 0;
    for (size_t c = 0; c < v->n_colls; c++) {
        const struct rt_collection *coll = &v->colls[c];
        for (uint32_t s = 0; s < coll->shards; s++) {
            const struct cluster_shard *sh = &coll->shard[s];
            if (!sh->present) continue;
            struct failover_action a = {.coll = coll, .shard = s};
            if (sh->primary[0] == '\0' || rt_view_node(v, sh->primary) == NULL) {
                bool live = false;
                for (uint32_t i = 0; i < sh->in_sync.n && !live; i++)
                    live = strcmp(sh->in_sync.v[i], sh->primary) != 0 &&
                           rt_view_node(v, sh->in_sync.v[i]) != NULL;
                a.node = sh->primary;
                a.kind = live ? FAILOVER_PROMOTE : FAILOVER_WAIT;
                a.reason = live ? "primary node not registered" : "no live in-sync replica";
                k = emit(out, cap, k, a);
                continue;
            }
            for (uint32_t i = 0; i < sh->replicas.n; i++) {
                const char *id = sh->replicas.v[i];
                if (rt_view_node(v, id) != NULL) continue;
                a.node = id;
                bool past = now_ms - missing_since(missing, n_missing, id, now_ms) >= grace_ms;
                bool owned = moves_exec_owns(v, coll->name, s, id);
                a.to = past && !owned ? failover_replace_target(v, sh) : NULL;
                if (a.to != NULL) {
                    a.kind = FAILOVER_REPLACE;
                    a.reason = "node gone past the grace period";
                } else if (cluster_ids_has(&sh->in_sync, id)) {
                    a.kind = FAILOVER_DROP_IN_SYNC;
                    a.reason = "backup node not registered";
                } else {
                    a.kind = FAILOVER_WAIT;
                    a.reason = owned  ? "source of a running move (its switch removes it)"
                               : past ? "no registered node without a copy"
                                      : "node gone, within the grace period";
                }
                k = emit(out, cap, k, a);
            }
        }
    }
    return k;
}
