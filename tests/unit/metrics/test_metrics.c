/*
 * test_metrics.c — common/metrics: the exact text of a small registry
 * (counters, gauges, a histogram with cumulative buckets, collectors),
 * escaping of label values and HELP text, number forms, the children cap,
 * concurrent updates while rendering, the process collector, and
 * `promtool check metrics` over a rendered registry.
 */
#define _GNU_SOURCE
#include "common/metrics/metrics.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROMTOOL "/usr/bin/promtool"

static const char dropped_header[] =
    "# HELP vecshard_metrics_dropped_series_total Updates not recorded because their metric "
    "already has the maximum number of label combinations\n"
    "# TYPE vecshard_metrics_dropped_series_total counter\n";

static void collect_two(struct metrics_writer *w, void *user)
{
    const char *coll = user;
    metrics_family(w, "vecshard_test_points", "gauge", "Points per shard");
    metrics_sample(w, "vecshard_test_points", 12, "collection", coll, "shard", "0", NULL);
    metrics_sample(w, "vecshard_test_points", 7.5, "collection", coll, "shard", "1", NULL);
    metrics_family(w, "vecshard_test_empty", "gauge", "Declared, no sample yet");
}

static void test_exact_text(void)
{
    struct metrics *m = metrics_create();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    struct metrics_family *c = metrics_counter(m, "vecshard_test_calls_total", "Calls", "method,code");
    struct metrics_family *g = metrics_gauge(m, "vecshard_test_up", "Up or not", NULL);
    static const double b[] = {0.1, 1};
    struct metrics_family *h = metrics_histogram(m, "vecshard_test_seconds", "Time", "method", b, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    const char *ok[] = {"Search", "OK"}, *bad[] = {"Search", "INVALID_ARGUMENT"};
    metrics_add(c, ok, 1);
    metrics_add(c, ok, 2);
    metrics_add(c, bad, 1);
    metrics_add(c, ok, -5); /* counters never go down */
    metrics_set(g, NULL, 1);
    const char *s[] = {"Search"};
    metrics_observe(h, s, 0.05);
    metrics_observe(h, s, 0.5);
    metrics_observe(h, s, 3);
    metrics_observe(h, s, 0.1); /* le is inclusive */
    CU_ASSERT_EQUAL(metrics_add_collector(m, collect_two, "c1"), 0);

    size_t len = 0;
    char *text = metrics_render(m, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char want[4096];
    snprintf(want, sizeof want,
             "%s"
             "# HELP vecshard_test_calls_total Calls\n"
             "# TYPE vecshard_test_calls_total counter\n"
             "vecshard_test_calls_total{method=\"Search\",code=\"OK\"} 3\n"
             "vecshard_test_calls_total{method=\"Search\",code=\"INVALID_ARGUMENT\"} 1\n"
             "# HELP vecshard_test_up Up or not\n"
             "# TYPE vecshard_test_up gauge\n"
             "vecshard_test_up 1\n"
             "# HELP vecshard_test_seconds Time\n"
             "# TYPE vecshard_test_seconds histogram\n"
             "vecshard_test_seconds_bucket{method=\"Search\",le=\"0.1\"} 2\n"
             "vecshard_test_seconds_bucket{method=\"Search\",le=\"1\"} 3\n"
             "vecshard_test_seconds_bucket{method=\"Search\",le=\"+Inf\"} 4\n"
             "vecshard_test_seconds_sum{method=\"Search\"} 3.65\n"
             "vecshard_test_seconds_count{method=\"Search\"} 4\n"
             "# HELP vecshard_test_points Points per shard\n"
             "# TYPE vecshard_test_points gauge\n"
             "vecshard_test_points{collection=\"c1\",shard=\"0\"} 12\n"
             "vecshard_test_points{collection=\"c1\",shard=\"1\"} 7.5\n"
             "# HELP vecshard_test_empty Declared, no sample yet\n"
             "# TYPE vecshard_test_empty gauge\n",
             dropped_header);
    CU_ASSERT_STRING_EQUAL(text, want);
    CU_ASSERT_EQUAL(len, strlen(want));
    if (strcmp(text, want) != 0) printf("\n--- got:\n%s--- want:\n%s", text, want);
    free(text);
    metrics_destroy(m);
}

static void test_same_name_twice(void)
{
    struct metrics *m = metrics_create();
    struct metrics_family *a = metrics_counter(m, "vecshard_x_total", "X", "a,b");
    CU_ASSERT_PTR_NOT_NULL(a);
    CU_ASSERT_PTR_EQUAL(metrics_counter(m, "vecshard_x_total", "X again", "a,b"), a);
    CU_ASSERT_PTR_NULL(metrics_counter(m, "vecshard_x_total", "X", "a"));
    CU_ASSERT_PTR_NULL(metrics_gauge(m, "vecshard_x_total", "X", "a,b"));
    CU_ASSERT_PTR_NULL(metrics_gauge(m, "9bad", "bad name", NULL));
    CU_ASSERT_PTR_NULL(metrics_gauge(m, "vecshard_bad-name", "bad name", NULL));
    CU_ASSERT_PTR_NULL(metrics_gauge(m, "vecshard_l", "bad label", "a-b"));
    CU_ASSERT_PTR_NULL(metrics_gauge(m, "vecshard_l", "reserved label", "__x"));
    CU_ASSERT_PTR_NULL(metrics_gauge(m, "vecshard_l", "too many labels", "a,b,c,d,e"));
    CU_ASSERT_PTR_NULL(metrics_histogram(m, "vecshard_h", "le label", "le", NULL, 0));
    static const double unsorted[] = {1, 0.5};
    CU_ASSERT_PTR_NULL(metrics_histogram(m, "vecshard_h", "unsorted", NULL, unsorted, 2));
    /* NULL families are ignored */
    metrics_add(NULL, NULL, 1);
    metrics_set(NULL, NULL, 1);
    metrics_observe(NULL, NULL, 1);
    /* an update of the wrong kind is ignored */
    const char *v[] = {"1", "2"};
    metrics_set(a, v, 5);
    metrics_add(a, NULL, 1); /* labelled family without values: ignored, no crash */
    char *text = metrics_render(m, NULL);
    CU_ASSERT_PTR_NULL(strstr(text, "vecshard_x_total{"));
    free(text);
    metrics_destroy(m);
}

static void collect_escapes(struct metrics_writer *w, void *user)
{
    (void)user;
    metrics_family(w, "vecshard_test_special", "gauge", "Line one\nback\\slash \"quoted\"");
    metrics_sample(w, "vecshard_test_special", NAN, "collection", "a\"b\\c\nd", NULL);
    metrics_sample(w, "vecshard_test_special", INFINITY, "collection", "inf", NULL);
    metrics_sample(w, "vecshard_test_special", -INFINITY, "collection", "-inf", NULL);
    metrics_sample(w, "vecshard_test_special", 0.1, "collection", "tenth", NULL);
    metrics_sample(w, "vecshard_test_special", 1e20, "collection", "big", NULL);
    metrics_sample(w, "vecshard_test_special", -3, "collection", "neg", NULL);
}

static void test_escaping_and_numbers(void)
{
    struct metrics *m = metrics_create();
    metrics_add_collector(m, collect_escapes, NULL);
    struct metrics_family *g = metrics_gauge(m, "vecshard_test_label", "L", "collection");
    const char *v[] = {"x\ny"};
    metrics_set(g, v, 2);
    char *text = metrics_render(m, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_test_label{collection=\"x\\ny\"} 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(
        text, "# HELP vecshard_test_special Line one\\nback\\\\slash \"quoted\"\n"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "vecshard_test_special{collection=\"a\\\"b\\\\c\\nd\"} NaN\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_test_special{collection=\"inf\"} +Inf\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_test_special{collection=\"-inf\"} -Inf\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_test_special{collection=\"tenth\"} 0.1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_test_special{collection=\"big\"} 1e+20\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_test_special{collection=\"neg\"} -3\n"));
    free(text);
    metrics_destroy(m);
}

static void test_children_cap(void)
{
    struct metrics *m = metrics_create();
    struct metrics_family *g = metrics_gauge(m, "vecshard_test_many", "Many", "id");
    char id[32];
    const char *v[] = {id};
    for (int i = 0; i < METRICS_CHILDREN_MAX + 10; i++) {
        snprintf(id, sizeof id, "%d", i);
        metrics_set(g, v, i);
    }
    snprintf(id, sizeof id, "%d", 5); /* existing children still update */
    metrics_set(g, v, -1);
    char *text = metrics_render(m, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    int samples = 0;
    for (char *p = text; (p = strstr(p, "\nvecshard_test_many{")) != NULL; p++)
        samples++;
    CU_ASSERT_EQUAL(samples, METRICS_CHILDREN_MAX);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_test_many{id=\"5\"} -1\n"));
    CU_ASSERT_PTR_NULL(strstr(text, "vecshard_test_many{id=\"4096\"}"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "vecshard_metrics_dropped_series_total{metric=\"vecshard_test_many\"} 10\n"));
    free(text);
    metrics_destroy(m);
}

/* ------------------------------------------------------------ concurrency */

#define THREADS 4
#define ROUNDS  20000

struct hammer {
    struct metrics_family *c, *h;
    int id;
};

static void *hammer_main(void *arg)
{
    struct hammer *hm = arg;
    char lbl[8];
    const char *v[] = {lbl};
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(lbl, sizeof lbl, "m%d", i % 8);
        metrics_add(hm->c, v, 1);
        metrics_observe(hm->h, v, (double)(i % 100) / 1000);
    }
    return NULL;
}

static void test_concurrent_updates(void)
{
    struct metrics *m = metrics_create();
    struct hammer hm[THREADS];
    pthread_t t[THREADS];
    struct metrics_family *c = metrics_counter(m, "vecshard_test_hits_total", "Hits", "method");
    struct metrics_family *h = metrics_histogram(m, "vecshard_test_lat_seconds", "Lat", "method",
                                                 NULL, 0);
    for (int i = 0; i < THREADS; i++) {
        hm[i] = (struct hammer){c, h, i};
        pthread_create(&t[i], NULL, hammer_main, &hm[i]);
    }
    for (int r = 0; r < 20; r++) /* render while they write */
        free(metrics_render(m, NULL));
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = metrics_render(m, NULL);
    char want[128];
    for (int k = 0; k < 8; k++) {
        snprintf(want, sizeof want, "vecshard_test_hits_total{method=\"m%d\"} %d\n", k,
                 THREADS * ROUNDS / 8);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
        snprintf(want, sizeof want, "vecshard_test_lat_seconds_count{method=\"m%d\"} %d\n", k,
                 THREADS * ROUNDS / 8);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
        snprintf(want, sizeof want, "vecshard_test_lat_seconds_bucket{method=\"m%d\",le=\"+Inf\"} %d\n",
                 k, THREADS * ROUNDS / 8);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
    }
    free(text);
    metrics_destroy(m);
}

static void test_process_collector(void)
{
    struct metrics *m = metrics_create();
    CU_ASSERT_EQUAL(metrics_add_process(m, "vecshard-test", "1.2.3"), 0);
    CU_ASSERT_EQUAL(metrics_add_process(m, "again", "x"), -1);
    char *text = metrics_render(m, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "\nvecshard_build_info{program=\"vecshard-test\",version=\"1.2.3\"} 1\n"));
    const char *names[] = {"vecshard_process_resident_memory_bytes", "vecshard_process_open_fds",
                           "vecshard_process_cpu_seconds_total",
                           "vecshard_process_start_time_seconds"};
    for (size_t i = 0; i < 4; i++) {
        char want[128];
        snprintf(want, sizeof want, "\n%s ", names[i]);
        char *p = strstr(text, want);
        CU_ASSERT_PTR_NOT_NULL(p);
        if (p == NULL) continue;
        double v = strtod(p + strlen(want), NULL);
        CU_ASSERT(i == 2 ? v >= 0 : v > 0); /* a short test may have used < 1 clock tick */
        if (i == 0) CU_ASSERT(v > 1e5 && v < 1e10);                /* bytes, not pages */
        if (i == 3) CU_ASSERT(v > 1.6e9 && v < (double)time(NULL) + 1); /* Unix seconds */
    }
    free(text);
    metrics_destroy(m);
}

/* ------------------------------------------------------------ promtool */

static void collect_for_lint(struct metrics_writer *w, void *user)
{
    (void)user;
    metrics_family(w, "vecshard_test_replica_points", "gauge", "Points of a replica");
    metrics_sample(w, "vecshard_test_replica_points", 3, "collection", "we\"ird\\name\n",
                   "shard", "0", NULL);
    metrics_family(w, "vecshard_test_moves_total", "counter", "Moves finished");
    metrics_sample(w, "vecshard_test_moves_total", 0, NULL);
}

static void test_promtool(void)
{
    if (access(PROMTOOL, X_OK) != 0) {
        printf("\n  SKIPPED: %s not installed (Debian package prometheus; make deps)\n", PROMTOOL);
        return;
    }
    struct metrics *m = metrics_create();
    metrics_add_process(m, "vecshard-test", "0.1.0");
    metrics_add_collector(m, collect_for_lint, NULL);
    struct metrics_family *c =
        metrics_counter(m, "vecshard_test_requests_total", "Requests by method and code", "method,code");
    struct metrics_family *h = metrics_histogram(m, "vecshard_test_request_duration_seconds",
                                                 "Request latency", "method", NULL, 0);
    struct metrics_family *g = metrics_gauge(m, "vecshard_test_lag", "Lag", "shard");
    const char *v[] = {"Search", "OK"}, *s[] = {"Search"}, *sh[] = {"0"};
    metrics_add(c, v, 5);
    metrics_observe(h, s, 0.003);
    metrics_set(g, sh, NAN);
    size_t len;
    char *text = metrics_render(m, &len);
    char path[] = "/tmp/vs-metrics-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s check metrics < %s 2>&1", PROMTOOL, path);
    FILE *p = popen(cmd, "r");
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    /* promtool exits 3 for lint problems: any output at all is a failure too */
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_EQUAL(n, 0);
    if (n > 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) printf("\npromtool: %s\n%s", out, text);
    unlink(path);
    free(text);
    metrics_destroy(m);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("metrics", NULL, NULL);
    CU_add_test(s, "exact text of a small registry", test_exact_text);
    CU_add_test(s, "same name twice, bad names", test_same_name_twice);
    CU_add_test(s, "escaping and number forms", test_escaping_and_numbers);
    CU_add_test(s, "children cap and the dropped counter", test_children_cap);
    CU_add_test(s, "concurrent updates while rendering", test_concurrent_updates);
    CU_add_test(s, "process collector", test_process_collector);
    CU_add_test(s, "promtool check metrics", test_promtool);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
