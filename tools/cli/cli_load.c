/*
 * cli_load.c — `vecshard load NAME FILE`: bulk upsert of a vector file.
 *
 * The file (.fvecs or .npy float32, read whole with tools/bench/dataset) is
 * cut into batches of --batch rows; --concurrency worker threads take the
 * next batch number from an atomic counter and send it as one
 * vecshard_upsert of rows straight out of the matrix (libvecshard packs them
 * without a copy). Point i gets id start_id + i. Upsert is idempotent, so a batch that
 * fails with a transient code (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED,
 * ABORTED — a router restarting, a primary failing over) is retried with
 * exponential backoff up to --retries times; any other error, or retries
 * exhausted, stops every worker and the command fails with that status.
 *
 * The main thread only reports: on a terminal (stderr isatty) a progress bar
 * redrawn every 200 ms with rate and ETA; otherwise a plain line whenever
 * another 10% is done (and every 10 s while stalled). The last stdout line
 * is the summary, "loaded N points into NAME in S s (R points/s)", or with
 * --json {"points":N,"seconds":S,"rate":R,"collection":NAME}.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/bench/dataset.h"
#include "tools/cli/cli.h"

#define MAX_BATCH       100000 /* docs/design.md §8: points per call */
#define MAX_CONCURRENCY 256
#define BACKOFF_MS      200 /* first retry delay; doubles, capped at 5 s */

/* Shared by the workers and the reporting thread. */
struct load_job {
    struct cli *cli;
    const char *name;
    const struct dataset_matrix *m;
    uint64_t start_id;
    uint32_t batch, retries;
    size_t n_batches;
    atomic_size_t next_batch;  /* next batch number to take */
    atomic_size_t points_done; /* acknowledged points */
    atomic_uint retried;       /* retries made, for the summary */
    atomic_bool failed;        /* set once; workers stop taking batches */
    pthread_mutex_t err_lock;  /* protects err */
    struct vecshard_error err; /* first fatal status */
};

/* Records the first fatal status and stops the other workers. */
static void job_fail(struct load_job *j, const struct vecshard_error *st)
{
    pthread_mutex_lock(&j->err_lock);
    if (!atomic_load(&j->failed)) j->err = *st;
    atomic_store(&j->failed, true);
    pthread_mutex_unlock(&j->err_lock);
}

/* Sends one batch, retrying transient failures; 0 or -1 (job failed). */
static int send_batch(struct load_job *j, struct vecshard_client *vc, size_t b, uint64_t *ids)
{
    size_t lo = b * j->batch;
    size_t cnt = j->m->n - lo < j->batch ? j->m->n - lo : j->batch;
    for (size_t i = 0; i < cnt; i++)
        ids[i] = j->start_id + lo + i;
    const float *vectors = j->m->data + lo * j->m->dim;

    long delay = BACKOFF_MS;
    for (uint32_t attempt = 0;; attempt++) {
        struct vecshard_error st;
        if (vecshard_upsert(vc, j->name, ids, vectors, cnt, j->m->dim, NULL, NULL, &st) ==
            VECSHARD_OK) {
            atomic_fetch_add(&j->points_done, cnt);
            return 0;
        }
        if (!vecshard_retryable(st.code) || attempt >= j->retries || atomic_load(&j->failed)) {
            job_fail(j, &st);
            return -1;
        }
        atomic_fetch_add(&j->retried, 1);
        cli_sleep_ms(delay);
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
}

/* Worker: takes batches until none is left or the job failed. The client
 * was opened before the workers started, so they only share it. */
static void *load_worker(void *arg)
{
    struct load_job *j = arg;
    struct vecshard_client *vc = j->cli->client;
    uint64_t *ids = calloc(j->batch, sizeof *ids);
    if (!ids) {
        struct vecshard_error st = {.code = VECSHARD_RESOURCE_EXHAUSTED};
        snprintf(st.message, sizeof st.message, "out of memory for a batch of %u points", j->batch);
        job_fail(j, &st);
    }
    while (ids && !atomic_load(&j->failed)) {
        size_t b = atomic_fetch_add(&j->next_batch, 1);
        if (b >= j->n_batches || send_batch(j, vc, b, ids)) break;
    }
    free(ids);
    return NULL;
}

/* Redraws the terminal progress bar on stderr. */
static void draw_bar(size_t done, size_t total, double elapsed)
{
    double frac = total ? (double)done / (double)total : 1;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    char bar[CLI_BAR_WIDTH + 3], eta[32];
    fprintf(stderr, "\r\033[K%s %5.1f%%  %zu/%zu points  %.0f points/s  ETA %s",
            cli_bar(frac, bar, sizeof bar), frac * 100, done, total, rate,
            rate > 0 ? cli_eta((double)(total - done) / rate, eta, sizeof eta) : "?");
    fflush(stderr);
}

/* Reports progress until every worker has finished (the workers are joined). */
static void report_progress(struct load_job *j, pthread_t *threads, int n_threads, double t0)
{
    bool tty = isatty(STDERR_FILENO);
    size_t total = j->m->n;
    int next_tenth = 1;
    double last_line = t0;

    /* Workers end on their own; the reporter polls instead of waiting on a
     * condition so that it needs no cooperation from them. */
    for (;;) {
        size_t taken = atomic_load(&j->next_batch);
        size_t done = atomic_load(&j->points_done);
        double now = cli_now();
        bool finished =
            done >= total || atomic_load(&j->failed) || (taken >= j->n_batches + (size_t)n_threads);
        if (finished) break; /* the final state is drawn after the join */
        if (tty) {
            draw_bar(done, total, now - t0);
        } else if ((total && done * 10 >= (size_t)next_tenth * total && done < total) ||
                   now - last_line >= 10) {
            double rate = now > t0 ? (double)done / (now - t0) : 0;
            char eta[32];
            fprintf(stderr, "load %s: %zu/%zu points (%.0f%%), %.0f points/s, ETA %s\n", j->name,
                    done, total, total ? 100.0 * (double)done / (double)total : 100.0, rate,
                    rate > 0 ? cli_eta((double)(total - done) / rate, eta, sizeof eta) : "?");
            while (total && done * 10 >= (size_t)next_tenth * total)
                next_tenth++;
            last_line = now;
        }
        cli_sleep_ms(tty ? 200 : 100);
    }
    for (int i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    if (tty) {
        draw_bar(atomic_load(&j->points_done), total, cli_now() - t0);
        fputc('\n', stderr);
    }
}

/* vecshard load NAME FILE [...] */
int cli_cmd_load(struct cli *c, int argc, char **argv)
{
    uint64_t start_id = 0;
    uint32_t batch = 1000, conc = 4, retries = 5;
    bool json = false;
    const struct cli_flag flags[] = {
        {"--start-id", CLI_FLAG_U64, &start_id, 0, 1.8e19, NULL},
        {"--batch", CLI_FLAG_U32, &batch, 1, MAX_BATCH, NULL},
        {"--concurrency", CLI_FLAG_U32, &conc, 1, MAX_CONCURRENCY, NULL},
        {"--retries", CLI_FLAG_U32, &retries, 0, 1000, NULL},
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
    };
    const char *pos[2];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, sizeof flags / sizeof flags[0], pos, 2, &n_pos,
                       cli_usage_load);
    if (rc) return rc;
    if (n_pos != 2) return cli_usage_error(argv[0], cli_usage_load, "needs NAME and FILE");
    const char *name = pos[0], *path = pos[1];

    struct dataset_matrix m = {0};
    char err[DATASET_ERR_MAX];
    if (dataset_read_vectors(path, &m, err)) {
        fprintf(stderr, "error: %s\n", err);
        return CLI_FAIL;
    }
    if (m.n == 0) {
        fprintf(stderr, "error: %s holds no vectors\n", path);
        dataset_matrix_free(&m);
        return CLI_FAIL;
    }
    if (m.n - 1 > UINT64_MAX - start_id) {
        dataset_matrix_free(&m);
        return cli_usage_error(argv[0], cli_usage_load, "--start-id + rows overflows 64 bits");
    }

    /* Asking first turns a missing collection or a wrong dimension into one
     * clear message before any data moves. */
    struct vecshard_collection_info *d = cli_describe(c, name);
    if (!d) {
        dataset_matrix_free(&m);
        return CLI_FAIL;
    }
    uint32_t want = d->config.dim;
    vecshard_collection_info_free(d);
    if (want && want != m.dim) {
        fprintf(stderr, "error: %s has dimension %u but collection %s has dim %u\n", path, m.dim,
                name, want);
        dataset_matrix_free(&m);
        return CLI_FAIL;
    }

    struct load_job j = {
        .cli = c,
        .name = name,
        .m = &m,
        .start_id = start_id,
        .batch = batch,
        .retries = retries,
        .n_batches = (m.n + batch - 1) / batch,
    };
    pthread_mutex_init(&j.err_lock, NULL);
    if (conc > j.n_batches) conc = (uint32_t)j.n_batches;
    pthread_t *threads = calloc(conc, sizeof *threads);
    int started = 0;
    double t0 = cli_now();
    for (uint32_t i = 0; threads && i < conc; i++, started++)
        if (pthread_create(&threads[i], NULL, load_worker, &j)) break;
    if (started == 0) {
        fprintf(stderr, "error: cannot start load threads\n");
        rc = CLI_FAIL;
        goto done;
    }
    report_progress(&j, threads, started, t0);
    double secs = cli_now() - t0;
    size_t done = atomic_load(&j.points_done);
    double rate = secs > 0 ? (double)done / secs : 0;

    if (atomic_load(&j.failed)) {
        cli_print_status(c, &j.err);
        fprintf(stderr, "load %s: stopped after %zu of %zu points\n", name, done, m.n);
        rc = CLI_FAIL;
        goto done;
    }
    unsigned retried = atomic_load(&j.retried);
    if (retried) fprintf(stderr, "load %s: %u batch retries\n", name, retried);
    if (json) {
        fputs("{\"collection\":", stdout);
        cli_json_str(stdout, name, strlen(name));
        printf(",\"points\":%zu,\"seconds\":%.3f,\"rate\":%.1f,\"batch\":%u,\"concurrency\":%u,"
               "\"retries\":%u}\n",
               done, secs, rate, batch, conc, retried);
    } else {
        printf("loaded %zu points into %s in %.2f s (%.0f points/s)\n", done, name, secs, rate);
    }
    rc = CLI_OK;
done:
    free(threads);
    pthread_mutex_destroy(&j.err_lock);
    dataset_matrix_free(&m);
    return rc;
}
