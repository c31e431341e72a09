/*
 * router/controller/placement.c — where the replicas of a new collection go (docs/design.md §6).
 *
 * Two steps, so that the decision is a pure function that unit tests drive
 * with hand-built clusters: placement_count turns a routing-table view into
 * one struct placement_node per live node (replicas and primaries it holds
 * already), the caller marks which of them answered a health check, and
 * placement_plan decides.
 *
 * The plan is greedy, shard by shard, on distinct nodes per shard, over the
 * eligible nodes only (N of them: healthy and not draining). Each replica goes to the healthy node
 * not yet holding the shard with the fewest replicas of this collection, then the fewest replicas
 * overall, ties round-robin starting after the node picked last. Ordering by the collection's own
 * count first is what spreads it: the first version ordered by the overall count alone, and a newly
 * joined empty node then took every shard of the next collection (4 of 4 on
 * one node). Each shard thus goes to the R nodes with the fewest replicas of
 * the collection, which keeps those counts within one of each other, so no
 * node holds more than ceil(S*R/N) of them (the random-cluster unit test
 * checks it); the overall count only breaks ties, which still fills an
 * emptier node first. Then the shard's primary is the one of its replicas
 * whose node leads the fewest shards of this collection (ties: fewest shards
 * overall, then fewer replicas, then placement order) — a primary takes
 * every write, so primaries are spread too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/controller/placement.h"

void placement_count(const struct rt_view *v, struct placement_node *out)
{
    for (size_t i = 0; i < v->n_nodes; i++)
        out[i] = (struct placement_node){
            .id = v->nodes[i].id, .healthy = true, .draining = rt_view_draining(v, v->nodes[i].id)};
    for (size_t c = 0; c < v->n_colls; c++) {
        const struct rt_collection *coll = &v->colls[c];
        for (uint32_t s = 0; s < coll->shards; s++) {
            const struct cluster_shard *sh = &coll->shard[s];
            for (uint32_t i = 0; i < sh->replicas.n; i++) {
                const struct rt_node *node = rt_view_node(v, sh->replicas.v[i]);
                if (node != NULL) out[node - v->nodes].replicas++;
            }
            const struct rt_node *p = sh->primary[0] ? rt_view_node(v, sh->primary) : NULL;
            if (p != NULL) out[p - v->nodes].primaries++;
        }
    }
}

/* A node may receive a replica: it answered the health check and is not draining. */
static bool eligible(const struct placement_node *n)
{
    return n->healthy && !n->draining;
}

/* The message for fewer eligible nodes than rf: counts, then the eligible,
 * the unhealthy and the draining nodes. */
static void too_few(const struct placement_node *nodes, size_t n, size_t ok, uint32_t rf, char *err,
                    size_t errlen)
{
    size_t off =
        (size_t)snprintf(err, errlen, "replication_factor %u needs %u healthy nodes, %zu %s", rf,
                         rf, ok, ok == 1 ? "is" : "are");
    static const char *const lead[] = {" (", "; not answering the health check: ",
                                       "; draining (vecshard undrain NODE to use it): "};
    for (int group = 0; group < 3; group++) {
        bool first = true;
        for (size_t i = 0; i < n && off < errlen; i++) {
            int g = eligible(&nodes[i]) ? 0 : !nodes[i].healthy ? 1 : 2;
            if (g != group) continue;
            off += (size_t)snprintf(err + off, errlen - off, "%s%s", first ? lead[group] : ", ",
                                    nodes[i].id);
            first = false;
        }
        if (group == 0 && !first && off < errlen)
            off += (size_t)snprintf(err + off, errlen - off, ")");
    }
}

int placement_plan(const struct placement_node *nodes, size_t n, uint32_t shards, uint32_t rf,
                   const char **out, char *err, size_t errlen)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += eligible(&nodes[i]);
    if (ok < rf) {
        too_few(nodes, n, ok, rf, err, errlen);
        return -1;
    }
    unsigned *total = calloc(n, sizeof *total);       /* replicas, every collection */
    unsigned *mine = calloc(n, sizeof *mine);         /* replicas of this collection */
    unsigned *led = calloc(n, sizeof *led);           /* primaries, every collection */
    unsigned *led_mine = calloc(n, sizeof *led_mine); /* primaries of this collection */
    size_t *pick = calloc(rf, sizeof *pick);
    if (total == NULL || mine == NULL || led == NULL || led_mine == NULL || pick == NULL) {
        free(total);
        free(mine);
        free(led);
        free(led_mine);
        free(pick);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        total[i] = nodes[i].replicas;
        led[i] = nodes[i].primaries;
    }
    size_t cursor = 0; /* round-robin start among equal nodes */
    for (uint32_t s = 0; s < shards; s++) {
        for (uint32_t r = 0; r < rf; r++) {
            size_t best = n;
            for (size_t k = 0; k < n; k++) {
                size_t i = (cursor + k) % n;
                bool taken = !eligible(&nodes[i]);
                for (uint32_t q = 0; q < r && !taken; q++)
                    taken = pick[q] == i;
                if (taken) continue;
                if (best == n || mine[i] < mine[best] ||
                    (mine[i] == mine[best] && total[i] < total[best]))
                    best = i;
            }
            pick[r] = best; /* ok >= rf: a node is always left */
            mine[best]++;
            total[best]++;
            cursor = (best + 1) % n;
        }
        /* The primary: the replica whose node leads the fewest shards. */
        uint32_t p = 0;
        for (uint32_t r = 1; r < rf; r++) {
            size_t i = pick[r], b = pick[p];
            if (led_mine[i] != led_mine[b] ? led_mine[i] < led_mine[b]
                : led[i] != led[b]         ? led[i] < led[b]
                                           : total[i] < total[b])
                p = r;
        }
        const char **set = out + (size_t)s * rf;
        set[0] = nodes[pick[p]].id;
        for (uint32_t r = 0, o = 1; r < rf; r++)
            if (r != p) set[o++] = nodes[pick[r]].id;
        led[pick[p]]++;
        led_mine[pick[p]]++;
    }
    free(total);
    free(mine);
    free(led);
    free(led_mine);
    free(pick);
    return 0;
}
