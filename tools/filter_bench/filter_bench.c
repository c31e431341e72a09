/*
 * filter_bench.c — vecshard-bench-filter: filtered search in one replica
 * (node/storage, in-process), per selectivity, against the naive
 * alternatives (docs/filtering.md "Measured"; `make bench-filter`).
 *
 * A synthetic clustered set (dataset_synthetic, default 200,000 x 128) is
 * written into a fresh replica in batches of 1,000 with one int attribute
 * per point, `sel` = a hash of the id mod 1,000 (uncorrelated with the
 * vectors). For each selectivity s in 50 %, 10 %, 1 %, 0.1 % the filter is
 * {"range":{"sel":{"lt":1000 s}}}; every query (one thread, the engine's
 * default ef 64, k 10) is answered by:
 *   planner  the plan the replica picks (reported)
 *   graph    the filtered HNSW traversal, forced
 *   exact    distances to every match, forced (= brute force over the subset)
 *   post     the replica's post plan, forced: an unfiltered search of
 *            max(ef, 3 k) / s candidates, then its first k matches
 *   naive    the naive post-filter: an unfiltered search with k = ef = 1,000,
 *            then the first 10 matching hits
 * Recall@10 is against the exact answer; QPS is queries over the wall time.
 * An unfiltered search at the same ef is the baseline (its recall against
 * the exact answer over every point). The last stdout line
 * is one JSON object with every figure.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/filter/filter.h"
#include "common/util/hash.h"
#include "node/storage/replica.h"
#include "tools/bench/dataset.h"

#define K        10
#define EF       64
#define POST_K   1000
#define BATCH    1000
#define MAX_SELS 8

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t sel_of(uint64_t id)
{
    return (int64_t)(hash_id64(id) % 1000);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "vecshard-bench-filter: %s: %s\n", what, err);
    exit(1);
}

/* Writes the base set with attributes into r. */
static void load(struct replica *r, const struct dataset_matrix *base)
{
    Vecshard__V1__Point *pts = calloc(BATCH, sizeof *pts);
    Vecshard__V1__Point **pp = calloc(BATCH, sizeof *pp);
    Vecshard__V1__Point__AttributesEntry *ent = calloc(BATCH, sizeof *ent), **entp;
    Vecshard__V1__AttributeValue *val = calloc(BATCH, sizeof *val);
    entp = calloc(BATCH, sizeof *entp);
    if (!pts || !pp || !ent || !val || !entp) die("load", "out of memory");
    char err[REPLICA_ERR_MAX];
    for (size_t lo = 0; lo < base->n; lo += BATCH) {
        size_t n = base->n - lo < BATCH ? base->n - lo : BATCH;
        for (size_t i = 0; i < n; i++) {
            vecshard__v1__point__init(&pts[i]);
            vecshard__v1__point__attributes_entry__init(&ent[i]);
            vecshard__v1__attribute_value__init(&val[i]);
            pts[i].id = lo + i;
            pts[i].vector = base->data + (lo + i) * base->dim;
            pts[i].n_vector = base->dim;
            val[i].kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE;
            val[i].int_value = sel_of(lo + i);
            ent[i].key = "sel";
            ent[i].value = &val[i];
            entp[i] = &ent[i];
            pts[i].attributes = &entp[i];
            pts[i].n_attributes = 1;
            pp[i] = &pts[i];
        }
        Vecshard__V1__WriteBatch b = VECSHARD__V1__WRITE_BATCH__INIT;
        b.upserts = pp;
        b.n_upserts = n;
        if (replica_write(r, 1, &b, NULL, err) != REPLICA_OK) die("write", err);
    }
    free(pts);
    free(pp);
    free(ent);
    free(entp);
    free(val);
}

/* The compiled filter sel < lt (points into the static message parts). */
static struct filter *make_filter(double lt, Vecshard__V1__Filter *f, Vecshard__V1__Condition *c,
                                  Vecshard__V1__Range *rg, Vecshard__V1__Number *num)
{
    vecshard__v1__filter__init(f);
    vecshard__v1__condition__init(c);
    vecshard__v1__range__init(rg);
    vecshard__v1__number__init(num);
    num->value = lt;
    rg->lt = num;
    c->key = "sel";
    c->test_case = VECSHARD__V1__CONDITION__TEST_RANGE;
    c->range = rg;
    f->expr_case = VECSHARD__V1__FILTER__EXPR_CONDITION;
    f->condition = c;
    struct filter *cf;
    char err[FILTER_ERR_MAX];
    if (filter_compile(f, "filter", &cf, err, sizeof err)) die("filter", err);
    return cf;
}

/* Fraction of truth[0..nt) found among got[0..ng). */
static double overlap(const uint64_t *truth, uint32_t nt, const uint64_t *got, uint32_t ng)
{
    if (nt == 0) return 1.0;
    uint32_t f = 0;
    for (uint32_t i = 0; i < nt; i++)
        for (uint32_t j = 0; j < ng; j++)
            if (truth[i] == got[j]) {
                f++;
                break;
            }
    return (double)f / nt;
}

struct run {
    double qps, recall;
    const char *plan; /* planner: the plan of the first query */
};

/*
 * Runs every query with method m ("planner", "graph", "exact", "post",
 * "none" = unfiltered); ids of each query's hits into out (nq x K) and
 * counts into nout.
 */
static struct run run_method(struct replica *r, const struct dataset_matrix *q,
                             const struct filter *f, int64_t lt, const char *m, uint64_t *out,
                             uint32_t *nout, const uint64_t *truth, const uint32_t *ntruth)
{
    struct replica_results res;
    replica_results_init(&res);
    char err[REPLICA_ERR_MAX];
    struct run run = {0};
    struct replica_plan plan;
    bool post = strcmp(m, "naive") == 0, none = strcmp(m, "none") == 0;
    double t0 = now(), rsum = 0;
    for (size_t i = 0; i < q->n; i++) {
        struct replica_query rq = {
            .vector = q->data + i * q->dim,
            .len = q->dim,
            .k = post ? POST_K : K,
            .ef = post ? POST_K : EF,
            .filter = post || none ? NULL : f,
            .force_plan = strcmp(m, "graph") == 0 || strcmp(m, "exact") == 0 ||
                                  strcmp(m, "post") == 0
                              ? m
                              : NULL,
            .with_attributes = post,
            .plan = &plan,
        };
        if (replica_search(r, &rq, &res, err) != REPLICA_OK) die("search", err);
        uint32_t n = 0;
        for (uint32_t h = 0; h < res.n && n < K; h++) {
            if (post) {
                struct attr_view v;
                if (!res.points[h].attrs ||
                    !attrs_find(res.points[h].attrs, res.points[h].attrs_len, "sel", 3, &v) ||
                    !(v.i < lt))
                    continue;
            }
            out[i * K + n++] = res.points[h].id;
        }
        nout[i] = n;
        if (i == 0) run.plan = plan.plan;
    }
    double secs = now() - t0;
    for (size_t i = 0; truth && i < q->n; i++)
        rsum += overlap(truth + i * K, ntruth[i], out + i * K, nout[i]);
    run.qps = (double)q->n / secs;
    run.recall = truth ? rsum / (double)q->n : 0;
    replica_results_free(&res);
    return run;
}

int main(int argc, char **argv)
{
    size_t n = 200000, nq = 1000;
    uint32_t dim = 128;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n"))
            n = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--queries"))
            nq = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--dim"))
            dim = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "usage: vecshard-bench-filter [--n 200000] [--queries 1000] [--dim 128]\n");
            return 2;
        }
    }
    struct dataset_matrix base, q;
    char err[REPLICA_ERR_MAX];
    if (dataset_synthetic(n, nq, dim, 100, 42, &base, &q, err)) die("data", err);
    char dir[] = "/tmp/vs-bench-filter-XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp", "failed");
    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "bench";
    c.hnsw.dim = dim;
    c.hnsw.M = 16;
    c.hnsw.ef_construction = 200;
    c.fsync = WAL_FSYNC_NONE;
    c.ef_search = EF;
    struct replica *r;
    if (replica_open(&c, &r, NULL, err) != REPLICA_OK) die("open", err);
    double t0 = now();
    load(r, &base);
    double build = now() - t0;
    fprintf(stderr, "loaded %zu x %u with attributes in %.1f s\n", n, dim, build);

    uint64_t *truth = calloc(nq * K, sizeof *truth), *got = calloc(nq * K, sizeof *got);
    uint32_t *ntruth = calloc(nq, sizeof *ntruth), *ngot = calloc(nq, sizeof *ngot);
    if (!truth || !got || !ntruth || !ngot) die("memory", "out of memory");
    static const double sels[] = {0.5, 0.1, 0.05, 0.02, 0.01, 0.001};
    static const char *methods[] = {"planner", "graph", "exact", "post", "naive"};
    /* The unfiltered baseline against the exact answer over every point (sel < 1000). */
    Vecshard__V1__Filter af;
    Vecshard__V1__Condition ac;
    Vecshard__V1__Range ar;
    Vecshard__V1__Number an;
    struct filter *all = make_filter(1000, &af, &ac, &ar, &an);
    run_method(r, &q, all, 1000, "exact", truth, ntruth, NULL, NULL);
    filter_free(all);
    struct run base_run = run_method(r, &q, NULL, 0, "none", got, ngot, truth, ntruth);
    printf("unfiltered ef %d: %.0f QPS, recall@10 %.4f\n", EF, base_run.qps, base_run.recall);
    printf("%-12s %-8s %10s %9s  %s\n", "selectivity", "method", "QPS", "recall@10", "plan");
    char json[12288];
    int jl = snprintf(json, sizeof json, "{\"n\":%zu,\"dim\":%u,\"queries\":%zu,\"ef\":%d,"
                      "\"build_seconds\":%.1f,\"unfiltered_qps\":%.1f,"
                      "\"unfiltered_recall\":%.4f,\"rows\":[",
                      n, dim, nq, EF, build, base_run.qps, base_run.recall);
    for (size_t s = 0; s < sizeof sels / sizeof *sels; s++) {
        Vecshard__V1__Filter f;
        Vecshard__V1__Condition cond;
        Vecshard__V1__Range rg;
        Vecshard__V1__Number num;
        int64_t lt = (int64_t)(sels[s] * 1000 + 0.5);
        struct filter *cf = make_filter((double)lt, &f, &cond, &rg, &num);
        run_method(r, &q, cf, lt, "exact", truth, ntruth, NULL, NULL);
        for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
            struct run x = run_method(r, &q, cf, lt, methods[m], got, ngot, truth, ntruth);
            printf("%-12g %-8s %10.0f %9.4f  %s\n", sels[s] * 100, methods[m], x.qps, x.recall,
                   m == 0 && x.plan ? x.plan : "");
            if (jl < (int)sizeof json - 200)
                jl += snprintf(json + jl, sizeof json - jl,
                               "%s{\"selectivity\":%g,\"method\":\"%s\",\"qps\":%.1f,"
                               "\"recall\":%.4f,\"plan\":\"%s\"}",
                               s || m ? "," : "", sels[s], methods[m], x.qps, x.recall,
                               m == 0 && x.plan ? x.plan : "");
        }
        filter_free(cf);
    }
    printf("%s]}\n", json);
    replica_close(r, err);
    replica_remove_files(dir, err);
    dataset_matrix_free(&base);
    dataset_matrix_free(&q);
    free(truth);
    free(got);
    free(ntruth);
    free(ngot);
    return 0;
}
