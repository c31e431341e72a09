/*
 * distance.h — distance kernels of the HNSW engine, chosen at run time.
 *
 * Every kernel family (avx512vnni, avx512, avx2 = AVX2+FMA, sse2 and scalar on x86-64;
 * neon and scalar on arm64) computes the same three functions; the best one
 * the CPU supports is picked once, with __builtin_cpu_supports, so the
 * default build needs no -march flag. VECSHARD_KERNEL=<name> in the
 * environment forces a family (for benchmarks and tests); an unknown or
 * unsupported name falls back to the best one.
 */
#ifndef VS_HNSW_DISTANCE_H
#define VS_HNSW_DISTANCE_H

#include <stddef.h>
#include <stdint.h>

/* A distance between two n-float vectors. */
typedef float (*hnsw_dist_fn)(const float *a, const float *b, size_t n);
/* SQ8: sum of k[i] * c[i] over n dimensions, exact (signed weights, unsigned codes). */
typedef int32_t (*hnsw_sq8_dot_fn)(const int8_t *k, const uint8_t *c, size_t n);

/* One family of kernels. */
struct hnsw_kernel {
    const char *name;
    hnsw_dist_fn l2sq;   /* squared Euclidean distance */
    hnsw_dist_fn dot;    /* inner product */
    hnsw_dist_fn ipdist; /* 1 - inner product */
    hnsw_sq8_dot_fn sq8_dot;
};

/*
 * The families this CPU can run, best first. *list points to static storage;
 * returns how many there are (scalar is always last).
 */
size_t hnsw_kernels_supported(const struct hnsw_kernel *const **list);

/* The family in use (see the top of this file). Static storage. */
const struct hnsw_kernel *hnsw_kernel_active(void);

#endif
