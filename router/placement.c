/*
 * placement.c — where the replicas of a new collection go (DESIGN §6).
 *
 * Greedy, shard by shard, on distinct nodes per shard. Each replica goes to
 * the live node with the fewest replicas (existing collections included,
 * and counting the ones placed so far); ties go round-robin, starting after
 * the node picked last, so equal nodes take turns. Then the shard's primary
 * is the one of its replicas whose node is primary of the fewest shards
 * (ties: fewer replicas, then placement order) — a primary takes every
 * write, so primaries are spread too. Only live
 * (registered) nodes are used; a dead node named in an old shard entry
 * still counts for nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h"

int placement_plan(const struct rt_view *v, uint32_t shards, uint32_t rf, const char **out,
                   char *err, size_t errlen)
{
    size_t n = v->n_nodes;
    if (n < rf) {
        size_t off =
            (size_t)snprintf(err, errlen, "replication_factor %u needs %u live nodes, %zu %s alive",
                             rf, rf, n, n == 1 ? "is" : "are");
        for (size_t i = 0; i < n && off < errlen; i++)
            off +=
                (size_t)snprintf(err + off, errlen - off, "%s%s", i ? ", " : " (", v->nodes[i].id);
        if (n > 0 && off < errlen) snprintf(err + off, errlen - off, ")");
        return -1;
    }
    unsigned *replicas = calloc(n, sizeof *replicas);
    unsigned *primaries = calloc(n, sizeof *primaries);
    if (replicas == NULL || primaries == NULL) {
        free(replicas);
        free(primaries);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t c = 0; c < v->n_colls; c++) {
        const struct rt_collection *coll = &v->colls[c];
        for (uint32_t s = 0; s < coll->shards; s++) {
            const struct rt_shard *sh = &coll->shard[s];
            for (uint32_t i = 0; i < sh->replicas.n; i++) {
                const struct rt_node *node = rt_view_node(v, sh->replicas.v[i]);
                if (node != NULL) replicas[node - v->nodes]++;
            }
            const struct rt_node *p = sh->primary[0] ? rt_view_node(v, sh->primary) : NULL;
            if (p != NULL) primaries[p - v->nodes]++;
        }
    }
    size_t cursor = 0; /* round-robin start among equally loaded nodes */
    for (uint32_t s = 0; s < shards; s++) {
        const char **set = out + (size_t)s * rf;
        for (uint32_t r = 0; r < rf; r++) {
            size_t best = n;
            for (size_t k = 0; k < n; k++) {
                size_t i = (cursor + k) % n;
                bool taken = false;
                for (uint32_t q = 0; q < r && !taken; q++)
                    taken = strcmp(set[q], v->nodes[i].id) == 0;
                if (!taken && (best == n || replicas[i] < replicas[best])) best = i;
            }
            set[r] = v->nodes[best].id;
            replicas[best]++;
            cursor = (best + 1) % n;
        }
        /* The primary: the replica whose node leads the fewest shards. */
        uint32_t p = 0;
        size_t pi = (size_t)(rt_view_node(v, set[0]) - v->nodes);
        for (uint32_t r = 1; r < rf; r++) {
            size_t i = (size_t)(rt_view_node(v, set[r]) - v->nodes);
            if (primaries[i] < primaries[pi] ||
                (primaries[i] == primaries[pi] && replicas[i] < replicas[pi])) {
                p = r;
                pi = i;
            }
        }
        const char *t = set[0];
        set[0] = set[p];
        set[p] = t;
        primaries[pi]++;
    }
    free(replicas);
    free(primaries);
    return 0;
}
