/*
 * cli_search.c — `vecshard search NAME --query FILE`: runs a query file
 * against a collection and reports recall@k, QPS and latency.
 *
 * The queries (the first --queries N rows of an .fvecs or .npy file) are cut
 * into calls of --batch queries; --concurrency threads take the next call
 * number from an atomic counter, time their Search call with the monotonic
 * clock and keep each query's hit ids. QPS is queries over the wall time of
 * the whole pass; p50/p99 are nearest-rank percentiles of the per-call
 * latencies (the same rule as vecshard-bench), so with the default --batch 1
 * they are per-query latencies as a client sees them, network included.
 * recall@k is the mean over queries of |hits ∩ gt[:k]| / k against an .ivecs
 * file of exact neighbours given as base row numbers, which are the ids when
 * the base file was loaded with --start-id 0. The connection is opened by a
 * DescribeCollection before timing starts (it also checks the dimension and
 * tells which ef the collection uses by default), so no call pays for it.
 *
 * Output: a short report, or with --json one object as the LAST line of
 * stdout (scripts read that line; keys are stable):
 *   {"collection":..,"n":..,"k":..,"ef":..,"batch":..,"concurrency":..,
 *    "recall":R|null,"qps":..,"p50_ms":..,"p99_ms":..,"seconds":..,"partial":..,
 *    "client_cpu_us":..}  (this process's CPU time per query over the timed
 *    loop: what the client itself costs, next to the servers' in bench-cluster)
 * --print writes each query's hits before the report (JSON lines with
 * --json). Any failed call stops the run: "error: CODE: message", exit 1.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench/dataset.h"
#include "tools/cli/cli.h"

#define MAX_K           10000
#define MAX_EF          100000
#define MAX_BATCH       10000 /* queries per Search call (vecshard.proto) */
#define MAX_CONCURRENCY 256

/* Shared by the search workers. */
struct search_job {
    struct cli *cli;
    const char *name;
    const struct dataset_matrix *q;
    size_t nq, n_calls;
    uint32_t k, ef, batch;
    float min_coverage, target_recall;
    bool keep, with_payload;                 /* keep replies for --print */
    const char *filter;                      /* --filter JSON or NULL */
    atomic_size_t next_call;                 /* next call number to take */
    atomic_size_t partial;                   /* replies with coverage.partial */
    atomic_uint ef_auto;                     /* --target-recall: widest ef the shards used */
    _Atomic float est_recall;                /* --target-recall: lowest estimate seen */
    atomic_bool failed;                      /* set once; workers stop */
    pthread_mutex_t err_lock;                /* protects err */
    struct vecshard_error err;               /* first failure */
    double *lat;                             /* seconds per call, n_calls */
    uint64_t *ids;                           /* nq * k hit ids */
    uint32_t *found;                         /* hits per query */
    struct vecshard_search_result **replies; /* n_calls, when keep */
};

/* Records the first failure and stops the other workers. */
static void job_fail(struct search_job *j, const struct vecshard_error *st)
{
    pthread_mutex_lock(&j->err_lock);
    if (!atomic_load(&j->failed)) j->err = *st;
    atomic_store(&j->failed, true);
    pthread_mutex_unlock(&j->err_lock);
}

/* Worker: sends calls until none is left or the job failed. The client
 * was opened before the workers started, so they only share it. */
static void *search_worker(void *arg)
{
    struct search_job *j = arg;
    struct vecshard_client *vc = j->cli->client;
    const struct vecshard_search_params params = {
        .k = j->k,
        .ef = j->ef,
        .min_coverage = j->min_coverage,
        .with_payload = j->with_payload,
        .filter = j->filter,
        .target_recall = j->target_recall,
    };
    while (!atomic_load(&j->failed)) {
        size_t b = atomic_fetch_add(&j->next_call, 1);
        if (b >= j->n_calls) break;
        size_t lo = b * j->batch;
        size_t cnt = j->nq - lo < j->batch ? j->nq - lo : j->batch;

        struct vecshard_search_result *r;
        struct vecshard_error st;
        double t = cli_now();
        enum vecshard_code code = vecshard_search(vc, j->name, j->q->data + lo * j->q->dim, cnt,
                                                  j->q->dim, &params, &r, &st);
        j->lat[b] = cli_now() - t;
        if (code != VECSHARD_OK) {
            job_fail(j, &st);
            break;
        }
        if (r->coverage.partial) atomic_fetch_add(&j->partial, 1);
        if (r->ef_used) {
            uint32_t seen = atomic_load(&j->ef_auto);
            while (r->ef_used > seen && !atomic_compare_exchange_weak(&j->ef_auto, &seen, r->ef_used))
                ;
            float est = atomic_load(&j->est_recall);
            while (r->estimated_recall < est &&
                   !atomic_compare_exchange_weak(&j->est_recall, &est, r->estimated_recall))
                ;
        }
        for (size_t i = 0; i < cnt; i++) {
            const struct vecshard_hit *hits = r->hits + i * r->k;
            for (size_t h = 0; h < r->n_hits[i]; h++)
                j->ids[(lo + i) * j->k + h] = hits[h].id;
            j->found[lo + i] = r->n_hits[i];
        }
        if (j->keep)
            j->replies[b] = r;
        else
            vecshard_search_result_free(r);
    }
    return NULL;
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

/* --print: every query's hits, as text or JSON lines. */
static void print_hits(const struct search_job *j, bool json)
{
    for (size_t b = 0; b < j->n_calls; b++) {
        const struct vecshard_search_result *r = j->replies[b];
        for (size_t i = 0; r && i < r->n_queries; i++) {
            const struct vecshard_hit *hits = r->hits + i * r->k;
            size_t q = b * j->batch + i;
            if (json)
                printf("{\"query\":%zu,\"hits\":[", q);
            else
                printf("query %zu:%s\n", q, r->n_hits[i] ? "" : " no hits");
            for (size_t h = 0; h < r->n_hits[i]; h++) {
                const struct vecshard_hit *p = &hits[h];
                if (json)
                    printf("%s{\"id\":%" PRIu64 ",\"distance\":%.9g", h ? "," : "", p->id,
                           (double)p->distance);
                else
                    printf("  %3zu. id %" PRIu64 "  distance %.6g", h + 1, p->id,
                           (double)p->distance);
                if (j->with_payload && p->payload) {
                    fputs(json ? ",\"payload\":" : "  payload ", stdout);
                    cli_json_str(stdout, p->payload, p->payload_len);
                }
                fputs(json ? "}" : "\n", stdout);
            }
            if (json) fputs("]}\n", stdout);
        }
    }
}

/* vecshard search NAME --query FILE [...] */
int cli_cmd_search(struct cli *c, int argc, char **argv)
{
    const char *qpath = NULL, *gtpath = NULL, *filter = NULL;
    uint32_t k = 10, ef = 0, conc = 4, batch = 1;
    uint64_t max_queries = 0;
    double min_cov = 0, target = 0;
    bool json = false, print = false, payload = false, have_queries = false;
    const struct cli_flag flags[] = {
        {"--query", CLI_FLAG_STR, &qpath, 0, 0, NULL},
        {"--k", CLI_FLAG_U32, &k, 1, MAX_K, NULL},
        {"--ef", CLI_FLAG_U32, &ef, 1, MAX_EF, NULL},
        {"--gt", CLI_FLAG_STR, &gtpath, 0, 0, NULL},
        {"--concurrency", CLI_FLAG_U32, &conc, 1, MAX_CONCURRENCY, NULL},
        {"--queries", CLI_FLAG_U64, &max_queries, 1, 1e15, &have_queries},
        {"--batch", CLI_FLAG_U32, &batch, 1, MAX_BATCH, NULL},
        {"--min-coverage", CLI_FLAG_DOUBLE, &min_cov, 1e-9, 1, NULL},
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
        {"--print", CLI_FLAG_BOOL, &print, 0, 0, NULL},
        {"--payload", CLI_FLAG_BOOL, &payload, 0, 0, NULL},
        {"--filter", CLI_FLAG_STR, &filter, 0, 0, NULL},
        {"--target-recall", CLI_FLAG_DOUBLE, &target, 1e-9, 1, NULL},
    };
    const char *pos[1];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, sizeof flags / sizeof flags[0], pos, 1, &n_pos,
                       cli_usage_search);
    if (rc) return rc;
    if (n_pos != 1) return cli_usage_error(argv[0], cli_usage_search, "missing collection NAME");
    if (!qpath) return cli_usage_error(argv[0], cli_usage_search, "--query FILE is required");
    if (target > 0 && ef)
        return cli_usage_error(argv[0], cli_usage_search, "--ef and --target-recall exclude each other");
    const char *name = pos[0];

    struct dataset_matrix q = {0};
    struct dataset_ids gt = {0};
    struct search_job j = {.cli = c, .name = name, .q = &q};
    pthread_t *threads = NULL;
    int started = 0;
    char err[DATASET_ERR_MAX];
    pthread_mutex_init(&j.err_lock, NULL);

    if (dataset_read_vectors(qpath, &q, err) || (gtpath && dataset_read_ivecs(gtpath, &gt, err))) {
        fprintf(stderr, "error: %s\n", err);
        rc = CLI_FAIL;
        goto done;
    }
    j.nq = have_queries && max_queries < q.n ? (size_t)max_queries : q.n;
    if (j.nq == 0) {
        fprintf(stderr, "error: %s holds no queries\n", qpath);
        rc = CLI_FAIL;
        goto done;
    }
    if (gtpath && gt.n < j.nq) {
        fprintf(stderr, "error: %s has %zu rows for %zu queries\n", gtpath, gt.n, j.nq);
        rc = CLI_FAIL;
        goto done;
    }
    if (gtpath && gt.k < k) {
        rc = cli_usage_error(argv[0], cli_usage_search,
                             "--k %u exceeds the %u neighbours per query in %s", k, gt.k, gtpath);
        goto done;
    }

    struct vecshard_collection_info *d = cli_describe(c, name);
    if (!d) {
        rc = CLI_FAIL;
        goto done;
    }
    uint32_t dim = d->config.dim;
    uint32_t ef_default = d->config.ef_search;
    vecshard_collection_info_free(d);
    if (dim && dim != q.dim) {
        fprintf(stderr, "error: %s has dimension %u but collection %s has dim %u\n", qpath, q.dim,
                name, dim);
        rc = CLI_FAIL;
        goto done;
    }

    j.k = k;
    j.ef = ef; /* 0: the collection's ef_search, applied by the router */
    j.batch = batch;
    j.min_coverage = (float)min_cov;
    j.target_recall = (float)target;
    atomic_store(&j.est_recall, 1.0f);
    j.keep = print;
    j.with_payload = payload && print;
    j.filter = filter;
    j.n_calls = (j.nq + batch - 1) / batch;
    j.lat = calloc(j.n_calls, sizeof *j.lat);
    j.ids = calloc(j.nq * k, sizeof *j.ids);
    j.found = calloc(j.nq, sizeof *j.found);
    j.replies = print ? calloc(j.n_calls, sizeof *j.replies) : NULL;
    if (conc > j.n_calls) conc = (uint32_t)j.n_calls;
    threads = calloc(conc, sizeof *threads);
    if (!j.lat || !j.ids || !j.found || (print && !j.replies) || !threads) {
        fprintf(stderr, "error: out of memory for %zu queries\n", j.nq);
        rc = CLI_FAIL;
        goto done;
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = cli_now();
    for (uint32_t i = 0; i < conc; i++, started++)
        if (pthread_create(&threads[i], NULL, search_worker, &j)) break;
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    double secs = cli_now() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                   (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                   (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) * 1e-6 +
                   (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) * 1e-6;
    if (started == 0) {
        fprintf(stderr, "error: cannot start search threads\n");
        rc = CLI_FAIL;
        goto done;
    }
    if (atomic_load(&j.failed)) {
        cli_print_status(c, &j.err);
        rc = CLI_FAIL;
        goto done;
    }

    double recall = 0;
    for (size_t i = 0; gtpath && i < j.nq; i++)
        recall += dataset_recall(gt.data + i * gt.k, k, j.ids + i * k, j.found[i]);
    recall /= (double)j.nq;
    qsort(j.lat, j.n_calls, sizeof *j.lat, cmp_double);
    double qps = secs > 0 ? (double)j.nq / secs : 0;
    double p50 = percentile(j.lat, j.n_calls, 50) * 1e3;
    double p99 = percentile(j.lat, j.n_calls, 99) * 1e3;
    uint32_t ef_used = ef ? ef : target > 0 ? atomic_load(&j.ef_auto) : ef_default;
    if (ef_used < k) ef_used = k; /* the router raises ef to k */
    size_t partial = atomic_load(&j.partial);

    if (print) print_hits(&j, json);
    if (json) {
        fputs("{\"collection\":", stdout);
        cli_json_str(stdout, name, strlen(name));
        printf(",\"n\":%zu,\"k\":%u,\"ef\":%u,\"batch\":%u,\"concurrency\":%u,\"recall\":", j.nq, k,
               ef_used, batch, conc);
        if (gtpath)
            printf("%.6f", recall);
        else
            fputs("null", stdout);
        printf(",\"qps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"seconds\":%.3f,\"partial\":%zu"
               ",\"client_cpu_us\":%.1f",
               qps, p50, p99, secs, partial, cpu_s * 1e6 / (double)j.nq);
        if (target > 0)
            printf(",\"target_recall\":%g,\"estimated_recall\":%.4f", target,
                   (double)atomic_load(&j.est_recall));
        fputs("}\n", stdout);
    } else {
        printf("search %s: %zu queries, k %u, ef %u, batch %u, concurrency %u\n", name, j.nq, k,
               ef_used, batch, conc);
        if (target > 0)
            printf("auto ef    target %.4f: ef up to %u, estimated recall %.4f\n", target,
                   ef_used, (double)atomic_load(&j.est_recall));
        if (gtpath) printf("recall@%u  %.4f\n", k, recall);
        printf("QPS        %.1f (%.2f s)\n", qps, secs);
        printf("latency    p50 %.3f ms  p99 %.3f ms (per call of %u quer%s)\n", p50, p99, batch,
               batch == 1 ? "y" : "ies");
        if (partial)
            printf("partial    %zu call%s answered by only part of the shards\n", partial,
                   partial == 1 ? "" : "s");
    }
    rc = CLI_OK;
done:
    if (j.replies)
        for (size_t b = 0; b < j.n_calls; b++)
            vecshard_search_result_free(j.replies[b]);
    free(j.replies);
    free(threads);
    free(j.lat);
    free(j.ids);
    free(j.found);
    pthread_mutex_destroy(&j.err_lock);
    dataset_matrix_free(&q);
    dataset_ids_free(&gt);
    return rc;
}
