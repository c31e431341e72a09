/*
 * test_support.h — shared pieces of the engine's unit tests: a clustered
 * data set, recall against exact search, and the suite registration hooks.
 */
#ifndef VS_TEST_HNSW_SUPPORT_H
#define VS_TEST_HNSW_SUPPORT_H

#include "common/hnsw/hnsw.h"

#include <CUnit/CUnit.h>

/* n points of dimension dim around `clusters` centres; caller frees. */
float *ts_clustered(size_t n, uint32_t dim, uint32_t clusters, uint64_t seed);
/* A fresh index with the given metric (M 16, efC 200 unless changed). */
struct hnsw_index *ts_index(uint32_t dim, enum hnsw_metric metric, uint32_t M, uint32_t efc);
/* ts_index with a quantization. */
struct hnsw_index *ts_index_q(uint32_t dim, enum hnsw_metric metric, uint32_t M, uint32_t efc,
                              enum hnsw_quant quant);
/* The tests' deterministic random stream (splitmix64) and a standard normal from it. */
uint64_t ts_rand(uint64_t *s);
double ts_gauss(uint64_t *s);
/*
 * Mean recall@k of hnsw_search at ef against hnsw_search_exact over nq
 * queries (nq*dim floats), both under the same filter.
 */
double ts_recall(struct hnsw_index *idx, const float *q, size_t nq, uint32_t k, uint32_t ef,
                 hnsw_filter_fn filter, void *ctx);
/* Asserts hnsw_check passes, printing its message if not. */
void ts_assert_check(struct hnsw_index *idx);

void register_distance_tests(void);
void register_index_tests(void);
void register_delete_tests(void);
void register_io_tests(void);
void register_degenerate_tests(void);
void register_sq8_tests(void);
void register_tune_tests(void);

#endif
