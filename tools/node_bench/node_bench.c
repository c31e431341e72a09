/*
 * node_bench.c — vecshard-bench-node: what a running vecshard-node costs over
 * the engine it wraps, measured on the same data in one run.
 *
 *   ingest  the engine's hnsw_insert_batch (in this process, --engine-threads)
 *           vs ShardNode.Write in batches of --batch points from --writers
 *           client threads (the node's WAL fsync policy applies);
 *   search  QPS of --clients threads calling hnsw_search in-process vs
 *           ShardNode.Search with 1 query per call and with --per-call
 *           queries per call, for --seconds each;
 *   latency one thread, one query at a time: mean and median of the engine
 *           and of a gRPC call; their difference is the per-call overhead
 *           (serialisation, HTTP/2, thread hand-offs, loopback).
 *
 * The node must already host shard --shard of --collection, created with the
 * same dim, metric, M and ef_construction and empty (scripts/bench_node.sh
 * starts etcd and a node on free ports and does that). Ids are base row
 * numbers. Output: a table, then one JSON object per line (--json: only the
 * JSON):
 *   {"phase":"node_ingest","engine_pts_s":..,"grpc_pts_s":..,"ratio":..,...}
 *   {"phase":"node_search","mode":"engine|grpc_1|grpc_batch",...,"qps":..,"ratio":..}
 *   (recall is reported for the engine and grpc_1, measured in the latency pass)
 *   {"phase":"node_latency","engine_us":..,"grpc_us":..,"overhead_us":..,...,
 *    "health_call_us":..,"node_status_call_us":..}   (empty calls: the transport floor)
 * Nothing here asserts the targets (ingest >= 0.7x the engine, overhead
 * < 150 us on loopback); it reports them.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util/flags.h"
#include "common/hnsw/hnsw.h"
#include "common/rpc/rpc.h"
#include "proto/grpc_health/v1/health.pb-c.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"
#include "tools/bench/dataset.h"
#include "tools/node_bench/shard_calls.h"

#define CALL_TIMEOUT_MS 120000
#define WARMUP_QUERIES  100
#define MAX_THREADS     64

/* ------------------------------------------------------------ options */

struct opts {
    const char *addr, *collection, *base, *query, *gt, *fsync;
    uint32_t shard, k, ef, M, efc, batch, per_call, n_queries;
    uint64_t epoch;
    int writers, clients, engine_threads, json;
    double seconds;
    enum dataset_metric metric;
    int synthetic;
    size_t synth_n;
    uint32_t synth_dim, synth_clusters;
    uint64_t synth_seed;
};

/* Prints the usage text to f. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: vecshard-bench-node --addr HOST:PORT --collection NAME\n"
            "         (--synthetic N,DIM,CLUSTERS,SEED | --base B.fvecs --query Q.fvecs [--gt "
            "G.ivecs])\n"
            "         [--queries 1000] [--shard 0] [--epoch 1] [--metric l2] [--M 16] [--efc 200]\n"
            "         [--k 10] [--ef 64] [--batch 1000] [--writers 2] [--engine-threads 2]\n"
            "         [--clients 4] [--per-call 32] [--seconds 3] [--fsync LABEL] [--json]\n"
            "The node's shard must be empty and configured with the same dim, metric, M, efc.\n");
}

/* Fills *o from argv; 0, or -1 after printing why. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    const char *f = NULL, *v = NULL;

    *o = (struct opts){.k = 10,
                       .ef = 64,
                       .M = 16,
                       .efc = 200,
                       .batch = 1000,
                       .per_call = 32,
                       .n_queries = 1000,
                       .epoch = 1,
                       .writers = 2,
                       .clients = 4,
                       .engine_threads = 2,
                       .seconds = 3.0,
                       .fsync = "?"};
    for (int i = 1; i < argc; i++) {
        uint64_t n = 0;
        f = argv[i];
        v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(f, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!v) goto bad;
        i++;
        if (!strcmp(f, "--addr"))
            o->addr = v;
        else if (!strcmp(f, "--collection"))
            o->collection = v;
        else if (!strcmp(f, "--base"))
            o->base = v;
        else if (!strcmp(f, "--query"))
            o->query = v;
        else if (!strcmp(f, "--gt"))
            o->gt = v;
        else if (!strcmp(f, "--fsync"))
            o->fsync = v;
        else if (!strcmp(f, "--metric")) {
            int m = dataset_metric_parse(v);
            if (m < 0) goto bad;
            o->metric = (enum dataset_metric)m;
        } else if (!strcmp(f, "--seconds")) {
            char *end;
            o->seconds = strtod(v, &end);
            if (*end || o->seconds <= 0) goto bad;
        } else if (!strcmp(f, "--synthetic")) {
            unsigned long long n_, d_, c_, s_;
            if (sscanf(v, "%llu,%llu,%llu,%llu", &n_, &d_, &c_, &s_) != 4 || !n_ || !d_ || !c_)
                goto bad;
            o->synthetic = 1;
            o->synth_n = n_;
            o->synth_dim = (uint32_t)d_;
            o->synth_clusters = (uint32_t)c_;
            o->synth_seed = s_;
        } else if (!flags_parse_u64(v, false, &n))
            goto bad;
        else if (!strcmp(f, "--shard"))
            o->shard = (uint32_t)n;
        else if (!strcmp(f, "--epoch"))
            o->epoch = n;
        else if (!strcmp(f, "--queries"))
            o->n_queries = (uint32_t)n;
        else if (!strcmp(f, "--M"))
            o->M = (uint32_t)n;
        else if (!strcmp(f, "--efc"))
            o->efc = (uint32_t)n;
        else if (!strcmp(f, "--k"))
            o->k = (uint32_t)n;
        else if (!strcmp(f, "--ef"))
            o->ef = (uint32_t)n;
        else if (!strcmp(f, "--batch"))
            o->batch = (uint32_t)n;
        else if (!strcmp(f, "--per-call"))
            o->per_call = (uint32_t)n;
        else if (!strcmp(f, "--writers"))
            o->writers = (int)n;
        else if (!strcmp(f, "--clients"))
            o->clients = (int)n;
        else if (!strcmp(f, "--engine-threads"))
            o->engine_threads = (int)n;
        else
            goto bad;
    }
    if (!o->addr || !o->collection || !(o->synthetic || (o->base && o->query))) {
        fprintf(stderr, "vecshard-bench-node: --addr, --collection and a data set are required\n");
        usage(stderr);
        return -1;
    }
    if (!o->k || !o->batch || !o->per_call || !o->n_queries || o->writers < 1 ||
        o->writers > MAX_THREADS || o->clients < 1 || o->clients > MAX_THREADS ||
        o->engine_threads < 1) {
        fprintf(stderr, "vecshard-bench-node: a count is zero or above %d\n", MAX_THREADS);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "vecshard-bench-node: bad flag or value: %s %s\n", f, v ? v : "");
    usage(stderr);
    return -1;
}

/* ------------------------------------------------------------ shared state */

/* Everything the measuring threads read; counters are atomic. */
struct bench {
    const struct opts *o;
    struct dataset_matrix base, query;
    struct dataset_ids gt;
    struct hnsw_index *idx;
    struct rpc_client *cl;
    struct rpc_channel *ch;
    atomic_size_t next; /* next batch (ingest) or query (search) to take */
    atomic_int failed;  /* a call failed: every thread stops */
    double stop_at;     /* search phases end at this bench_clock() time */
    char error[RPC_DETAILS_MAX + 64];
    pthread_mutex_t error_lock;
};

/* Monotonic seconds. */
static double bench_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Records the first failure and stops every thread. */
static void fail(struct bench *b, const char *what, const struct rpc_status *st, const char *msg)
{
    pthread_mutex_lock(&b->error_lock);
    if (!atomic_load(&b->failed))
        snprintf(b->error, sizeof b->error, "%s: %s: %s", what,
                 st ? rpc_status_name(st->code) : "error", st ? st->details : msg);
    atomic_store(&b->failed, 1);
    pthread_mutex_unlock(&b->error_lock);
}

/* Runs fn(arg) on n threads and joins them; 0, or -1 (recorded in b) if one
 * could not start. */
static int run_threads(int n, void *(*fn)(void *), void *arg, struct bench *b)
{
    pthread_t th[MAX_THREADS];
    int started = 0;

    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, fn, arg)) break;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (started < n) fail(b, "pthread_create", NULL, "cannot start a thread");
    return started < n ? -1 : 0;
}

/* ------------------------------------------------------------ ingest */

/* Writer thread: takes batches from b->next until none is left. */
static void *writer_main(void *arg)
{
    struct bench *b = arg;
    const struct opts *o = b->o;
    Vecshard__V1__Point *pts = calloc(o->batch, sizeof *pts);
    Vecshard__V1__Point **ptrs = calloc(o->batch, sizeof *ptrs);

    if (!pts || !ptrs) {
        fail(b, "writer", NULL, "out of memory");
        goto done;
    }
    while (!atomic_load(&b->failed)) {
        size_t lo = atomic_fetch_add(&b->next, o->batch);
        if (lo >= b->base.n) break;
        size_t cnt = b->base.n - lo < o->batch ? b->base.n - lo : o->batch;
        struct rpc_status st;

        shard_calls_points(&b->base, lo, cnt, pts, ptrs);
        if (shard_calls_write(b->ch, o->collection, o->shard, o->epoch, ptrs, cnt,
                              rpc_deadline_in(CALL_TIMEOUT_MS), NULL, &st) != GRPC_STATUS_OK) {
            fail(b, "write", &st, NULL);
            break;
        }
    }
done:
    free(pts);
    free(ptrs);
    return NULL;
}

/* ------------------------------------------------------------ search */

/* One ShardNode.Search of queries [first, first+n) of b->query; the ids of
 * each query's hits go to ids (k per query, *found[i] of them). 0 or -1. */
static int grpc_search(struct bench *b, size_t first, size_t n, uint64_t *ids, uint32_t *found)
{
    const struct opts *o = b->o;
    Vecshard__V1__NodeSearchResponse *resp = NULL;
    struct rpc_status st;
    int rc = -1;

    if (shard_calls_search(b->ch, o->collection, o->shard, &b->query, first, n, o->k, o->ef,
                           rpc_deadline_in(CALL_TIMEOUT_MS), &resp, &st) != GRPC_STATUS_OK) {
        fail(b, "search", &st, NULL);
        return -1;
    }
    if (resp->n_shards != 1 || resp->shards[0]->code != 0 || resp->shards[0]->n_results != n) {
        fail(b, "search", NULL, resp->n_shards ? resp->shards[0]->error : "no shard entry");
        goto done;
    }
    for (size_t j = 0; j < n; j++) {
        Vecshard__V1__QueryResult *r = resp->shards[0]->results[j];
        found[j] = r->n_hits < o->k ? (uint32_t)r->n_hits : o->k;
        for (uint32_t h = 0; h < found[j]; h++)
            ids[j * o->k + h] = r->hits[h]->id;
    }
    rc = 0;
done:
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

/* One in-process search of query q; same output shape as grpc_search. */
static int engine_search(struct bench *b, size_t q, struct hnsw_result *res, uint64_t *ids,
                         uint32_t *found)
{
    char err[HNSW_ERR_MAX];
    const float *v = b->query.data + (q % b->query.n) * b->query.dim;

    if (hnsw_search(b->idx, v, b->o->k, b->o->ef, NULL, NULL, res, found, err)) {
        fail(b, "hnsw_search", NULL, err);
        return -1;
    }
    for (uint32_t h = 0; h < *found; h++)
        ids[h] = res[h].id;
    return 0;
}

/* The three ways of searching that are compared. */
enum mode { MODE_ENGINE, MODE_GRPC_1, MODE_GRPC_BATCH };

/* Per-phase thread argument: the bench plus the mode and counted queries. */
struct search_phase {
    struct bench *b;
    enum mode mode;
    atomic_size_t done;
};

/* Search thread: takes queries (1 or per_call at a time) until stop_at. */
static void *searcher_main(void *arg)
{
    struct search_phase *ph = arg;
    struct bench *b = ph->b;
    const struct opts *o = b->o;
    size_t per = ph->mode == MODE_GRPC_BATCH ? o->per_call : 1;
    uint64_t *ids = malloc(per * o->k * sizeof *ids);
    uint32_t *found = malloc(per * sizeof *found);
    struct hnsw_result *res = malloc(o->k * sizeof *res);

    if (!ids || !found || !res) {
        fail(b, "searcher", NULL, "out of memory");
        goto done;
    }
    while (!atomic_load(&b->failed) && bench_clock() < b->stop_at) {
        size_t first = atomic_fetch_add(&b->next, per);
        int rc = ph->mode == MODE_ENGINE ? engine_search(b, first, res, ids, found)
                                         : grpc_search(b, first, per, ids, found);
        if (rc) break;
        atomic_fetch_add(&ph->done, per);
    }
done:
    free(ids);
    free(found);
    free(res);
    return NULL;
}

/* QPS of `mode` with o->clients threads for o->seconds. */
static double measure_qps(struct bench *b, enum mode mode)
{
    struct search_phase ph = {.b = b, .mode = mode};
    double t0;

    atomic_store(&b->next, 0);
    t0 = bench_clock();
    b->stop_at = t0 + b->o->seconds;
    run_threads(b->o->clients, searcher_main, &ph, b);
    return (double)atomic_load(&ph.done) / (bench_clock() - t0);
}

/* qsort comparator for doubles. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One thread, every query once (after a warm-up), one at a time: mean and
 * median latency in microseconds and recall@k of `mode` (1 query per call). */
static int measure_latency(struct bench *b, enum mode mode, double *mean_us, double *p50_us,
                           double *recall)
{
    const struct opts *o = b->o;
    size_t nq = b->query.n;
    double *lat = malloc(nq * sizeof *lat), sum = 0, rsum = 0;
    uint64_t *ids = malloc(o->k * sizeof *ids);
    struct hnsw_result *res = malloc(o->k * sizeof *res);
    uint32_t found;
    int rc = -1;

    if (!lat || !ids || !res) {
        fail(b, "latency", NULL, "out of memory");
        goto done;
    }
    for (size_t q = 0; q < WARMUP_QUERIES; q++)
        if (mode == MODE_ENGINE ? engine_search(b, q, res, ids, &found)
                                : grpc_search(b, q, 1, ids, &found))
            goto done;
    for (size_t q = 0; q < nq; q++) {
        double t0 = bench_clock();
        if (mode == MODE_ENGINE ? engine_search(b, q, res, ids, &found)
                                : grpc_search(b, q, 1, ids, &found))
            goto done;
        lat[q] = (bench_clock() - t0) * 1e6;
        sum += lat[q];
        rsum += dataset_recall(b->gt.data + q * b->gt.k, o->k, ids, found);
    }
    qsort(lat, nq, sizeof *lat, cmp_double);
    *mean_us = sum / (double)nq;
    *p50_us = lat[nq / 2];
    *recall = rsum / (double)nq;
    rc = 0;
done:
    free(lat);
    free(ids);
    free(res);
    return rc;
}

/* Mean latency in microseconds of `calls` sequential unary calls of a method
 * that does no work: Health/Check (answered on the server's poller thread)
 * or NodeStatus (answered by a worker, like Search). The floor of what any
 * call costs on this machine, so the overhead can be split into transport
 * and handler. -1 on failure. */
static double measure_floor(struct bench *b, int health, int calls)
{
    Grpc__Health__V1__HealthCheckRequest hreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Vecshard__V1__NodeStatusRequest nreq = VECSHARD__V1__NODE_STATUS_REQUEST__INIT;
    double t0 = 0;

    for (int i = -WARMUP_QUERIES; i < calls; i++) {
        ProtobufCMessage *resp = NULL;
        struct rpc_status st;
        struct rpc_opts ro = {.deadline_ms = rpc_deadline_in(CALL_TIMEOUT_MS)};
        grpc_status_code code =
            health
                ? rpc_unary(b->ch, RPC_HEALTH_CHECK, &hreq.base,
                            &grpc__health__v1__health_check_response__descriptor, &resp, &ro, &st)
                : rpc_unary(b->ch, "/vecshard.v1.ShardNode/NodeStatus", &nreq.base,
                            &vecshard__v1__node_status_response__descriptor, &resp, &ro, &st);
        if (code != GRPC_STATUS_OK) {
            fail(b, health ? "health check" : "node status", &st, NULL);
            return -1;
        }
        protobuf_c_message_free_unpacked(resp, NULL);
        if (i == -1) t0 = bench_clock();
    }
    return (bench_clock() - t0) * 1e6 / calls;
}

/* ------------------------------------------------------------ main */

/* Loads or generates the data and its ground truth into b. 0 or -1. */
static int load_data(struct bench *b)
{
    const struct opts *o = b->o;
    char err[DATASET_ERR_MAX];

    if (o->synthetic) {
        if (dataset_synthetic(o->synth_n, o->n_queries, o->synth_dim, o->synth_clusters,
                              o->synth_seed, &b->base, &b->query, err))
            goto bad;
    } else if (dataset_read_vectors(o->base, &b->base, err) ||
               dataset_read_vectors(o->query, &b->query, err)) {
        goto bad;
    }
    if (b->query.n > o->n_queries) b->query.n = o->n_queries;
    if (b->query.dim != b->base.dim || b->query.n < 1) {
        snprintf(err, sizeof err, "queries do not fit the base vectors");
        goto bad;
    }
    if (o->gt) {
        if (dataset_read_ivecs(o->gt, &b->gt, err)) goto bad;
        if (b->gt.n < b->query.n || b->gt.k < o->k) {
            snprintf(err, sizeof err, "ground truth has too few rows or columns");
            goto bad;
        }
    } else if (dataset_ground_truth(&b->base, &b->query, o->metric, o->k, 0, &b->gt, err)) {
        goto bad;
    }
    return 0;
bad:
    fprintf(stderr, "vecshard-bench-node: %s\n", err);
    return -1;
}

/* Builds the in-process index with hnsw_insert_batch; returns its seconds or -1. */
static double build_engine(struct bench *b)
{
    const struct opts *o = b->o;
    struct hnsw_params p;
    char err[HNSW_ERR_MAX];
    uint64_t *ids = malloc(b->base.n * sizeof *ids);
    double t0, secs = -1;

    hnsw_params_init(&p);
    p.dim = b->base.dim;
    p.metric = (enum hnsw_metric)o->metric;
    p.M = o->M;
    p.ef_construction = o->efc;
    if (!ids || hnsw_create(&p, &b->idx, err)) {
        fprintf(stderr, "vecshard-bench-node: %s\n", ids ? err : "out of memory");
        goto done;
    }
    for (size_t i = 0; i < b->base.n; i++)
        ids[i] = i;
    t0 = bench_clock();
    if (hnsw_insert_batch(b->idx, ids, b->base.data, b->base.n, o->engine_threads, err)) {
        fprintf(stderr, "vecshard-bench-node: hnsw_insert_batch: %s\n", err);
        goto done;
    }
    secs = bench_clock() - t0;
done:
    free(ids);
    return secs;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct bench b = {.o = &o, .error_lock = PTHREAD_MUTEX_INITIALIZER};
    double eng_s, grpc_s, t0;
    double eng_mean, eng_p50, eng_rec, g_mean, g_p50, g_rec;
    double qps_eng, qps_1, qps_b, floor_health, floor_status;
    int rc = 1;

    if (parse_args(argc, argv, &o)) return 2;
    if (load_data(&b)) goto done;
    b.cl = rpc_client_create(NULL);
    b.ch = b.cl ? rpc_client_channel(b.cl, o.addr) : NULL;
    if (!b.ch) {
        fprintf(stderr, "vecshard-bench-node: cannot create a gRPC client\n");
        goto done;
    }

    /* Ingest: the engine in-process, then the node over gRPC. */
    eng_s = build_engine(&b);
    if (eng_s < 0) goto done;
    atomic_store(&b.next, 0);
    t0 = bench_clock();
    run_threads(o.writers, writer_main, &b, &b);
    grpc_s = bench_clock() - t0;
    if (atomic_load(&b.failed)) goto failed;

    /* Latency (one thread) and throughput (o.clients threads). */
    if (measure_latency(&b, MODE_ENGINE, &eng_mean, &eng_p50, &eng_rec) ||
        measure_latency(&b, MODE_GRPC_1, &g_mean, &g_p50, &g_rec))
        goto failed;
    floor_health = measure_floor(&b, 1, 2000);
    floor_status = measure_floor(&b, 0, 2000);
    if (floor_health < 0 || floor_status < 0) goto failed;
    qps_eng = measure_qps(&b, MODE_ENGINE);
    qps_1 = measure_qps(&b, MODE_GRPC_1);
    qps_b = measure_qps(&b, MODE_GRPC_BATCH);
    if (atomic_load(&b.failed)) goto failed;

    double n = (double)b.base.n, eng_pts = n / eng_s, grpc_pts = n / grpc_s;
    if (!o.json) {
        printf("node bench: %zu x %u (%s), M %u, efc %u, k %u, ef %u, %zu queries, node fsync %s\n",
               b.base.n, b.base.dim, dataset_metric_name(o.metric), o.M, o.efc, o.k, o.ef,
               b.query.n, o.fsync);
        printf("%-44s %12s %10s %10s\n", "ingest", "points/s", "seconds", "vs engine");
        printf("%-44s %12.0f %10.2f %10s\n", "engine hnsw_insert_batch", eng_pts, eng_s, "1.00");
        printf("gRPC Write, %d writers, batches of %-12u %12.0f %10.2f %10.2f\n", o.writers,
               o.batch, grpc_pts, grpc_s, grpc_pts / eng_pts);
        printf("%-44s %12s %10s %10s\n", "search", "QPS", "recall", "vs engine");
        printf("engine in-process, %d threads%-16s %12.0f %10.4f %10s\n", o.clients, "", qps_eng,
               eng_rec, "1.00");
        printf("gRPC 1 query/call, %d threads%-16s %12.0f %10.4f %10.2f\n", o.clients, "", qps_1,
               g_rec, qps_1 / qps_eng);
        printf("gRPC %u queries/call, %d threads%-14s %12.0f %10s %10.2f\n", o.per_call, o.clients,
               "", qps_b, "", qps_b / qps_eng);
        printf("%-44s %12s %10s\n", "latency, 1 thread, 1 query", "mean us", "p50 us");
        printf("%-44s %12.1f %10.1f\n", "engine", eng_mean, eng_p50);
        printf("%-44s %12.1f %10.1f\n", "gRPC", g_mean, g_p50);
        printf("%-44s %12.1f %10.1f\n", "per-call overhead (gRPC - engine)", g_mean - eng_mean,
               g_p50 - eng_p50);
        printf("%-44s %12.1f\n", "empty call: Health/Check (poller thread)", floor_health);
        printf("%-44s %12.1f\n", "empty call: NodeStatus (worker thread)", floor_status);
    }
    printf("{\"phase\":\"node_ingest\",\"n\":%zu,\"dim\":%u,\"batch\":%u,\"writers\":%d,"
           "\"engine_threads\":%d,\"fsync\":\"%s\",\"engine_pts_s\":%.1f,\"grpc_pts_s\":%.1f,"
           "\"ratio\":%.3f}\n",
           b.base.n, b.base.dim, o.batch, o.writers, o.engine_threads, o.fsync, eng_pts, grpc_pts,
           grpc_pts / eng_pts);
    printf("{\"phase\":\"node_search\",\"mode\":\"engine\",\"threads\":%d,\"per_call\":1,"
           "\"qps\":%.1f,\"recall\":%.4f,\"ratio\":1.000}\n",
           o.clients, qps_eng, eng_rec);
    printf("{\"phase\":\"node_search\",\"mode\":\"grpc_1\",\"threads\":%d,\"per_call\":1,"
           "\"qps\":%.1f,\"recall\":%.4f,\"ratio\":%.3f}\n",
           o.clients, qps_1, g_rec, qps_1 / qps_eng);
    printf("{\"phase\":\"node_search\",\"mode\":\"grpc_batch\",\"threads\":%d,\"per_call\":%u,"
           "\"qps\":%.1f,\"ratio\":%.3f}\n",
           o.clients, o.per_call, qps_b, qps_b / qps_eng);
    printf("{\"phase\":\"node_latency\",\"engine_us\":%.1f,\"grpc_us\":%.1f,\"overhead_us\":%.1f,"
           "\"engine_p50_us\":%.1f,\"grpc_p50_us\":%.1f,\"overhead_p50_us\":%.1f,"
           "\"health_call_us\":%.1f,\"node_status_call_us\":%.1f}\n",
           eng_mean, g_mean, g_mean - eng_mean, eng_p50, g_p50, g_p50 - eng_p50, floor_health,
           floor_status);
    rc = 0;
    goto done;
failed:
    fprintf(stderr, "vecshard-bench-node: %s\n", b.error);
done:
    if (b.cl) rpc_client_destroy(b.cl);
    hnsw_free(b.idx);
    dataset_matrix_free(&b.base);
    dataset_matrix_free(&b.query);
    dataset_ids_free(&b.gt);
    return rc;
}
