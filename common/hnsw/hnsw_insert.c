/*
 * hnsw_insert.c — adding points: the paper's Algorithm 1 (INSERT) with the
 * neighbour-selection heuristic of Algorithm 4, upserts, and the
 * multi-threaded batch insert.
 *
 * An insert works in three steps. (1) Take a slot (a free one first) and
 * write the vector, id and level into it. (2) Publish the id in the id map;
 * if the id existed, its old slot is marked deleted in the same critical
 * section, so readers see exactly one live version. (3) Link the slot into
 * every layer from its level down, as hnswlib does: the new point keeps the
 * M best neighbours chosen by the heuristic, and each of them links back,
 * re-running the heuristic over its own list when that list is full.
 *
 * Inserts run concurrently: each link list is changed only under its node
 * lock, and an insert that raises the top level holds ep_lock throughout,
 * so the entry point never names a half-linked point.
 */
#include "common/hnsw/hnsw_internal.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

/* Draws a level: floor(-ln(U) * mL), U uniform in (0, 1], from (seed, counter). */
static int random_level(struct hnsw_index *idx)
{
    uint64_t x = idx->seed + 0x9e3779b97f4a7c15ull * (atomic_fetch_add(&idx->level_counter, 1) + 1);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    double u = ((x >> 11) + 1) * 0x1.0p-53;
    int level = (int)(-log(u) * idx->mult);
    return level > HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : level;
}

/* Insertion sort for short lists, qsort otherwise; ties by slot for determinism. */
static int cand_cmp(const void *a, const void *b)
{
    const struct hnsw_cand *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

void hnsw_cand_sort(struct hnsw_cand *c, uint32_t n)
{
    if (n > 48) {
        qsort(c, n, sizeof *c, cand_cmp);
        return;
    }
    for (uint32_t i = 1; i < n; i++) {
        struct hnsw_cand v = c[i];
        uint32_t j = i;
        while (j > 0 && cand_cmp(&c[j - 1], &v) > 0) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = v;
    }
}

/* True if slot t holds a vector bit-identical to v ("a copy"). */
static inline bool is_copy(const struct hnsw_index *idx, const float *v, uint32_t t)
{
    return memcmp(v, hnsw_vec(idx, t), idx->dim * sizeof(float)) == 0;
}

/* ---------------------------------------------------------------- copy table */

/* A 32-bit hash of a stored vector's bytes (copies hash alike, as memcmp compares). */
static uint32_t vec_hash(const float *v, uint32_t dim)
{
    const unsigned char *b = (const unsigned char *)v;
    size_t n = (size_t)dim * sizeof(float), i = 0;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, b + i, 8);
        h ^= x * 0x9ddfea08eb382d69ull;
        h = ((h << 29) | (h >> 35)) * 0xff51afd7ed558ccdull;
    }
    if (i < n) {
        uint32_t x;
        memcpy(&x, b + i, 4);
        h ^= x * 0x9ddfea08eb382d69ull;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* Doubles the copy table (caller holds copy_lock); entries keep their hash, no vector is read. */
static int copy_grow(struct hnsw_index *idx)
{
    uint64_t cap = idx->copies_cap ? idx->copies_cap * 2 : 1024;
    uint64_t *t = malloc(cap * sizeof *t);
    if (!t) return HNSW_ENOMEM;
    memset(t, 0xff, cap * sizeof *t);
    for (uint64_t i = 0; i < idx->copies_cap; i++) {
        uint64_t e = idx->copies[i];
        if (e == HNSW_COPY_EMPTY) continue;
        uint64_t j = (e >> 32) & (cap - 1);
        while (t[j] != HNSW_COPY_EMPTY)
            j = (j + 1) & (cap - 1);
        t[j] = e;
    }
    free(idx->copies);
    idx->copies = t;
    idx->copies_cap = cap;
    return HNSW_OK;
}

/* Probe for s's vector; registers s when no copy is found and `add` (caller holds copy_lock). */
static uint32_t copy_probe(struct hnsw_index *idx, uint32_t s, bool add)
{
    const float *v = hnsw_vec(idx, s);
    uint32_t h = vec_hash(v, idx->dim);
    if (idx->copies_n + 1 > idx->copies_cap / 2 && copy_grow(idx)) add = false;
    if (idx->copies_cap == 0) return HNSW_NO_SLOT;
    uint64_t mask = idx->copies_cap - 1, j = h & mask;
    for (uint64_t e; (e = idx->copies[j]) != HNSW_COPY_EMPTY; j = (j + 1) & mask) {
        uint32_t t = (uint32_t)e;
        if ((uint32_t)(e >> 32) == h && t != s && is_copy(idx, v, t)) return t;
    }
    if (add && idx->copies_n + 1 <= idx->copies_cap / 2) {
        idx->copies[j] = (uint64_t)h << 32 | s;
        idx->copies_n++;
    }
    return HNSW_NO_SLOT;
}

uint32_t hnsw_copy_find_or_add(struct hnsw_index *idx, uint32_t s)
{
    pthread_mutex_lock(&idx->copy_lock);
    uint32_t t = copy_probe(idx, s, true);
    pthread_mutex_unlock(&idx->copy_lock);
    return t;
}

/*
 * Makes slot s's only twin link on layer 0 point to t (repair: chaining a
 * vector's live copies into one ring). Other twin links go (t's chain
 * reaches those copies); with no room left, t displaces the farthest link.
 */
static void ring_set(struct hnsw_index *idx, uint32_t s, uint32_t t)
{
    const float *v = hnsw_vec(idx, s), *base = v;
    uint32_t cnt, n = 0, far = HNSW_NO_SLOT;
    float fard = 0;
    hnsw_node_lock(idx, s);
    uint32_t *links = hnsw_links(idx, s, 0, &cnt);
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t x = links[i];
        if (x == t || is_copy(idx, v, x)) continue;
        float d = idx->dist(base, hnsw_vec(idx, x), idx->dim);
        if (far == HNSW_NO_SLOT || d > fard) far = n, fard = d;
        __atomic_store_n(&links[n++], x, __ATOMIC_RELAXED);
    }
    if (n == idx->Mmax0) n--, __atomic_store_n(&links[far], links[n], __ATOMIC_RELAXED);
    __atomic_store_n(&links[n++], t, __ATOMIC_RELAXED);
    hnsw_set_count(idx, s, 0, n);
    hnsw_node_unlock(idx, s);
}

int hnsw_copy_rebuild(struct hnsw_index *idx, bool relink)
{
    uint32_t nslots = atomic_load(&idx->nslots);
    int rc = HNSW_OK;
    uint32_t *head = NULL;
    pthread_mutex_lock(&idx->copy_lock);
    free(idx->copies);
    idx->copies = NULL;
    idx->copies_cap = idx->copies_n = 0;
    /* Sized up front so positions stay put (head[] is indexed by them). */
    while (rc == HNSW_OK && idx->copies_cap / 2 < (uint64_t)nslots + 1)
        rc = copy_grow(idx);
    if (rc == HNSW_OK && relink && !(head = malloc(idx->copies_cap * sizeof *head)))
        rc = HNSW_ENOMEM;
    uint64_t mask = idx->copies_cap - 1;
    for (uint32_t s = 0; s < nslots && rc == HNSW_OK; s++) {
        if (hnsw_flags(idx, s) & HNSW_FLAG_FREE) continue;
        const float *v = hnsw_vec(idx, s);
        uint32_t h = vec_hash(v, idx->dim);
        uint64_t j = h & mask, e;
        while ((e = idx->copies[j]) != HNSW_COPY_EMPTY &&
               ((uint32_t)(e >> 32) != h || !is_copy(idx, v, (uint32_t)e)))
            j = (j + 1) & mask;
        if (e == HNSW_COPY_EMPTY) {
            idx->copies_n++;
            if (head) head[j] = s;
        } else if (head) {
            ring_set(idx, (uint32_t)e, s); /* previous copy -> s */
        }
        /* The entry names the vector's latest copy (any copy would do). */
        idx->copies[j] = (uint64_t)h << 32 | s;
    }
    /* Close each chain of two or more copies: last -> first. */
    for (uint64_t j = 0; head && rc == HNSW_OK && j < idx->copies_cap; j++) {
        uint64_t e = idx->copies[j];
        if (e != HNSW_COPY_EMPTY && (uint32_t)e != head[j]) ring_set(idx, (uint32_t)e, head[j]);
    }
    free(head);
    pthread_mutex_unlock(&idx->copy_lock);
    return rc;
}

uint32_t hnsw_select_heuristic(struct hnsw_index *idx, const float *base, struct hnsw_cand *c,
                               uint32_t n, uint32_t m, bool all_twins, uint32_t *twin)
{
    uint32_t kept = 0;
    if (twin) *twin = HNSW_NO_SLOT;
    if (n == 0 || m == 0) return 0;
    /*
     * Copies of the base are its twins: the closest one (or all, when
     * re-pruning a list whose twins are ring links) is kept first, exempt
     * from the rules below (under ip a copy need not be the closest point).
     * A copy of the base is at the base's own distance, so the memcmp runs
     * only on exact float ties.
     */
    float selfd = idx->dist(base, base, idx->dim);
    for (uint32_t i = 0; i < n && kept < m; i++) {
        if (c[i].d != selfd || !is_copy(idx, base, c[i].slot)) continue;
        struct hnsw_cand t = c[i];
        memmove(c + kept + 1, c + kept, (i - kept) * sizeof *c);
        c[kept++] = t;
        if (twin && *twin == HNSW_NO_SLOT) *twin = t.slot;
        if (!all_twins) break;
    }
    /* As hnswlib: with fewer candidates than m the paper's rule prunes nothing. */
    bool prune = n >= m;
    for (uint32_t i = kept; i < n && kept < m; i++) {
        const float *v = hnsw_vec(idx, c[i].slot);
        bool good = true;
        for (uint32_t j = 0; j < kept && good; j++) {
            /* A copy of a kept point adds no direction: one link per distinct vector. */
            if (c[j].d == c[i].d && is_copy(idx, v, c[j].slot))
                good = false;
            else if (prune && idx->dist(v, hnsw_vec(idx, c[j].slot), idx->dim) < c[i].d)
                good = false;
        }
        if (good) c[kept++] = c[i];
    }
    return kept;
}

bool hnsw_add_link(struct hnsw_index *idx, uint32_t s, int l, uint32_t newslot, bool force)
{
    struct hnsw_cand c[2 * HNSW_MAX_M + 1];
    uint32_t mmax = hnsw_mmax(idx, l), cnt;
    hnsw_node_lock(idx, s);
    uint32_t *links = hnsw_links(idx, s, l, &cnt);
    for (uint32_t i = 0; i < cnt; i++) {
        if (links[i] == newslot) {
            hnsw_node_unlock(idx, s);
            return true;
        }
    }
    if (cnt < mmax) {
        links[cnt] = newslot;
        hnsw_set_count(idx, s, l, cnt + 1);
        hnsw_node_unlock(idx, s);
        return true;
    }
    const float *base = hnsw_vec(idx, s);
    for (uint32_t i = 0; i < cnt; i++) {
        c[i].slot = links[i];
        c[i].d = idx->dist(base, hnsw_vec(idx, links[i]), idx->dim);
    }
    if (force) {
        /*
         * Reconnecting an orphan: displace only the farthest link, never
         * prune a batch, and never a twin (a ring link; under ip a copy can
         * be the farthest).
         */
        float selfd = idx->dist(base, base, idx->dim);
        uint32_t far = HNSW_NO_SLOT;
        for (uint32_t i = 0; i < cnt; i++) {
            if (c[i].d == selfd && is_copy(idx, base, c[i].slot)) continue;
            if (far == HNSW_NO_SLOT || c[i].d > c[far].d) far = i;
        }
        if (far != HNSW_NO_SLOT) __atomic_store_n(&links[far], newslot, __ATOMIC_RELAXED);
        hnsw_node_unlock(idx, s);
        return far != HNSW_NO_SLOT;
    }
    c[cnt].slot = newslot;
    c[cnt].d = idx->dist(base, hnsw_vec(idx, newslot), idx->dim);
    hnsw_cand_sort(c, cnt + 1);
    uint32_t m = hnsw_select_heuristic(idx, base, c, cnt + 1, mmax, true, NULL);
    bool kept = false;
    for (uint32_t i = 0; i < m; i++) {
        __atomic_store_n(&links[i], c[i].slot, __ATOMIC_RELAXED);
        kept |= c[i].slot == newslot;
    }
    hnsw_set_count(idx, s, l, m);
    hnsw_node_unlock(idx, s);
    return kept;
}

/* Takes a slot and fills it with vec (prepared), id and level. */
static int fill_slot(struct hnsw_index *idx, uint64_t id, const float *vec, int level,
                     uint32_t *slot, char *err)
{
    pthread_mutex_lock(&idx->map_lock);
    int rc = hnsw_slot_alloc(idx, slot);
    pthread_mutex_unlock(&idx->map_lock);
    if (rc == HNSW_EFULL) return hnsw_fail(err, rc, "index is full (%u slots)", HNSW_MAX_SLOTS);
    if (rc) return hnsw_fail(err, rc, "out of memory growing the index");
    uint32_t s = *slot;
    char *e = hnsw_elem(idx, s);
    hnsw_node_lock(idx, s);
    rc = hnsw_upper_alloc(idx, s, level);
    if (rc == HNSW_OK) {
        hnsw_prepare_vector(idx, vec, hnsw_vec(idx, s));
        hnsw_sq8_encode_slot(idx, s);
        __atomic_store_n(hnsw_idp(idx, e), id, __ATOMIC_RELAXED);
        struct hnsw_hdr *h = hnsw_hdrp(idx, e);
        __atomic_store_n(&h->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->level, (uint8_t)level, __ATOMIC_RELAXED);
    }
    hnsw_node_unlock(idx, s);
    return rc ? hnsw_fail(err, rc, "out of memory for upper-layer links") : HNSW_OK;
}

/* Returns slot s to the free list after a failed insert. */
static void release_slot(struct hnsw_index *idx, uint32_t s)
{
    __atomic_store_n(&hnsw_hdrp(idx, hnsw_elem(idx, s))->flags, HNSW_FLAG_FREE, __ATOMIC_RELEASE);
    pthread_mutex_lock(&idx->map_lock);
    if (idx->nfree < idx->free_cap)
        idx->free_slots[idx->nfree++] = s; /* else the slot is leaked, not corrupted */
    pthread_mutex_unlock(&idx->map_lock);
}

/* Publishes id -> s, marking a replaced slot deleted. */
static int publish(struct hnsw_index *idx, uint64_t id, uint32_t s, char *err)
{
    uint32_t old;
    pthread_mutex_lock(&idx->map_lock);
    int rc = hnsw_map_put(&idx->map, id, s, &old);
    if (rc == HNSW_OK) {
        /* A reused slot was FREE until now: it becomes live in this step. */
        __atomic_store_n(&hnsw_hdrp(idx, hnsw_elem(idx, s))->flags, 0, __ATOMIC_RELEASE);
        if (old != HNSW_NO_SLOT) {
            __atomic_store_n(&hnsw_hdrp(idx, hnsw_elem(idx, old))->flags, HNSW_FLAG_DELETED,
                             __ATOMIC_RELEASE);
            atomic_fetch_add(&idx->ndeleted, 1);
        }
    }
    pthread_mutex_unlock(&idx->map_lock);
    return rc ? hnsw_fail(err, rc, "out of memory growing the id map") : HNSW_OK;
}

/*
 * Copies of one vector on layer 0 form a ring through their twin links:
 * new copy p is spliced in after its twin q, so q -> p -> r where r was
 * q's twin (lists elsewhere keep one copy of each distinct vector, so
 * without the ring most copies would have no in-link at all). This step,
 * under q's lock, turns q's first twin link r into p and returns r, or
 * HNSW_NO_SLOT when q had none (p is then added like any back-link). The
 * caller writes p -> r next (set_own_links keeps whatever others linked
 * from p meanwhile), so r is never left without its ring in-link.
 *
 * One ring per vector, whatever the interleaving: every copy but its
 * vector's first joins the ring of a copy it found — the search's twin, or
 * else the one the copy table names (registered before the copy links, so
 * also while that copy is still being linked by another thread) — so by
 * induction all copies of a vector join the first one's ring. Relying on
 * the search alone split rings: under ip a search can miss every copy, and
 * a copy being linked concurrently is not reachable yet; the second ring
 * then had no in-link from the first and a k-search missed its copies.
 */
static uint32_t ring_take(struct hnsw_index *idx, uint32_t q, uint32_t p)
{
    uint32_t cnt, r = HNSW_NO_SLOT;
    const float *v = hnsw_vec(idx, q);
    hnsw_node_lock(idx, q);
    uint32_t *links = hnsw_links(idx, q, 0, &cnt);
    for (uint32_t i = 0; i < cnt && r == HNSW_NO_SLOT; i++) {
        if (links[i] != p && is_copy(idx, v, links[i])) {
            r = links[i];
            __atomic_store_n(&links[i], p, __ATOMIC_RELAXED);
        }
    }
    hnsw_node_unlock(idx, q);
    if (r == HNSW_NO_SLOT) hnsw_add_link(idx, q, 0, p, false);
    return r;
}

/*
 * Writes the new point's own list on layer l: the m selected, then (while
 * there is room) links other inserts added meanwhile — they found s on a
 * higher layer and linked back to it on this one; overwriting those would
 * leave their points, a copy's ring above all, without that in-link.
 */
static void set_own_links(struct hnsw_index *idx, uint32_t s, int l, const struct hnsw_cand *c,
                          uint32_t m)
{
    uint32_t cnt, mmax = hnsw_mmax(idx, l), keep[2 * HNSW_MAX_M], nkeep = 0;
    const float *v = hnsw_vec(idx, s);
    hnsw_node_lock(idx, s);
    uint32_t *links = hnsw_links(idx, s, l, &cnt);
    /* Twins first (pass 0: ring links on layer 0), then the rest, while there is room. */
    for (int pass = l == 0 ? 0 : 1; pass < 2; pass++) {
        for (uint32_t i = 0; i < cnt && m + nkeep < mmax; i++) {
            bool dup = false;
            for (uint32_t j = 0; j < m && !dup; j++)
                dup = c[j].slot == links[i];
            if (!dup && l == 0) dup = is_copy(idx, v, links[i]) != (pass == 0);
            if (!dup) keep[nkeep++] = links[i];
        }
    }
    for (uint32_t i = 0; i < m; i++)
        links[i] = c[i].slot;
    for (uint32_t i = 0; i < nkeep; i++)
        links[m + i] = keep[i];
    hnsw_set_count(idx, s, l, m + nkeep);
    hnsw_node_unlock(idx, s);
}

/* Links slot s (vector q, level `level`) into the graph: Algorithm 1. */
static int link_slot(struct hnsw_index *idx, uint32_t s, const float *q, int level, char *err)
{
    uint32_t ep;
    int top;
    bool hold = false;
    /*
     * An earlier copy of q from the copy table (HNSW_NO_SLOT when q is its
     * vector's first): the ring to join when the search finds no copy.
     */
    uint32_t copy = hnsw_copy_find_or_add(idx, s);
    hnsw_entry_get(idx, &ep, &top);
    if (level > top) {
        pthread_mutex_lock(&idx->ep_lock);
        hold = true;
        hnsw_entry_get(idx, &ep, &top);
    }
    if (top < 0) {
        atomic_store_explicit(&idx->entry, hnsw_entry_make(s, level), memory_order_release);
        pthread_mutex_unlock(&idx->ep_lock);
        return HNSW_OK;
    }
    struct hnsw_scratch *sc = hnsw_scratch_get(idx, idx->efc);
    if (!sc) {
        if (hold) pthread_mutex_unlock(&idx->ep_lock);
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory for insert scratch");
    }
    /*
     * Under SQ8 the layer searches run on codes; their candidates are then
     * re-scored on floats, so neighbour selection sees exact distances.
     */
    struct hnsw_query pq;
    hnsw_query_prepare(idx, q, sc->qsq, &pq);
    float d = hnsw_qdist(idx, &pq, ep);
    uint32_t cur = ep;
    if (level < top) cur = hnsw_greedy(idx, &pq, ep, top, level, &d, sc->vcap);
    for (int l = level < top ? level : top; l >= 0; l--) {
        hnsw_search_layer(idx, &pq, cur, d, l, idx->efc, NULL, NULL, s, true, sc);
        uint32_t n = sc->top.n;
        if (n == 0) continue;
        /*
         * The candidate heap is spent: reuse its memory for the list, sorted
         * by popping the result max-heap from the back (qsort with a
         * comparator callback cost ~7% of build time).
         */
        struct hnsw_cand *c = sc->cand.v;
        for (uint32_t i = n; i-- > 0;) {
            c[i] = sc->top.v[0];
            hnsw_maxheap_pop(&sc->top);
        }
        if (pq.sq) {
            /* The entry of the next layer down keeps its code distance. */
            cur = c[0].slot;
            d = c[0].d;
            for (uint32_t i = 0; i < n; i++)
                c[i].d = idx->dist(q, hnsw_vec(idx, c[i].slot), idx->dim);
            hnsw_cand_sort(c, n);
        } else {
            cur = c[0].slot;
            d = c[0].d;
        }
        uint32_t twin;
        uint32_t m = hnsw_select_heuristic(idx, q, c, n, idx->M, false, &twin);
        uint32_t first = 0, own = m;
        if (l == 0 && twin != HNSW_NO_SLOT) {
            /* c[0] is the twin: splice s into its ring instead of a back-link. */
            uint32_t r = ring_take(idx, twin, s);
            if (r != HNSW_NO_SLOT) c[0].slot = r;
            first = 1;
        } else if (l == 0 && copy != HNSW_NO_SLOT) {
            /*
             * The search found no copy of s, but one exists (under ip copies
             * need not be among the nearest points; or it is still being
             * linked by a concurrent insert and not yet reachable): join its
             * ring, with the ring link after s's selection.
             */
            uint32_t r = ring_take(idx, copy, s);
            c[own].slot = r != HNSW_NO_SLOT ? r : copy;
            c[own++].d = idx->dist(q, hnsw_vec(idx, copy), idx->dim);
        }
        set_own_links(idx, s, l, c, own);
        bool linked = first > 0 || own > m;
        for (uint32_t i = first; i < m; i++)
            linked |= hnsw_add_link(idx, c[i].slot, l, s, false);
        /*
         * Every neighbour pruned the back-link (common when many points tie
         * in distance): force one on layer 0 so s is not born unreachable.
         */
        if (l == 0 && !linked && m > 0) hnsw_add_link(idx, c[0].slot, 0, s, true);
    }
    hnsw_scratch_put(idx, sc);
    if (level > top)
        atomic_store_explicit(&idx->entry, hnsw_entry_make(s, level), memory_order_release);
    if (hold) pthread_mutex_unlock(&idx->ep_lock);
    return HNSW_OK;
}

int hnsw_insert_one(struct hnsw_index *idx, uint64_t id, const float *vec, char *err)
{
    int level = random_level(idx);
    uint32_t s;
    int rc = fill_slot(idx, id, vec, level, &s, err);
    if (rc) return rc;
    rc = publish(idx, id, s, err);
    if (rc) {
        release_slot(idx, s);
        return rc;
    }
    /* Linking only fails for scratch memory; the point stays findable by get. */
    return link_slot(idx, s, hnsw_vec(idx, s), level, err);
}

int hnsw_insert(struct hnsw_index *idx, uint64_t id, const float *vec, char *err)
{
    int rc = hnsw_check_vector(idx, vec, "vector", err);
    if (rc) return rc;
    pthread_rwlock_rdlock(&idx->mutation_lock);
    rc = hnsw_insert_one(idx, id, vec, err);
    pthread_rwlock_unlock(&idx->mutation_lock);
    if (rc == HNSW_OK) hnsw_sq8_train_if_due(idx, NULL, 0);
    return rc;
}

/* Shared state of a batch insert's workers. */
struct batch {
    struct hnsw_index *idx;
    const uint64_t *ids;
    const float *vecs;
    const uint8_t *skip; /* rows superseded by a later row with the same id */
    size_t n;
    atomic_size_t next;
    atomic_int rc;
    char err[HNSW_ERR_MAX];
    pthread_mutex_t err_lock;
};

/* Worker: inserts rows taken from the shared counter until done or failed. */
static void *batch_worker(void *arg)
{
    struct batch *b = arg;
    char err[HNSW_ERR_MAX];
    for (;;) {
        size_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->n || atomic_load(&b->rc)) break;
        if (b->skip && b->skip[i]) continue;
        int rc = hnsw_insert_one(b->idx, b->ids[i], b->vecs + i * b->idx->dim, err);
        if (rc) {
            pthread_mutex_lock(&b->err_lock);
            if (!atomic_load(&b->rc)) {
                int w = snprintf(b->err, sizeof b->err, "row %zu: ", i);
                snprintf(b->err + w, sizeof b->err - (size_t)w, "%.200s", err);
                atomic_store(&b->rc, rc);
            }
            pthread_mutex_unlock(&b->err_lock);
        }
    }
    return NULL;
}

/* Marks rows whose id occurs again later; *skip stays NULL when all are distinct. */
static int find_duplicates(const uint64_t *ids, size_t n, uint8_t **skip)
{
    struct hnsw_idmap m = {0};
    *skip = NULL;
    int rc = hnsw_map_reserve(&m, n);
    for (size_t i = 0; rc == HNSW_OK && i < n; i++) {
        uint32_t prev;
        rc = hnsw_map_put(&m, ids[i], (uint32_t)i, &prev);
        if (rc == HNSW_OK && prev != HNSW_NO_SLOT) {
            if (!*skip && !(*skip = calloc(n, 1)))
                rc = HNSW_ENOMEM;
            else
                (*skip)[prev] = 1;
        }
    }
    free(m.keys);
    free(m.vals);
    return rc;
}

int hnsw_insert_batch(struct hnsw_index *idx, const uint64_t *ids, const float *vecs, size_t n,
                      int threads, char *err)
{
    if (n == 0) return HNSW_OK;
    if (!ids || !vecs) return hnsw_fail(err, HNSW_EINVAL, "ids and vectors are required");
    if (n >= HNSW_MAX_SLOTS)
        return hnsw_fail(err, HNSW_EINVAL, "batch of %zu points is too large", n);
    for (size_t i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "vectors[%zu]", i);
        int rc = hnsw_check_vector(idx, vecs + i * idx->dim, what, err);
        if (rc) return rc;
    }
    struct batch b = {.idx = idx, .ids = ids, .vecs = vecs, .n = n};
    if (find_duplicates(ids, n, (uint8_t **)&b.skip))
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory checking batch ids");
    pthread_mutex_init(&b.err_lock, NULL);
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if ((size_t)threads > n) threads = (int)n;
    /* Train on the batch too, so a bulk load is coded and built on codes from its first row. */
    hnsw_sq8_train_if_due(idx, vecs, n);

    pthread_rwlock_rdlock(&idx->mutation_lock);
    pthread_mutex_lock(&idx->map_lock);
    int rc = hnsw_map_reserve(&idx->map, idx->map.n + n);
    pthread_mutex_unlock(&idx->map_lock);
    if (rc == HNSW_OK) {
        pthread_t *tids = calloc((size_t)threads, sizeof *tids);
        int started = 0;
        while (tids && started < threads - 1 &&
               pthread_create(&tids[started], NULL, batch_worker, &b) == 0)
            started++;
        batch_worker(&b); /* the calling thread works too */
        for (int t = 0; t < started; t++)
            pthread_join(tids[t], NULL);
        free(tids);
        rc = atomic_load(&b.rc);
        if (rc && err) snprintf(err, HNSW_ERR_MAX, "%s", b.err);
        /*
         * Pruning of back-links can leave a point with no in-link (hnswlib
         * has the same weakness). After a bulk load, a layer-0 sweep (~N*2M
         * reads) reconnects such points; smaller batches leave it to
         * hnsw_repair, whose cost they would otherwise pay every time. The
         * sweep is best effort and never fails the batch: its points are in.
         */
        if (rc == HNSW_OK && n * 8 >= atomic_load(&idx->nslots)) hnsw_fix_reachability(idx);
    } else {
        hnsw_fail(err, rc, "out of memory growing the id map");
    }
    pthread_rwlock_unlock(&idx->mutation_lock);
    pthread_mutex_destroy(&b.err_lock);
    free((void *)b.skip);
    return rc;
}
