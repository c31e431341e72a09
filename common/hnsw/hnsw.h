/*
 * hnsw.h — the vecshard HNSW engine: public API and ownership rules.
 *
 * An index maps uint64 ids to float32 vectors of a fixed dimension and answers
 * approximate k-nearest-neighbour queries with a Hierarchical Navigable Small
 * World graph (Malkov & Yashunin, 2016; "the paper" in comments). It depends
 * on libc, pthreads and common/util only.
 *
 * Distances follow hnswlib so results are comparable: l2 is squared Euclidean,
 * ip is 1 - dot, cosine is 1 - cos (vectors are normalised when inserted and
 * queries when searched). Smaller is closer.
 *
 * Concurrency: hnsw_search, hnsw_get and the read-only queries may run
 * concurrently with each other and with hnsw_insert / hnsw_delete from any
 * number of threads. hnsw_repair, hnsw_save and hnsw_free are exclusive with
 * mutations (repair and save take the index's mutation lock themselves;
 * searches may still run during them). hnsw_free needs no other call running.
 *
 * Errors: every call that can fail returns an enum hnsw_status (HNSW_OK = 0)
 * and, when `err` is not NULL, writes a one-line message naming the bad
 * argument into err (at least HNSW_ERR_MAX bytes). Nothing aborts or exits.
 */
#ifndef VS_HNSW_H
#define VS_HNSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HNSW_ERR_MAX 256
#define HNSW_MAX_DIM 65536
#define HNSW_MAX_M   128
#define HNSW_MAX_EF  100000
#define HNSW_MAX_K   10000

/*
 * Largest |component| a point or query may have. Distances are summed in
 * float: l2 of two vectors within the bound is at most dim * (2 * bound)^2
 * = 65,536 * 4e32 = 2.6e37 at HNSW_MAX_DIM, ip at most 6.6e36, both far
 * below FLT_MAX (3.4e38), so no distance can overflow to inf. (1e18 would
 * overflow from dim 22.)
 */
#define HNSW_MAX_ABS 1e16f

enum hnsw_status {
    HNSW_OK = 0,
    HNSW_EINVAL,    /* an argument is out of range (the message names it) */
    HNSW_ENOMEM,    /* allocation failed; the index is unchanged */
    HNSW_ENOTFOUND, /* the id is not in the index */
    HNSW_EIO,       /* a file could not be read or written (errno text in the message) */
    HNSW_EFORMAT,   /* a file is truncated, corrupt, foreign or of a newer version */
    HNSW_EFULL,     /* the index holds 2^32 - 2 slots already */
    HNSW_ECORRUPT,  /* hnsw_check found a broken invariant (described in the message) */
};

enum hnsw_metric {
    HNSW_METRIC_L2 = 0,
    HNSW_METRIC_IP = 1,
    HNSW_METRIC_COSINE = 2,
};

/*
 * Vector quantization. SQ8 stores one byte per dimension beside each float
 * vector, trained per index on the per-dimension min/max; the graph is
 * traversed on the codes and the candidates are re-ranked with the float
 * vectors, so returned distances are exact (docs/engine.md).
 */
enum hnsw_quant {
    HNSW_QUANT_NONE = 0,
    HNSW_QUANT_SQ8 = 1,
};

/* Creation parameters. Fill with hnsw_params_init(), then override. */
struct hnsw_params {
    uint32_t dim;            /* 1..HNSW_MAX_DIM */
    enum hnsw_metric metric; /* default l2 */
    uint32_t M; /* links per node above layer 0 (2M on layer 0); 2..HNSW_MAX_M, default 16 */
    uint32_t ef_construction;  /* candidate list size while inserting; default 200 */
    uint32_t initial_capacity; /* slots allocated up front; grows without a rebuild; default 1024 */
    uint64_t seed;             /* seeds the level generator; default 100 */
    enum hnsw_quant quant;     /* default none */
};

/* One search result. */
struct hnsw_result {
    uint64_t id;
    float dist;
};

/* Counters and sizes, filled by hnsw_info(). */
struct hnsw_stats {
    uint32_t dim;
    enum hnsw_metric metric;
    uint32_t M, ef_construction;
    uint64_t count;      /* live points (returned by searches) */
    uint64_t deleted;    /* deleted points still linked in the graph (cleared by hnsw_repair) */
    uint64_t free_slots; /* slots waiting to be reused by inserts */
    uint64_t capacity;   /* slots allocated */
    int max_level;       /* top layer of the graph; -1 when empty */
    uint64_t memory_bytes; /* heap and anonymous memory (not the vector file) */
    enum hnsw_quant quant;
    bool sq8_trained;    /* SQ8: parameters trained and used by searches */
    uint64_t file_bytes; /* bytes of the vector file mapped (0 when vectors are in memory) */
};

/*
 * Filter called for every candidate result: return true if `id` may be
 * returned. Points it rejects still guide the graph traversal, so filtering
 * never disconnects the search. Called from the searching thread only.
 */
typedef bool (*hnsw_filter_fn)(uint64_t id, void *ctx);

struct hnsw_index;

/* Fills p with the defaults (dim 0: the caller must set it). */
void hnsw_params_init(struct hnsw_params *p);

/* Parses "none" or "sq8"; returns -1 if neither. */
int hnsw_quant_parse(const char *s);
/* "none" or "sq8". */
const char *hnsw_quant_name(enum hnsw_quant q);

/*
 * Moves the float vectors into a memory-mapped file at path (created,
 * truncated, and unlinked at once: it is scratch space, the index's
 * durable form is hnsw_save's). The kernel may then page them out, so with
 * SQ8 resident memory holds the codes and the graph, and a search reads the
 * few vectors it re-ranks. Growth extends the file. The caller must be the
 * index's only user (right after hnsw_create or hnsw_load).
 */
int hnsw_vectors_to_file(struct hnsw_index *idx, const char *path, char *err);

/* Parses "l2", "ip" or "cosine"; returns -1 if none. */
int hnsw_metric_parse(const char *s);
/* The metric's name ("l2", "ip", "cosine"). */
const char *hnsw_metric_name(enum hnsw_metric m);
/* A static description of a status code. */
const char *hnsw_status_str(int status);

/* Creates an empty index; *out belongs to the caller (free with hnsw_free). */
int hnsw_create(const struct hnsw_params *p, struct hnsw_index **out, char *err);
/* Frees the index and everything it owns. NULL is a no-op. */
void hnsw_free(struct hnsw_index *idx);

/*
 * Checks that v (dim floats) may be a point or query under metric: every
 * component finite with |x| <= HNSW_MAX_ABS, and under cosine a norm that
 * is a normal float (not 0, subnormal or infinite), so normalising cannot
 * produce inf or NaN. HNSW_EINVAL with a message naming `what` and the
 * component, e.g. "batch.upserts[3].vector[5] is 2e+20, outside +-1e+16".
 */
int hnsw_vector_check(enum hnsw_metric metric, uint32_t dim, const float *v, const char *what,
                      char *err);

/*
 * Inserts vec (dim floats, copied) under id. An existing id is replaced: the
 * old vector stops being returned at once and its slot is recycled.
 * Rejects what hnsw_vector_check rejects.
 */
int hnsw_insert(struct hnsw_index *idx, uint64_t id, const float *vec, char *err);
/*
 * Inserts n points (vecs is n*dim floats, row-major) using `threads` threads
 * (<= 0: one per online CPU). Validates everything before inserting anything.
 * If one id occurs twice, the later row wins.
 */
int hnsw_insert_batch(struct hnsw_index *idx, const uint64_t *ids, const float *vecs, size_t n,
                      int threads, char *err);
/* Deletes id: it is never returned again. HNSW_ENOTFOUND if absent. */
int hnsw_delete(struct hnsw_index *idx, uint64_t id);

/*
 * Searches the k nearest live points to query (dim floats) with a candidate
 * list of max(ef, k). Writes up to k results to out (caller-owned, k slots),
 * closest first, and their number to *nout. filter may be NULL. The query
 * must pass hnsw_vector_check; a hit whose distance is not finite is never
 * returned.
 */
int hnsw_search(struct hnsw_index *idx, const float *query, uint32_t k, uint32_t ef,
                hnsw_filter_fn filter, void *filter_ctx, struct hnsw_result *out, uint32_t *nout,
                char *err);
/* Exact search by scanning every live point (for tests and recall checks). */
int hnsw_search_exact(struct hnsw_index *idx, const float *query, uint32_t k, hnsw_filter_fn filter,
                      void *filter_ctx, struct hnsw_result *out, uint32_t *nout, char *err);

/*
 * Exact search over a subset: the k nearest to query among the live points
 * of ids[0..n) (absent or deleted ids are skipped; an id given twice counts
 * once), closest first. The cost is n distances, whatever the index size:
 * the plan of a selective filter (docs/filtering.md).
 */
int hnsw_search_subset(struct hnsw_index *idx, const float *query, uint32_t k,
                       const uint64_t *ids, size_t n, struct hnsw_result *out, uint32_t *nout,
                       char *err);

/* Copies the stored vector of id into out (dim floats; normalised under cosine). */
int hnsw_get(struct hnsw_index *idx, uint64_t id, float *out);
/* True if id is live in the index. */
bool hnsw_contains(struct hnsw_index *idx, uint64_t id);
/* Live points. */
uint64_t hnsw_count(struct hnsw_index *idx);
/*
 * The ids of the live points, in no particular order: *ids is malloc'ed
 * (caller frees; NULL when there are none), *n their number. HNSW_ENOMEM
 * on allocation failure.
 */
int hnsw_ids(struct hnsw_index *idx, uint64_t **ids, uint64_t *n);
/* Deleted points still linked into the graph. */
uint64_t hnsw_deleted_count(struct hnsw_index *idx);
/* Bytes of memory the index holds (vectors, graph, id map, search scratch). */
uint64_t hnsw_memory_bytes(struct hnsw_index *idx);
/* Fills *st with the index's parameters and counters. */
void hnsw_info(struct hnsw_index *idx, struct hnsw_stats *st);
/* The dimension. */
uint32_t hnsw_dim(const struct hnsw_index *idx);

/*
 * Unlinks every deleted point from the graph: each live point that linked to
 * one is re-linked with the neighbour-selection heuristic over its remaining
 * neighbours and the deleted points' neighbours, a deleted entry point is
 * replaced, and the freed slots become reusable by later inserts. Restores
 * the recall lost to heavy deletes. Uses `threads` threads (<= 0: all CPUs).
 */
int hnsw_repair(struct hnsw_index *idx, int threads, char *err);

/*
 * Checks the graph invariants: every link in range, no self or duplicate
 * links, degrees within Mmax (layer 0: 2M), levels consistent, links only to
 * points that exist on that layer, the id map and the points agree, and every
 * live point reachable from the entry point on layer 0. HNSW_ECORRUPT with
 * the first violation described in err.
 */
int hnsw_check(struct hnsw_index *idx, char *err);

/*
 * Average recall@k of the index against exact search, over nsample stored
 * points used as queries (deterministic sample), at search width ef.
 */
int hnsw_self_recall(struct hnsw_index *idx, uint32_t nsample, uint32_t k, uint32_t ef,
                     double *recall, char *err);

/* ---------------------------------------------------------------- automatic ef */

#define HNSW_CURVE_MAX 32

/* A measured ef -> recall@k curve (hnsw_calibrate). */
struct hnsw_recall_curve {
    uint32_t k;                  /* recall@k */
    uint32_t n;                  /* points on the curve */
    uint32_t ef[HNSW_CURVE_MAX]; /* ascending: k, then steps of x1.2 */
    double recall[HNSW_CURVE_MAX];
    uint32_t queries;  /* sample queries measured */
    bool past_queries; /* measured on given queries (else on the index's own points) */
    uint64_t count;    /* live points when measured */
};

/*
 * Measures recall@k of hnsw_search at a ladder of widths (k, then x1.2
 * steps up to max_ef, stopping once the recall is 1) against exact search.
 * The queries are `queries` (nqueries x dim floats, e.g. recent real
 * queries) when given; otherwise nsample live points chosen with seed,
 * each searched as if it were not in the graph and scored against the
 * exact top k of the other points (leave-one-out), which errs low: a
 * conservative estimate (docs/engine.md). Cost: one exact scan per query
 * plus one search per query and ladder step; safe to run while the index
 * is searched and written.
 */
int hnsw_calibrate(struct hnsw_index *idx, uint32_t k, const float *queries, uint32_t nqueries,
                   uint32_t nsample, uint32_t max_ef, uint64_t seed,
                   struct hnsw_recall_curve *out, char *err);

/*
 * Checks a search's automatic-ef request: target 0 (unset) or in (0, 1],
 * and not together with an explicit ef. HNSW_EINVAL with the message the
 * router and the node return, e.g. "target_recall is 1.5, must be in (0, 1]
 * (0 = unset)".
 */
int hnsw_target_recall_check(float target, uint32_t ef, char *err);

/*
 * The smallest ef at which curve c reaches target, interpolated linearly
 * between the two ladder steps around it (*est: the curve's recall there);
 * the largest ef of the curve when none reaches it.
 */
uint32_t hnsw_curve_pick(const struct hnsw_recall_curve *c, double target, double *est);

/*
 * Writes the index to path: magic, format version, header and sections
 * each with a CRC32C, written to path.tmp, fsynced and renamed over path.
 */
int hnsw_save(struct hnsw_index *idx, const char *path, char *err);
/* Loads an index written by hnsw_save; validates everything. *out is the caller's. */
int hnsw_load(const char *path, struct hnsw_index **out, char *err);
/* hnsw_save's format into an open stream at its current position (not fsynced). */
int hnsw_write(struct hnsw_index *idx, FILE *f, char *err);
/* hnsw_load's parser on an open stream at its current position. */
int hnsw_read(FILE *f, struct hnsw_index **out, char *err);

/* Name of the distance kernel in use ("avx512", "avx2", "sse2", "neon" or "scalar"). */
const char *hnsw_kernel_name(void);

#endif
