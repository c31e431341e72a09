/*
 * bench_report.h — what both benchmark binaries measure and how they print
 * it: the build record, the search sweep (recall@k, QPS, latency
 * percentiles) and the process's resident memory.
 *
 * The engine is reached through one callback, so vecshard and hnswlib are
 * timed by the very same loop (same warm-up, same clock, same percentile
 * rule) and differ only inside the callback. Output: a human table, or with
 * --json exactly one JSON object per line on stdout:
 *   {"phase":"build","seconds":S,"threads":T,"n":N,"dim":D,"bytes":B,
 *    "rss_bytes":R,"engine":"...","kernel":"..."}
 *   {"phase":"search","ef":E,"recall":R,"qps":Q,"p50_us":P50,"p99_us":P99}
 *
 * Plain C with an extern "C" guard (the hnswlib peer is C++).
 */
#ifndef VS_TOOLS_BENCH_REPORT_H
#define VS_TOOLS_BENCH_REPORT_H

#include <stdint.h>

#include "tools/bench/bench_args.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BENCH_WARMUP_QUERIES 100

/* Result of the index build. */
struct bench_build {
    double seconds;
    int threads;
    size_t n;
    uint32_t dim;
    uint64_t bytes;      /* the engine's own accounting of its memory */
    long long rss_bytes; /* growth of RssAnon (anonymous resident memory) over the build */
    const char *engine;  /* "vecshard" or "hnswlib" */
    const char *kernel;  /* distance kernel in use */
};

/* Result of one ef of the search sweep. */
struct bench_search {
    uint32_t ef;
    double recall, qps, p50_us, p99_us;
    double cpu_us;     /* process CPU time per query of the single-thread pass */
    int threads;       /* search threads of the throughput pass; 1: none was run */
    double qps_threads; /* queries per second of that pass (0 when none) */
};

/*
 * Searches one query for its k nearest with width ef and writes the ids of
 * up to k results to ids (k slots) and their number to *n. Returns 0, or
 * non-zero with a message in err (DATASET_ERR_MAX bytes).
 */
typedef int (*bench_search_fn)(void *ctx, const float *query, uint32_t k, uint32_t ef,
                               uint64_t *ids, uint32_t *n, char *err);

/* Monotonic clock in seconds. */
double bench_now(void);

/* Resident set size of this process in bytes (VmRSS), or -1 if unknown. */
long long bench_rss_bytes(void);

/*
 * Runs one ef of the sweep: a warm-up over BENCH_WARMUP_QUERIES queries,
 * then every query once on this thread, timed one by one (and the process
 * CPU time of that pass). With a->search_threads > 1 a throughput pass
 * follows: that many threads search the queries round-robin for at least
 * one second (fn must then be safe to call from several threads at once).
 * Fills *out. Returns 0 or the callback's failure (message in err).
 */
int bench_run_search(const struct bench_args *a, const struct bench_data *d, bench_search_fn fn,
                     void *ctx, uint32_t ef, struct bench_search *out, char *err);

/* Prints the build record (JSON line or human text) on stdout. */
void bench_print_build(const struct bench_args *a, const struct bench_build *b);

/* Prints one sweep row (JSON line or table row; the first row adds the header). */
void bench_print_search(const struct bench_args *a, const struct bench_search *s, int first);

#ifdef __cplusplus
}
#endif

#endif
