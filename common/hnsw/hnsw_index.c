/*
 * hnsw_index.c — the index object: creation and teardown, slot storage and
 * its growth, the id map, the pool of search scratch spaces, and the small
 * read-only queries (get, count, info).
 *
 * Growth never moves an element: new chunks are appended to a fixed
 * directory (see hnsw_internal.h), so searches keep running while the index
 * grows.
 */
#include "common/hnsw/hnsw_internal.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int hnsw_fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, HNSW_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return status;
}

void hnsw_params_init(struct hnsw_params *p)
{
    memset(p, 0, sizeof *p);
    p->metric = HNSW_METRIC_L2;
    p->M = 16;
    p->ef_construction = 200;
    p->initial_capacity = 1024;
    p->seed = 100;
}

int hnsw_quant_parse(const char *s)
{
    if (!s) return -1;
    if (strcmp(s, "none") == 0) return HNSW_QUANT_NONE;
    if (strcmp(s, "sq8") == 0) return HNSW_QUANT_SQ8;
    return -1;
}

const char *hnsw_quant_name(enum hnsw_quant q)
{
    return q == HNSW_QUANT_SQ8 ? "sq8" : q == HNSW_QUANT_NONE ? "none" : "?";
}

int hnsw_metric_parse(const char *s)
{
    if (!s) return -1;
    if (strcmp(s, "l2") == 0) return HNSW_METRIC_L2;
    if (strcmp(s, "ip") == 0) return HNSW_METRIC_IP;
    if (strcmp(s, "cosine") == 0) return HNSW_METRIC_COSINE;
    return -1;
}

const char *hnsw_metric_name(enum hnsw_metric m)
{
    switch (m) {
    case HNSW_METRIC_L2:
        return "l2";
    case HNSW_METRIC_IP:
        return "ip";
    case HNSW_METRIC_COSINE:
        return "cosine";
    }
    return "?";
}

const char *hnsw_status_str(int status)
{
    static const char *names[] = {"ok",         "invalid argument", "out of memory",
                                  "not found",  "i/o error",        "bad file format",
                                  "index full", "graph corrupt"};
    if (status < 0 || (size_t)status >= sizeof names / sizeof names[0]) return "unknown status";
    return names[status];
}

/* ---------------------------------------------------------------- id map */

/* splitmix64 finaliser: spreads sequential ids over the table. */
static inline uint64_t map_hash(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint32_t hnsw_map_find(const struct hnsw_idmap *m, uint64_t id)
{
    if (m->cap == 0) return HNSW_NO_SLOT;
    uint64_t mask = m->cap - 1;
    for (uint64_t i = map_hash(id) & mask;; i = (i + 1) & mask) {
        if (m->vals[i] == HNSW_NO_SLOT) return HNSW_NO_SLOT;
        if (m->keys[i] == id) return m->vals[i];
    }
}

/* Rehashes into a table of newcap (a power of two). */
static int map_rehash(struct hnsw_idmap *m, uint64_t newcap)
{
    uint64_t *keys = malloc(newcap * sizeof *keys);
    uint32_t *vals = malloc(newcap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return HNSW_ENOMEM;
    }
    memset(vals, 0xff, newcap * sizeof *vals);
    for (uint64_t i = 0; i < m->cap; i++) {
        if (m->vals[i] == HNSW_NO_SLOT) continue;
        uint64_t j = map_hash(m->keys[i]) & (newcap - 1);
        while (vals[j] != HNSW_NO_SLOT)
            j = (j + 1) & (newcap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = newcap;
    return HNSW_OK;
}

int hnsw_map_reserve(struct hnsw_idmap *m, uint64_t n)
{
    uint64_t cap = m->cap ? m->cap : 64;
    while (n * 4 > cap * 3)
        cap *= 2;
    return cap == m->cap ? HNSW_OK : map_rehash(m, cap);
}

int hnsw_map_put(struct hnsw_idmap *m, uint64_t id, uint32_t slot, uint32_t *old)
{
    *old = HNSW_NO_SLOT;
    int rc = hnsw_map_reserve(m, m->n + 1);
    if (rc) return rc;
    uint64_t mask = m->cap - 1;
    uint64_t i = map_hash(id) & mask;
    while (m->vals[i] != HNSW_NO_SLOT && m->keys[i] != id)
        i = (i + 1) & mask;
    if (m->vals[i] == HNSW_NO_SLOT)
        m->n++;
    else
        *old = m->vals[i];
    m->keys[i] = id;
    m->vals[i] = slot;
    return HNSW_OK;
}

uint32_t hnsw_map_remove(struct hnsw_idmap *m, uint64_t id)
{
    if (m->cap == 0) return HNSW_NO_SLOT;
    uint64_t mask = m->cap - 1;
    uint64_t i = map_hash(id) & mask;
    while (m->vals[i] != HNSW_NO_SLOT && m->keys[i] != id)
        i = (i + 1) & mask;
    uint32_t slot = m->vals[i];
    if (slot == HNSW_NO_SLOT) return slot;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & mask; m->vals[j] != HNSW_NO_SLOT; j = (j + 1) & mask) {
        uint64_t home = map_hash(m->keys[j]) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->vals[hole] = HNSW_NO_SLOT;
    m->n--;
    return slot;
}

/* ---------------------------------------------------------------- storage */

#define HUGE_PAGE (2u << 20)

/*
 * Allocates a zeroed block for a chunk. Blocks of 2 MiB or more are mapped
 * 2 MiB-aligned and, if `huge`, marked MADV_HUGEPAGE: a search touches
 * vectors all over the index, and with 4 KiB pages nearly every vector read
 * of a large index misses the TLB (huge pages measured 5-8% lower median
 * latency on 200k x 128). The first chunk of an index never asks for them,
 * so a small shard does not pin 2 MiB per block. Pages are backed only when
 * first written.
 */
static void *block_alloc(size_t size, bool huge)
{
    if (size < HUGE_PAGE) {
        void *p = aligned_alloc(64, (size + 63) & ~(size_t)63);
        if (p) memset(p, 0, size);
        return p;
    }
    size_t len = (size + 4095) & ~(size_t)4095;
    char *raw =
        mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (p + len < raw + len + HUGE_PAGE)
        munmap(p + len, (size_t)(raw + len + HUGE_PAGE - (p + len)));
#ifdef MADV_HUGEPAGE
    /* Only whole huge pages: a partly used one would pin up to 2 MiB of RSS. */
    if (huge) madvise(p, size & ~(size_t)(HUGE_PAGE - 1), MADV_HUGEPAGE);
#else
    (void)huge;
#endif
    return p;
}

/* Frees a block from block_alloc of the same size. */
static void block_free(void *p, size_t size)
{
    if (!p) return;
    if (size < HUGE_PAGE)
        free(p);
    else
        munmap(p, (size + 4095) & ~(size_t)4095);
}

/* Bytes of one chunk's vectors (a multiple of the page size: slots and stride are). */
static size_t vec_block_size(const struct hnsw_index *idx)
{
    return ((size_t)idx->chunk_mask + 1) * idx->vec_stride;
}

/* The vectors of chunk c: from the vector file when there is one, else memory. */
static void *vec_block_alloc(struct hnsw_index *idx, uint32_t c)
{
    size_t size = vec_block_size(idx);
    if (idx->vec_fd < 0) return block_alloc(size, c > 0);
    if (ftruncate(idx->vec_fd, (off_t)((uint64_t)(c + 1) * size)) != 0) return NULL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, idx->vec_fd,
                   (off_t)((uint64_t)c * size));
    if (p == MAP_FAILED) return NULL;
    /* A search reads a few scattered vectors: no read-ahead around them. */
    madvise(p, size, MADV_RANDOM);
    return p;
}

static void vec_block_free(struct hnsw_index *idx, void *p)
{
    if (!p) return;
    if (idx->vec_fd < 0)
        block_free(p, vec_block_size(idx));
    else
        munmap(p, vec_block_size(idx));
}

/* Appends one chunk (and its segment if new). Caller holds map_lock. */
static int grow_chunk(struct hnsw_index *idx)
{
    uint32_t c = idx->nchunks, seg = c >> HNSW_SEG_SHIFT;
    size_t chunk_slots = (size_t)idx->chunk_mask + 1;
    struct hnsw_chunk ch = {0};
    if (seg >= idx->ndir) return HNSW_EFULL;
    if (!idx->segs[seg]) {
        struct hnsw_chunk *sp = calloc(HNSW_SEG, sizeof *sp);
        if (!sp) return HNSW_ENOMEM;
        __atomic_store_n(&idx->segs[seg], sp, __ATOMIC_RELEASE);
    }
    ch.vecs = vec_block_alloc(idx, c);
    ch.elems = block_alloc(chunk_slots * idx->elem_size, c > 0);
    if (idx->code_stride) ch.codes = block_alloc(chunk_slots * idx->code_stride, c > 0);
    ch.upper = calloc(chunk_slots, sizeof *ch.upper);
    ch.locks = calloc(chunk_slots, sizeof *ch.locks);
    if (!ch.vecs || !ch.elems || (idx->code_stride && !ch.codes) || !ch.upper || !ch.locks) {
        vec_block_free(idx, ch.vecs);
        block_free(ch.elems, chunk_slots * idx->elem_size);
        block_free(ch.codes, chunk_slots * idx->code_stride);
        free(ch.upper);
        free(ch.locks);
        return HNSW_ENOMEM;
    }
    /* Published (release) before any slot in it is handed out. */
    idx->segs[seg][c & (HNSW_SEG - 1)] = ch;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    idx->nchunks = c + 1;
    return HNSW_OK;
}

int hnsw_slot_alloc(struct hnsw_index *idx, uint32_t *slot)
{
    if (idx->nfree > 0) {
        *slot = idx->free_slots[--idx->nfree];
        return HNSW_OK;
    }
    uint32_t s = atomic_load_explicit(&idx->nslots, memory_order_relaxed);
    if (s >= HNSW_MAX_SLOTS) return HNSW_EFULL;
    if ((s >> idx->chunk_shift) >= idx->nchunks) {
        int rc = grow_chunk(idx);
        if (rc) return rc;
    }
    atomic_store_explicit(&idx->nslots, s + 1, memory_order_release);
    *slot = s;
    return HNSW_OK;
}

int hnsw_upper_alloc(struct hnsw_index *idx, uint32_t s, int level)
{
    uint32_t **up = hnsw_chunk_of(idx, s)->upper + (s & idx->chunk_mask);
    uint32_t *old = *up;
    if (level == 0 || (old && (int)old[0] >= level)) {
        if (old) /* reuse: counts must start at zero for every layer */
            memset(old + 1, 0, (size_t)old[0] * idx->upper_stride);
        return HNSW_OK;
    }
    size_t bytes = sizeof(uint32_t) + (size_t)level * idx->upper_stride;
    uint32_t *u = calloc(1, bytes);
    if (!u) return HNSW_ENOMEM;
    u[0] = (uint32_t)level;
    atomic_fetch_add(&idx->upper_bytes, bytes);
    if (old) {
        /* A search may still be reading the old block: retire it, free later. */
        pthread_mutex_lock(&idx->map_lock);
        if (idx->nretired_upper == idx->retired_upper_cap) {
            uint64_t cap = idx->retired_upper_cap ? idx->retired_upper_cap * 2 : 64;
            uint32_t **r = realloc(idx->retired_upper, cap * sizeof *r);
            if (!r) {
                pthread_mutex_unlock(&idx->map_lock);
                free(u);
                return HNSW_ENOMEM;
            }
            idx->retired_upper = r;
            idx->retired_upper_cap = cap;
        }
        idx->retired_upper[idx->nretired_upper++] = old;
        pthread_mutex_unlock(&idx->map_lock);
    }
    __atomic_store_n(up, u, __ATOMIC_RELEASE);
    return HNSW_OK;
}

/* ---------------------------------------------------------------- create / free */

int hnsw_create(const struct hnsw_params *p, struct hnsw_index **out, char *err)
{
    *out = NULL;
    if (p->dim < 1 || p->dim > HNSW_MAX_DIM)
        return hnsw_fail(err, HNSW_EINVAL, "dim must be in 1..%d, got %u", HNSW_MAX_DIM, p->dim);
    if (p->metric != HNSW_METRIC_L2 && p->metric != HNSW_METRIC_IP &&
        p->metric != HNSW_METRIC_COSINE)
        return hnsw_fail(err, HNSW_EINVAL, "metric must be l2, ip or cosine, got %d", p->metric);
    if (p->M < 2 || p->M > HNSW_MAX_M)
        return hnsw_fail(err, HNSW_EINVAL, "M must be in 2..%d, got %u", HNSW_MAX_M, p->M);
    if (p->ef_construction < 1 || p->ef_construction > HNSW_MAX_EF)
        return hnsw_fail(err, HNSW_EINVAL, "ef_construction must be in 1..%d, got %u", HNSW_MAX_EF,
                         p->ef_construction);
    if (p->quant != HNSW_QUANT_NONE && p->quant != HNSW_QUANT_SQ8)
        return hnsw_fail(err, HNSW_EINVAL, "quantization must be none or sq8, got %d", p->quant);

    struct hnsw_index *idx = calloc(1, sizeof *idx);
    if (!idx) return hnsw_fail(err, HNSW_ENOMEM, "out of memory creating the index");
    idx->dim = p->dim;
    idx->metric = p->metric;
    idx->M = p->M;
    idx->Mmax0 = 2 * p->M;
    idx->efc = p->ef_construction;
    idx->seed = p->seed;
    idx->mult = 1.0 / log((double)p->M);
    idx->dist =
        p->metric == HNSW_METRIC_L2 ? hnsw_kernel_active()->l2sq : hnsw_kernel_active()->ipdist;
    size_t raw = (size_t)p->dim * sizeof(float), line = (raw + 63) & ~(size_t)63;
    idx->vec_stride = (line - raw) * 8 <= raw ? line : (raw + 15) & ~(size_t)15;
    idx->quant = p->quant;
    idx->vec_fd = -1;
    idx->sq8_dot = hnsw_kernel_active()->sq8_dot;
    if (p->quant == HNSW_QUANT_SQ8) {
        /* Same rule as vectors: a whole number of cache lines unless that wastes > 1/8. */
        idx->norm_off = ((size_t)p->dim + 3) & ~(size_t)3;
        size_t craw = idx->norm_off + sizeof(float), cline = (craw + 63) & ~(size_t)63;
        idx->code_stride = (cline - craw) * 8 <= craw ? cline : (craw + 15) & ~(size_t)15;
    }
    idx->id_off = 0;
    idx->hdr_off = sizeof(uint64_t);
    idx->links_off = idx->hdr_off + sizeof(struct hnsw_hdr);
    idx->elem_size = (idx->links_off + idx->Mmax0 * sizeof(uint32_t) + 7) & ~(size_t)7;
    idx->upper_stride = (1 + (size_t)p->M) * sizeof(uint32_t);
    pthread_mutex_init(&idx->ep_lock, NULL);
    pthread_mutex_init(&idx->map_lock, NULL);
    pthread_mutex_init(&idx->pool_lock, NULL);
    pthread_mutex_init(&idx->copy_lock, NULL);
    pthread_rwlock_init(&idx->mutation_lock, NULL);

    /* Chunks large enough that their vectors fill a 2 MiB huge page. */
    idx->chunk_shift = HNSW_CHUNK_SHIFT_MIN;
    while (idx->chunk_shift < HNSW_CHUNK_SHIFT_MAX &&
           ((size_t)1 << idx->chunk_shift) * idx->vec_stride < (2u << 20))
        idx->chunk_shift++;
    idx->chunk_mask = (1u << idx->chunk_shift) - 1;
    idx->ndir = 1u << (32 - idx->chunk_shift - HNSW_SEG_SHIFT);
    idx->segs = calloc(idx->ndir, sizeof *idx->segs);
    if (!idx->segs) goto nomem;
    uint64_t want = ((uint64_t)p->initial_capacity + idx->chunk_mask) >> idx->chunk_shift;
    for (uint64_t i = 0; i < want; i++)
        if (grow_chunk(idx)) goto nomem;
    if (hnsw_map_reserve(&idx->map, p->initial_capacity)) goto nomem;
    *out = idx;
    return HNSW_OK;
nomem:
    hnsw_free(idx);
    return hnsw_fail(err, HNSW_ENOMEM, "out of memory creating the index");
}

/* Frees one scratch space. */
static void scratch_free(struct hnsw_scratch *sc)
{
    free(sc->visited);
    hnsw_heap_free(&sc->cand);
    hnsw_heap_free(&sc->top);
    free(sc->buf);
    free(sc->ids);
    free(sc->query);
    free(sc->qsq);
    free(sc);
}

void hnsw_free(struct hnsw_index *idx)
{
    if (!idx) return;
    for (uint32_t c = 0; c < idx->nchunks; c++) {
        struct hnsw_chunk *ch = &idx->segs[c >> HNSW_SEG_SHIFT][c & (HNSW_SEG - 1)];
        size_t chunk_slots = (size_t)idx->chunk_mask + 1;
        for (size_t i = 0; i < chunk_slots; i++)
            free(ch->upper[i]);
        vec_block_free(idx, ch->vecs);
        block_free(ch->elems, chunk_slots * idx->elem_size);
        block_free(ch->codes, chunk_slots * idx->code_stride);
        free(ch->upper);
        free(ch->locks);
    }
    for (uint32_t s = 0; idx->segs && s < idx->ndir; s++)
        free(idx->segs[s]);
    free(idx->segs);
    for (uint64_t i = 0; i < idx->nretired_upper; i++)
        free(idx->retired_upper[i]);
    free(idx->retired_upper);
    while (idx->pool) {
        struct hnsw_scratch *n = idx->pool->next;
        scratch_free(idx->pool);
        idx->pool = n;
    }
    free(idx->map.keys);
    free(idx->map.vals);
    free(idx->free_slots);
    pthread_mutex_destroy(&idx->ep_lock);
    pthread_mutex_destroy(&idx->map_lock);
    pthread_mutex_destroy(&idx->pool_lock);
    pthread_mutex_destroy(&idx->copy_lock);
    free(idx->copies);
    hnsw_sq8_free(idx);
    if (idx->vec_fd >= 0) close(idx->vec_fd);
    pthread_rwlock_destroy(&idx->mutation_lock);
    free(idx);
}

/* ---------------------------------------------------------------- scratch pool */

struct hnsw_scratch *hnsw_scratch_get(struct hnsw_index *idx, uint32_t ef)
{
    pthread_mutex_lock(&idx->pool_lock);
    struct hnsw_scratch *sc = idx->pool;
    if (sc) idx->pool = sc->next;
    pthread_mutex_unlock(&idx->pool_lock);
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc) return NULL;
        sc->buf = malloc((idx->Mmax0 + 1) * sizeof *sc->buf);
        sc->ids = malloc((idx->Mmax0 + 1) * sizeof *sc->ids);
        sc->query = malloc(idx->dim * sizeof(float));
        sc->hidden = HNSW_NO_SLOT;
        if (idx->quant != HNSW_QUANT_NONE) sc->qsq = malloc(idx->dim);
        if (!sc->buf || !sc->ids || !sc->query || (idx->quant != HNSW_QUANT_NONE && !sc->qsq))
            goto fail;
        __atomic_fetch_add(&idx->scratch_bytes,
                           sizeof *sc + (idx->Mmax0 + 1) * (sizeof *sc->buf + sizeof *sc->ids) +
                               idx->dim * sizeof(float) + (sc->qsq ? idx->dim : 0),
                           __ATOMIC_RELAXED);
    }
    uint32_t n = atomic_load_explicit(&idx->nslots, memory_order_acquire);
    if (sc->vcap < n) {
        /* Room for growth during this search: slots added meanwhile are covered. */
        uint32_t cap = n + n / 4 + idx->chunk_mask + 1;
        uint16_t *v = calloc(cap, sizeof *v);
        if (!v) goto fail;
        __atomic_fetch_add(&idx->scratch_bytes, (uint64_t)(cap - sc->vcap) * sizeof *v,
                           __ATOMIC_RELAXED);
        free(sc->visited);
        sc->visited = v;
        sc->vcap = cap;
        sc->tag = 0;
    }
    /* Candidates can exceed ef: every expanded point adds up to 2M of them. */
    if (hnsw_heap_reserve(&sc->top, ef + 2) || hnsw_heap_reserve(&sc->cand, ef + idx->Mmax0 + 2))
        goto fail;
    return sc;
fail:
    scratch_free(sc);
    return NULL;
}

void hnsw_scratch_put(struct hnsw_index *idx, struct hnsw_scratch *sc)
{
    pthread_mutex_lock(&idx->pool_lock);
    sc->next = idx->pool;
    idx->pool = sc;
    pthread_mutex_unlock(&idx->pool_lock);
}

void hnsw_scratch_new_visit(struct hnsw_scratch *sc)
{
    if (++sc->tag == 0) {
        memset(sc->visited, 0, sc->vcap * sizeof *sc->visited);
        sc->tag = 1;
    }
}

/* ---------------------------------------------------------------- heaps */

int hnsw_heap_reserve(struct hnsw_heap *h, uint32_t n)
{
    if (h->cap >= n) return HNSW_OK;
    uint32_t cap = h->cap ? h->cap : 64;
    while (cap < n)
        cap *= 2;
    struct hnsw_cand *v = realloc(h->v, cap * sizeof *v);
    if (!v) return HNSW_ENOMEM;
    h->v = v;
    h->cap = cap;
    return HNSW_OK;
}

void hnsw_heap_free(struct hnsw_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

void hnsw_maxheap_push(struct hnsw_heap *h, float d, uint32_t s)
{
    uint32_t i = h->n++;
    while (i > 0) {
        uint32_t p = (i - 1) >> 1;
        if (h->v[p].d >= d) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i].d = d;
    h->v[i].slot = s;
}

void hnsw_maxheap_pop(struct hnsw_heap *h)
{
    struct hnsw_cand last = h->v[--h->n];
    uint32_t i = 0, n = h->n;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h->v[c + 1].d > h->v[c].d) c++;
        if (h->v[c].d <= last.d) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
}

void hnsw_minheap_push(struct hnsw_heap *h, float d, uint32_t s)
{
    uint32_t i = h->n++;
    while (i > 0) {
        uint32_t p = (i - 1) >> 1;
        if (h->v[p].d <= d) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i].d = d;
    h->v[i].slot = s;
}

void hnsw_minheap_pop(struct hnsw_heap *h)
{
    struct hnsw_cand last = h->v[--h->n];
    uint32_t i = 0, n = h->n;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h->v[c + 1].d < h->v[c].d) c++;
        if (h->v[c].d >= last.d) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
}

/* ---------------------------------------------------------------- vectors */

int hnsw_vector_check(enum hnsw_metric metric, uint32_t dim, const float *v, const char *what,
                      char *err)
{
    if (!v) return hnsw_fail(err, HNSW_EINVAL, "%s is missing", what);
    double norm = 0;
    for (uint32_t i = 0; i < dim; i++) {
        if (!isfinite(v[i]))
            return hnsw_fail(err, HNSW_EINVAL, "%s[%u] is %s", what, i,
                             isnan(v[i]) ? "NaN" : "infinite");
        if (fabsf(v[i]) > HNSW_MAX_ABS)
            return hnsw_fail(err, HNSW_EINVAL, "%s[%u] is %g, outside +-%g", what, i, v[i],
                             (double)HNSW_MAX_ABS);
        norm += (double)v[i] * v[i];
    }
    if (metric != HNSW_METRIC_COSINE) return HNSW_OK;
    if (norm == 0)
        return hnsw_fail(err, HNSW_EINVAL, "%s is all zeros: cosine distance is undefined", what);
    norm = sqrt(norm);
    if (norm < FLT_MIN)
        return hnsw_fail(err, HNSW_EINVAL,
                         "%s has norm %g, below the smallest normal float (%g): cosine cannot "
                         "normalise it",
                         what, norm, (double)FLT_MIN);
    return HNSW_OK;
}

int hnsw_check_vector(const struct hnsw_index *idx, const float *v, const char *what, char *err)
{
    return hnsw_vector_check(idx->metric, idx->dim, v, what, err);
}

void hnsw_prepare_vector(const struct hnsw_index *idx, const float *v, float *out)
{
    if (idx->metric != HNSW_METRIC_COSINE) {
        memcpy(out, v, idx->dim * sizeof(float));
        return;
    }
    /* In double: a float reciprocal of a tiny norm would overflow. */
    double norm = 0;
    for (uint32_t i = 0; i < idx->dim; i++)
        norm += (double)v[i] * v[i];
    double inv = 1.0 / sqrt(norm);
    for (uint32_t i = 0; i < idx->dim; i++)
        out[i] = (float)(v[i] * inv);
}

/* ---------------------------------------------------------------- queries */

int hnsw_get(struct hnsw_index *idx, uint64_t id, float *out)
{
    pthread_mutex_lock(&idx->map_lock);
    uint32_t s = hnsw_map_find(&idx->map, id);
    if (s != HNSW_NO_SLOT) memcpy(out, hnsw_vec(idx, s), idx->dim * sizeof(float));
    pthread_mutex_unlock(&idx->map_lock);
    return s == HNSW_NO_SLOT ? HNSW_ENOTFOUND : HNSW_OK;
}

bool hnsw_contains(struct hnsw_index *idx, uint64_t id)
{
    pthread_mutex_lock(&idx->map_lock);
    uint32_t s = hnsw_map_find(&idx->map, id);
    pthread_mutex_unlock(&idx->map_lock);
    return s != HNSW_NO_SLOT;
}

uint64_t hnsw_count(struct hnsw_index *idx)
{
    pthread_mutex_lock(&idx->map_lock);
    uint64_t n = idx->map.n;
    pthread_mutex_unlock(&idx->map_lock);
    return n;
}

int hnsw_ids(struct hnsw_index *idx, uint64_t **ids, uint64_t *n)
{
    *ids = NULL;
    *n = 0;
    pthread_mutex_lock(&idx->map_lock);
    uint64_t *v = idx->map.n > 0 ? malloc(idx->map.n * sizeof *v) : NULL;
    if (idx->map.n > 0 && v == NULL) {
        pthread_mutex_unlock(&idx->map_lock);
        return HNSW_ENOMEM;
    }
    uint64_t k = 0;
    for (uint64_t i = 0; i < idx->map.cap && k < idx->map.n; i++)
        if (idx->map.vals[i] != HNSW_NO_SLOT) v[k++] = idx->map.keys[i];
    pthread_mutex_unlock(&idx->map_lock);
    *ids = v;
    *n = k;
    return HNSW_OK;
}

uint64_t hnsw_deleted_count(struct hnsw_index *idx)
{
    return atomic_load(&idx->ndeleted);
}

uint32_t hnsw_dim(const struct hnsw_index *idx)
{
    return idx->dim;
}

uint64_t hnsw_memory_bytes(struct hnsw_index *idx)
{
    struct hnsw_stats st;
    hnsw_info(idx, &st);
    return st.memory_bytes;
}

void hnsw_info(struct hnsw_index *idx, struct hnsw_stats *st)
{
    uint64_t bytes_sq = 0;
    memset(st, 0, sizeof *st);
    st->dim = idx->dim;
    st->metric = idx->metric;
    st->M = idx->M;
    st->ef_construction = idx->efc;
    st->quant = idx->quant;
    struct hnsw_sq8 *sq = atomic_load(&idx->sq);
    st->sq8_trained = sq != NULL;
    if (sq) bytes_sq = 2ull * idx->dim * sizeof(float);
    uint32_t ep;
    hnsw_entry_get(idx, &ep, &st->max_level);
    pthread_mutex_lock(&idx->map_lock);
    st->count = idx->map.n;
    st->free_slots = idx->nfree;
    st->capacity = (uint64_t)idx->nchunks << idx->chunk_shift;
    uint64_t bytes = sizeof *idx + bytes_sq;
    bytes += idx->ndir * sizeof *idx->segs;
    bytes += (uint64_t)((idx->nchunks + HNSW_SEG - 1) >> HNSW_SEG_SHIFT) * HNSW_SEG *
             sizeof(struct hnsw_chunk);
    uint64_t vec_bytes = st->capacity * idx->vec_stride;
    if (idx->vec_fd >= 0)
        st->file_bytes = vec_bytes;
    else
        bytes += vec_bytes;
    bytes += st->capacity *
             (idx->code_stride + idx->elem_size + sizeof(uint32_t *) + sizeof(atomic_uchar));
    bytes += idx->map.cap * (sizeof(uint64_t) + sizeof(uint32_t));
    bytes += idx->free_cap * sizeof(uint32_t);
    bytes += idx->retired_upper_cap * sizeof(uint32_t *);
    pthread_mutex_unlock(&idx->map_lock);
    st->deleted = atomic_load(&idx->ndeleted);
    bytes += atomic_load(&idx->upper_bytes);
    bytes += __atomic_load_n(&idx->scratch_bytes, __ATOMIC_RELAXED);
    pthread_mutex_lock(&idx->copy_lock);
    bytes += idx->copies_cap * sizeof(uint64_t);
    pthread_mutex_unlock(&idx->copy_lock);
    st->memory_bytes = bytes;
}

int hnsw_vectors_to_file(struct hnsw_index *idx, const char *path, char *err)
{
    if (idx->vec_fd >= 0) return hnsw_fail(err, HNSW_EINVAL, "the vectors are already in a file");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return hnsw_fail(err, HNSW_EIO, "cannot create %s: %s", path, strerror(errno));
    unlink(path); /* scratch: gone when the process is, however it ends */
    size_t size = vec_block_size(idx);
    void **maps = calloc(idx->nchunks ? idx->nchunks : 1, sizeof *maps);
    if (!maps) {
        close(fd);
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    }
    /* Map every chunk first, so a failure leaves the index as it was. */
    uint32_t c = 0;
    for (; c < idx->nchunks; c++) {
        if (ftruncate(fd, (off_t)((uint64_t)(c + 1) * size)) != 0) break;
        maps[c] = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)((uint64_t)c * size));
        if (maps[c] == MAP_FAILED) break;
    }
    if (c < idx->nchunks) {
        int e = errno;
        for (uint32_t i = 0; i < c; i++)
            munmap(maps[i], size);
        free(maps);
        close(fd);
        return hnsw_fail(err, HNSW_EIO, "cannot map %s: %s", path, strerror(e));
    }
    for (c = 0; c < idx->nchunks; c++) {
        struct hnsw_chunk *ch = &idx->segs[c >> HNSW_SEG_SHIFT][c & (HNSW_SEG - 1)];
        memcpy(maps[c], ch->vecs, size);
        madvise(maps[c], size, MADV_RANDOM);
        block_free(ch->vecs, size);
        ch->vecs = maps[c];
    }
    free(maps);
    idx->vec_fd = fd;
    return HNSW_OK;
}
