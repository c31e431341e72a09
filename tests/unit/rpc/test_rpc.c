/*
 * test_rpc.c — CUnit tests of common/rpc against real servers on loopback.
 *
 * Two servers (A and B) run for the whole suite with test handlers under the
 * made-up service "test.Echo", speaking vecshard.v1.Point so no test-only
 * proto is needed: Echo (reply = request, plus metadata and trailers), Slow
 * (sleeps request.id ms), Big (replies request.id payload bytes), Deadline
 * (reports the remaining ms), Fail (error with trailer) and Stream (request.id
 * messages). Server A also serves vecshard.v1.ShardNode/NodeStatus for the
 * Python interoperability check. Server A has a 1 MiB message limit.
 * Str decodes its request as vecshard.v1.ShardSearchResult, whose field 3 is
 * a string where Point's is bytes, so a Point with a NUL in its payload is a
 * request with a NUL inside a string (rpc_pb_find_nul). SetServing (raw
 * bytes: non-empty = serving) lets the Python Health/Watch client drive the
 * status. Server A counts its calls in a metrics registry.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "common/metrics/metrics.h"
#include "common/rpc/rpc.h"
#include "proto/grpc_health/v1/health.pb-c.h"
#include "proto/vecshard/v1/common.pb-c.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

#define SMALL_MAX (1u << 20)

static struct rpc_server *srv_a, *srv_b;
static struct metrics *metrics_a;
static int port_a, port_b;
static struct rpc_client *client;
static char addr_a[64], addr_b[64];

static const ProtobufCMessageDescriptor *point_desc = &vecshard__v1__point__descriptor;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ test handlers */

static grpc_status_code h_echo(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)user;
    Vecshard__V1__Point p = *(const Vecshard__V1__Point *)req;
    char v[64];
    if (rpc_call_metadata(c, "x-echo", v, sizeof v) >= 0) {
        p.payload.data = (uint8_t *)v;
        p.payload.len = strlen(v);
    }
    rpc_call_add_trailer(c, "x-served-by", "echo");
    rpc_call_reply(c, &p.base);
    return GRPC_STATUS_OK;
}

static grpc_status_code h_slow(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)user;
    const Vecshard__V1__Point *p = (const void *)req;
    sleep_ms((int)p->id);
    rpc_call_reply(c, req);
    return GRPC_STATUS_OK;
}

static grpc_status_code h_big(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)user;
    const Vecshard__V1__Point *p = (const void *)req;
    Vecshard__V1__Point out = VECSHARD__V1__POINT__INIT;
    out.payload.len = p->id;
    out.payload.data = calloc(1, p->id + 1);
    rpc_call_reply(c, &out.base);
    free(out.payload.data);
    return GRPC_STATUS_OK;
}

static grpc_status_code h_deadline(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)req;
    (void)user;
    Vecshard__V1__Point out = VECSHARD__V1__POINT__INIT;
    int64_t d = rpc_call_deadline_ms(c);
    out.id = d == 0 ? UINT64_MAX : (uint64_t)(d - rpc_now_ms());
    rpc_call_reply(c, &out.base);
    return GRPC_STATUS_OK;
}

static grpc_status_code h_fail(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)req;
    (void)user;
    rpc_call_add_trailer(c, "vs-epoch", "7");
    return rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION, "stale epoch %d, current %d", 5, 7);
}

static atomic_int stream_sent, stream_broken;

static grpc_status_code h_stream(struct rpc_call *c, const ProtobufCMessage *req,
                                 struct rpc_stream *st, void *user)
{
    (void)c;
    (void)user;
    const Vecshard__V1__Point *p = (const void *)req;
    float vec[16] = {0};
    for (uint64_t i = 0; i < p->id; i++) {
        Vecshard__V1__Point out = VECSHARD__V1__POINT__INIT;
        out.id = i;
        vec[0] = (float)i;
        out.vector = vec;
        out.n_vector = 16;
        if (rpc_stream_send(st, &out.base) != 0) {
            atomic_fetch_add(&stream_broken, 1);
            return GRPC_STATUS_CANCELLED;
        }
        atomic_fetch_add(&stream_sent, 1);
    }
    return GRPC_STATUS_OK;
}

static grpc_status_code h_node_status(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)req;
    (void)user;
    char auth[64] = "";
    rpc_call_metadata(c, "authorization", auth, sizeof auth);
    Vecshard__V1__NodeStatusResponse r = VECSHARD__V1__NODE_STATUS_RESPONSE__INIT;
    r.node_id = "test-node";
    r.addr = auth;
    r.replicas = 3;
    rpc_call_reply(c, &r.base);
    return GRPC_STATUS_OK;
}

/* Str: echoes the string field `error` it decoded (as the payload). */
static grpc_status_code h_str(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)user;
    const Vecshard__V1__ShardSearchResult *in = (const void *)req;
    Vecshard__V1__Point out = VECSHARD__V1__POINT__INIT;
    out.payload.data = (uint8_t *)in->error;
    out.payload.len = strlen(in->error);
    rpc_call_reply(c, &out.base);
    return GRPC_STATUS_OK;
}

static grpc_status_code h_set_serving(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    (void)req;
    (void)user;
    size_t len;
    rpc_call_request_bytes(c, &len);
    rpc_server_set_serving(rpc_call_server(c), len > 0);
    return GRPC_STATUS_OK;
}

/* Starts a server with every test handler; returns it and its port. */
static struct rpc_server *start_test_server(size_t max_msg, int *port, struct metrics *m)
{
    char err[256];
    struct rpc_server_config cfg = {.addr = "127.0.0.1:0",
                                    .pollers = 2,
                                    .workers = 6,
                                    .max_msg_bytes = max_msg,
                                    .shutdown_grace_ms = 500,
                                    .metrics = m};
    struct rpc_server *s = rpc_server_create(&cfg, err, sizeof err);
    if (s == NULL) return NULL;
    rpc_server_add_unary(s, "/test.Echo/Echo", point_desc, h_echo, NULL, 0);
    rpc_server_add_unary(s, "/test.Echo/Slow", point_desc, h_slow, NULL, 0);
    rpc_server_add_unary(s, "/test.Echo/Big", point_desc, h_big, NULL, 0);
    rpc_server_add_unary(s, "/test.Echo/Deadline", NULL, h_deadline, NULL, 0);
    rpc_server_add_unary(s, "/test.Echo/Fail", NULL, h_fail, NULL, RPC_INLINE);
    rpc_server_add_stream(s, "/test.Echo/Stream", point_desc, h_stream, NULL, 0);
    rpc_server_add_unary(s, "/test.Echo/SetServing", NULL, h_set_serving, NULL, RPC_INLINE);
    rpc_server_add_unary(s, "/test.Echo/Str", &vecshard__v1__shard_search_result__descriptor, h_str,
                         NULL, 0);
    rpc_server_add_unary(s, "/vecshard.v1.ShardNode/NodeStatus",
                         &vecshard__v1__node_status_request__descriptor, h_node_status, NULL, 0);
    *port = rpc_server_start(s, err, sizeof err);
    if (*port <= 0) {
        fprintf(stderr, "start: %s\n", err);
        rpc_server_shutdown(s);
        return NULL;
    }
    return s;
}

static int suite_init(void)
{
    metrics_a = metrics_create();
    srv_a = start_test_server(SMALL_MAX, &port_a, metrics_a);
    srv_b = start_test_server(0, &port_b, NULL);
    client = rpc_client_create(NULL);
    snprintf(addr_a, sizeof addr_a, "127.0.0.1:%d", port_a);
    snprintf(addr_b, sizeof addr_b, "127.0.0.1:%d", port_b);
    return srv_a && srv_b && client ? 0 : -1;
}

static int suite_clean(void)
{
    rpc_client_destroy(client);
    rpc_server_shutdown(srv_a);
    rpc_server_shutdown(srv_b);
    metrics_destroy(metrics_a);
    return 0;
}

/* ------------------------------------------------------------ tests */

static void test_unary_round_trip(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    CU_ASSERT_PTR_EQUAL(ch, rpc_client_channel(client, addr_a)); /* pooled */
    float vec[3] = {1.5f, -2.0f, 3.25f};
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    p.id = 42;
    p.vector = vec;
    p.n_vector = 3;
    struct rpc_md md[] = {{"x-echo", "hello"}};
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(2000), .md = md, .n_md = 1};
    struct rpc_status st;
    ProtobufCMessage *resp = NULL;
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Echo", &p.base, point_desc, &resp, &o, &st),
                    GRPC_STATUS_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
    const Vecshard__V1__Point *r = (const void *)resp;
    CU_ASSERT_EQUAL(r->id, 42);
    CU_ASSERT_EQUAL(r->n_vector, 3);
    CU_ASSERT(r->n_vector == 3 && memcmp(r->vector, vec, sizeof vec) == 0);
    CU_ASSERT(r->payload.len == 5 && memcmp(r->payload.data, "hello", 5) == 0);
    CU_ASSERT_STRING_EQUAL(rpc_status_trailer(&st, "x-served-by"), "echo");
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_error_details_and_trailer(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    struct rpc_status st;
    ProtobufCMessage *resp = (ProtobufCMessage *)&p;
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Fail", &p.base, point_desc, &resp, NULL, &st),
                    GRPC_STATUS_FAILED_PRECONDITION);
    CU_ASSERT_PTR_NULL(resp);
    CU_ASSERT_STRING_EQUAL(st.details, "stale epoch 5, current 7");
    CU_ASSERT_PTR_NOT_NULL_FATAL(rpc_status_trailer(&st, "vs-epoch"));
    CU_ASSERT_STRING_EQUAL(rpc_status_trailer(&st, "vs-epoch"), "7");
    CU_ASSERT_STRING_EQUAL(rpc_status_name(st.code), "FAILED_PRECONDITION");
    CU_ASSERT_STRING_EQUAL(rpc_status_name(GRPC_STATUS_OK), "OK");
    CU_ASSERT_STRING_EQUAL(rpc_status_name((grpc_status_code)99), "UNKNOWN_CODE");
}

static void test_unknown_method(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    struct rpc_status st;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(5000)};
    int64_t t0 = rpc_now_ms();
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Nope", &p.base, point_desc, NULL, &o, &st),
                    GRPC_STATUS_UNIMPLEMENTED);
    CU_ASSERT(rpc_now_ms() - t0 < 1000); /* answered, not left to the deadline */
    CU_ASSERT(strstr(st.details, "/test.Echo/Nope") != NULL);
}

static void test_deadline_exceeded(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    p.id = 1000; /* the handler sleeps 1 s */
    struct rpc_status st;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(100)};
    int64_t t0 = rpc_now_ms();
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Slow", &p.base, point_desc, NULL, &o, &st),
                    GRPC_STATUS_DEADLINE_EXCEEDED);
    int64_t took = rpc_now_ms() - t0;
    CU_ASSERT(took >= 90 && took < 800);
}

static void test_deadline_visible_to_handler(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    ProtobufCMessage *resp = NULL;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(3000)};
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Deadline", &p.base, point_desc, &resp, &o, NULL),
                    GRPC_STATUS_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
    uint64_t left = ((Vecshard__V1__Point *)resp)->id;
    CU_ASSERT(left > 2000 && left <= 3050); /* grpc-timeout is rounded up on the wire */
    protobuf_c_message_free_unpacked(resp, NULL);

    resp = NULL;
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Deadline", &p.base, point_desc, &resp, NULL, NULL),
                    GRPC_STATUS_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
    CU_ASSERT_EQUAL(((Vecshard__V1__Point *)resp)->id, UINT64_MAX); /* no deadline */
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_oversized(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    size_t big = 2u << 20;
    p.payload.data = calloc(1, big);
    p.payload.len = big;
    struct rpc_status st;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(5000)};
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Echo", &p.base, point_desc, NULL, &o, &st),
                    GRPC_STATUS_RESOURCE_EXHAUSTED);
    free(p.payload.data);

    /* a reply over the server's limit */
    Vecshard__V1__Point q = VECSHARD__V1__POINT__INIT;
    q.id = big;
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Big", &q.base, point_desc, NULL, &o, &st),
                    GRPC_STATUS_RESOURCE_EXHAUSTED);
    CU_ASSERT(strstr(st.details, "max message size") != NULL);

    /* just under the limit still works */
    q.id = SMALL_MAX - 64;
    ProtobufCMessage *resp = NULL;
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Big", &q.base, point_desc, &resp, &o, &st),
                    GRPC_STATUS_OK);
    CU_ASSERT(resp != NULL && ((Vecshard__V1__Point *)resp)->payload.len == SMALL_MAX - 64);
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_stream_complete_in_order(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    p.id = 2000;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(10000)};
    struct rpc_client_stream *s =
        rpc_client_stream_open(ch, "/test.Echo/Stream", &p.base, point_desc, &o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    ProtobufCMessage *m;
    uint64_t n = 0;
    bool in_order = true;
    while (rpc_client_stream_next(s, &m) == 1) {
        const Vecshard__V1__Point *q = (const void *)m;
        in_order &= q->id == n && q->n_vector == 16 && q->vector[0] == (float)n;
        n++;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    struct rpc_status st;
    CU_ASSERT_EQUAL(rpc_client_stream_close(s, &st), GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(n, 2000);
    CU_ASSERT(in_order);
}

static void test_stream_cancel(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    p.id = 1000000; /* far more than flow control lets through */
    atomic_store(&stream_broken, 0);
    struct rpc_client_stream *s =
        rpc_client_stream_open(ch, "/test.Echo/Stream", &p.base, point_desc, NULL);
    ProtobufCMessage *m;
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(rpc_client_stream_next(s, &m), 1);
        if (m != NULL) protobuf_c_message_free_unpacked(m, NULL);
    }
    struct rpc_status st;
    CU_ASSERT_EQUAL(rpc_client_stream_close(s, &st), GRPC_STATUS_CANCELLED);
    /* the server's handler notices and returns */
    for (int i = 0; i < 200 && atomic_load(&stream_broken) == 0; i++)
        sleep_ms(10);
    CU_ASSERT_EQUAL(atomic_load(&stream_broken), 1);
}

static void test_stream_unknown_peer(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, "127.0.0.1:1");
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(2000)};
    struct rpc_client_stream *s =
        rpc_client_stream_open(ch, "/test.Echo/Stream", &p.base, point_desc, &o);
    ProtobufCMessage *m;
    CU_ASSERT_EQUAL(rpc_client_stream_next(s, &m), 0);
    CU_ASSERT_EQUAL(rpc_client_stream_close(s, NULL), GRPC_STATUS_UNAVAILABLE);
}

static void test_fanout_two_servers(void)
{
    struct rpc_channel *ch[2] = {rpc_client_channel(client, addr_a),
                                 rpc_client_channel(client, addr_b)};
    struct rpc_fanout *fo = rpc_fanout_create();
    CU_ASSERT_PTR_NOT_NULL_FATAL(fo);
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(5000)};
    for (int i = 0; i < 20; i++) {
        Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
        p.id = (uint64_t)(i % 5) * 10; /* Slow sleeps 0-40 ms */
        float v = (float)i;
        p.vector = &v;
        p.n_vector = 1;
        CU_ASSERT_EQUAL(rpc_fanout_start(fo, ch[i % 2], "/test.Echo/Slow", &p.base, point_desc, &o),
                        i);
    }
    int64_t t0 = rpc_now_ms();
    CU_ASSERT_EQUAL(rpc_fanout_wait(fo, o.deadline_ms), 20);
    CU_ASSERT(rpc_now_ms() - t0 < 1000); /* concurrent: ~40 ms of sleeping each, not 20 x */
    CU_ASSERT_EQUAL(rpc_fanout_count(fo), 20);
    for (int i = 0; i < 20; i++) {
        const Vecshard__V1__Point *r = (const void *)rpc_fanout_response(fo, i);
        CU_ASSERT(rpc_fanout_status(fo, i)->code == GRPC_STATUS_OK);
        CU_ASSERT(r != NULL && r->n_vector == 1 && r->vector[0] == (float)i);
    }
    ProtobufCMessage *taken = rpc_fanout_take(fo, 3);
    CU_ASSERT_PTR_NOT_NULL(taken);
    CU_ASSERT_PTR_NULL(rpc_fanout_response(fo, 3));
    protobuf_c_message_free_unpacked(taken, NULL);
    rpc_fanout_destroy(fo);
}

static void test_fanout_deadline_and_next(void)
{
    struct rpc_channel *a = rpc_client_channel(client, addr_a);
    struct rpc_channel *b = rpc_client_channel(client, addr_b);
    struct rpc_fanout *fo = rpc_fanout_create();
    Vecshard__V1__Point fast = VECSHARD__V1__POINT__INIT, slow = VECSHARD__V1__POINT__INIT;
    slow.id = 2000;
    rpc_fanout_start(fo, a, "/test.Echo/Slow", &slow.base, point_desc, NULL); /* no deadline */
    rpc_fanout_start(fo, b, "/test.Echo/Echo", &fast.base, point_desc, NULL);
    /* the fast one lands first and can be handled alone */
    CU_ASSERT_EQUAL(rpc_fanout_next(fo, rpc_deadline_in(1000)), 1);
    CU_ASSERT_EQUAL(rpc_fanout_status(fo, 0)->code, GRPC_STATUS__DO_NOT_USE);
    CU_ASSERT_EQUAL(rpc_fanout_next(fo, rpc_deadline_in(50)), -2);
    int64_t t0 = rpc_now_ms();
    CU_ASSERT_EQUAL(rpc_fanout_wait(fo, rpc_deadline_in(100)), 1);
    CU_ASSERT(rpc_now_ms() - t0 < 1000);
    CU_ASSERT_EQUAL(rpc_fanout_status(fo, 0)->code, GRPC_STATUS_DEADLINE_EXCEEDED);
    CU_ASSERT_EQUAL(rpc_fanout_status(fo, 1)->code, GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(rpc_fanout_next(fo, 0), -1);
    rpc_fanout_destroy(fo);

    /* destroy with calls still running cancels them */
    fo = rpc_fanout_create();
    rpc_fanout_start(fo, a, "/test.Echo/Slow", &slow.base, point_desc, NULL);
    rpc_fanout_destroy(fo);
}

/* Health/Check with service `svc`; returns the code, *status the reply. */
static grpc_status_code health(const char *addr, const char *svc, int *status)
{
    Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    rq.service = (char *)svc;
    ProtobufCMessage *resp = NULL;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(2000)};
    grpc_status_code code =
        rpc_unary(rpc_client_channel(client, addr), RPC_HEALTH_CHECK, &rq.base,
                  &grpc__health__v1__health_check_response__descriptor, &resp, &o, NULL);
    *status = resp ? (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status : -1;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

static void test_health(void)
{
    int status;
    CU_ASSERT_EQUAL(health(addr_a, "", &status), GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    CU_ASSERT_EQUAL(health(addr_a, "vecshard.v1.ShardNode", &status), GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(health(addr_a, "no.such.Service", &status), GRPC_STATUS_NOT_FOUND);
    rpc_server_set_serving(srv_a, false);
    CU_ASSERT_EQUAL(health(addr_a, "", &status), GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    rpc_server_set_serving(srv_a, true);
    CU_ASSERT_EQUAL(health(addr_a, "", &status), GRPC_STATUS_OK);
    CU_ASSERT_EQUAL(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
}

static void test_port_in_use(void)
{
    char err[256] = "";
    struct rpc_server_config cfg = {.addr = addr_a};
    struct rpc_server *s = rpc_server_create(&cfg, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(rpc_server_start(s, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "cannot listen") != NULL);
    rpc_server_shutdown(s);
}

/* Runs tests/unit/rpc/<script> PORT with the generated stubs; its exit status. */
static int run_python(const char *script, int port)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    char path[256];
    snprintf(path, sizeof path, "tests/unit/rpc/%s", script);
    if (access(path, R_OK) != 0) return -1; /* run from the repository root */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "PYTHONPATH='%s/gen/python' /usr/bin/python3 %s %d", exe, path, port);
    return system(cmd);
}

/* Health/Watch from grpcio: SERVING, NOT_SERVING, SERVING, cancel, SERVICE_UNKNOWN. */
static void test_python_watch(void)
{
    CU_ASSERT_EQUAL(run_python("health_watch.py", port_a), 0);
    rpc_server_set_serving(srv_a, true);
}

/* A watch with the C stream client: the server's shutdown ends it at once
 * (NOT_SERVING, then UNAVAILABLE), well within its grace period. */
struct shut {
    struct rpc_server *s;
    int64_t took_ms;
};

static void *shutdown_main(void *arg)
{
    struct shut *sh = arg;
    int64_t t0 = rpc_now_ms();
    rpc_server_shutdown(sh->s);
    sh->took_ms = rpc_now_ms() - t0;
    return NULL;
}

static void test_watch_ends_on_shutdown(void)
{
    char err[256];
    struct rpc_server_config cfg = {.addr = "127.0.0.1:0", .shutdown_grace_ms = 10000};
    struct rpc_server *s = rpc_server_create(&cfg, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int port = rpc_server_start(s, err, sizeof err);
    CU_ASSERT_FATAL(port > 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(8000)};
    struct rpc_client_stream *st =
        rpc_client_stream_open(rpc_client_channel(client, addr), RPC_HEALTH_WATCH, &rq.base,
                               &grpc__health__v1__health_check_response__descriptor, &o);
    ProtobufCMessage *msg = NULL;
    CU_ASSERT_EQUAL_FATAL(rpc_client_stream_next(st, &msg), 1);
    CU_ASSERT_EQUAL(((Grpc__Health__V1__HealthCheckResponse *)msg)->status,
                    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    protobuf_c_message_free_unpacked(msg, NULL);
    rpc_server_set_serving(s, false);
    CU_ASSERT_EQUAL_FATAL(rpc_client_stream_next(st, &msg), 1);
    CU_ASSERT_EQUAL(((Grpc__Health__V1__HealthCheckResponse *)msg)->status,
                    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    protobuf_c_message_free_unpacked(msg, NULL);
    rpc_server_set_serving(s, true);
    CU_ASSERT_EQUAL_FATAL(rpc_client_stream_next(st, &msg), 1);
    CU_ASSERT_EQUAL(((Grpc__Health__V1__HealthCheckResponse *)msg)->status,
                    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    protobuf_c_message_free_unpacked(msg, NULL);

    struct shut sh = {s, 0};
    pthread_t t;
    pthread_create(&t, NULL, shutdown_main, &sh);
    CU_ASSERT_EQUAL(rpc_client_stream_next(st, &msg), 1);
    if (msg != NULL) {
        CU_ASSERT_EQUAL(((Grpc__Health__V1__HealthCheckResponse *)msg)->status,
                        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    CU_ASSERT_EQUAL(rpc_client_stream_next(st, &msg), 0);
    struct rpc_status rs;
    CU_ASSERT_EQUAL(rpc_client_stream_close(st, &rs), GRPC_STATUS_UNAVAILABLE);
    pthread_join(t, NULL);
    CU_ASSERT(sh.took_ms < 5000); /* not the 10 s grace period */
}

/* The value of series `series` ("name{labels}") in server A's metrics, 0 if absent. */
static double series_value(const char *series)
{
    char *text = metrics_render(metrics_a, NULL);
    char key[512];
    snprintf(key, sizeof key, "\n%s ", series);
    char *p = strstr(text, key);
    double v = p != NULL ? strtod(p + strlen(key), NULL) : 0;
    free(text);
    return v;
}

/* The metrics of server A: exact counts for calls made here. */
static void test_server_metrics(void)
{
    static const char fail_calls[] = "vecshard_grpc_server_handled_total{service=\"test.Echo\","
                                     "method=\"Fail\",code=\"FAILED_PRECONDITION\"}";
    static const char fail_count[] = "vecshard_grpc_server_handling_seconds_count{service="
                                     "\"test.Echo\",method=\"Fail\"}";
    static const char fail_inf[] = "vecshard_grpc_server_handling_seconds_bucket{service="
                                   "\"test.Echo\",method=\"Fail\",le=\"+Inf\"}";
    double calls0 = series_value(fail_calls), count0 = series_value(fail_count),
           inf0 = series_value(fail_inf);
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(5000)};
    char *before = metrics_render(metrics_a, NULL);
    CU_ASSERT_PTR_NULL(strstr(before, "method=\"Nope2\""));
    free(before);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Fail", &p.base, NULL, NULL, &o, NULL),
                        GRPC_STATUS_FAILED_PRECONDITION);
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Nope2", &p.base, NULL, NULL, &o, NULL),
                    GRPC_STATUS_UNIMPLEMENTED);
    CU_ASSERT_EQUAL(rpc_unary(ch, "/other.Svc/X", &p.base, NULL, NULL, &o, NULL),
                    GRPC_STATUS_UNIMPLEMENTED);
    char *text = metrics_render(metrics_a, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_grpc_server_handled_total{service=\"unknown\","
                                        "method=\"unknown\",code=\"UNIMPLEMENTED\"} 1\n"));
    /* test_unknown_method called /test.Echo/Nope once before */
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "vecshard_grpc_server_handled_total{service=\"test.Echo\","
                                        "method=\"unknown\",code=\"UNIMPLEMENTED\"} 2\n"));
    CU_ASSERT_EQUAL(series_value(fail_calls) - calls0, 3);
    CU_ASSERT_EQUAL(series_value(fail_count) - count0, 3);
    CU_ASSERT_EQUAL(series_value(fail_inf) - inf0, 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "service=\"grpc.health.v1.Health\",method=\"Check\","
                                        "code=\"OK\"}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "service=\"grpc.health.v1.Health\",method=\"Watch\","
                                        "code=\"CANCELLED\"}"));
    free(text);
}

/* Python grpcio client with the generated stubs (build/gen/python). */
static void test_python_client(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CU_ASSERT_FATAL(n > 0);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    *slash = '\0';
    const char *script = "tests/unit/rpc/health_check.py";
    CU_ASSERT_FATAL(access(script, R_OK) == 0); /* run from the repository root */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "PYTHONPATH='%s/gen/python' /usr/bin/python3 %s %d", exe, script,
             port_a);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* --- shutdown under load --- */

struct hammer {
    struct rpc_channel *ch;
    atomic_bool *stop;
    long ok, unavailable, cancelled, other;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    int after_stop = 0;
    while (after_stop < 20) {
        if (atomic_load(h->stop)) after_stop++;
        struct rpc_opts o = {.deadline_ms = rpc_deadline_in(5000)};
        p.id = (uint64_t)(h->ok % 3); /* Slow: 0-2 ms of handler time */
        struct rpc_status st;
        ProtobufCMessage *resp = NULL;
        switch (rpc_unary(h->ch, "/test.Echo/Slow", &p.base, point_desc, &resp, &o, &st)) {
        case GRPC_STATUS_OK:
            h->ok++;
            break;
        case GRPC_STATUS_UNAVAILABLE:
            h->unavailable++;
            break;
        case GRPC_STATUS_CANCELLED:
            h->cancelled++;
            break;
        default:
            fprintf(stderr, "hammer: %s %s\n", rpc_status_name(st.code), st.details);
            h->other++;
        }
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    }
    return NULL;
}

static void test_shutdown_under_load(void)
{
    for (int round = 0; round < 3; round++) {
        int port;
        struct rpc_server *s = start_test_server(0, &port, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
        struct rpc_client *cl = rpc_client_create(NULL);
        atomic_bool stop;
        atomic_init(&stop, false);
        struct hammer h[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
            h[i] = (struct hammer){.ch = rpc_client_channel(cl, addr), .stop = &stop};
            pthread_create(&t[i], NULL, hammer_main, &h[i]);
        }
        /* one long stream in flight too, so the grace period and cancel_all run */
        struct rpc_client_stream *cs = NULL;
        if (round == 2) {
            Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
            p.id = 100000000;
            cs = rpc_client_stream_open(rpc_client_channel(cl, addr), "/test.Echo/Stream", &p.base,
                                        point_desc, NULL);
        }
        sleep_ms(300);
        int64_t t0 = rpc_now_ms();
        rpc_server_shutdown(s);
        int64_t took = rpc_now_ms() - t0;
        atomic_store(&stop, true);
        long ok = 0, other = 0, failed = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            ok += h[i].ok;
            other += h[i].other;
            failed += h[i].unavailable + h[i].cancelled;
        }
        if (cs != NULL) {
            ProtobufCMessage *m;
            while (rpc_client_stream_next(cs, &m) == 1)
                protobuf_c_message_free_unpacked(m, NULL);
            grpc_status_code code = rpc_client_stream_close(cs, NULL);
            CU_ASSERT(code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_CANCELLED);
        }
        rpc_client_destroy(cl);
        printf("\n    round %d: shutdown %lld ms, %ld ok, %ld unavailable/cancelled, %ld other",
               round, (long long)took, ok, failed, other);
        CU_ASSERT(ok > 50);
        CU_ASSERT(failed >= 80); /* every thread saw the server go away */
        CU_ASSERT_EQUAL(other, 0);
        CU_ASSERT(took < 3000);
    }
}

/* A pooled channel recovers when its peer restarts on the same port. */
static void test_reconnect_after_restart(void)
{
    int port;
    struct rpc_server *s = start_test_server(0, &port, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct rpc_channel *ch = rpc_client_channel(client, addr);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(2000)};
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Echo", &p.base, point_desc, NULL, &o, NULL),
                    GRPC_STATUS_OK);
    rpc_server_shutdown(s);
    o.deadline_ms = rpc_deadline_in(500);
    grpc_status_code down = rpc_unary(ch, "/test.Echo/Echo", &p.base, point_desc, NULL, &o, NULL);
    CU_ASSERT(down == GRPC_STATUS_UNAVAILABLE || down == GRPC_STATUS_CANCELLED);

    char err[256];
    struct rpc_server_config cfg = {.addr = addr};
    s = rpc_server_create(&cfg, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    rpc_server_add_unary(s, "/test.Echo/Echo", point_desc, h_echo, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(rpc_server_start(s, err, sizeof err), port);
    int64_t t0 = rpc_now_ms();
    struct rpc_opts w = {.deadline_ms = rpc_deadline_in(8000), .wait_for_ready = true};
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Echo", &p.base, point_desc, NULL, &w, NULL),
                    GRPC_STATUS_OK);
    int64_t took = rpc_now_ms() - t0;
    printf("\n    back after restart in %lld ms", (long long)took);
    CU_ASSERT(took < 5000);
    rpc_server_shutdown(s);
}

/* A string field with a NUL inside: refused before the handler, naming the
 * field and the offset; without one the handler sees the whole string. */
static void test_nul_in_string_refused(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_a);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    p.payload.data = (uint8_t *)"nul\0../../evil";
    p.payload.len = 14;
    struct rpc_status st;
    ProtobufCMessage *resp = NULL;
    CU_ASSERT_EQUAL(rpc_unary(ch, "/test.Echo/Str", &p.base, point_desc, &resp, NULL, &st),
                    GRPC_STATUS_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NULL(resp);
    CU_ASSERT_STRING_EQUAL(st.details, "error: contains a NUL byte at offset 3");

    p.payload.data = (uint8_t *)"no-nul";
    p.payload.len = 6;
    CU_ASSERT_EQUAL_FATAL(rpc_unary(ch, "/test.Echo/Str", &p.base, point_desc, &resp, NULL, &st),
                          GRPC_STATUS_OK);
    const Vecshard__V1__Point *r = (const void *)resp;
    CU_ASSERT_EQUAL(r->payload.len, 6);
    CU_ASSERT_NSTRING_EQUAL(r->payload.data, "no-nul", 6);
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* rpc_pb_find_nul on hand-built wire bytes: nested and repeated paths, bytes
 * fields (which may hold NUL) ignored, unknown fields skipped, bad input. */
static void test_find_nul_paths(void)
{
    char path[64];
    size_t at = 99;
    /* WriteRequest{collection = "ab", shard = 7, batch = {upserts[0].payload = "\0"}} */
    const uint8_t ok[] = {0x0a, 2, 'a',  'b', 0x10, 7,    0x22, 5,
                          0x0a, 3, 0x1a, 1,   0x00, 0x98, 0x06, 1};
    CU_ASSERT_EQUAL(rpc_pb_find_nul(ok, sizeof ok, &vecshard__v1__write_request__descriptor, path,
                                    sizeof path, &at),
                    0);
    /* the same with collection = "a\0b" */
    const uint8_t bad[] = {0x10, 7, 0x0a, 3, 'a', 0x00, 'b'};
    CU_ASSERT_EQUAL(rpc_pb_find_nul(bad, sizeof bad, &vecshard__v1__write_request__descriptor, path,
                                    sizeof path, &at),
                    1);
    CU_ASSERT_STRING_EQUAL(path, "collection");
    CU_ASSERT_EQUAL(at, 1);
    /* ShardStatusResponse{shards[0].collection = "x", shards[1].collection = "y\0"} */
    const uint8_t rep[] = {0x0a, 3, 0x0a, 1, 'x', 0x0a, 4, 0x0a, 2, 'y', 0x00};
    CU_ASSERT_EQUAL(rpc_pb_find_nul(rep, sizeof rep,
                                    &vecshard__v1__shard_status_response__descriptor, path,
                                    sizeof path, &at),
                    1);
    CU_ASSERT_STRING_EQUAL(path, "shards[1].collection");
    CU_ASSERT_EQUAL(at, 1);
    /* truncated length */
    const uint8_t cut[] = {0x0a, 9, 'a'};
    CU_ASSERT_EQUAL(rpc_pb_find_nul(cut, sizeof cut, &vecshard__v1__write_request__descriptor, path,
                                    sizeof path, &at),
                    -1);
    /* a message type without strings is not walked (Point has some now: attribute names) */
    CU_ASSERT_EQUAL(
        rpc_pb_find_nul(cut, sizeof cut, &vecshard__v1__query__descriptor, path, sizeof path, &at),
        0);
}

/* Sequential unary calls on loopback: reports the per-call cost. */
static void test_loopback_overhead(void)
{
    struct rpc_channel *ch = rpc_client_channel(client, addr_b);
    Vecshard__V1__Point p = VECSHARD__V1__POINT__INIT;
    float vec[128] = {0};
    p.vector = vec;
    p.n_vector = 128;
    int n = 2000, fails = 0;
    int64_t t0 = rpc_now_ms();
    for (int i = 0; i < n; i++) {
        ProtobufCMessage *resp = NULL;
        fails += rpc_unary(ch, "/test.Echo/Echo", &p.base, point_desc, &resp, NULL, NULL) !=
                 GRPC_STATUS_OK;
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    }
    int64_t ms = rpc_now_ms() - t0;
    printf("\n    %d sequential unary calls (128-d point): %lld ms, %.1f us/call", n, (long long)ms,
           1000.0 * (double)ms / n);
    CU_ASSERT_EQUAL(fails, 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("rpc", suite_init, suite_clean);
    CU_add_test(s, "unary round trip, metadata, trailer", test_unary_round_trip);
    CU_add_test(s, "error details and trailer", test_error_details_and_trailer);
    CU_add_test(s, "unknown method -> UNIMPLEMENTED", test_unknown_method);
    CU_add_test(s, "slow handler, short deadline -> DEADLINE_EXCEEDED", test_deadline_exceeded);
    CU_add_test(s, "deadline visible to the handler", test_deadline_visible_to_handler);
    CU_add_test(s, "oversized request/reply -> RESOURCE_EXHAUSTED", test_oversized);
    CU_add_test(s, "server stream complete and in order", test_stream_complete_in_order);
    CU_add_test(s, "client cancels a stream", test_stream_cancel);
    CU_add_test(s, "stream to a dead peer -> UNAVAILABLE", test_stream_unknown_peer);
    CU_add_test(s, "fan-out of 20 calls to 2 servers", test_fanout_two_servers);
    CU_add_test(s, "fan-out next and deadline", test_fanout_deadline_and_next);
    CU_add_test(s, "health check", test_health);
    CU_add_test(s, "port in use fails", test_port_in_use);
    CU_add_test(s, "python grpcio client", test_python_client);
    CU_add_test(s, "python grpcio Health/Watch", test_python_watch);
    CU_add_test(s, "Health/Watch ends on shutdown", test_watch_ends_on_shutdown);
    CU_add_test(s, "server metrics per method and code", test_server_metrics);
    CU_add_test(s, "shutdown under load", test_shutdown_under_load);
    CU_add_test(s, "reconnect after peer restart", test_reconnect_after_restart);
    CU_add_test(s, "NUL inside a string -> INVALID_ARGUMENT", test_nul_in_string_refused);
    CU_add_test(s, "find_nul: nested, repeated, bytes, malformed", test_find_nul_paths);
    CU_add_test(s, "loopback overhead", test_loopback_overhead);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failed == 0 ? 0 : 1;
}
