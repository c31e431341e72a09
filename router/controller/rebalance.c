/*
 * router/controller/rebalance.c — the rebalance planner (rebalance.h,
 * docs/rebalance.md §1).
 *
 * The plan is greedy and simulated: one struct plan, allocated once, holds
 * where every copy is (a node index per replica slot), each shard's primary
 * and the per-node counts; each planned move is applied to it at once, so
 * the next choice sees it. Per collection, in the order the shards array
 * first names each one (a collection with no movable shard is skipped),
 * three loops:
 *
 *   1. drain: every copy of a movable shard on a draining node goes to the
 *      eligible node without a copy that has the fewest copies of the
 *      collection (then of every collection, then bytes, then id). When
 *      every node with the fewest holds a copy, drains planned earlier are
 *      re-routed to make room (drain_target). A first version ranked drain
 *      targets by the count over every collection: it filled a node with
 *      few copies overall but many of this collection, and loop 2 then
 *      moved them again.
 *   2. replicas: while the collection's counts over the eligible nodes
 *      differ by 2 or more, one copy goes from a node with the most to a
 *      node with the fewest. Such a move lowers the number of moves any
 *      balanced end needs by exactly one (the fullest node is above the
 *      ceiling of the mean or the emptiest below its floor, and neither end
 *      crosses it), so the loop makes the fewest replica moves; and since
 *      the fullest node holds more of the collection's shards than the
 *      emptiest, one of them is always missing there: only shards that are
 *      not movable can stall it.
 *   3. primaries: while the collection's primary counts over the eligible
 *      nodes differ by 2 or more, primaryship goes (LEADER) to a node with
 *      the fewest from a node leading at least 2 more whose shard it holds
 *      a copy of — or, when none exists, along the shortest chain of such
 *      hand-overs through nodes whose counts do not change (leader_chain).
 *      Strict most-to-fewest hand-overs stalled at 2 to 18 primaries per
 *      node on a 1000-shard scale-out (loop 2 moves backups, so the new
 *      nodes hold copies of shards led by every old node, not only the
 *      fullest).
 *
 * Every loop condition depends only on the collection's own counts, its
 * copies and the movable flags, never on a tie-break, and a loop ends only
 * when no move is left; so planning again over the applied plan finds
 * nothing (no oscillation). Each move of loops 2 and 3 lowers the sum of
 * squared counts, so they end.
 *
 * Work: O(replicas × nodes) to map ids; per move O(nodes + the collection's
 * shards × R) when the best (target, source) pair has a candidate; the
 * breadth-first searches only run when the direct choice fails, each
 * O(nodes × (drains + shards × R)).
 */
#include "router/controller/rebalance.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE SIZE_MAX

/* A planned drain move: copy `slot` of shard s leaves draining node `from`
 * for wherever loc[slot] says (a later drain may still re-route it). */
struct drained {
    size_t s, slot, from;
    bool primary; /* from was the shard's primary */
};

/* The simulation: the input, where every copy is now, and the moves so far. */
struct plan {
    const struct rebalance_node *nodes;
    size_t n_nodes;
    const struct rebalance_shard *shards;
    size_t n_shards;
    size_t *off;        /* n_shards + 1: shard s's copies are loc[off[s] .. off[s + 1]) */
    size_t *loc;        /* node index of each copy (NONE: a node not in the array) */
    size_t *prim;       /* node index of each shard's primary (NONE: none) */
    bool *movable;      /* the caller's flag, and every copy on a known node, distinct */
    size_t *order;      /* shard indexes grouped by collection, first-named first */
    size_t *total;      /* per node: copies of every collection */
    size_t *ptotal;     /* per node: primaries of every collection */
    uint64_t *bytes;    /* per node: bytes of every copy */
    size_t *cnt;        /* per node: copies of the collection being planned */
    size_t *pcnt;       /* per node: primaries of the collection being planned */
    size_t *tgt, *src;  /* scratch: candidate nodes, best first; a search's queue */
    size_t *via, *back; /* scratch per node: what a search moved there, and from where */
    bool *seen;         /* scratch per node: reached by a search */
    struct drained *dm; /* the collection's drain moves, in planning order */
    size_t n_dm;
    struct rebalance_move *out;
    size_t cap, n;
    char *note;
    size_t notelen;
    bool noted_no_eligible; /* "no eligible node" is in the note already */
};

/* Appends "; text" (or text) to the note, truncating silently. */
static void note_add(struct plan *p, const char *fmt, ...)
{
    if (p->note == NULL || p->notelen == 0) return;
    size_t off = strlen(p->note);
    if (off + 1 >= p->notelen) return;
    if (off > 0) off += (size_t)snprintf(p->note + off, p->notelen - off, "; ");
    if (off + 1 >= p->notelen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->note + off, p->notelen - off, fmt, ap);
    va_end(ap);
}

/* Index of node `id` in the array, or NONE. */
static size_t node_index(const struct plan *p, const char *id)
{
    for (size_t i = 0; id != NULL && i < p->n_nodes; i++)
        if (strcmp(p->nodes[i].id, id) == 0) return i;
    return NONE;
}

/* The copy slot of shard s on node i, or NONE. */
static size_t holds(const struct plan *p, size_t s, size_t i)
{
    for (size_t k = p->off[s]; k < p->off[s + 1]; k++)
        if (p->loc[k] == i) return k;
    return NONE;
}

static bool eligible(const struct plan *p, size_t i)
{
    return !p->nodes[i].draining;
}

static bool id_before(const struct plan *p, size_t a, size_t b)
{
    return strcmp(p->nodes[a].id, p->nodes[b].id) < 0;
}

/* Target order of loops 1–2: fewest copies of every collection, fewest bytes, id. */
static bool target_before(const struct plan *p, size_t a, size_t b)
{
    if (p->total[a] != p->total[b]) return p->total[a] < p->total[b];
    if (p->bytes[a] != p->bytes[b]) return p->bytes[a] < p->bytes[b];
    return id_before(p, a, b);
}

/* Source order of loop 2: most copies of every collection, most bytes, id. */
static bool source_before(const struct plan *p, size_t a, size_t b)
{
    if (p->total[a] != p->total[b]) return p->total[a] > p->total[b];
    if (p->bytes[a] != p->bytes[b]) return p->bytes[a] > p->bytes[b];
    return id_before(p, a, b);
}

/* Target order of loop 3: fewest primaries of every collection, id. */
static bool leader_target_before(const struct plan *p, size_t a, size_t b)
{
    if (p->ptotal[a] != p->ptotal[b]) return p->ptotal[a] < p->ptotal[b];
    return id_before(p, a, b);
}

/* Source order of loop 3: most primaries of every collection, id. */
static bool leader_source_before(const struct plan *p, size_t a, size_t b)
{
    if (p->ptotal[a] != p->ptotal[b]) return p->ptotal[a] > p->ptotal[b];
    return id_before(p, a, b);
}

/* Fills set with the eligible nodes whose count (cnt or pcnt) is want, best
 * first by `before` (insertion sort: the lists are short); returns how many. */
static size_t nodes_at(const struct plan *p, const size_t *count, size_t want, size_t *set,
                       bool (*before)(const struct plan *, size_t, size_t))
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++) {
        if (!eligible(p, i) || count[i] != want) continue;
        size_t k = n++;
        for (; k > 0 && before(p, i, set[k - 1]); k--)
            set[k] = set[k - 1];
        set[k] = i;
    }
    return n;
}

/* Smallest and largest count over the eligible nodes; false when there is none. */
static bool spread(const struct plan *p, const size_t *count, size_t *lo, size_t *hi)
{
    bool any = false;
    for (size_t i = 0; i < p->n_nodes; i++) {
        if (!eligible(p, i)) continue;
        if (!any || count[i] < *lo) *lo = count[i];
        if (!any || count[i] > *hi) *hi = count[i];
        any = true;
    }
    return any;
}

static void emit(struct plan *p, struct rebalance_move m)
{
    if (p->n < p->cap) p->out[p->n] = m;
    p->n++;
}

/* Applies the move of copy `slot` of shard s to node `to` (primaryship goes
 * with it when it was the primary's copy). */
static void relocate(struct plan *p, size_t s, size_t slot, size_t to)
{
    size_t from = p->loc[slot];
    uint64_t b = p->shards[s].bytes;
    p->loc[slot] = to;
    p->total[from]--, p->total[to]++;
    p->cnt[from]--, p->cnt[to]++;
    p->bytes[from] -= b, p->bytes[to] += b;
    if (p->prim[s] == from) {
        p->prim[s] = to;
        p->ptotal[from]--, p->ptotal[to]++;
        p->pcnt[from]--, p->pcnt[to]++;
    }
}

/* Plans and applies the move of copy `slot` of shard s to node `to`. */
static void move_replica(struct plan *p, size_t s, size_t slot, size_t to)
{
    emit(p, (struct rebalance_move){.kind = REBALANCE_REPLICA,
                                    .shard = s,
                                    .from = p->nodes[p->loc[slot]].id,
                                    .to = p->nodes[to].id,
                                    .primary = p->prim[s] == p->loc[slot],
                                    .bytes = p->shards[s].bytes});
    relocate(p, s, slot, to);
}

/* Whether node v is a better target than best (NONE: any is): fewest copies
 * of the collection, then target_before. */
static bool drain_better(const struct plan *p, size_t v, size_t best)
{
    return best == NONE || p->cnt[v] < p->cnt[best] ||
           (p->cnt[v] == p->cnt[best] && target_before(p, v, best));
}

/*
 * Loop 1's target for a drained copy of shard s: the best eligible node
 * without a copy (drain_better), unless every node with the fewest copies
 * of the collection holds one. Then breadth first from those direct
 * targets, through the drain moves planned earlier in this collection
 * (the copy one sent to node v could go to w instead, this one taking its
 * place at v), to a reachable node with fewer copies than the direct
 * target: the moves on the way are re-routed (the count of moves stays),
 * and the return is the node this copy goes to. NONE when no eligible node
 * lacks a copy. Without re-routing, the first shards to drain took the
 * emptiest nodes that a later one, whose other copies were already there,
 * needed, and loop 2 then paid an extra move.
 */
static size_t drain_target(struct plan *p, size_t s)
{
    size_t head = 0, tail = 0, direct = NONE, lo = NONE;
    for (size_t i = 0; i < p->n_nodes; i++) {
        if (!eligible(p, i)) continue;
        if (lo == NONE || p->cnt[i] < lo) lo = p->cnt[i];
        p->seen[i] = holds(p, s, i) == NONE;
        if (!p->seen[i]) continue;
        p->back[i] = NONE;
        p->src[tail++] = i;
        if (drain_better(p, i, direct)) direct = i;
    }
    if (direct == NONE || p->cnt[direct] == lo) return direct;
    size_t best = direct;
    while (head < tail && p->cnt[best] > lo) {
        size_t v = p->src[head++];
        for (size_t d = 0; d < p->n_dm; d++) {
            const struct drained *y = &p->dm[d];
            if (p->loc[y->slot] != v) continue;
            for (size_t w = 0; w < p->n_nodes; w++) {
                if (!eligible(p, w) || p->seen[w] || holds(p, y->s, w) != NONE) continue;
                p->seen[w] = true;
                p->via[w] = d;
                p->back[w] = v;
                p->src[tail++] = w;
                if (p->cnt[w] < p->cnt[best]) best = w;
            }
        }
    }
    for (size_t w = best; p->back[w] != NONE; w = p->back[w]) {
        const struct drained *y = &p->dm[p->via[w]];
        relocate(p, y->s, y->slot, w);
        if (p->back[p->back[w]] == NONE) return p->back[w];
    }
    return best;
}

/* Loop 1 over the collection's shards order[first .. last): plans every
 * drain move first (re-routing may change an earlier target), then emits. */
static void plan_drain(struct plan *p, size_t first, size_t last)
{
    size_t n_eligible = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        n_eligible += eligible(p, i);
    p->n_dm = 0;
    for (size_t k = first; k < last; k++) {
        size_t s = p->order[k];
        if (!p->movable[s]) continue;
        for (size_t slot = p->off[s]; slot < p->off[s + 1]; slot++) {
            size_t from = p->loc[slot];
            if (eligible(p, from)) continue;
            if (n_eligible == 0) {
                if (!p->noted_no_eligible) note_add(p, "no eligible node");
                p->noted_no_eligible = true;
                return;
            }
            size_t to = drain_target(p, s);
            if (to == NONE) {
                note_add(p,
                         "shard %s/%u cannot leave draining node %s: every eligible node "
                         "holds a copy",
                         p->shards[s].collection, p->shards[s].shard, p->nodes[from].id);
                continue;
            }
            p->dm[p->n_dm++] = (struct drained){s, slot, from, p->prim[s] == from};
            relocate(p, s, slot, to);
        }
    }
    for (size_t d = 0; d < p->n_dm; d++) {
        const struct drained *y = &p->dm[d];
        emit(p, (struct rebalance_move){.kind = REBALANCE_REPLICA,
                                        .shard = y->s,
                                        .from = p->nodes[y->from].id,
                                        .to = p->nodes[p->loc[y->slot]].id,
                                        .primary = y->primary,
                                        .bytes = p->shards[y->s].bytes});
    }
}

/* Loop 2's choice for the pair (src, dst): the copy slot of the movable shard
 * on src and not on dst that is a backup, then best evens their bytes, then
 * has the lowest index; NONE when there is none. */
static size_t pick_replica(const struct plan *p, size_t first, size_t last, size_t src, size_t dst,
                           size_t *shard)
{
    size_t best = NONE;
    bool best_backup = false;
    uint64_t best_gap = 0;
    for (size_t k = first; k < last; k++) {
        size_t s = p->order[k];
        if (!p->movable[s]) continue;
        size_t slot = holds(p, s, src);
        if (slot == NONE || holds(p, s, dst) != NONE) continue;
        bool backup = p->prim[s] != src;
        uint64_t a = p->bytes[src] - p->shards[s].bytes, b = p->bytes[dst] + p->shards[s].bytes;
        uint64_t gap = a > b ? a - b : b - a;
        if (best == NONE || (backup && !best_backup) || (backup == best_backup && gap < best_gap)) {
            best = slot;
            best_backup = backup;
            best_gap = gap;
            *shard = s;
        }
    }
    return best;
}

/* Loop 2 over the collection's shards order[first .. last). */
static void plan_replicas(struct plan *p, size_t first, size_t last, const char *name)
{
    size_t lo = 0, hi = 0;
    while (spread(p, p->cnt, &lo, &hi) && hi - lo >= 2) {
        size_t nt = nodes_at(p, p->cnt, lo, p->tgt, target_before);
        size_t ns = nodes_at(p, p->cnt, hi, p->src, source_before);
        bool moved = false;
        for (size_t t = 0; t < nt && !moved; t++) {
            for (size_t f = 0; f < ns && !moved; f++) {
                size_t s = 0, slot = pick_replica(p, first, last, p->src[f], p->tgt[t], &s);
                if (slot == NONE) continue;
                move_replica(p, s, slot, p->tgt[t]);
                moved = true;
            }
        }
        if (!moved) {
            note_add(p,
                     "collection %s: replicas stay uneven (%zu to %zu per node): no movable "
                     "shard can go from a fullest node to an emptiest one",
                     name, lo, hi);
            return;
        }
    }
}

/*
 * Loop 3's choice for target dst: among the movable shards dst holds a
 * backup of, the one whose primary's node leads the most of the collection
 * (then of every collection, then by id; then the lowest index), if that
 * node leads at least 2 more than dst. Returns the shard, or NONE.
 */
static size_t pick_leader(const struct plan *p, size_t first, size_t last, size_t dst)
{
    size_t best = NONE, bsrc = NONE;
    for (size_t k = first; k < last; k++) {
        size_t s = p->order[k], src = p->prim[s];
        if (!p->movable[s] || src == dst || !eligible(p, src) || holds(p, s, dst) == NONE ||
            p->pcnt[src] < p->pcnt[dst] + 2)
            continue;
        if (best == NONE || p->pcnt[src] > p->pcnt[bsrc] ||
            (p->pcnt[src] == p->pcnt[bsrc] && src != bsrc && leader_source_before(p, src, bsrc))) {
            best = s;
            bsrc = src;
        }
    }
    return best;
}

/*
 * Loop 3's fallback for target dst when no node leading 2 more holds a
 * copy-led shard dst has: a chain of leader moves u0 -> u1 -> ... -> dst,
 * each u_i leading a movable shard that u_(i+1) holds a copy of, where u0
 * leads at least 2 more than dst; only the ends change count. Breadth first
 * backwards from dst (the shortest chain). Emits and applies it; false
 * when there is none.
 */
static bool leader_chain(struct plan *p, size_t first, size_t last, size_t dst)
{
    memset(p->seen, 0, p->n_nodes * sizeof *p->seen);
    size_t head = 0, tail = 0;
    p->seen[dst] = true;
    p->src[tail++] = dst;
    while (head < tail) {
        size_t v = p->src[head++];
        for (size_t k = first; k < last; k++) {
            size_t s = p->order[k], u = p->prim[s];
            if (!p->movable[s] || u == NONE || p->seen[u] || !eligible(p, u) ||
                holds(p, s, v) == NONE)
                continue;
            p->seen[u] = true;
            p->via[u] = s;
            p->back[u] = v;
            if (p->pcnt[u] < p->pcnt[dst] + 2) {
                p->src[tail++] = u;
                continue;
            }
            for (size_t w = u; w != dst; w = p->back[w]) {
                size_t t = p->back[w], sh = p->via[w];
                emit(p, (struct rebalance_move){.kind = REBALANCE_LEADER,
                                                .shard = sh,
                                                .from = p->nodes[w].id,
                                                .to = p->nodes[t].id});
                p->prim[sh] = t;
                p->ptotal[w]--, p->ptotal[t]++;
                p->pcnt[w]--, p->pcnt[t]++;
            }
            return true;
        }
    }
    return false;
}

/* Loop 3 over the collection's shards order[first .. last): targets by
 * fewest primaries of the collection, then leader_target_before. */
static void plan_primaries(struct plan *p, size_t first, size_t last, const char *name)
{
    size_t lo = 0, hi = 0;
    while (spread(p, p->pcnt, &lo, &hi) && hi - lo >= 2) {
        size_t nt = 0; /* every eligible node that leads 2 fewer than the most, best first */
        for (size_t i = 0; i < p->n_nodes; i++) {
            if (!eligible(p, i) || p->pcnt[i] + 2 > hi) continue;
            size_t k = nt++;
            for (; k > 0 && (p->pcnt[i] < p->pcnt[p->tgt[k - 1]] ||
                             (p->pcnt[i] == p->pcnt[p->tgt[k - 1]] &&
                              leader_target_before(p, i, p->tgt[k - 1])));
                 k--)
                p->tgt[k] = p->tgt[k - 1];
            p->tgt[k] = i;
        }
        size_t s = NONE, t = 0;
        for (; t < nt && s == NONE; t++)
            s = pick_leader(p, first, last, p->tgt[t]);
        if (s == NONE) {
            bool chained = false;
            for (t = 0; t < nt && !chained; t++)
                chained = leader_chain(p, first, last, p->tgt[t]);
            if (chained) continue;
            note_add(p,
                     "collection %s: primaries stay uneven (%zu to %zu per node): no chain of "
                     "copies leads from a node with 2 more to one with fewer",
                     name, lo, hi);
            return;
        }
        size_t src = p->prim[s], dst = p->tgt[t - 1];
        emit(p, (struct rebalance_move){.kind = REBALANCE_LEADER,
                                        .shard = s,
                                        .from = p->nodes[src].id,
                                        .to = p->nodes[dst].id});
        p->prim[s] = dst;
        p->ptotal[src]--, p->ptotal[dst]++;
        p->pcnt[src]--, p->pcnt[dst]++;
    }
}

/* Maps every copy and primary to a node index, marks the movable shards,
 * groups the shards by collection and counts per node. 0, or -1 (ENOMEM). */
static int plan_init(struct plan *p)
{
    size_t nn = p->n_nodes + 1, ns = p->n_shards + 1, nr = 1;
    for (size_t s = 0; s < p->n_shards; s++)
        nr += p->shards[s].n_replicas;
    p->off = calloc(ns, sizeof *p->off);
    p->loc = calloc(nr, sizeof *p->loc);
    p->prim = calloc(ns, sizeof *p->prim);
    p->movable = calloc(ns, sizeof *p->movable);
    p->order = calloc(ns, sizeof *p->order);
    p->total = calloc(nn, sizeof *p->total);
    p->ptotal = calloc(nn, sizeof *p->ptotal);
    p->bytes = calloc(nn, sizeof *p->bytes);
    p->cnt = calloc(nn, sizeof *p->cnt);
    p->pcnt = calloc(nn, sizeof *p->pcnt);
    p->tgt = calloc(nn, sizeof *p->tgt);
    p->src = calloc(nn, sizeof *p->src);
    p->via = calloc(nn, sizeof *p->via);
    p->back = calloc(nn, sizeof *p->back);
    p->seen = calloc(nn, sizeof *p->seen);
    p->dm = calloc(nr, sizeof *p->dm);
    if (p->off == NULL || p->loc == NULL || p->prim == NULL || p->movable == NULL ||
        p->order == NULL || p->total == NULL || p->ptotal == NULL || p->bytes == NULL ||
        p->cnt == NULL || p->pcnt == NULL || p->tgt == NULL || p->src == NULL || p->via == NULL ||
        p->back == NULL || p->seen == NULL || p->dm == NULL)
        return -1;
    size_t k = 0;
    for (size_t s = 0; s < p->n_shards; s++) {
        const struct rebalance_shard *sh = &p->shards[s];
        p->off[s] = k;
        bool ok = sh->movable;
        p->prim[s] = NONE;
        for (size_t r = 0; r < sh->n_replicas; r++, k++) {
            size_t i = node_index(p, sh->replicas[r]);
            for (size_t q = p->off[s]; q < k && ok; q++)
                ok = p->loc[q] != i; /* two copies on one node: leave the shard alone */
            ok = ok && i != NONE;
            p->loc[k] = i;
            if (i == NONE) continue;
            p->total[i]++;
            p->bytes[i] += sh->bytes;
            if (sh->primary != NULL && strcmp(sh->primary, sh->replicas[r]) == 0) p->prim[s] = i;
        }
        p->off[s + 1] = k;
        if (p->prim[s] != NONE) p->ptotal[p->prim[s]]++;
        p->movable[s] = ok && p->prim[s] != NONE;
    }
    /* Group by collection, keeping index order inside each group: shards
     * whose collection was named earlier in the array come first. */
    size_t n = 0;
    for (size_t s = 0; s < p->n_shards; s++) {
        bool seen = false;
        for (size_t q = 0; q < s && !seen; q++)
            seen = strcmp(p->shards[q].collection, p->shards[s].collection) == 0;
        if (seen) continue;
        for (size_t q = s; q < p->n_shards; q++)
            if (strcmp(p->shards[q].collection, p->shards[s].collection) == 0) p->order[n++] = q;
    }
    return 0;
}

static void plan_free(struct plan *p)
{
    free(p->off);
    free(p->loc);
    free(p->prim);
    free(p->movable);
    free(p->order);
    free(p->total);
    free(p->ptotal);
    free(p->bytes);
    free(p->cnt);
    free(p->pcnt);
    free(p->tgt);
    free(p->src);
    free(p->via);
    free(p->back);
    free(p->seen);
    free(p->dm);
}

size_t rebalance_plan(const struct rebalance_node *nodes, size_t n_nodes,
                      const struct rebalance_shard *shards, size_t n_shards,
                      struct rebalance_move *out, size_t cap, char *note, size_t notelen)
{
    struct plan p = {.nodes = nodes,
                     .n_nodes = n_nodes,
                     .shards = shards,
                     .n_shards = n_shards,
                     .out = out,
                     .cap = out != NULL ? cap : 0,
                     .note = notelen > 0 ? note : NULL,
                     .notelen = notelen};
    if (p.note != NULL) p.note[0] = '\0';
    if (plan_init(&p) != 0) {
        note_add(&p, "out of memory");
        plan_free(&p);
        return 0;
    }
    for (size_t first = 0; first < n_shards;) {
        const char *name = shards[p.order[first]].collection;
        size_t last = first;
        bool any_movable = false;
        for (; last < n_shards && strcmp(shards[p.order[last]].collection, name) == 0; last++)
            any_movable = any_movable || p.movable[p.order[last]];
        if (any_movable) {
            memset(p.cnt, 0, n_nodes * sizeof *p.cnt);
            memset(p.pcnt, 0, n_nodes * sizeof *p.pcnt);
            for (size_t k = first; k < last; k++) {
                size_t s = p.order[k];
                for (size_t slot = p.off[s]; slot < p.off[s + 1]; slot++)
                    if (p.loc[slot] != NONE) p.cnt[p.loc[slot]]++;
                if (p.prim[s] != NONE) p.pcnt[p.prim[s]]++;
            }
            plan_drain(&p, first, last);
            plan_replicas(&p, first, last, name);
            plan_primaries(&p, first, last, name);
        }
        first = last;
    }
    plan_free(&p);
    return p.n;
}

const char *rebalance_kind_name(enum rebalance_kind k)
{
    return k == REBALANCE_LEADER ? "leader" : "replica";
}
