/*
 * hnsw_internal.h — the index's memory layout and the helpers shared by the
 * engine's files. Not part of the public API.
 *
 * Storage. Points live in numbered slots. A slot has two fixed-size parts,
 * kept in separate arrays because a search never needs both of one point at
 * once (it reads the links of the point it expands and the vectors of that
 * point's neighbours):
 *
 *   vector  float[dim], padded to 64 bytes when that wastes at most 1/8
 *           (so a 128-d or 784-d vector starts on a cache line and the
 *           kernels never split a load across two lines), else to 16
 *   node    [u64 id] [u16 count][u8 level][u8 flags] [u32 links0[2M]]
 *
 * hnswlib interleaves the two in one block, which puts most vectors across
 * one cache line more than needed; the split measured ~10% lower median
 * search latency on MNIST at the same memory.
 * Slots are stored in chunks of 2^chunk_shift slots (1,024 to 16,384,
 * chosen at creation so a chunk's vectors fill at least one 2 MiB huge
 * page), found through a two-level directory sized at creation (segments
 * of HNSW_SEG chunks). Nothing is ever moved
 * or reallocated when the index grows, so searches run on during growth
 * without a rebuild or a pause, and a reader that got a slot number from a
 * link always finds its chunk: the chunk was published before the slot was
 * handed out, and the directory load depends on the slot number.
 * Links above layer 0 are in a separate block per slot with level > 0:
 *   [u32 levels allocated] then per layer l >= 1: [u32 count][u32 links[M]].
 *
 * Slot states (flags): live (in the id map), DELETED (out of the id map,
 * still linked so the graph stays navigable, never returned) and FREE
 * (unlinked by hnsw_repair, on the free list, reused by the next insert).
 *
 * Locks, outermost first (a thread never takes them in another order):
 *   mutation_lock  rwlock: insert/delete hold it shared, repair/save
 *                  exclusively. Searches never take it.
 *   ep_lock        mutex: held by an insert whose level tops the graph, for
 *                  that whole insert; protects changes to entry point state.
 *   copy_lock      mutex: the copy table (one slot per distinct vector, see
 *                  hnsw_copy_find_or_add). An insert holds it only for one
 *                  table probe (or a growth rehash), with no node lock held,
 *                  and takes no lock under it; repair's rebuild (mutation
 *                  lock exclusive) takes node locks, one at a time, under it.
 *   node locks     one byte-spinlock per slot: protects that slot's link
 *                  lists (all layers) against other writers. Searches read
 *                  links without it: every value ever stored is a valid
 *                  slot number and the count never exceeds the capacity, so
 *                  a racing reader sees a slightly stale but safe list (as
 *                  in hnswlib). A thread holds at most one node lock.
 *   map_lock       mutex: the id map, the free list, slot allocation, chunk
 *                  chunk growth and the live/deleted counters.
 *   pool_lock      mutex: the pool of search scratch spaces.
 */
#ifndef VS_HNSW_INTERNAL_H
#define VS_HNSW_INTERNAL_H

#include "common/hnsw/distance.h"
#include "common/hnsw/hnsw.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define HNSW_CHUNK_SHIFT_MIN 10
#define HNSW_CHUNK_SHIFT_MAX 14
#define HNSW_SEG_SHIFT       10
#define HNSW_SEG             (1u << HNSW_SEG_SHIFT)
#define HNSW_MAX_LEVEL       32
#define HNSW_NO_SLOT         UINT32_MAX
#define HNSW_MAX_SLOTS       (UINT32_MAX - 1u)

#define HNSW_FLAG_DELETED 1u
#define HNSW_FLAG_FREE    2u

/* The per-slot header that sits between the id and the layer-0 links. */
struct hnsw_hdr {
    uint16_t count; /* layer-0 links in use */
    uint8_t level;  /* top layer of this slot */
    uint8_t flags;  /* HNSW_FLAG_* */
};

/* One chunk of 2^chunk_shift slots. */
struct hnsw_chunk {
    char *vecs;          /* chunk slots * vec_stride bytes, 64-aligned (or mapped from the vector file) */
    uint8_t *codes;      /* SQ8: chunk slots * code_stride bytes; NULL without quantization */
    char *elems;         /* chunk slots * elem_size bytes (the node parts) */
    uint32_t **upper;    /* per slot: upper-layer link block or NULL */
    atomic_uchar *locks; /* per slot: spinlock byte */
};

/* A (distance, slot) pair, the element of every heap. */
struct hnsw_cand {
    float d;
    uint32_t slot;
};

/* A growable binary heap of candidates; max-heap or min-heap by use. */
struct hnsw_heap {
    struct hnsw_cand *v;
    uint32_t n, cap;
};

/* Search scratch: visited tags and heaps, reused across searches. */
struct hnsw_scratch {
    uint16_t *visited; /* tag per slot; a slot is visited when visited[s] == tag */
    uint32_t vcap;     /* slots covered by visited */
    uint16_t tag;
    struct hnsw_heap cand, top;
    struct hnsw_cand *buf; /* neighbour batch, 2M + 1 entries */
    uint32_t *ids;         /* neighbour ids, 2M + 1 entries */
    float *query;          /* normalised query copy (cosine), dim floats */
    int8_t *qsq;           /* the query's SQ8 weights, dim bytes (NULL without) */
    uint32_t hidden;       /* a slot searches treat as absent (HNSW_NO_SLOT: none) */
    struct hnsw_scratch *next;
};

/* The sorted id -> slot map (open addressing, linear probing). */
struct hnsw_idmap {
    uint64_t *keys;
    uint32_t *vals;  /* HNSW_NO_SLOT = empty */
    uint64_t cap, n; /* cap is a power of two */
};

/*
 * SQ8 parameters: a stored component x[i] is coded as the byte nearest to
 * (x[i] - min[i]) / scale[i], clamped to 0..255. Immutable once published;
 * replaced ones are kept until hnsw_free (a search may still hold them).
 */
struct hnsw_sq8 {
    float *min, *scale;    /* dim each */
    uint64_t trained_on;   /* slots it was trained over */
    struct hnsw_sq8 *prev; /* older parameters, retired */
};

/*
 * A query as the distance functions see it (hnsw_query_prepare): the float
 * query, and with SQ8 active its integer form for the codes (hnsw_sq8.c).
 */
struct hnsw_query {
    const float *v;            /* the query in stored form (normalised under cosine) */
    const struct hnsw_sq8 *sq; /* NULL: distances on float vectors */
    const int8_t *k;           /* sq8: weights, sum w[i] c[i] ~ t * sum k[i] c[i] */
    float t;                   /* sq8: the weights' step */
    float c0;                  /* sq8: sum (q - min)^2 (l2) or 1 - sum q min (ip, cosine) */
};

struct hnsw_index {
    /* parameters, fixed at creation */
    uint32_t dim, M, Mmax0, efc;
    enum hnsw_metric metric;
    uint64_t seed;
    double mult; /* mL = 1 / ln(M) */
    hnsw_dist_fn dist;
    size_t vec_stride;                            /* bytes per vector */
    enum hnsw_quant quant;
    size_t code_stride; /* SQ8: bytes per code: dim bytes, then a float at norm_off */
    size_t norm_off;    /* SQ8: sum (scale c)^2 of the code, for l2 */
    hnsw_sq8_dot_fn sq8_dot;
    size_t elem_size, id_off, hdr_off, links_off; /* node part and its fields */
    size_t upper_stride;                          /* bytes per upper layer: (1 + M) u32 */

    /* storage: segs[s >> (shift + 10)][(s >> shift) & 1023] is the chunk of slot s */
    uint32_t chunk_shift, chunk_mask; /* chunk_mask = 2^chunk_shift - 1 */
    uint32_t ndir;                    /* entries in segs */
    struct hnsw_chunk **segs;
    uint32_t nchunks;   /* chunks allocated (under map_lock) */
    atomic_uint nslots; /* slots handed out (high-water mark) */

    /* entry point: (level + 1) << 32 | slot, 0 when empty */
    _Atomic uint64_t entry;
    pthread_mutex_t ep_lock;

    pthread_rwlock_t mutation_lock;

    /* protected by map_lock */
    pthread_mutex_t map_lock;
    struct hnsw_idmap map;
    uint32_t *free_slots;
    uint64_t nfree, free_cap;
    atomic_ullong ndeleted;

    atomic_ullong level_counter;
    atomic_ullong upper_bytes;
    uint32_t **retired_upper; /* upper blocks replaced on slot reuse (freed at hnsw_free) */
    uint64_t nretired_upper, retired_upper_cap;

    /*
     * The copy table (under copy_lock): open addressing, linear probing;
     * each entry is (32-bit vector hash << 32 | slot), HNSW_COPY_EMPTY when
     * unused, one per distinct stored vector, naming one of its copies.
     */
    pthread_mutex_t copy_lock;
    uint64_t *copies;
    uint64_t copies_cap, copies_n; /* cap is 0 or a power of two */

    pthread_mutex_t pool_lock;
    struct hnsw_scratch *pool;
    uint64_t scratch_bytes;

    /*
     * SQ8 (hnsw_sq8.c): the parameters in use, NULL until trained. Written
     * with mutation_lock held exclusively; searches load the pointer once.
     */
    _Atomic(struct hnsw_sq8 *) sq;

    /* The vector file (hnsw_vectors_to_file): -1 when vectors are in memory. */
    int vec_fd;
};

/* ---------------------------------------------------------------- slot access */

/* The chunk holding slot s. */
static inline struct hnsw_chunk *hnsw_chunk_of(const struct hnsw_index *idx, uint32_t s)
{
    return &idx->segs[s >> (idx->chunk_shift + HNSW_SEG_SHIFT)]
                     [(s >> idx->chunk_shift) & (HNSW_SEG - 1)];
}

/* The node part (id, header, layer-0 links) of slot s. */
static inline char *hnsw_elem(const struct hnsw_index *idx, uint32_t s)
{
    return hnsw_chunk_of(idx, s)->elems + (size_t)(s & idx->chunk_mask) * idx->elem_size;
}

/* The stored vector of slot s. */
static inline float *hnsw_vec(const struct hnsw_index *idx, uint32_t s)
{
    return (float *)(hnsw_chunk_of(idx, s)->vecs + (size_t)(s & idx->chunk_mask) * idx->vec_stride);
}

/* The SQ8 code of slot s (quantized indexes only). */
static inline uint8_t *hnsw_code(const struct hnsw_index *idx, uint32_t s)
{
    return hnsw_chunk_of(idx, s)->codes + (size_t)(s & idx->chunk_mask) * idx->code_stride;
}

/* Distance from a prepared query to slot s: on its code when SQ8 is active. */
static inline float hnsw_qdist(const struct hnsw_index *idx, const struct hnsw_query *q,
                               uint32_t s)
{
    if (!q->sq) return idx->dist(q->v, hnsw_vec(idx, s), idx->dim);
    const uint8_t *c = hnsw_code(idx, s);
    float dot = q->t * (float)idx->sq8_dot(q->k, c, idx->dim);
    if (idx->metric == HNSW_METRIC_L2) {
        float norm;
        memcpy(&norm, c + idx->norm_off, sizeof norm);
        return q->c0 + norm - 2.0f * dot;
    }
    return q->c0 - dot;
}

static inline uint64_t *hnsw_idp(const struct hnsw_index *idx, char *e)
{
    return (uint64_t *)(e + idx->id_off);
}

static inline struct hnsw_hdr *hnsw_hdrp(const struct hnsw_index *idx, char *e)
{
    return (struct hnsw_hdr *)(e + idx->hdr_off);
}

static inline uint32_t *hnsw_links0(const struct hnsw_index *idx, char *e)
{
    return (uint32_t *)(e + idx->links_off);
}

/* Upper block of slot s (NULL for level-0 slots). */
static inline uint32_t *hnsw_upper(const struct hnsw_index *idx, uint32_t s)
{
    uint32_t **u = hnsw_chunk_of(idx, s)->upper + (s & idx->chunk_mask);
    return __atomic_load_n(u, __ATOMIC_ACQUIRE);
}

/*
 * The link list of slot s on layer l: *count_out points to its count word
 * (u16 for layer 0, u32 above), the return value to the links.
 */
static inline uint32_t *hnsw_links(const struct hnsw_index *idx, uint32_t s, int l, uint32_t *count)
{
    char *e = hnsw_elem(idx, s);
    if (l == 0) {
        *count = __atomic_load_n(&hnsw_hdrp(idx, e)->count, __ATOMIC_ACQUIRE);
        return hnsw_links0(idx, e);
    }
    uint32_t *u = hnsw_upper(idx, s) + 1 + (size_t)(l - 1) * (1 + idx->M);
    *count = __atomic_load_n(u, __ATOMIC_ACQUIRE);
    return u + 1;
}

/* Publishes a new count for slot s's list on layer l (caller holds the node lock). */
static inline void hnsw_set_count(const struct hnsw_index *idx, uint32_t s, int l, uint32_t n)
{
    if (l == 0)
        __atomic_store_n(&hnsw_hdrp(idx, hnsw_elem(idx, s))->count, (uint16_t)n, __ATOMIC_RELEASE);
    else
        __atomic_store_n(hnsw_upper(idx, s) + 1 + (size_t)(l - 1) * (1 + idx->M), n,
                         __ATOMIC_RELEASE);
}

static inline int hnsw_level(const struct hnsw_index *idx, uint32_t s)
{
    return __atomic_load_n(&hnsw_hdrp(idx, hnsw_elem(idx, s))->level, __ATOMIC_RELAXED);
}

static inline unsigned hnsw_flags(const struct hnsw_index *idx, uint32_t s)
{
    return __atomic_load_n(&hnsw_hdrp(idx, hnsw_elem(idx, s))->flags, __ATOMIC_ACQUIRE);
}

static inline uint32_t hnsw_mmax(const struct hnsw_index *idx, int l)
{
    return l == 0 ? idx->Mmax0 : idx->M;
}

/* Takes slot s's spinlock. */
static inline void hnsw_node_lock(const struct hnsw_index *idx, uint32_t s)
{
    atomic_uchar *l = hnsw_chunk_of(idx, s)->locks + (s & idx->chunk_mask);
    while (atomic_exchange_explicit(l, 1, memory_order_acquire)) {
        while (atomic_load_explicit(l, memory_order_relaxed)) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        }
    }
}

/* Releases slot s's spinlock. */
static inline void hnsw_node_unlock(const struct hnsw_index *idx, uint32_t s)
{
    atomic_store_explicit(hnsw_chunk_of(idx, s)->locks + (s & idx->chunk_mask), 0,
                          memory_order_release);
}

/* Entry point decoding: slot and level (-1 when the graph is empty). */
static inline void hnsw_entry_get(const struct hnsw_index *idx, uint32_t *slot, int *level)
{
    uint64_t e = atomic_load_explicit(&((struct hnsw_index *)idx)->entry, memory_order_acquire);
    *slot = (uint32_t)e;
    *level = (int)(e >> 32) - 1;
}

static inline uint64_t hnsw_entry_make(uint32_t slot, int level)
{
    return ((uint64_t)(level + 1) << 32) | slot;
}

/* Writes "fmt" into err if err is not NULL; returns status. */
int hnsw_fail(char *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- heaps */

int hnsw_heap_reserve(struct hnsw_heap *h, uint32_t n);
void hnsw_heap_free(struct hnsw_heap *h);
/* Max-heap (farthest on top) push/pop; the heap must have room. */
void hnsw_maxheap_push(struct hnsw_heap *h, float d, uint32_t s);
void hnsw_maxheap_pop(struct hnsw_heap *h);
/* Min-heap (closest on top) push/pop; the heap must have room. */
void hnsw_minheap_push(struct hnsw_heap *h, float d, uint32_t s);
void hnsw_minheap_pop(struct hnsw_heap *h);

/* ---------------------------------------------------------------- shared steps */

/* Scratch space for one search (from the pool, sized for the current slots). */
struct hnsw_scratch *hnsw_scratch_get(struct hnsw_index *idx, uint32_t ef);
/*
 * hnsw_search as if slot `hidden` were not in the graph: never visited,
 * expanded or returned (calibration's leave-one-out queries). HNSW_NO_SLOT
 * hides nothing.
 */
int hnsw_search_hiding(struct hnsw_index *idx, const float *query, uint32_t k, uint32_t ef,
                       uint32_t hidden, struct hnsw_result *out, uint32_t *nout, char *err);
/* Returns scratch space to the pool. */
void hnsw_scratch_put(struct hnsw_index *idx, struct hnsw_scratch *sc);
/* Starts a new visit generation in sc (clears the tags when they wrap). */
void hnsw_scratch_new_visit(struct hnsw_scratch *sc);

/*
 * Greedy descent (ef = 1) from ep on layers top..stop+1; returns the closest
 * slot found and its distance in *ep_dist. Slots >= bound are ignored (the
 * caller's scratch covers only those below).
 */
uint32_t hnsw_greedy(struct hnsw_index *idx, const struct hnsw_query *q, uint32_t ep, int top,
                     int stop, float *ep_dist, uint32_t bound);

/*
 * Paper Algorithm 2 (SEARCH-LAYER) on layer l from ep: leaves the best
 * `ef` accepted points in sc->top (a max-heap). Points that are deleted,
 * free, rejected by filter, or equal to `skip` guide the search but are not
 * accepted. `locked` copies each link list under its node lock (used while
 * the graph is being modified by the caller's own insert).
 */
void hnsw_search_layer(struct hnsw_index *idx, const struct hnsw_query *q, uint32_t ep,
                       float ep_dist, int l, uint32_t ef, hnsw_filter_fn filter, void *fctx,
                       uint32_t skip, bool locked, struct hnsw_scratch *sc);

/*
 * Paper Algorithm 4 (SELECT-NEIGHBORS-HEURISTIC), as in hnswlib: keeps a
 * candidate only if it is closer to the base point than to every candidate
 * already kept, closest first, up to m (all candidates when fewer than m).
 * Two rules for copies (bit-identical vectors) on top: copies of the base
 * itself ("twins") are kept first whatever their distance — the closest
 * one, or all of them with all_twins (when re-pruning an existing list,
 * whose twin links are ring links, see hnsw_insert.c) — and the first is
 * written to *twin (HNSW_NO_SLOT if none; twin may be NULL); a copy of a
 * candidate already kept is dropped, so a list never fills with copies of
 * one vector. base is the base point's stored vector. c[0..n) must be
 * sorted by distance; the kept ones are compacted to the front; returns
 * how many.
 */
uint32_t hnsw_select_heuristic(struct hnsw_index *idx, const float *base, struct hnsw_cand *c,
                               uint32_t n, uint32_t m, bool all_twins, uint32_t *twin);

/* Sorts candidates by distance, then slot. */
void hnsw_cand_sort(struct hnsw_cand *c, uint32_t n);

/*
 * Adds `newslot` to slot s's list on layer l, pruning with the heuristic
 * when the list is full (caller must not hold s's lock). If force is set
 * and the heuristic drops newslot, it replaces the farthest link instead.
 * Returns true if newslot is in the list afterwards.
 */
bool hnsw_add_link(struct hnsw_index *idx, uint32_t s, int l, uint32_t newslot, bool force);

/* Allocates (or reuses) the upper link block of slot s for `level` layers. */
int hnsw_upper_alloc(struct hnsw_index *idx, uint32_t s, int level);

/* Slot allocation: a free slot or a new one (chunk grown as needed). Caller holds map_lock. */
int hnsw_slot_alloc(struct hnsw_index *idx, uint32_t *slot);

/* id map operations (caller holds map_lock). */
uint32_t hnsw_map_find(const struct hnsw_idmap *m, uint64_t id);
int hnsw_map_put(struct hnsw_idmap *m, uint64_t id, uint32_t slot, uint32_t *old);
uint32_t hnsw_map_remove(struct hnsw_idmap *m, uint64_t id);
int hnsw_map_reserve(struct hnsw_idmap *m, uint64_t n);

/* hnsw_vector_check with the index's metric and dim. */
int hnsw_check_vector(const struct hnsw_index *idx, const float *v, const char *what, char *err);
/* Copies v into out, normalised for cosine. */
void hnsw_prepare_vector(const struct hnsw_index *idx, const float *v, float *out);

/* Inserts one validated point (the body of hnsw_insert). */
int hnsw_insert_one(struct hnsw_index *idx, uint64_t id, const float *vec, char *err);

#define HNSW_COPY_EMPTY UINT64_MAX

/*
 * The copy table: returns a slot other than s holding a vector
 * bit-identical to s's (any copy; it may still be being linked by another
 * insert), or HNSW_NO_SLOT after registering s as its vector's first copy
 * (also when the table cannot grow: then nothing is registered). Finding a
 * twin this way does not depend on the search, so concurrent inserts of
 * copies always join one ring. Caller holds no node lock.
 */
uint32_t hnsw_copy_find_or_add(struct hnsw_index *idx, uint32_t s);
/*
 * Rebuilds the copy table from every non-free slot (exclusive callers:
 * repair, load). With relink (repair, after deleted slots are freed), the
 * live copies of each vector are also chained into one ring again in slot
 * order — freeing deleted copies cuts the old ring wherever two or more
 * were consecutive — each copy's twin links replaced by the one to the next.
 * Takes copy_lock, then node locks one at a time under it (no insert runs).
 */
int hnsw_copy_rebuild(struct hnsw_index *idx, bool relink);

/* ---------------------------------------------------------------- SQ8 (hnsw_sq8.c) */

/* Points an index must hold before SQ8 is first trained (until then it searches floats). */
#define HNSW_SQ8_TRAIN_MIN 1024

/*
 * Prepares q (stored form) for hnsw_qdist: with SQ8 active, its weights go
 * into buf (dim bytes); otherwise (or buf NULL) distances stay on floats.
 */
void hnsw_query_prepare(const struct hnsw_index *idx, const float *q, int8_t *buf,
                        struct hnsw_query *out);
/* A float-only query (sq NULL), for code paths that must compare exact vectors. */
static inline struct hnsw_query hnsw_query_float(const float *q)
{
    struct hnsw_query r = {.v = q};
    return r;
}
/*
 * True if slot s's code is its stored vector's code under the parameters in
 * use (always without them); buf is code_stride bytes of scratch.
 */
bool hnsw_sq8_code_ok(struct hnsw_index *idx, uint32_t s, uint8_t *buf);
/* Writes slot s's code from its stored vector under the parameters in use (none: no-op). */
void hnsw_sq8_encode_slot(struct hnsw_index *idx, uint32_t s);
/*
 * Trains new parameters over every non-free slot and the `extra` rows
 * (raw input, n of them; normalised here under cosine), re-encodes every
 * slot and publishes them. Caller holds mutation_lock exclusively.
 * HNSW_ENOMEM leaves the old parameters in use.
 */
int hnsw_sq8_train(struct hnsw_index *idx, const float *extra, size_t n);
/*
 * True when SQ8 should be (re)trained before `more` points are added: never
 * trained and at least HNSW_SQ8_TRAIN_MIN slots would then be in use, or
 * twice the slots it was last trained over.
 */
bool hnsw_sq8_due(struct hnsw_index *idx, size_t more);
/*
 * hnsw_sq8_train when hnsw_sq8_due(idx, n), taking the mutation lock
 * exclusively (the caller holds no index lock); best effort.
 */
void hnsw_sq8_train_if_due(struct hnsw_index *idx, const float *extra, size_t n);
/* Frees the parameters in use and every retired set. */
void hnsw_sq8_free(struct hnsw_index *idx);

/* hnsw_check without locks or the reachability sweep (for a private index being loaded). */
int hnsw_check_structure(struct hnsw_index *idx, char *err);

#define HNSW_RECONNECT_ROUNDS 8

/*
 * Reconnects live points unreachable on layer 0 (after batch builds and
 * repair), in up to HNSW_RECONNECT_ROUNDS sweeps. Best effort: returns how
 * many live points it left unreachable (UINT64_MAX when out of memory);
 * nothing is undone either way.
 */
uint64_t hnsw_fix_reachability(struct hnsw_index *idx);

#endif
