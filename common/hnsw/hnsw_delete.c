/*
 * hnsw_delete.c — deletes, and the repair that unlinks deleted points.
 *
 * A delete is immediate and cheap: the id leaves the id map and its slot is
 * flagged DELETED, so no search returns it from then on, but the slot stays
 * linked and keeps guiding searches through its neighbourhood (hnswlib's
 * markDelete). Recall over the remaining points degrades slowly as deleted
 * points pile up, because they take room in link lists.
 *
 * hnsw_repair restores it, in the spirit of pgvector's vacuum: every live
 * point that links to a deleted one gets a new list chosen by the Algorithm 4
 * heuristic from its live neighbours plus the live neighbours of its deleted
 * neighbours; a deleted entry point is replaced by the highest live point;
 * the deleted slots are then cleared, flagged FREE and handed to later
 * inserts. A final pass (hnsw_fix_reachability) reconnects any live point
 * that lost every in-link, so the graph stays fully reachable.
 *
 * Alternatives tried and why they lost: re-inserting every affected point
 * (a full search per point) cost ~6x more time for no measurable recall
 * gain; taking only the live neighbours (no two-hop candidates) left points
 * whose neighbours were all deleted with empty lists.
 */
#include "common/hnsw/hnsw_internal.h"

#include <stdlib.h>
#include <unistd.h>

int hnsw_delete(struct hnsw_index *idx, uint64_t id)
{
    pthread_rwlock_rdlock(&idx->mutation_lock);
    pthread_mutex_lock(&idx->map_lock);
    uint32_t s = hnsw_map_remove(&idx->map, id);
    if (s != HNSW_NO_SLOT) {
        __atomic_store_n(&hnsw_hdrp(idx, hnsw_elem(idx, s))->flags, HNSW_FLAG_DELETED,
                         __ATOMIC_RELEASE);
        atomic_fetch_add(&idx->ndeleted, 1);
    }
    pthread_mutex_unlock(&idx->map_lock);
    pthread_rwlock_unlock(&idx->mutation_lock);
    return s == HNSW_NO_SLOT ? HNSW_ENOTFOUND : HNSW_OK;
}

/* Shared state of the repair workers. */
struct repair {
    struct hnsw_index *idx;
    uint32_t nslots;
    atomic_uint next; /* next block of slots to take */
    atomic_int rc;
};

#define REPAIR_BLOCK 256

/* Re-links slot u on layer l if its list names a deleted point. */
static void repair_list(struct hnsw_index *idx, uint32_t u, int l, struct hnsw_cand *c,
                        uint32_t *seen)
{
    uint32_t cnt, mmax = hnsw_mmax(idx, l);
    uint32_t *links = hnsw_links(idx, u, l, &cnt);
    bool dirty = false;
    for (uint32_t i = 0; i < cnt && !dirty; i++)
        dirty = hnsw_flags(idx, links[i]) != 0;
    if (!dirty) return;

    /* Candidates: live neighbours, and live neighbours of deleted neighbours. */
    uint32_t n = 0, nseen = 0;
    const float *base = hnsw_vec(idx, u);
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t t = links[i];
        uint32_t tc = 1, *tl = &links[i];
        if (hnsw_flags(idx, t) != 0)
            tl = hnsw_level(idx, t) >= l ? hnsw_links(idx, t, l, &tc) : NULL;
        for (uint32_t j = 0; tl && j < tc; j++) {
            uint32_t x = tl[j];
            if (x == u || hnsw_flags(idx, x) != 0) continue;
            bool dup = false;
            for (uint32_t k = 0; k < nseen && !dup; k++)
                dup = seen[k] == x;
            if (dup) continue;
            seen[nseen++] = x;
            c[n].slot = x;
            c[n].d = idx->dist(base, hnsw_vec(idx, x), idx->dim);
            n++;
        }
    }
    hnsw_cand_sort(c, n);
    uint32_t m = hnsw_select_heuristic(idx, base, c, n, mmax, true, NULL);
    if (m > mmax) m = mmax;
    hnsw_node_lock(idx, u);
    for (uint32_t i = 0; i < m; i++)
        __atomic_store_n(&links[i], c[i].slot, __ATOMIC_RELAXED);
    hnsw_set_count(idx, u, l, m);
    hnsw_node_unlock(idx, u);
}

/* Worker: repairs the lists of live slots, a block at a time. */
static void *repair_worker(void *arg)
{
    struct repair *r = arg;
    struct hnsw_index *idx = r->idx;
    size_t room = (size_t)idx->Mmax0 * (idx->Mmax0 + 1);
    struct hnsw_cand *c = malloc(room * sizeof *c);
    uint32_t *seen = malloc(room * sizeof *seen);
    if (!c || !seen) {
        atomic_store(&r->rc, HNSW_ENOMEM);
        goto out;
    }
    for (;;) {
        uint32_t b = atomic_fetch_add(&r->next, REPAIR_BLOCK);
        if (b >= r->nslots) break;
        uint32_t e = b + REPAIR_BLOCK < r->nslots ? b + REPAIR_BLOCK : r->nslots;
        for (uint32_t u = b; u < e; u++) {
            if (hnsw_flags(idx, u) != 0) continue;
            for (int l = hnsw_level(idx, u); l >= 0; l--)
                repair_list(idx, u, l, c, seen);
        }
    }
out:
    free(c);
    free(seen);
    return NULL;
}

/* Runs fn on `threads` threads (the caller's included) over r. */
static void run_workers(void *(*fn)(void *), void *r, int threads)
{
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t tids[64];
    int started = 0;
    while (started < threads - 1 && started < 64 &&
           pthread_create(&tids[started], NULL, fn, r) == 0)
        started++;
    fn(r);
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
}

/* Picks a new entry point when the current one is deleted. */
static void replace_entry(struct hnsw_index *idx, uint32_t nslots)
{
    uint32_t ep;
    int top;
    hnsw_entry_get(idx, &ep, &top);
    if (top >= 0 && hnsw_flags(idx, ep) == 0) return;
    uint32_t best = HNSW_NO_SLOT;
    int best_level = -1;
    for (uint32_t s = 0; s < nslots; s++) {
        if (hnsw_flags(idx, s) == 0 && hnsw_level(idx, s) > best_level) {
            best_level = hnsw_level(idx, s);
            best = s;
        }
    }
    atomic_store(&idx->entry, best == HNSW_NO_SLOT ? 0 : hnsw_entry_make(best, best_level));
}

/* Clears every deleted slot and moves it to the free list. */
static int free_deleted(struct hnsw_index *idx, uint32_t nslots)
{
    pthread_mutex_lock(&idx->map_lock);
    uint64_t need = idx->nfree + atomic_load(&idx->ndeleted);
    if (need > idx->free_cap) {
        uint32_t *f = realloc(idx->free_slots, need * sizeof *f);
        if (!f) {
            pthread_mutex_unlock(&idx->map_lock);
            return HNSW_ENOMEM;
        }
        idx->free_slots = f;
        idx->free_cap = need;
    }
    for (uint32_t s = 0; s < nslots; s++) {
        if (hnsw_flags(idx, s) != HNSW_FLAG_DELETED) continue;
        for (int l = hnsw_level(idx, s); l >= 0; l--)
            hnsw_set_count(idx, s, l, 0);
        __atomic_store_n(&hnsw_hdrp(idx, hnsw_elem(idx, s))->flags, HNSW_FLAG_FREE,
                         __ATOMIC_RELEASE);
        idx->free_slots[idx->nfree++] = s;
    }
    atomic_store(&idx->ndeleted, 0);
    pthread_mutex_unlock(&idx->map_lock);
    return HNSW_OK;
}

int hnsw_repair(struct hnsw_index *idx, int threads, char *err)
{
    pthread_rwlock_wrlock(&idx->mutation_lock);
    uint32_t nslots = atomic_load(&idx->nslots);
    int rc = HNSW_OK;
    if (atomic_load(&idx->ndeleted) > 0) {
        struct repair r = {.idx = idx, .nslots = nslots};
        run_workers(repair_worker, &r, threads);
        rc = atomic_load(&r.rc);
        if (rc == HNSW_OK) {
            replace_entry(idx, nslots);
            rc = free_deleted(idx, nslots);
            /* Freed slots leave the copy table; their vectors' other copies take over. */
            if (rc == HNSW_OK) rc = hnsw_copy_rebuild(idx, true);
        }
    }
    if (rc == HNSW_OK)
        hnsw_fix_reachability(idx); /* best effort: hnsw_check reports what it leaves */
    else
        hnsw_fail(err, rc, "out of memory during repair");
    pthread_rwlock_unlock(&idx->mutation_lock);
    return rc;
}

/* Marks in `reached` every slot reachable on layer 0 from the entry point; returns the count. */
static uint32_t reach_layer0(struct hnsw_index *idx, uint32_t nslots, uint8_t *reached,
                             uint32_t *queue)
{
    uint32_t ep;
    int top;
    memset(reached, 0, nslots);
    hnsw_entry_get(idx, &ep, &top);
    if (top < 0) return 0;
    uint32_t head = 0, tail = 0;
    queue[tail++] = ep;
    reached[ep] = 1;
    while (head < tail) {
        uint32_t cnt, *links = hnsw_links(idx, queue[head++], 0, &cnt);
        for (uint32_t i = 0; i < cnt; i++) {
            uint32_t t = links[i];
            if (t < nslots && !reached[t]) {
                reached[t] = 1;
                queue[tail++] = t;
            }
        }
    }
    return tail;
}

/* Appends u to slot s's layer-0 list if it has room; true if u is linked from s. */
static bool append_link(struct hnsw_index *idx, uint32_t s, uint32_t u)
{
    uint32_t cnt;
    bool done = false;
    hnsw_node_lock(idx, s);
    uint32_t *links = hnsw_links(idx, s, 0, &cnt);
    for (uint32_t i = 0; i < cnt && !done; i++)
        done = links[i] == u;
    if (!done && cnt < idx->Mmax0) {
        links[cnt] = u;
        hnsw_set_count(idx, s, 0, cnt + 1);
        done = true;
    }
    hnsw_node_unlock(idx, s);
    return done;
}

/*
 * Gives unreachable slot u in-links from its nearest points that have room
 * in their lists (two of them), or else displaces the farthest link of its
 * nearest point. Room matters under ip, where many orphans share the same
 * few nearest points and displacing would just orphan the previous one.
 */
static void reconnect(struct hnsw_index *idx, uint32_t u, const uint8_t *reached,
                      struct hnsw_scratch *sc)
{
    uint32_t ep;
    int top;
    hnsw_entry_get(idx, &ep, &top);
    struct hnsw_query q = hnsw_query_float(hnsw_vec(idx, u));
    float d = hnsw_qdist(idx, &q, ep);
    uint32_t cur = hnsw_greedy(idx, &q, ep, top, 0, &d, sc->vcap);
    hnsw_search_layer(idx, &q, cur, d, 0, idx->efc, NULL, NULL, u, true, sc);
    uint32_t n = sc->top.n, linked = 0, first = HNSW_NO_SLOT;
    struct hnsw_cand *c = sc->cand.v;
    memcpy(c, sc->top.v, n * sizeof *c);
    hnsw_cand_sort(c, n);
    for (uint32_t i = 0; i < n && linked < 2; i++) {
        if (!reached[c[i].slot]) continue;
        if (first == HNSW_NO_SLOT) first = c[i].slot;
        linked += append_link(idx, c[i].slot, u);
    }
    if (linked == 0 && first != HNSW_NO_SLOT) hnsw_add_link(idx, first, 0, u, true);
}

uint64_t hnsw_fix_reachability(struct hnsw_index *idx)
{
    uint32_t nslots = atomic_load(&idx->nslots);
    if (nslots == 0) return 0;
    uint8_t *reached = malloc(nslots);
    uint32_t *queue = malloc((size_t)nslots * sizeof *queue);
    struct hnsw_scratch *sc = hnsw_scratch_get(idx, idx->efc);
    uint64_t left = UINT64_MAX;
    if (!reached || !queue || !sc) goto out;
    /* A forced in-link can displace another point's last in-link: go again, a few times. */
    for (int round = 0; round <= HNSW_RECONNECT_ROUNDS; round++) {
        uint32_t live = 0;
        reach_layer0(idx, nslots, reached, queue);
        for (uint32_t s = 0; s < nslots; s++)
            live += hnsw_flags(idx, s) == 0 && !reached[s];
        left = live;
        if (live == 0 || round == HNSW_RECONNECT_ROUNDS) break;
        for (uint32_t s = 0; s < nslots; s++)
            if (!reached[s] && hnsw_flags(idx, s) == 0) reconnect(idx, s, reached, sc);
    }
out:
    if (sc) hnsw_scratch_put(idx, sc);
    free(reached);
    free(queue);
    return left;
}
