/*
 * placement.c — where the replicas of a new collection go (DESIGN §6).
 *
 * Greedy, shard by shard: each replica goes to the live node, not already
 * holding this shard, with the fewest replicas (existing collections
 * included, and counting the ones placed so far); for a primary, ties go to
 * the node with fewer primaries; remaining ties rotate with the shard number
 * so equal nodes take turns. With S×R ≤ nodes this puts every replica on
 * its own node; otherwise counts differ by at most one. Only live
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
        size_t off = (size_t)snprintf(err, errlen,
                                      "replication_factor %u needs %u live nodes, %zu %s alive",
                                      rf, rf, n, n == 1 ? "is" : "are");
        for (size_t i = 0; i < n && off < errlen; i++)
            off += (size_t)snprintf(err + off, errlen - off, "%s%s", i ? ", " : " (",
                                    v->nodes[i].id);
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
    for (uint32_t s = 0; s < shards; s++) {
        for (uint32_t r = 0; r < rf; r++) {
            size_t best = n;
            for (size_t k = 0; k < n; k++) {
                size_t i = (k + s) % n;
                bool taken = false;
                for (uint32_t q = 0; q < r && !taken; q++)
                    taken = strcmp(out[s * rf + q], v->nodes[i].id) == 0;
                if (taken) continue;
                if (best == n || replicas[i] < replicas[best] ||
                    (r == 0 && replicas[i] == replicas[best] && primaries[i] < primaries[best]))
                    best = i;
            }
            out[s * rf + r] = v->nodes[best].id;
            replicas[best]++;
            if (r == 0) primaries[best]++;
        }
    }
    free(replicas);
    free(primaries);
    return 0;
}
