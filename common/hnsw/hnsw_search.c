/*
 * hnsw_search.c — k-NN search: the greedy descent through the upper layers,
 * the layer search of the paper's Algorithm 2 (shared with inserts), and the
 * exact scan used as the reference by tests and recall checks.
 *
 * The layer search is where queries spend their time, so it is written for
 * the memory system: each expanded point's neighbours are first filtered
 * against the visited tags (prefetched together), then their distances are
 * computed with the next vector prefetched, and only then touch the heaps.
 * Scratch (visited tags, heaps) comes from a pool; nothing is allocated per
 * search once the pool is warm.
 */
#include "common/hnsw/hnsw_internal.h"

/* Candidates re-ranked on floats per result wanted (see rerank). */
#define HNSW_RERANK_FACTOR 3

#include <math.h>
#include <stdlib.h>

/* Prefetches the first lines of slot s's vector. */
static inline void prefetch_vec(const struct hnsw_index *idx, uint32_t s)
{
    const char *v = (const char *)hnsw_vec(idx, s);
    __builtin_prefetch(v, 0, 3);
    __builtin_prefetch(v + 64, 0, 3);
}

/* Prefetches what hnsw_qdist(q, s) reads first: the code under SQ8, else the vector. */
static inline void prefetch_point(const struct hnsw_index *idx, const struct hnsw_query *q,
                                  uint32_t s)
{
    if (!q->sq) {
        prefetch_vec(idx, s);
        return;
    }
    const char *c = (const char *)hnsw_code(idx, s);
    __builtin_prefetch(c, 0, 3);
    __builtin_prefetch(c + 64, 0, 3);
    /* l2 reads the norm after the code: at 128-d it is on a third line. */
    __builtin_prefetch(c + idx->norm_off, 0, 3);
}

/* hnsw_greedy that never steps onto slot `hidden`. */
static uint32_t greedy_hiding(struct hnsw_index *idx, const struct hnsw_query *q, uint32_t ep,
                              int top, int stop, float *ep_dist, uint32_t bound, uint32_t hidden)
{
    uint32_t cur = ep;
    float curd = *ep_dist;
    for (int l = top; l > stop; l--) {
        bool changed = true;
        while (changed) {
            changed = false;
            if (hnsw_level(idx, cur) < l || !hnsw_upper(idx, cur)) break;
            uint32_t cnt;
            uint32_t *links = hnsw_links(idx, cur, l, &cnt);
            if (cnt > idx->M) cnt = idx->M;
            for (uint32_t i = 0; i < cnt; i++) {
                uint32_t s = __atomic_load_n(&links[i], __ATOMIC_RELAXED);
                if (s >= bound || s == hidden) continue;
                float d = hnsw_qdist(idx, q, s);
                if (d < curd) {
                    curd = d;
                    cur = s;
                    changed = true;
                }
            }
        }
    }
    *ep_dist = curd;
    return cur;
}


uint32_t hnsw_greedy(struct hnsw_index *idx, const struct hnsw_query *q, uint32_t ep, int top,
                     int stop, float *ep_dist, uint32_t bound)
{
    return greedy_hiding(idx, q, ep, top, stop, ep_dist, bound, HNSW_NO_SLOT);
}

/* True if slot s may be a result: not deleted or free, not skipped, and allowed by the filter. */
static inline bool accept(struct hnsw_index *idx, uint32_t s, hnsw_filter_fn filter, void *fctx,
                          uint32_t skip)
{
    if (s == skip) return false;
    char *e = hnsw_elem(idx, s);
    if (__atomic_load_n(&hnsw_hdrp(idx, e)->flags, __ATOMIC_ACQUIRE)) return false;
    return !filter || filter(*hnsw_idp(idx, e), fctx);
}

void hnsw_search_layer(struct hnsw_index *idx, const struct hnsw_query *q, uint32_t ep,
                       float ep_dist, int l, uint32_t ef, hnsw_filter_fn filter, void *fctx,
                       uint32_t skip, bool locked, struct hnsw_scratch *sc)
{
    struct hnsw_heap *top = &sc->top, *cand = &sc->cand;
    uint16_t *vis = sc->visited;
    uint32_t vcap = sc->vcap;
    uint32_t mmax = hnsw_mmax(idx, l);
    /*
     * With no deleted or free slots and no filter every visited point but
     * `skip` is a result, and its header (a cache miss per candidate:
     * measured ~45% of the layer search while building) need not be read.
     */
    bool check = filter || atomic_load(&idx->ndeleted) ||
                 __atomic_load_n(&idx->nfree, __ATOMIC_RELAXED);

    hnsw_scratch_new_visit(sc);
    uint16_t tag = sc->tag;
    top->n = cand->n = 0;
    if (sc->hidden < vcap) vis[sc->hidden] = tag;
    vis[ep] = tag;
    hnsw_minheap_push(cand, ep_dist, ep);
    if (check ? accept(idx, ep, filter, fctx, skip) : ep != skip)
        hnsw_maxheap_push(top, ep_dist, ep);
    float bound = top->n ? top->v[0].d : INFINITY;

    while (cand->n) {
        struct hnsw_cand c = cand->v[0];
        if (c.d > bound && top->n >= ef) break;
        hnsw_minheap_pop(cand);

        uint32_t cnt, *links, *ids = sc->ids, m = 0;
        if (locked) hnsw_node_lock(idx, c.slot);
        if (l > 0 && (hnsw_level(idx, c.slot) < l || !hnsw_upper(idx, c.slot))) {
            cnt = 0;
            links = ids;
        } else {
            links = hnsw_links(idx, c.slot, l, &cnt);
        }
        if (cnt > mmax) cnt = mmax;
        for (uint32_t i = 0; i < cnt; i++) {
            uint32_t s = __atomic_load_n(&links[i], __ATOMIC_RELAXED);
            __builtin_prefetch(vis + (s < vcap ? s : 0));
            ids[i] = s;
        }
        if (locked) hnsw_node_unlock(idx, c.slot);
        for (uint32_t i = 0; i < cnt; i++) {
            uint32_t s = ids[i];
            if (s >= vcap || vis[s] == tag) continue;
            vis[s] = tag;
            ids[m++] = s;
        }
        if (m == 0) continue;
        if (cand->n + m > cand->cap && hnsw_heap_reserve(cand, cand->n + m))
            m = cand->cap - cand->n; /* out of memory: explore fewer */
        for (uint32_t i = 0; i < m && i < 4; i++)
            prefetch_point(idx, q, ids[i]);
        for (uint32_t i = 0; i < m; i++) {
            uint32_t s = ids[i];
            if (i + 4 < m) prefetch_point(idx, q, ids[i + 4]);
            float d = hnsw_qdist(idx, q, s);
            if (top->n < ef || d < bound) {
                hnsw_minheap_push(cand, d, s);
                if (check ? accept(idx, s, filter, fctx, skip) : s != skip) {
                    hnsw_maxheap_push(top, d, s);
                    if (top->n > ef) hnsw_maxheap_pop(top);
                    bound = top->v[0].d;
                }
            }
        }
    }
}

/* Validates k and ef; shared by both searches. */
static int check_query(struct hnsw_index *idx, const float *query, uint32_t k, char *err)
{
    if (k < 1 || k > HNSW_MAX_K)
        return hnsw_fail(err, HNSW_EINVAL, "k must be in 1..%d, got %u", HNSW_MAX_K, k);
    return hnsw_check_vector(idx, query, "query", err);
}

/* Moves the best k of the max-heap `top` to out, closest first; returns how many. */
static uint32_t emit_results(struct hnsw_index *idx, struct hnsw_heap *top, uint32_t k,
                             struct hnsw_result *out)
{
    while (top->n > k)
        hnsw_maxheap_pop(top);
    /* Popped farthest first; a non-finite distance (never from valid vectors) is dropped. */
    uint32_t n = top->n, w = n;
    for (uint32_t i = n; i-- > 0;) {
        if (isfinite(top->v[0].d)) {
            w--;
            out[w].dist = top->v[0].d;
            out[w].id = *hnsw_idp(idx, hnsw_elem(idx, top->v[0].slot));
        }
        hnsw_maxheap_pop(top);
    }
    if (w > 0) memmove(out, out + w, (n - w) * sizeof *out);
    return n - w;
}

/*
 * SQ8: replaces the code distances of the best HNSW_RERANK_FACTOR * k
 * candidates in the max-heap `top` with float distances to q and keeps the
 * best k. Re-ranking all ef of them measured the same recall on synth200k
 * (0.9632 at ef 96, 0.9942 at 192) and ~10 % fewer QPS: past 3k, the float
 * reads cost more than the order they could still fix.
 */
static void rerank(struct hnsw_index *idx, const float *q, struct hnsw_heap *top, uint32_t k)
{
    /* Only the best HNSW_RERANK_FACTOR * k by code distance hold the exact top k. */
    while (top->n > HNSW_RERANK_FACTOR * k)
        hnsw_maxheap_pop(top);
    uint32_t n = top->n;
    struct hnsw_cand *c = top->v;
    for (uint32_t i = 0; i < n && i < 4; i++)
        prefetch_vec(idx, c[i].slot);
    for (uint32_t i = 0; i < n; i++) {
        if (i + 4 < n) prefetch_vec(idx, c[i + 4].slot);
        c[i].d = idx->dist(q, hnsw_vec(idx, c[i].slot), idx->dim);
    }
    /* Re-heapify in place: the array is a valid heap of its first i entries as it grows. */
    top->n = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct hnsw_cand x = c[i];
        if (top->n < k) {
            hnsw_maxheap_push(top, x.d, x.slot);
        } else if (x.d < top->v[0].d) {
            hnsw_maxheap_pop(top);
            hnsw_maxheap_push(top, x.d, x.slot);
        }
    }
}

/* hnsw_search's body; `hidden` as in hnsw_search_hiding. */
static int search(struct hnsw_index *idx, const float *query, uint32_t k, uint32_t ef,
                  hnsw_filter_fn filter, void *filter_ctx, uint32_t hidden,
                  struct hnsw_result *out, uint32_t *nout, char *err)
{
    *nout = 0;
    int rc = check_query(idx, query, k, err);
    if (rc) return rc;
    if (ef > HNSW_MAX_EF)
        return hnsw_fail(err, HNSW_EINVAL, "ef must be at most %d, got %u", HNSW_MAX_EF, ef);
    if (ef < k) ef = k;
    uint32_t ep;
    int top;
    hnsw_entry_get(idx, &ep, &top);
    if (top < 0) return HNSW_OK;
    struct hnsw_scratch *sc = hnsw_scratch_get(idx, ef);
    if (!sc) return hnsw_fail(err, HNSW_ENOMEM, "out of memory for search scratch");
    const float *qv = query;
    if (idx->metric == HNSW_METRIC_COSINE) {
        hnsw_prepare_vector(idx, query, sc->query);
        qv = sc->query;
    }
    struct hnsw_query q;
    hnsw_query_prepare(idx, qv, sc->qsq, &q);
    float d = hnsw_qdist(idx, &q, ep);
    uint32_t cur = greedy_hiding(idx, &q, ep, top, 0, &d, sc->vcap, hidden);
    sc->hidden = hidden;
    hnsw_search_layer(idx, &q, cur, d, 0, ef, filter, filter_ctx, HNSW_NO_SLOT, false, sc);
    sc->hidden = HNSW_NO_SLOT;
    if (q.sq) rerank(idx, qv, &sc->top, k);
    *nout = emit_results(idx, &sc->top, k, out);
    hnsw_scratch_put(idx, sc);
    return HNSW_OK;
}

int hnsw_search(struct hnsw_index *idx, const float *query, uint32_t k, uint32_t ef,
                hnsw_filter_fn filter, void *filter_ctx, struct hnsw_result *out, uint32_t *nout,
                char *err)
{
    return search(idx, query, k, ef, filter, filter_ctx, HNSW_NO_SLOT, out, nout, err);
}

int hnsw_search_hiding(struct hnsw_index *idx, const float *query, uint32_t k, uint32_t ef,
                       uint32_t hidden, struct hnsw_result *out, uint32_t *nout, char *err)
{
    return search(idx, query, k, ef, NULL, NULL, hidden, out, nout, err);
}

/*
 * The start of the exact scans: the query checked, scratch for k results
 * with an empty heap, and the query as compared (normalised under cosine).
 */
static int scan_begin(struct hnsw_index *idx, const float *query, uint32_t k, const float **q,
                      struct hnsw_scratch **out, char *err)
{
    int rc = check_query(idx, query, k, err);
    if (rc) return rc;
    struct hnsw_scratch *sc = hnsw_scratch_get(idx, k);
    if (!sc) return hnsw_fail(err, HNSW_ENOMEM, "out of memory for search scratch");
    *q = query;
    if (idx->metric == HNSW_METRIC_COSINE) {
        hnsw_prepare_vector(idx, query, sc->query);
        *q = sc->query;
    }
    sc->top.n = 0;
    *out = sc;
    return HNSW_OK;
}

int hnsw_search_exact(struct hnsw_index *idx, const float *query, uint32_t k, hnsw_filter_fn filter,
                      void *filter_ctx, struct hnsw_result *out, uint32_t *nout, char *err)
{
    *nout = 0;
    const float *q;
    struct hnsw_scratch *sc;
    int rc = scan_begin(idx, query, k, &q, &sc, err);
    if (rc) return rc;
    struct hnsw_heap *top = &sc->top;
    uint32_t n = atomic_load_explicit(&idx->nslots, memory_order_acquire);
    for (uint32_t s = 0; s < n; s++) {
        if (!accept(idx, s, filter, filter_ctx, HNSW_NO_SLOT)) continue;
        float d = idx->dist(q, hnsw_vec(idx, s), idx->dim);
        if (top->n < k || d < top->v[0].d) {
            hnsw_maxheap_push(top, d, s);
            if (top->n > k) hnsw_maxheap_pop(top);
        }
    }
    *nout = emit_results(idx, top, k, out);
    hnsw_scratch_put(idx, sc);
    return HNSW_OK;
}

int hnsw_search_subset(struct hnsw_index *idx, const float *query, uint32_t k,
                       const uint64_t *ids, size_t n, struct hnsw_result *out, uint32_t *nout,
                       char *err)
{
    *nout = 0;
    const float *q;
    struct hnsw_scratch *sc;
    int rc = scan_begin(idx, query, k, &q, &sc, err);
    if (rc) return rc;
    struct hnsw_heap *top = &sc->top;
    hnsw_scratch_new_visit(sc);
    uint16_t tag = sc->tag;
    /* Resolve ids to slots in runs, so the map lock is not held over distances. */
    enum { RUN = 256 };
    uint32_t slots[RUN];
    for (size_t base = 0; base < n; base += RUN) {
        size_t m = n - base < RUN ? n - base : RUN;
        pthread_mutex_lock(&idx->map_lock);
        for (size_t i = 0; i < m; i++)
            slots[i] = hnsw_map_find(&idx->map, ids[base + i]);
        pthread_mutex_unlock(&idx->map_lock);
        for (size_t i = 0; i < m; i++) {
            uint32_t s = slots[i];
            if (s == HNSW_NO_SLOT || s >= sc->vcap || sc->visited[s] == tag) continue;
            sc->visited[s] = tag;
            if (i + 2 < m && slots[i + 2] != HNSW_NO_SLOT && slots[i + 2] < sc->vcap)
                prefetch_vec(idx, slots[i + 2]);
            /* A slot recycled since the lookup holds another id: skip it. */
            char *e = hnsw_elem(idx, s);
            if (__atomic_load_n(&hnsw_hdrp(idx, e)->flags, __ATOMIC_ACQUIRE) ||
                *hnsw_idp(idx, e) != ids[base + i])
                continue;
            float d = idx->dist(q, hnsw_vec(idx, s), idx->dim);
            if (top->n < k || d < top->v[0].d) {
                hnsw_maxheap_push(top, d, s);
                if (top->n > k) hnsw_maxheap_pop(top);
            }
        }
    }
    *nout = emit_results(idx, top, k, out);
    hnsw_scratch_put(idx, sc);
    return HNSW_OK;
}
