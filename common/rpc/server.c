/*
 * server.c — the gRPC server loop: method table, poller threads, the handler
 * worker pool, per-call state, server streaming with flow control, per-call
 * metrics, and graceful shutdown. The built-in health service is health.c;
 * the types both share are in server_internal.h.
 *
 * Metrics (rpc_server_config.metrics): every call is counted once, when its
 * status is decided (call_finish; health.c for Watch), with the labels
 * service and method split from the path at registration (no per-call
 * parsing) and the canonical code name; calls to unregistered methods share
 * method="unknown" (and service="unknown" unless it is one of ours), so a
 * client cannot grow the series without bound.
 *
 * Life of a call. rpc_server_start pre-posts PREPOST request contexts per
 * method (grpc_server_request_registered_call) plus some for unregistered
 * methods (grpc_server_request_call; without them such calls hang until
 * their deadline). When one matches, a poller re-posts a fresh context for
 * that method first, then runs the call inline (RPC_INLINE, unknown method)
 * or queues it for a worker. The handler's result goes out in one final
 * batch (initial metadata, reply, status, RECV_CLOSE_ON_SERVER); its
 * completion frees the context. A call therefore has at most one batch in
 * flight and needs no lock of its own, except the send hand-off of
 * rpc_stream_send between the worker (waiting) and the poller (completing).
 *
 * Every context, posted or running, is counted in `live`. Shutdown follows
 * the guide's §2 order: stop re-arming, shutdown_and_notify, grace period,
 * cancel_all_calls, wait for live == 0 (pending requests come back with
 * success = 0 and are freed, handlers return), stop the workers, destroy the
 * server, then shut down and drain the completion queues and join the
 * pollers. Destroying the server or its queues while a context still lives
 * makes the core abort, hence the counter.
 */
#define _GNU_SOURCE /* vasprintf */
#include "common/rpc/server_internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>
#include <time.h>

#include "common/metrics/metrics.h"
#include "proto/grpc_health/v1/health.pb-c.h"

/* ------------------------------------------------------------ call contexts */

/* Allocates a context for method m (NULL = unregistered) and counts it live. */
static struct rpc_call *call_new(struct rpc_server *s, struct method *m)
{
    struct rpc_call *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->srv = s;
    c->m = m;
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    c->t_new = (struct tag){TAG_NEW, c};
    c->t_send = (struct tag){TAG_SEND, c};
    c->t_final = (struct tag){TAG_FINAL, c};
    c->t_wsend = (struct tag){TAG_WATCH_SEND, c};
    c->t_wclose = (struct tag){TAG_WATCH_CLOSE, c};
    c->w_fixed = c->w_sent = -1;
    c->stream.call = c;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_mutex_lock(&s->mu);
    s->live++;
    pthread_mutex_unlock(&s->mu);
    return c;
}

void server_call_free(struct rpc_call *c)
{
    struct rpc_server *s = c->srv;
    if (c->call != NULL) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    if (c->payload != NULL) grpc_byte_buffer_destroy(c->payload);
    if (c->req != NULL) protobuf_c_message_free_unpacked(c->req, NULL);
    if (c->reply != NULL) grpc_byte_buffer_destroy(c->reply);
    if (c->have_flat) grpc_slice_unref(c->req_flat);
    if (c->have_msg_slice) grpc_slice_unref(c->msg_slice);
    for (int i = 0; i < c->n_trailers; i++) {
        grpc_slice_unref(c->trailers[i].key);
        grpc_slice_unref(c->trailers[i].value);
    }
    if (c->peer != NULL) gpr_free(c->peer);
    free(c->msg);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);

    pthread_mutex_lock(&s->mu);
    if (--s->live == 0) pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Posts one request for method m so the core can hand us a call. */
static int post_request(struct rpc_server *s, struct method *m)
{
    struct rpc_call *c = call_new(s, m);
    if (c == NULL) return -1;
    grpc_call_error e;
    if (m != NULL)
        e = grpc_server_request_registered_call(s->srv, m->handle, &c->call, &c->deadline, &c->md,
                                                &c->payload, s->cq, s->cq, &c->t_new);
    else
        e = grpc_server_request_call(s->srv, &c->call, &c->details, &c->md, s->cq, s->cq,
                                     &c->t_new);
    if (e != GRPC_CALL_OK) {
        server_call_free(c);
        return -1;
    }
    return 0;
}

/* Monotonic nanoseconds. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void server_count_call(struct rpc_call *c, grpc_status_code code)
{
    struct rpc_server *s = c->srv;
    if (s->handled == NULL) return;
    const char *service = "unknown", *method = "unknown";
    char svc[128];
    if (c->m != NULL) {
        service = c->m->service;
        method = c->m->name;
    } else {
        /* unknown methods share one label value (bounded cardinality); the
         * service keeps its name only when it is one of ours */
        const char *p = (const char *)GRPC_SLICE_START_PTR(c->details.method);
        size_t len = GRPC_SLICE_LENGTH(c->details.method);
        const char *slash = len > 1 && p[0] == '/' ? memchr(p + 1, '/', len - 1) : NULL;
        size_t sl = slash != NULL ? (size_t)(slash - p - 1) : 0;
        if (sl > 0 && sl < sizeof svc && server_known_service(s, p + 1, sl)) {
            memcpy(svc, p + 1, sl);
            svc[sl] = '\0';
            service = svc;
        }
    }
    const char *v[3] = {service, method, rpc_status_name(code)};
    metrics_add(s->handled, v, 1);
    metrics_observe(s->handling, v, (double)(now_ns() - c->arrived_ns) * 1e-9);
}

/* Starts one batch sending bb (with the initial metadata first if not yet
 * sent); on success the call has sent its initial metadata. bb stays the
 * caller's until the batch completes on tag. */
grpc_call_error server_call_start_send(struct rpc_call *c, grpc_byte_buffer *bb, void *tag)
{
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->sent_initial) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n++].data.send_initial_metadata.count = 0;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e == GRPC_CALL_OK) c->sent_initial = true;
    return e;
}

/* Sends the handler's outcome in one batch; its completion frees c. */
static void call_finish(struct rpc_call *c, grpc_status_code code)
{
    grpc_op ops[5];
    size_t n = 0;
    memset(ops, 0, sizeof ops);

    if (c->forced != GRPC_STATUS_OK) code = c->forced;
    server_count_call(c, code);
    if (!c->sent_initial) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n++].data.send_initial_metadata.count = 0;
    }
    bool unary = c->m != NULL && c->m->unary != NULL;
    if (code == GRPC_STATUS_OK && unary) {
        if (c->reply == NULL) c->reply = grpc_raw_byte_buffer_create(NULL, 0);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->reply;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.trailing_metadata_count = (size_t)c->n_trailers;
    ops[n].data.send_status_from_server.trailing_metadata = c->trailers;
    if (code != GRPC_STATUS_OK && c->msg != NULL) {
        c->msg_slice = grpc_slice_from_copied_string(c->msg);
        c->have_msg_slice = true;
        ops[n].data.send_status_from_server.status_details = &c->msg_slice;
    }
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;

    if (grpc_call_start_batch(c->call, ops, n, &c->t_final, NULL) != GRPC_CALL_OK)
        server_call_free(c); /* no completion will come */
}

/* Decodes c's request into c->req and c->nul, once. */
static void call_decode(struct rpc_call *c)
{
    if (c->decoded) return;
    c->decoded = true;
    if (c->m->desc != NULL) c->req = rpc_bb_decode(c->payload, c->m->desc, &c->nul);
}

/* Decodes the request and runs the handler; returns its status code. */
static grpc_status_code call_dispatch(struct rpc_call *c)
{
    struct rpc_server *s = c->srv;
    struct method *m = c->m;
    grpc_status_code code;

    if (m == NULL) {
        code = rpc_call_error(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %.*s",
                              (int)GRPC_SLICE_LENGTH(c->details.method),
                              (const char *)GRPC_SLICE_START_PTR(c->details.method));
    } else if (atomic_load(&s->cancelled_all)) {
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE, "server shutting down");
    } else {
        call_decode(c);
        ProtobufCMessage *req = c->req;
        if (c->nul.found)
            code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                                  "%s: contains a NUL byte at offset %zu", c->nul.path, c->nul.at);
        else if (m->desc != NULL && req == NULL)
            code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "request is not a valid %s",
                                  m->desc->name);
        else if (m->unary != NULL)
            code = m->unary(c, req, m->user);
        else
            code = m->stream(c, req, &c->stream, m->user);
        if (req != NULL) protobuf_c_message_free_unpacked(req, NULL);
        c->req = NULL;
    }
    return code;
}

/* Decodes the request, runs the handler and finishes the call. */
static void call_run(struct rpc_call *c)
{
    call_finish(c, call_dispatch(c));
}

/* ------------------------------------------------------------ in-process calls */

struct rpc_call *server_local_prepare(struct rpc_server *s, const char *method,
                                      const ProtobufCMessage *req, const struct rpc_opts *o,
                                      gpr_timespec deadline, struct rpc_status *st)
{
    struct method *m = NULL;
    for (int i = 0; i < s->n_methods && m == NULL; i++)
        if (strcmp(s->methods[i].path, method) == 0) m = &s->methods[i];
    if (m == NULL || m->unary == NULL) {
        char msg[RPC_DETAILS_MAX];
        snprintf(msg, sizeof msg, "unknown method %s", method);
        rpc_status_set(st, GRPC_STATUS_UNIMPLEMENTED, msg);
        return NULL;
    }
    if (atomic_load(&s->stopping)) {
        rpc_status_set(st, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        return NULL;
    }
    struct rpc_call *c = call_new(s, m);
    if (c == NULL) {
        rpc_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    c->deadline = deadline;
    c->arrived_ns = now_ns();
    c->peer = gpr_strdup("local");
    c->payload = rpc_pb_to_bb(req);
    size_t n = o != NULL ? o->n_md : 0;
    if (n > 0) c->md.metadata = gpr_malloc(n * sizeof *c->md.metadata);
    for (size_t i = 0; i < n; i++) {
        memset(&c->md.metadata[i], 0, sizeof c->md.metadata[i]);
        c->md.metadata[i].key = grpc_slice_from_copied_string(o->md[i].key);
        c->md.metadata[i].value = grpc_slice_from_copied_string(o->md[i].value);
    }
    c->md.count = c->md.capacity = n;
    return c;
}

grpc_status_code server_local_run(struct rpc_call *c, const ProtobufCMessageDescriptor *d,
                                  ProtobufCMessage **resp, struct rpc_status *st)
{
    if (resp != NULL) *resp = NULL;
    grpc_status_code code;
    if (gpr_time_cmp(gpr_now(c->deadline.clock_type), c->deadline) >= 0)
        code = rpc_call_error(c, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
    else
        code = call_dispatch(c);
    if (c->forced != GRPC_STATUS_OK) code = c->forced;
    server_count_call(c, code);
    if (code == GRPC_STATUS_OK && resp != NULL && d != NULL) {
        if (c->reply == NULL) c->reply = grpc_raw_byte_buffer_create(NULL, 0);
        if ((*resp = rpc_bb_to_pb(c->reply, d)) == NULL) {
            char m[RPC_DETAILS_MAX];
            snprintf(m, sizeof m, "reply is not a valid %s", d->name);
            rpc_status_set(st, GRPC_STATUS_INTERNAL, m);
            server_local_drop(c);
            return st->code;
        }
    }
    const char *why = code != GRPC_STATUS_OK && c->msg != NULL ? c->msg : "";
    grpc_slice details = grpc_slice_from_static_string(why);
    grpc_metadata_array tr = {.count = (size_t)c->n_trailers, .metadata = c->trailers};
    rpc_status_fill(st, code, &details, &tr);
    server_local_drop(c);
    return code;
}

void server_local_drop(struct rpc_call *c)
{
    for (size_t i = 0; i < c->md.count; i++) {
        grpc_slice_unref(c->md.metadata[i].key);
        grpc_slice_unref(c->md.metadata[i].value);
    }
    c->md.count = 0;
    server_call_free(c);
}

/* ------------------------------------------------------------ threads */

static void queue_push(struct rpc_server *s, struct rpc_call *c)
{
    atomic_fetch_add(&s->active, 1);
    pthread_mutex_lock(&s->mu);
    c->next = NULL;
    if (s->qtail != NULL)
        s->qtail->next = c;
    else
        s->qhead = c;
    s->qtail = c;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->work_cv); /* after the unlock: the woken worker finds mu free */
}

/* A cheap method's call, on the poller: runs it here when the worker pool
 * is idle and the method's predicate says the request is cheap (true: c is
 * finished); otherwise the decoded request waits in c for a worker. */
static bool run_cheap(struct rpc_server *s, struct rpc_call *c)
{
    if (atomic_load(&s->active) > 0) return false;
    call_decode(c);
    if (c->req == NULL || c->nul.found || !c->m->cheap(c->req, c->m->user)) return false;
    call_run(c);
    return true;
}

/* Counts c against max_concurrent (c->limited); true when the limit is
 * reached, and c is then not counted. */
static bool over_limit(struct rpc_server *s, struct rpc_call *c)
{
    if (s->max_concurrent <= 0 || (c->m->flags & RPC_NO_LIMIT)) return false;
    if (atomic_fetch_add(&s->busy, 1) >= s->max_concurrent) {
        atomic_fetch_sub(&s->busy, 1);
        return true;
    }
    c->limited = true;
    return false;
}

/* Worker: runs queued handlers until rpc_server_shutdown says quit. */
static void *worker_main(void *arg)
{
    struct rpc_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->qhead == NULL && !s->quit)
            pthread_cond_wait(&s->work_cv, &s->mu);
        struct rpc_call *c = s->qhead;
        if (c == NULL) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        s->qhead = c->next;
        if (s->qhead == NULL) s->qtail = NULL;
        pthread_mutex_unlock(&s->mu);
        bool limited = c->limited; /* call_run may free c */
        call_run(c);
        if (limited) atomic_fetch_sub(&s->busy, 1);
        atomic_fetch_sub(&s->active, 1);
    }
}

/* Poller: dispatches completion-queue events until the queue shuts down. */
static void *poller_main(void *arg)
{
    grpc_completion_queue *cq = ((struct rpc_server *)arg)->cq;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) return NULL;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        struct tag *t = ev.tag;
        struct rpc_call *c = t->call;
        struct rpc_server *s = c->srv; /* ours, or a server sharing our pollers */
        switch (t->kind) {
        case TAG_NEW:
            if (!ev.success) { /* the server is shutting down */
                server_call_free(c);
                break;
            }
            c->arrived_ns = now_ns();
            if (!atomic_load(&s->stopping)) post_request(s, c->m); /* re-arm first */
            if (c->m != NULL && (c->m->flags & RPC_WATCH))
                health_watch_start(c);
            else if (c->m == NULL || (c->m->flags & RPC_INLINE))
                call_run(c);
            else if (c->m->cheap != NULL && run_cheap(s, c))
                ; /* answered on this thread */
            else if (over_limit(s, c))
                call_finish(c, rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                              "too many concurrent requests (limit %d): retry "
                                              "later",
                                              s->max_concurrent));
            else
                queue_push(s, c);
            break;
        case TAG_SEND:
            pthread_mutex_lock(&c->mu);
            c->send_done = true;
            c->send_ok = ev.success != 0;
            pthread_cond_signal(&c->cv);
            pthread_mutex_unlock(&c->mu);
            break;
        case TAG_FINAL:
            if (c->watch)
                health_watch_event(c, t->kind, ev.success != 0);
            else
                server_call_free(c);
            break;
        case TAG_WATCH_SEND:
        case TAG_WATCH_CLOSE:
            health_watch_event(c, t->kind, ev.success != 0);
            break;
        }
    }
}

/* ------------------------------------------------------------ method table */

bool server_known_service(const struct rpc_server *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n_methods; i++) {
        const struct method *m = &s->methods[i];
        if (m->service_len == len && memcmp(m->path + 1, name, len) == 0) return true;
    }
    return false;
}

/* ------------------------------------------------------------ public: server */

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err != NULL && errlen > 0) snprintf(err, errlen, fmt, arg);
}

struct rpc_server *rpc_server_create(const struct rpc_server_config *cfg, char *err, size_t errlen)
{
    if (cfg == NULL || cfg->addr == NULL || cfg->addr[0] == '\0') {
        set_err(err, errlen, "%s", "listen address: empty");
        return NULL;
    }
    struct tls_state *tls = NULL;
    if (rpc_tls_on(cfg->tls) && (tls = tls_state_new(cfg->tls, true, err, errlen)) == NULL)
        return NULL;
    struct rpc_server *s = calloc(1, sizeof *s);
    if (s == NULL || (s->addr = strdup(cfg->addr)) == NULL) {
        free(s);
        tls_state_free(tls);
        set_err(err, errlen, "%s", "out of memory");
        return NULL;
    }
    s->tls = tls;
    s->host = cfg->share_pollers;
    s->n_pollers = s->host != NULL ? 0 : cfg->pollers > 0 ? cfg->pollers : 1;
    s->n_workers = cfg->workers > 0 ? cfg->workers : 8;
    s->max_msg = cfg->max_msg_bytes > 0 ? cfg->max_msg_bytes : RPC_DEFAULT_MAX_MSG;
    if (s->max_msg > INT32_MAX) s->max_msg = INT32_MAX;
    s->grace_ms = cfg->shutdown_grace_ms > 0 ? cfg->shutdown_grace_ms : 2000;
    s->max_concurrent = cfg->max_concurrent > 0 ? cfg->max_concurrent : 0;
    atomic_init(&s->busy, 0);
    atomic_init(&s->serving, true);
    atomic_init(&s->stopping, false);
    atomic_init(&s->cancelled_all, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    pthread_mutex_init(&s->watch_mu, NULL);
    if (cfg->metrics != NULL) {
        s->handled = metrics_counter(cfg->metrics, "vecshard_grpc_server_handled_total",
                                     "gRPC calls finished by the server, by service, method and "
                                     "status code",
                                     "service,method,code");
        s->handling = metrics_histogram(cfg->metrics, "vecshard_grpc_server_handling_seconds",
                                        "Time from a call's arrival to its status, seconds",
                                        "service,method", NULL, 0);
    }
    grpc_init();
    return s;
}

/* Appends a method to the table. */
static int add_method(struct rpc_server *s, const char *path, const ProtobufCMessageDescriptor *d,
                      rpc_unary_fn unary, rpc_stream_fn stream, void *user, unsigned flags)
{
    const char *slash = path != NULL && path[0] == '/' ? strchr(path + 1, '/') : NULL;
    if (s->started || slash == NULL || slash == path + 1 || slash[1] == '\0') return -1;
    for (int i = 0; i < s->n_methods; i++)
        if (strcmp(s->methods[i].path, path) == 0) return -1;
    if (s->n_methods == s->cap_methods) {
        int cap = s->cap_methods ? 2 * s->cap_methods : 16;
        struct method *nm = realloc(s->methods, (size_t)cap * sizeof *nm);
        if (nm == NULL) return -1;
        s->methods = nm;
        s->cap_methods = cap;
    }
    struct method *m = &s->methods[s->n_methods];
    memset(m, 0, sizeof *m);
    if ((m->path = strdup(path)) == NULL) return -1;
    m->service_len = (size_t)(slash - path - 1);
    if ((m->service = strndup(path + 1, m->service_len)) == NULL) {
        free(m->path);
        return -1;
    }
    m->name = m->path + m->service_len + 2;
    m->desc = d;
    m->unary = unary;
    m->stream = stream;
    m->user = user;
    m->flags = stream != NULL ? flags & ~RPC_INLINE : flags; /* a stream waits on pollers */
    s->n_methods++;
    return 0;
}

int rpc_server_set_cheap(struct rpc_server *s, const char *path, rpc_cheap_fn cheap)
{
    for (int i = 0; i < s->n_methods; i++) {
        struct method *m = &s->methods[i];
        if (strcmp(m->path, path) != 0) continue;
        if (s->started || m->unary == NULL || m->desc == NULL) return -1;
        m->cheap = cheap;
        return 0;
    }
    return -1;
}

int rpc_server_add_unary(struct rpc_server *s, const char *path,
                         const ProtobufCMessageDescriptor *req_desc, rpc_unary_fn fn, void *user,
                         unsigned flags)
{
    return fn == NULL ? -1 : add_method(s, path, req_desc, fn, NULL, user, flags);
}

int rpc_server_add_stream(struct rpc_server *s, const char *path,
                          const ProtobufCMessageDescriptor *req_desc, rpc_stream_fn fn, void *user,
                          unsigned flags)
{
    return fn == NULL ? -1 : add_method(s, path, req_desc, NULL, fn, user, flags);
}

int rpc_server_start(struct rpc_server *s, char *err, size_t errlen)
{
    if (s->started) {
        set_err(err, errlen, "%s", "server already started");
        return -1;
    }
    if (s->host != NULL && !s->host->started) {
        set_err(err, errlen, "%s", "the server whose pollers it shares is not started");
        return -1;
    }
    bool has_check = false, has_watch = false;
    for (int i = 0; i < s->n_methods; i++) {
        has_check |= strcmp(s->methods[i].path, RPC_HEALTH_CHECK) == 0;
        has_watch |= strcmp(s->methods[i].path, RPC_HEALTH_WATCH) == 0;
    }
    if ((!has_check &&
         add_method(s, RPC_HEALTH_CHECK, &grpc__health__v1__health_check_request__descriptor,
                    health_check, NULL, s, RPC_INLINE) != 0) ||
        (!has_watch &&
         add_method(s, RPC_HEALTH_WATCH, &grpc__health__v1__health_check_request__descriptor, NULL,
                    NULL, s, RPC_WATCH) != 0)) {
        set_err(err, errlen, "%s", "out of memory");
        return -1;
    }

    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)s->max_msg}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = (int)s->max_msg}},
        /* a second server on the same port must fail, not share it (grpc-core-notes §6.3) */
        {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
        /* our clients ping every 10 s, also between calls; do not GOAWAY them */
        {GRPC_ARG_INTEGER,
         GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         {.integer = 5000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
    };
    grpc_channel_args ca = {sizeof args / sizeof args[0], args};
    s->srv = grpc_server_create(&ca, NULL);
    for (int i = 0; i < s->n_methods; i++) {
        s->methods[i].handle = grpc_server_register_method(
            s->srv, s->methods[i].path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (s->methods[i].handle == NULL) {
            set_err(err, errlen, "cannot register method %s", s->methods[i].path);
            goto fail;
        }
    }
    s->cq = s->host != NULL ? s->host->cq : grpc_completion_queue_create_for_next(NULL);
    s->shutdown_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->srv, s->cq, NULL);
    grpc_server_register_completion_queue(s->srv, s->shutdown_cq, NULL);

    grpc_server_credentials *cr = s->tls != NULL ? tls_server_credentials(s->tls)
                                                 : grpc_insecure_server_credentials_create();
    int port = cr != NULL ? grpc_server_add_http2_port(s->srv, s->addr, cr) : 0;
    if (cr != NULL) grpc_server_credentials_release(cr);
    if (port <= 0) {
        set_err(err, errlen, "cannot listen on %s (address in use or invalid)", s->addr);
        goto fail;
    }
    grpc_server_start(s->srv);
    s->started = true;

    s->threads = calloc((size_t)(s->n_pollers + s->n_workers), sizeof *s->threads);
    if (s->threads == NULL) goto fail_started;
    for (int i = 0; i < s->n_methods; i++)
        for (int k = 0; k < PREPOST; k++)
            if (post_request(s, &s->methods[i]) != 0) goto fail_started;
    for (int k = 0; k < PREPOST; k++)
        if (post_request(s, NULL) != 0) goto fail_started;
    for (; s->pollers_started < s->n_pollers; s->pollers_started++)
        if (pthread_create(&s->threads[s->pollers_started], NULL, poller_main, s) != 0)
            goto fail_started;
    for (; s->workers_started < s->n_workers; s->workers_started++)
        if (pthread_create(&s->threads[s->n_pollers + s->workers_started], NULL, worker_main, s) !=
            0)
            goto fail_started;
    return port;

fail_started:
    set_err(err, errlen, "%s", "out of memory or threads");
    return -1; /* rpc_server_shutdown cleans up a half-started server */
fail:
    grpc_server_destroy(s->srv);
    s->srv = NULL;
    if (s->shutdown_cq != NULL) {
        if (s->host == NULL) grpc_completion_queue_shutdown(s->cq);
        grpc_completion_queue_shutdown(s->shutdown_cq);
        if (s->host == NULL) grpc_completion_queue_destroy(s->cq);
        grpc_completion_queue_destroy(s->shutdown_cq);
        s->cq = s->shutdown_cq = NULL;
    }
    return -1;
}

void rpc_server_set_serving(struct rpc_server *s, bool serving)
{
    if (atomic_exchange(&s->serving, serving) != serving) health_watch_notify(s);
}

bool rpc_server_stopping(const struct rpc_server *s)
{
    return atomic_load(&s->stopping);
}

/* Drains a completion queue nobody polls, after grpc_completion_queue_shutdown;
 * frees the request contexts of a server whose pollers never started. */
static void drain_cq(grpc_completion_queue *cq)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) return;
        struct tag *t = ev.tag;
        if (ev.type == GRPC_OP_COMPLETE && t != NULL && t->kind == TAG_NEW && t->call != NULL)
            server_call_free(t->call);
    }
}

void rpc_server_shutdown(struct rpc_server *s)
{
    if (s == NULL) return;
    if (s->started) {
        /* grpc-core-notes §2, steps 1-3 */
        atomic_store(&s->stopping, true);
        atomic_store(&s->serving, false);
        health_watch_shutdown(s); /* watch streams never end by themselves */
        static struct tag shutdown_tag = {TAG_FINAL, NULL};
        grpc_server_shutdown_and_notify(s->srv, s->shutdown_cq, &shutdown_tag);
        gpr_timespec grace = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(s->grace_ms, GPR_TIMESPAN));
        bool polled = s->pollers_started > 0 || s->host != NULL;
        if (!polled) {
            /* half-started: nothing polls s->cq, so pending requests never end */
            grpc_server_cancel_all_calls(s->srv);
        }
        grpc_event ev = grpc_completion_queue_next(s->shutdown_cq, grace, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            atomic_store(&s->cancelled_all, true);
            grpc_server_cancel_all_calls(s->srv);
            grpc_completion_queue_next(s->shutdown_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        }
        /* step 4: every context of ours is gone (needs the pollers running) */
        pthread_mutex_lock(&s->mu);
        if (polled)
            while (s->live > 0)
                pthread_cond_wait(&s->idle_cv, &s->mu);
        s->quit = true;
        pthread_cond_broadcast(&s->work_cv);
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < s->workers_started; i++)
            pthread_join(s->threads[s->n_pollers + i], NULL);
        /* steps 5-6 */
        grpc_server_destroy(s->srv);
        if (s->host == NULL) grpc_completion_queue_shutdown(s->cq); /* a host's stays */
        grpc_completion_queue_shutdown(s->shutdown_cq);
        for (int i = 0; i < s->pollers_started; i++)
            pthread_join(s->threads[i], NULL);
        if (!polled) drain_cq(s->cq);
        drain_cq(s->shutdown_cq);
        if (s->host == NULL) grpc_completion_queue_destroy(s->cq);
        grpc_completion_queue_destroy(s->shutdown_cq);
    }
    for (int i = 0; i < s->n_methods; i++) {
        free(s->methods[i].path);
        free(s->methods[i].service);
    }
    free(s->methods);
    free(s->threads);
    free(s->addr);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->watch_mu);
    tls_state_free(s->tls); /* after grpc_server_destroy: no handshake can fetch it */
    free(s);
    grpc_shutdown(); /* step 7 */
}

/* ------------------------------------------------------------ public: calls */

const char *rpc_call_method(const struct rpc_call *c)
{
    return c->m != NULL ? c->m->path : "";
}

struct rpc_server *rpc_call_server(const struct rpc_call *c)
{
    return c->srv;
}

long rpc_call_metadata(const struct rpc_call *c, const char *key, char *buf, size_t buflen)
{
    for (size_t i = 0; i < c->md.count; i++) {
        if (grpc_slice_str_cmp(c->md.metadata[i].key, key) != 0) continue;
        grpc_slice v = c->md.metadata[i].value;
        size_t len = GRPC_SLICE_LENGTH(v);
        if (buf != NULL && buflen > 0) {
            size_t n = len < buflen - 1 ? len : buflen - 1;
            memcpy(buf, GRPC_SLICE_START_PTR(v), n);
            buf[n] = '\0';
        }
        return (long)len;
    }
    return -1;
}

int64_t rpc_call_deadline_ms(const struct rpc_call *c)
{
    return rpc_deadline_from_ts(c->m != NULL ? c->deadline : c->details.deadline);
}

const uint8_t *rpc_call_request_bytes(struct rpc_call *c, size_t *len)
{
    static const uint8_t empty[1];
    if (c->payload == NULL) {
        *len = 0;
        return empty;
    }
    if (!c->have_flat) {
        grpc_byte_buffer_reader r;
        if (!grpc_byte_buffer_reader_init(&r, c->payload)) {
            *len = 0;
            return empty;
        }
        c->req_flat = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        c->have_flat = true;
    }
    *len = GRPC_SLICE_LENGTH(c->req_flat);
    return GRPC_SLICE_START_PTR(c->req_flat);
}

const char *rpc_call_peer(struct rpc_call *c)
{
    if (c->peer == NULL && c->call != NULL) c->peer = grpc_call_get_peer(c->call);
    return c->peer != NULL ? c->peer : "";
}

/* Replaces the unary reply; oversized replies turn the call into RESOURCE_EXHAUSTED. */
static int set_reply(struct rpc_call *c, grpc_byte_buffer *bb, size_t len)
{
    if (c->reply != NULL) {
        grpc_byte_buffer_destroy(c->reply);
        c->reply = NULL;
    }
    if (len > c->srv->max_msg) {
        if (bb != NULL) grpc_byte_buffer_destroy(bb);
        char m[128];
        snprintf(m, sizeof m, "response of %zu bytes exceeds the max message size of %zu", len,
                 c->srv->max_msg);
        rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", m);
        c->forced = GRPC_STATUS_RESOURCE_EXHAUSTED;
        return -1;
    }
    if (bb == NULL) {
        c->forced = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    c->reply = bb;
    return 0;
}

int rpc_call_reply(struct rpc_call *c, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    return set_reply(c, len > c->srv->max_msg ? NULL : rpc_pb_to_bb(msg), len);
}

int rpc_call_reply_bytes(struct rpc_call *c, const void *data, size_t len)
{
    grpc_byte_buffer *bb = NULL;
    if (len <= c->srv->max_msg) {
        grpc_slice s = grpc_slice_from_copied_buffer(data, len);
        bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
    }
    return set_reply(c, bb, len);
}

grpc_status_code rpc_call_error(struct rpc_call *c, grpc_status_code code, const char *fmt, ...)
{
    if (c->forced != GRPC_STATUS_OK)
        return code; /* keep the message that explains the forced code */
    char *m = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&m, fmt, ap) < 0) m = NULL;
    va_end(ap);
    free(c->msg);
    c->msg = m;
    return code;
}

int rpc_call_add_trailer(struct rpc_call *c, const char *key, const char *value)
{
    if (c->n_trailers == MAX_TRAILERS) return -1;
    grpc_metadata *md = &c->trailers[c->n_trailers++];
    memset(md, 0, sizeof *md);
    md->key = grpc_slice_from_copied_string(key);
    md->value = grpc_slice_from_copied_string(value);
    return 0;
}

int rpc_stream_send(struct rpc_stream *st, const ProtobufCMessage *msg)
{
    struct rpc_call *c = st->call;
    if (c->broken || c->forced != GRPC_STATUS_OK) return -1;
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > c->srv->max_msg) {
        set_reply(c, NULL, len); /* forces RESOURCE_EXHAUSTED with a message */
        return -1;
    }
    grpc_byte_buffer *bb = rpc_pb_to_bb(msg);
    c->send_done = false;
    if (server_call_start_send(c, bb, &c->t_send) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(bb);
        c->broken = true;
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->send_done)
        pthread_cond_wait(&c->cv, &c->mu);
    bool ok = c->send_ok;
    pthread_mutex_unlock(&c->mu);
    grpc_byte_buffer_destroy(bb);
    if (!ok) c->broken = true;
    return ok ? 0 : -1;
}
