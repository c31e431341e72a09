/*
 * bench_args.h — the command line shared by vecshard-bench and
 * vecshard-bench-hnswlib, and the data set it describes.
 *
 * Both benchmark binaries take exactly the same flags and turn them into the
 * same data (files or the synthetic generator, --queries applied, ground
 * truth loaded or computed), so a comparison between them differs only in
 * the engine. bench_prepare() does all of that for a main(): it prints
 * usage or errors to stderr and tells the caller whether to go on.
 *
 * Plain C with an extern "C" guard (the hnswlib peer is C++). Ownership: a
 * bench_data filled by bench_data_load / bench_prepare is the caller's and
 * is released with bench_data_free; bench_args points into argv and owns
 * nothing.
 */
#ifndef VS_TOOLS_BENCH_ARGS_H
#define VS_TOOLS_BENCH_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/bench/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BENCH_MAX_EF        64   /* entries in an --ef list */
#define BENCH_SYNTH_QUERIES 1000 /* default --queries for --synthetic */
#define BENCH_WRITE_GT_K    100  /* neighbours per query written by --write */

enum bench_args_status {
    BENCH_ARGS_OK = 0,
    BENCH_ARGS_HELP = 1,  /* --help: print usage to stdout, exit 0 */
    BENCH_ARGS_USAGE = 2, /* bad or unknown flag: message, usage, exit 2 */
};

/* Parsed flags. Paths point into argv. */
struct bench_args {
    const char *base_path, *query_path, *gt_path; /* --base --query --gt */
    enum dataset_metric metric;                   /* --metric, default l2 */
    uint32_t M, ef_construction;                  /* --M (16) --efc (200) */
    uint32_t ef[BENCH_MAX_EF];                    /* --ef list (10,20,40,80,160) */
    size_t n_ef;
    uint32_t k;        /* --k, default 10 */
    int threads;       /* --threads for build and ground truth; default: online CPUs */
    int search_threads; /* --search-threads: > 1 adds a throughput pass (bench_run_search) */
    long long queries; /* --queries; -1: all (synthetic: BENCH_SYNTH_QUERIES) */
    bool json;         /* --json: JSON lines only on stdout */
    bool synthetic;    /* --synthetic N,DIM,CLUSTERS,SEED */
    size_t synth_n;
    uint32_t synth_dim, synth_clusters;
    uint64_t synth_seed;
    const char *write_dir; /* --write DIR: write the data set and exit */
    const char *quant;       /* --quant none|sq8 (vecshard only), default "none" */
    const char *vector_file; /* --vector-file PATH: float vectors in a mapped file (vecshard only) */
};

/* Base vectors, queries and ground truth (base row numbers, closest first). */
struct bench_data {
    struct dataset_matrix base, query;
    struct dataset_ids gt;
};

/* Prints the usage text to f. */
void bench_args_usage(FILE *f, const char *prog);

/* Parses argv into *a (defaults first). Message in err on BENCH_ARGS_USAGE. */
int bench_args_parse(int argc, char **argv, struct bench_args *a, char *err);

/*
 * Loads or generates the data set of *a, keeps the first --queries queries,
 * and loads the ground truth or computes it by brute force (with --write at
 * least BENCH_WRITE_GT_K neighbours). Progress notes go to stderr.
 */
int bench_data_load(const struct bench_args *a, struct bench_data *d, char *err);

/* Writes DIR/base.fvecs, DIR/query.fvecs and DIR/gt.ivecs (creating DIR). */
int bench_data_write(const char *dir, const struct bench_data *d, char *err);

/* Releases everything d holds. */
void bench_data_free(struct bench_data *d);

/*
 * The common start of a benchmark main(): parse, load, and handle --help
 * and --write. Returns -1 when the benchmark should run, otherwise the exit
 * status main() should return (0 after --help or --write, 2 for bad usage,
 * 1 for a data error, all reported on stderr).
 */
int bench_prepare(int argc, char **argv, struct bench_args *a, struct bench_data *d);

#ifdef __cplusplus
}
#endif

#endif
