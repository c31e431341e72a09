/*
 * bench_report.c — the measuring loop and the output of both benchmark
 * binaries (contract in bench_report.h).
 *
 * Latency is taken per query with the monotonic clock (two reads cost tens
 * of nanoseconds, well under any search); QPS is queries over the wall time
 * of the whole timed pass, so it includes what per-query times leave out.
 * Percentiles use the nearest-rank rule on the sorted latencies. Resident
 * memory comes from VmRSS in /proc/self/status; callers sample it right
 * before and right after the build, with the data set already loaded.
 */
#define _GNU_SOURCE
#include "tools/bench/bench_report.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Monotonic clock in seconds. */
double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* VmRSS of this process in bytes, or -1. */
long long bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "RssAnon:", 8) == 0) {
            kb = strtoll(line + 8, NULL, 10);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* qsort order for doubles, ascending. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile p (0..100) of n sorted values. */
static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0) return 0;
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

/* CPU time of the whole process in seconds. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define THROUGHPUT_SECONDS 1.0

/* The throughput pass shared by its threads. */
struct tp_ctx {
    const struct bench_args *a;
    const struct bench_data *d;
    bench_search_fn fn;
    void *ctx;
    uint32_t ef;
    atomic_size_t next;  /* next query number (mod nq) */
    atomic_size_t done;  /* queries answered */
    atomic_bool failed;
    double until;
    char err[DATASET_ERR_MAX];
};

static void *tp_main(void *arg)
{
    struct tp_ctx *t = arg;
    uint32_t k = t->a->k, dim = t->d->query.dim, n;
    size_t nq = t->d->query.n;
    uint64_t *ids = malloc(k * sizeof(uint64_t));
    char err[DATASET_ERR_MAX];
    if (ids == NULL) {
        if (!atomic_exchange(&t->failed, true)) snprintf(t->err, sizeof t->err, "out of memory");
        return NULL;
    }
    while (!atomic_load(&t->failed)) {
        for (int i = 0; i < 64; i++) {
            size_t q = atomic_fetch_add(&t->next, 1) % nq;
            if (t->fn(t->ctx, t->d->query.data + q * dim, k, t->ef, ids, &n, err) != 0) {
                if (!atomic_exchange(&t->failed, true)) memcpy(t->err, err, sizeof err);
                break;
            }
        }
        atomic_fetch_add(&t->done, 64);
        if (bench_now() >= t->until) break;
    }
    free(ids);
    return NULL;
}

/* T threads over the queries for THROUGHPUT_SECONDS; queries per second, or
 * -1 with a message in err. */
static double throughput(const struct bench_args *a, const struct bench_data *d,
                         bench_search_fn fn, void *ctx, uint32_t ef, char *err)
{
    int n = a->search_threads;
    pthread_t *th = malloc((size_t)n * sizeof *th);
    struct tp_ctx t = {.a = a, .d = d, .fn = fn, .ctx = ctx, .ef = ef};
    if (th == NULL || d->query.n == 0) {
        free(th);
        snprintf(err, DATASET_ERR_MAX, "throughput pass: out of memory or no queries");
        return -1;
    }
    double t0 = bench_now();
    t.until = t0 + THROUGHPUT_SECONDS;
    int started = 0;
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, tp_main, &t) != 0) break;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double total = bench_now() - t0;
    free(th);
    if (started < n || atomic_load(&t.failed)) {
        snprintf(err, DATASET_ERR_MAX, "throughput pass: %.200s",
                 started < n ? "cannot start a thread" : t.err);
        return -1;
    }
    return total > 0 ? (double)atomic_load(&t.done) / total : 0;
}

/* One ef of the sweep: warm-up, then every query timed. */
int bench_run_search(const struct bench_args *a, const struct bench_data *d, bench_search_fn fn,
                     void *ctx, uint32_t ef, struct bench_search *out, char *err)
{
    size_t nq = d->query.n;
    uint32_t dim = d->query.dim, k = a->k;
    uint64_t *ids = malloc(k * sizeof(uint64_t));
    double *lat = malloc((nq ? nq : 1) * sizeof(double));
    int st = 0;
    if (!ids || !lat) {
        snprintf(err, DATASET_ERR_MAX, "search sweep: out of memory");
        st = DATASET_ENOMEM;
        goto done;
    }
    uint32_t n;
    size_t warm = nq < BENCH_WARMUP_QUERIES ? nq : BENCH_WARMUP_QUERIES;
    for (size_t q = 0; q < warm; q++)
        if ((st = fn(ctx, d->query.data + q * dim, k, ef, ids, &n, err)) != 0) goto done;

    double recall_sum = 0;
    double c0 = cpu_now();
    double t0 = bench_now();
    for (size_t q = 0; q < nq; q++) {
        double s = bench_now();
        st = fn(ctx, d->query.data + q * dim, k, ef, ids, &n, err);
        lat[q] = bench_now() - s;
        if (st != 0) goto done;
        recall_sum += dataset_recall(d->gt.data + q * d->gt.k, k, ids, n);
    }
    double total = bench_now() - t0;
    out->cpu_us = nq ? (cpu_now() - c0) / (double)nq * 1e6 : 0;
    qsort(lat, nq, sizeof(double), cmp_double);
    out->ef = ef;
    out->recall = nq ? recall_sum / (double)nq : 0;
    out->qps = total > 0 ? (double)nq / total : 0;
    out->p50_us = percentile(lat, nq, 50) * 1e6;
    out->p99_us = percentile(lat, nq, 99) * 1e6;
    out->threads = 1;
    out->qps_threads = 0;
    if (a->search_threads > 1) {
        double q = throughput(a, d, fn, ctx, ef, err);
        if (q < 0) {
            st = DATASET_EINVAL;
            goto done;
        }
        out->threads = a->search_threads;
        out->qps_threads = q;
    }
done:
    free(ids);
    free(lat);
    return st;
}

/* Prints the build record. */
void bench_print_build(const struct bench_args *a, const struct bench_build *b)
{
    if (a->json) {
        printf("{\"phase\":\"build\",\"seconds\":%.3f,\"threads\":%d,\"n\":%zu,\"dim\":%u,"
               "\"bytes\":%llu,\"rss_bytes\":%lld,\"engine\":\"%s\",\"kernel\":\"%s\"}\n",
               b->seconds, b->threads, b->n, b->dim, (unsigned long long)b->bytes, b->rss_bytes,
               b->engine, b->kernel);
    } else {
        printf("%s (kernel %s): built %zu x %u, %s, M %u, efC %u, in %.2f s with %d threads\n",
               b->engine, b->kernel, b->n, b->dim, dataset_metric_name(a->metric), a->M,
               a->ef_construction, b->seconds, b->threads);
        printf("memory: index %.1f MB (%.0f B/vector), RSS growth %.1f MB (%.0f B/vector)\n",
               (double)b->bytes / 1e6, b->n ? (double)b->bytes / (double)b->n : 0,
               (double)b->rss_bytes / 1e6, b->n ? (double)b->rss_bytes / (double)b->n : 0);
    }
    fflush(stdout);
}

/* Prints one sweep row. */
void bench_print_search(const struct bench_args *a, const struct bench_search *s, int first)
{
    if (a->json) {
        printf("{\"phase\":\"search\",\"ef\":%u,\"recall\":%.5f,\"qps\":%.1f,\"p50_us\":%.1f,"
               "\"p99_us\":%.1f,\"cpu_us\":%.1f,\"threads\":%d,\"qps_threads\":%.1f}\n",
               s->ef, s->recall, s->qps, s->p50_us, s->p99_us, s->cpu_us, s->threads,
               s->qps_threads);
    } else {
        if (first) {
            char rk[32];
            snprintf(rk, sizeof(rk), "recall@%u", a->k);
            printf("%7s %10s %11s %9s %9s %9s", "ef", rk, "QPS", "p50 us", "p99 us", "CPU us");
            if (s->threads > 1) printf(" %8s QPS", "threads");
            printf("\n");
        }
        printf("%7u %10.4f %11.0f %9.1f %9.1f %9.1f", s->ef, s->recall, s->qps, s->p50_us,
               s->p99_us, s->cpu_us);
        if (s->threads > 1) printf(" %8d %.0f", s->threads, s->qps_threads);
        printf("\n");
    }
    fflush(stdout);
}
