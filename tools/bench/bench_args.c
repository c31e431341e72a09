/*
 * bench_args.c — the benchmarks' command line and the data set it names
 * (contract in bench_args.h).
 *
 * Parsing is strict: an unknown flag, a missing value or a number with
 * trailing junk is a usage error (exit 2), because a benchmark that quietly
 * ignores `--ef-search 64` reports numbers for a setting nobody asked for.
 * Data loading validates shapes across the three files (dimensions agree,
 * ground truth covers every query with at least k ids, ids are base rows)
 * before any engine sees them.
 */
#define _GNU_SOURCE
#include "tools/bench/bench_args.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes a formatted message into err when err is not NULL; returns status. */
static int fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, DATASET_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* Prints the usage text to f. */
void bench_args_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s (--base F --query F [--gt F] | --synthetic N,DIM,CLUSTERS,SEED) [options]\n"
            "\n"
            "data:\n"
            "  --base F         base vectors (.fvecs, or .npy float32 2-d)\n"
            "  --query F        query vectors (.fvecs or .npy)\n"
            "  --gt F           exact neighbours (.ivecs, base row numbers); computed by brute\n"
            "                   force when absent\n"
            "  --synthetic N,DIM,CLUSTERS,SEED\n"
            "                   generated clustered data instead of files\n"
            "  --queries N      use the first N queries (default: all; synthetic: %d)\n"
            "  --write DIR      write DIR/base.fvecs, query.fvecs, gt.ivecs (top %d) and exit\n"
            "index and search:\n"
            "  --metric M       l2 | ip | cosine (default l2)\n"
            "  --M N            links per node (default 16)\n"
            "  --efc N          ef_construction (default 200)\n"
            "  --ef LIST        search widths, comma-separated (default 10,20,40,80,160)\n"
            "  --k N            neighbours per query, recall@k (default 10)\n"
            "  --threads N      build (and ground-truth) threads (default: online CPUs)\n"
            "  --search-threads N  also measure throughput with N concurrent search threads\n"
            "                   over one index (vecshard only; default 1: the single-thread\n"
            "                   pass only)\n"
            "output:\n"
            "  --quant Q        none | sq8: vector quantization (vecshard only; default none)\n"
            "  --vector-file F  keep the float vectors in a mapped scratch file F (vecshard only)\n"
            "  --json           one JSON object per line on stdout, nothing else\n"
            "  --help           this text\n",
            prog, BENCH_SYNTH_QUERIES, BENCH_WRITE_GT_K);
}

/* Parses a whole unsigned decimal in [lo, hi]; false on junk or range. */
static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Parses a comma-separated list of ef values into a. */
static int parse_ef_list(const char *s, struct bench_args *a, char *err)
{
    a->n_ef = 0;
    const char *p = s;
    while (*p) {
        char item[32];
        size_t l = strcspn(p, ",");
        if (l == 0 || l >= sizeof(item))
            return fail(err, BENCH_ARGS_USAGE, "--ef: bad list '%s'", s);
        memcpy(item, p, l);
        item[l] = 0;
        uint64_t v;
        if (!parse_u64(item, 1, 100000, &v))
            return fail(err, BENCH_ARGS_USAGE, "--ef: '%s' is not in 1..100000", item);
        if (a->n_ef == BENCH_MAX_EF)
            return fail(err, BENCH_ARGS_USAGE, "--ef: more than %d values", BENCH_MAX_EF);
        a->ef[a->n_ef++] = (uint32_t)v;
        p += l;
        if (*p == ',') {
            p++;
            if (!*p) return fail(err, BENCH_ARGS_USAGE, "--ef: bad list '%s'", s);
        }
    }
    if (a->n_ef == 0) return fail(err, BENCH_ARGS_USAGE, "--ef: empty list");
    return BENCH_ARGS_OK;
}

/* Parses "N,DIM,CLUSTERS,SEED" into a. */
static int parse_synthetic(const char *s, struct bench_args *a, char *err)
{
    char buf[128];
    if (strlen(s) >= sizeof(buf)) return fail(err, BENCH_ARGS_USAGE, "--synthetic: value too long");
    strcpy(buf, s);
    const uint64_t hi[4] = {(uint64_t)1 << 36, 65536, (uint64_t)1 << 31, UINT64_MAX};
    const uint64_t lo[4] = {1, 1, 1, 0};
    uint64_t v[4];
    char *save = NULL, *tok = strtok_r(buf, ",", &save);
    for (int i = 0; i < 4; i++, tok = strtok_r(NULL, ",", &save))
        if (!tok || !parse_u64(tok, lo[i], hi[i], &v[i]))
            return fail(err, BENCH_ARGS_USAGE,
                        "--synthetic: '%s' is not N,DIM,CLUSTERS,SEED (N>=1, DIM 1..65536, "
                        "CLUSTERS>=1)",
                        s);
    if (tok) return fail(err, BENCH_ARGS_USAGE, "--synthetic: '%s' has more than 4 fields", s);
    if (v[2] > v[0])
        return fail(err, BENCH_ARGS_USAGE, "--synthetic: CLUSTERS %llu exceeds N %llu",
                    (unsigned long long)v[2], (unsigned long long)v[0]);
    a->synthetic = true;
    a->synth_n = (size_t)v[0];
    a->synth_dim = (uint32_t)v[1];
    a->synth_clusters = (uint32_t)v[2];
    a->synth_seed = v[3];
    return BENCH_ARGS_OK;
}

/* Parses argv into *a. */
int bench_args_parse(int argc, char **argv, struct bench_args *a, char *err)
{
    memset(a, 0, sizeof(*a));
    a->metric = DATASET_METRIC_L2;
    a->M = 16;
    a->ef_construction = 200;
    const uint32_t def_ef[] = {10, 20, 40, 80, 160};
    memcpy(a->ef, def_ef, sizeof(def_ef));
    a->n_ef = sizeof(def_ef) / sizeof(def_ef[0]);
    a->k = 10;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    a->threads = cpus > 0 ? (int)cpus : 1;
    a->queries = -1;
    a->quant = "none";
    a->search_threads = 1;

    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) return BENCH_ARGS_HELP;
        if (strcmp(f, "--json") == 0) {
            a->json = true;
            continue;
        }
        static const char *const with_value[] = {
            "--base", "--query",   "--gt",      "--metric",    "--M",     "--efc", "--ef",
            "--k",    "--threads", "--queries", "--synthetic", "--write", "--quant",
            "--vector-file", "--search-threads", NULL};
        bool known = false;
        for (int j = 0; with_value[j]; j++)
            known |= strcmp(f, with_value[j]) == 0;
        if (!known) return fail(err, BENCH_ARGS_USAGE, "unknown flag '%s'", f);
        if (i + 1 >= argc) return fail(err, BENCH_ARGS_USAGE, "%s needs a value", f);
        const char *v = argv[++i];
        uint64_t n;
        int st;
        if (strcmp(f, "--base") == 0)
            a->base_path = v;
        else if (strcmp(f, "--query") == 0)
            a->query_path = v;
        else if (strcmp(f, "--gt") == 0)
            a->gt_path = v;
        else if (strcmp(f, "--write") == 0)
            a->write_dir = v;
        else if (strcmp(f, "--vector-file") == 0)
            a->vector_file = v;
        else if (strcmp(f, "--quant") == 0) {
            if (strcmp(v, "none") != 0 && strcmp(v, "sq8") != 0)
                return fail(err, BENCH_ARGS_USAGE, "--quant: '%s' is not none or sq8", v);
            a->quant = v;
        }
        else if (strcmp(f, "--metric") == 0) {
            int m = dataset_metric_parse(v);
            if (m < 0)
                return fail(err, BENCH_ARGS_USAGE, "--metric: '%s' is not l2, ip or cosine", v);
            a->metric = (enum dataset_metric)m;
        } else if (strcmp(f, "--ef") == 0) {
            if ((st = parse_ef_list(v, a, err)) != BENCH_ARGS_OK) return st;
        } else if (strcmp(f, "--synthetic") == 0) {
            if ((st = parse_synthetic(v, a, err)) != BENCH_ARGS_OK) return st;
        } else if (strcmp(f, "--M") == 0) {
            if (!parse_u64(v, 2, 128, &n))
                return fail(err, BENCH_ARGS_USAGE, "--M: '%s' is not in 2..128", v);
            a->M = (uint32_t)n;
        } else if (strcmp(f, "--efc") == 0) {
            if (!parse_u64(v, 1, 100000, &n))
                return fail(err, BENCH_ARGS_USAGE, "--efc: '%s' is not in 1..100000", v);
            a->ef_construction = (uint32_t)n;
        } else if (strcmp(f, "--k") == 0) {
            if (!parse_u64(v, 1, 10000, &n))
                return fail(err, BENCH_ARGS_USAGE, "--k: '%s' is not in 1..10000", v);
            a->k = (uint32_t)n;
        } else if (strcmp(f, "--threads") == 0) {
            if (!parse_u64(v, 1, 4096, &n))
                return fail(err, BENCH_ARGS_USAGE, "--threads: '%s' is not in 1..4096", v);
            a->threads = (int)n;
        } else if (strcmp(f, "--search-threads") == 0) {
            if (!parse_u64(v, 1, 256, &n))
                return fail(err, BENCH_ARGS_USAGE, "--search-threads: '%s' is not in 1..256", v);
            a->search_threads = (int)n;
        } else if (strcmp(f, "--queries") == 0) {
            if (!parse_u64(v, 1, (uint64_t)1 << 40, &n))
                return fail(err, BENCH_ARGS_USAGE, "--queries: '%s' is not a positive count", v);
            a->queries = (long long)n;
        }
    }
    if (a->synthetic && (a->base_path || a->query_path || a->gt_path))
        return fail(err, BENCH_ARGS_USAGE, "--synthetic excludes --base, --query and --gt");
    if (!a->synthetic && (!a->base_path || !a->query_path))
        return fail(err, BENCH_ARGS_USAGE,
                    "give --base and --query (and optionally --gt), or --synthetic");
    return BENCH_ARGS_OK;
}

/* Releases everything d holds. */
void bench_data_free(struct bench_data *d)
{
    if (!d) return;
    dataset_matrix_free(&d->base);
    dataset_matrix_free(&d->query);
    dataset_ids_free(&d->gt);
}

/* Loads or generates the data set of *a (see bench_args.h). */
int bench_data_load(const struct bench_args *a, struct bench_data *d, char *err)
{
    memset(d, 0, sizeof(*d));
    int st;
    size_t want_q = a->queries > 0 ? (size_t)a->queries : SIZE_MAX;
    if (a->synthetic) {
        size_t nq = a->queries > 0 ? (size_t)a->queries : BENCH_SYNTH_QUERIES;
        fprintf(stderr,
                "generating synthetic data: %zu base + %zu queries, dim %u, %u clusters, "
                "seed %llu\n",
                a->synth_n, nq, a->synth_dim, a->synth_clusters, (unsigned long long)a->synth_seed);
        st = dataset_synthetic(a->synth_n, nq, a->synth_dim, a->synth_clusters, a->synth_seed,
                               &d->base, &d->query, err);
        if (st != DATASET_OK) goto fail;
    } else {
        if ((st = dataset_read_vectors(a->base_path, &d->base, err)) != DATASET_OK) goto fail;
        if ((st = dataset_read_vectors(a->query_path, &d->query, err)) != DATASET_OK) goto fail;
        if (d->query.dim != d->base.dim) {
            st = fail(err, DATASET_EFORMAT, "%s has dimension %u but %s has %u", a->query_path,
                      d->query.dim, a->base_path, d->base.dim);
            goto fail;
        }
        if (d->base.n == 0 || d->query.n == 0) {
            st = fail(err, DATASET_EFORMAT, "%s holds no vectors",
                      d->base.n == 0 ? a->base_path : a->query_path);
            goto fail;
        }
        if (want_q < d->query.n) d->query.n = want_q;
    }
    if (a->k > d->base.n) {
        st = fail(err, DATASET_EINVAL, "--k %u exceeds the %zu base vectors", a->k, d->base.n);
        goto fail;
    }

    uint32_t need_k = a->k;
    if (a->write_dir)
        need_k = d->base.n < BENCH_WRITE_GT_K ? (uint32_t)d->base.n : BENCH_WRITE_GT_K;
    if (a->gt_path) {
        if ((st = dataset_read_ivecs(a->gt_path, &d->gt, err)) != DATASET_OK) goto fail;
        if (d->gt.n < d->query.n) {
            st = fail(err, DATASET_EFORMAT, "%s has %zu rows for %zu queries", a->gt_path, d->gt.n,
                      d->query.n);
            goto fail;
        }
        if (d->gt.k < a->k) {
            st = fail(err, DATASET_EFORMAT, "%s has %u neighbours per query, --k is %u", a->gt_path,
                      d->gt.k, a->k);
            goto fail;
        }
        d->gt.n = d->query.n;
        for (size_t i = 0; i < d->gt.n * d->gt.k; i++)
            if (d->gt.data[i] < 0 || (size_t)d->gt.data[i] >= d->base.n) {
                st = fail(err, DATASET_EFORMAT, "%s: id %d in row %zu is not a base row",
                          a->gt_path, (int)d->gt.data[i], i / d->gt.k);
                goto fail;
            }
        if (d->gt.k < need_k)
            fprintf(stderr, "note: %s has only %u neighbours per query; writing those\n",
                    a->gt_path, d->gt.k);
    } else {
        fprintf(stderr,
                "computing exact top-%u for %zu queries over %zu vectors (%s, %d threads)\n",
                need_k, d->query.n, d->base.n, dataset_metric_name(a->metric), a->threads);
        st = dataset_ground_truth(&d->base, &d->query, a->metric, need_k, a->threads, &d->gt, err);
        if (st != DATASET_OK) goto fail;
    }
    return DATASET_OK;
fail:
    bench_data_free(d);
    return st;
}

/* Creates dir and its parents (like mkdir -p). */
static int make_dirs(const char *dir, char *err)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return fail(err, DATASET_EINVAL, "%s: path too long", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return fail(err, DATASET_EIO, "mkdir %s: %s", path, strerror(errno));
        *p = c;
        if (!c) break;
    }
    return DATASET_OK;
}

/* Writes the data set's three files into dir. */
int bench_data_write(const char *dir, const struct bench_data *d, char *err)
{
    int st = make_dirs(dir, err);
    if (st != DATASET_OK) return st;
    char path[4200];
    snprintf(path, sizeof(path), "%s/query.fvecs", dir);
    if ((st = dataset_write_fvecs(path, &d->query, err)) != DATASET_OK) return st;
    snprintf(path, sizeof(path), "%s/gt.ivecs", dir);
    if ((st = dataset_write_ivecs(path, &d->gt, err)) != DATASET_OK) return st;
    /* base.fvecs last: the Makefile takes its presence as "the set is complete". */
    snprintf(path, sizeof(path), "%s/base.fvecs", dir);
    return dataset_write_fvecs(path, &d->base, err);
}

/* The common start of a benchmark main() (see bench_args.h). */
int bench_prepare(int argc, char **argv, struct bench_args *a, struct bench_data *d)
{
    char err[DATASET_ERR_MAX] = "";
    const char *prog = argc > 0 ? argv[0] : "vecshard-bench";
    memset(d, 0, sizeof(*d));
    int st = bench_args_parse(argc, argv, a, err);
    if (st == BENCH_ARGS_HELP) {
        bench_args_usage(stdout, prog);
        return 0;
    }
    if (st != BENCH_ARGS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        bench_args_usage(stderr, prog);
        return 2;
    }
    if ((st = bench_data_load(a, d, err)) != DATASET_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    if (a->write_dir) {
        st = bench_data_write(a->write_dir, d, err);
        if (st != DATASET_OK)
            fprintf(stderr, "%s: %s\n", prog, err);
        else
            fprintf(stderr,
                    "wrote %s/{base.fvecs,query.fvecs,gt.ivecs}: %zu x %u, %zu queries, "
                    "top-%u\n",
                    a->write_dir, d->base.n, d->base.dim, d->query.n, d->gt.k);
        bench_data_free(d);
        return st == DATASET_OK ? 0 : 1;
    }
    return -1;
}
