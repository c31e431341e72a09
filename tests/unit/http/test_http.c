/*
 * test_http.c — common/http with a real HTTP client (libcurl): /metrics
 * (200, content type, the registry's text), /healthz and /readyz (200 "ok",
 * 503 with the probe's reason), 404, 405 with Allow, HEAD, port 0 and a
 * port already in use.
 */
#define _GNU_SOURCE
#include "common/http/http.h"
#include "common/metrics/metrics.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct reply {
    long status;
    char body[8192];
    size_t len;
    char ctype[128];
    char allow[64];
};

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
    struct reply *r = u;
    size_t k = sz * n;
    size_t room = sizeof r->body - 1 - r->len;
    size_t c = k < room ? k : room;
    memcpy(r->body + r->len, p, c);
    r->len += c;
    r->body[r->len] = '\0';
    return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u)
{
    struct reply *r = u;
    size_t k = sz * n;
    if (k > 6 && strncasecmp(p, "Allow:", 6) == 0)
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)(k - 8 > 0 ? k - 9 : 0), p + 7);
    return k;
}

/* One request; returns 0 when it got an HTTP answer. */
static int request(int port, const char *method, const char *path, struct reply *r)
{
    memset(r, 0, sizeof *r);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "x=1");
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct != NULL) snprintf(r->ctype, sizeof r->ctype, "%s", ct);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

static atomic_bool ready;

static bool probe_ready(void *user, char *why, size_t whylen)
{
    (void)user;
    if (atomic_load(&ready)) return true;
    snprintf(why, whylen, "replica c/0 is LOADING\nsecond line");
    return false;
}

static bool probe_live(void *user, char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    return *(int *)user == 42;
}

static void test_endpoints(void)
{
    struct metrics *m = metrics_create();
    struct metrics_family *g = metrics_gauge(m, "vecshard_test_value", "A value", NULL);
    metrics_set(g, NULL, 7);
    int user = 42, port = 0;
    char err[256];
    struct http_config cfg = {.addr = "127.0.0.1:0", .metrics = m, .healthz = probe_live,
                              .readyz = probe_ready, .user = &user};
    struct http_server *h = http_start(&cfg, &port, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT(port > 0);

    struct reply r;
    CU_ASSERT_EQUAL(request(port, "GET", "/metrics", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\nvecshard_test_value 7\n"));

    CU_ASSERT_EQUAL(request(port, "GET", "/healthz", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body, "ok\n");

    atomic_store(&ready, false);
    CU_ASSERT_EQUAL(request(port, "GET", "/readyz", &r), 0);
    CU_ASSERT_EQUAL(r.status, 503);
    CU_ASSERT_STRING_EQUAL(r.body, "replica c/0 is LOADING second line\n");
    atomic_store(&ready, true);
    CU_ASSERT_EQUAL(request(port, "GET", "/readyz", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body, "ok\n");

    user = 0; /* the liveness probe fails without a reason */
    CU_ASSERT_EQUAL(request(port, "GET", "/healthz", &r), 0);
    CU_ASSERT_EQUAL(r.status, 503);
    CU_ASSERT_STRING_EQUAL(r.body, "not ok\n");

    CU_ASSERT_EQUAL(request(port, "GET", "/nope", &r), 0);
    CU_ASSERT_EQUAL(r.status, 404);
    CU_ASSERT_EQUAL(request(port, "GET", "/metrics/x", &r), 0);
    CU_ASSERT_EQUAL(r.status, 404);

    CU_ASSERT_EQUAL(request(port, "POST", "/metrics", &r), 0);
    CU_ASSERT_EQUAL(r.status, 405);
    CU_ASSERT_STRING_EQUAL(r.allow, "GET, HEAD");
    CU_ASSERT_EQUAL(request(port, "DELETE", "/readyz", &r), 0);
    CU_ASSERT_EQUAL(r.status, 405);

    CU_ASSERT_EQUAL(request(port, "HEAD", "/metrics", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(r.len, 0);

    /* the same port twice fails with a message */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct http_config dup = {.addr = addr};
    int p2 = 0;
    CU_ASSERT_PTR_NULL(http_start(&dup, &p2, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot listen"));

    http_stop(h);
    CU_ASSERT_NOT_EQUAL(request(port, "GET", "/healthz", &r), 0); /* closed */
    metrics_destroy(m);
}

static void test_no_registry_and_bad_addr(void)
{
    int port = 0;
    char err[256];
    struct http_config cfg = {.addr = "localhost:0"};
    struct http_server *h = http_start(&cfg, &port, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    struct reply r;
    CU_ASSERT_EQUAL(request(port, "GET", "/metrics", &r), 0);
    CU_ASSERT_EQUAL(r.status, 404);
    CU_ASSERT_EQUAL(request(port, "GET", "/readyz", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    http_stop(h);
    http_stop(NULL);

    const char *bad[] = {"nocolon", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:x",
                         "no.such.host.invalid:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct http_config b = {.addr = bad[i]};
        CU_ASSERT_PTR_NULL(http_start(&b, &port, err, sizeof err));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "--http"));
    }
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("http", NULL, NULL);
    CU_add_test(s, "/metrics, probes, 404, 405, HEAD, port in use", test_endpoints);
    CU_add_test(s, "no registry, bad addresses", test_no_registry_and_bad_addr);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    curl_global_cleanup();
    return failed ? 1 : 0;
}
