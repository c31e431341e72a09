/*
 * dataset.h — benchmark data sets: reading and writing vector files, a
 * deterministic synthetic generator, exact ground truth and recall.
 *
 * Shared by vecshard-bench and the hnswlib peer benchmark (a C++ program,
 * hence the extern "C" guard), so it depends on libc, libm and pthreads only —
 * never on the engine under test. Files: .fvecs / .ivecs (per vector an int32
 * dimension, then that many float32 / int32 values, little-endian) and .npy
 * (float32 '<f4', C order, 2-d). Distances are hnswlib's: l2 is squared
 * Euclidean, ip is 1 - dot, cosine is 1 - cos; smaller is closer.
 *
 * Errors: every call that can fail returns an enum dataset_status (DATASET_OK
 * = 0) and writes a one-line message into err (DATASET_ERR_MAX bytes) when
 * err is not NULL. Nothing exits. Ownership: the arrays inside a
 * dataset_matrix / dataset_ids filled by these calls belong to the caller and
 * are released with dataset_matrix_free / dataset_ids_free.
 */
#ifndef VS_TOOLS_BENCH_DATASET_H
#define VS_TOOLS_BENCH_DATASET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DATASET_ERR_MAX 256

enum dataset_status {
    DATASET_OK = 0,
    DATASET_EINVAL,  /* an argument is out of range (the message names it) */
    DATASET_EIO,     /* a file could not be opened, read or written (errno text) */
    DATASET_EFORMAT, /* a file is truncated or not in the expected layout */
    DATASET_ENOMEM,  /* allocation failed */
};

/* Same values as enum hnsw_metric, so the two convert by cast. */
enum dataset_metric {
    DATASET_METRIC_L2 = 0,
    DATASET_METRIC_IP = 1,
    DATASET_METRIC_COSINE = 2,
};

/* n rows of dim float32 values, row-major, in one block. */
struct dataset_matrix {
    float *data;
    size_t n;
    uint32_t dim;
};

/* n rows of k int32 ids (ground truth: base row numbers, closest first). */
struct dataset_ids {
    int32_t *data;
    size_t n;
    uint32_t k;
};

/* Parses "l2", "ip" or "cosine"; returns -1 if none. */
int dataset_metric_parse(const char *s);
/* The metric's name. */
const char *dataset_metric_name(enum dataset_metric m);

/* Releases m's rows and zeroes it. NULL is a no-op. */
void dataset_matrix_free(struct dataset_matrix *m);
/* Releases ids' rows and zeroes it. NULL is a no-op. */
void dataset_ids_free(struct dataset_ids *ids);

/* Reads an .fvecs file (every row must have the same dimension). */
int dataset_read_fvecs(const char *path, struct dataset_matrix *out, char *err);
/* Reads an .ivecs file (every row must have the same length). */
int dataset_read_ivecs(const char *path, struct dataset_ids *out, char *err);
/* Reads a .npy file holding a 2-d little-endian float32 array in C order. */
int dataset_read_npy(const char *path, struct dataset_matrix *out, char *err);
/* Reads vectors by extension: ".npy" with dataset_read_npy, else .fvecs. */
int dataset_read_vectors(const char *path, struct dataset_matrix *out, char *err);
/* Writes m as .fvecs (to path.tmp, then renamed). */
int dataset_write_fvecs(const char *path, const struct dataset_matrix *m, char *err);
/* Writes ids as .ivecs (to path.tmp, then renamed). */
int dataset_write_ivecs(const char *path, const struct dataset_ids *ids, char *err);

/*
 * Generates n_base + n_query points in [0,1)^dim-ish space: `clusters`
 * centres uniform in [0,1)^dim, cluster sizes uneven, each point its
 * centre plus gaussian noise whose spread makes neighbouring clusters
 * overlap. Base and queries come from separate random streams of the same
 * distribution, so the queries do not depend on n_base and are never base
 * points. Same arguments, same bytes, on every machine.
 */
int dataset_synthetic(size_t n_base, size_t n_query, uint32_t dim, uint32_t clusters, uint64_t seed,
                      struct dataset_matrix *base, struct dataset_matrix *query, char *err);

/* Scales every row of m to unit length (zero rows stay zero). */
void dataset_normalize(struct dataset_matrix *m);

/*
 * Exact top-k of every query among the base rows by brute force under
 * metric, closest first (ties: lower row first), using `threads` threads
 * (<= 0: one per online CPU). out->data is the caller's.
 */
int dataset_ground_truth(const struct dataset_matrix *base, const struct dataset_matrix *query,
                         enum dataset_metric metric, uint32_t k, int threads,
                         struct dataset_ids *out, char *err);

/* Fraction of the first k ids of gt_row found among the n result ids (recall@k). */
double dataset_recall(const int32_t *gt_row, uint32_t k, const uint64_t *result_ids, uint32_t n);

#ifdef __cplusplus
}
#endif

#endif
