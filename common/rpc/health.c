/*
 * health.c — the standard grpc.health.v1.Health service every vecshard
 * server answers: Check (one status) and Watch (a stream of statuses).
 *
 * Watch runs entirely on the completion queue, never on a worker: a watch
 * can stay open for days (a service mesh or kubelet keeps one per process),
 * and the worker pool is small, so a thread per watcher would let a handful
 * of watchers starve every other call. A watch call is a small state machine
 * under the server's watch_mu:
 *   start (poller, on arrival): decode the request, put the call in the
 *     server's watcher list, post RECV_CLOSE_ON_SERVER (completes when the
 *     client cancels, its deadline passes, or after our status) and send the
 *     current status;
 *   a send completes: send again if the status changed meanwhile, else idle
 *     (at most one message in flight, as the core requires);
 *   rpc_server_set_serving changes the status: every idle watcher sends it;
 *   the close completes (client gone): send the status (CANCELLED), which
 *     ends the call;
 *   shutdown: every watcher's stream ends with NOT_SERVING (when the last
 *     message said otherwise) and UNAVAILABLE "server shutting down", so
 *     shutdown does not wait out its grace period for watchers.
 * The context is freed when its last batch completed after the status.
 * Watching an unknown service sends SERVICE_UNKNOWN and stays open, as the
 * health protocol says (a service could appear; ours never do).
 */
#include "common/rpc/server_internal.h"

#include <stdlib.h>
#include <string.h>

#include "proto/grpc_health/v1/health.pb-c.h"

#define ST_SERVING         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define ST_NOT_SERVING     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define ST_SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

/* True when the request names no service or one of ours. */
static bool service_ok(const struct rpc_server *s, const char *service)
{
    return service == NULL || service[0] == '\0' ||
           server_known_service(s, service, strlen(service));
}

grpc_status_code health_check(struct rpc_call *c, const ProtobufCMessage *req, void *user)
{
    struct rpc_server *s = user;
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    if (!service_ok(s, r->service))
        return rpc_call_error(c, GRPC_STATUS_NOT_FOUND, "service: unknown service %s", r->service);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = atomic_load(&s->serving) ? ST_SERVING : ST_NOT_SERVING;
    rpc_call_reply(c, &resp.base);
    return GRPC_STATUS_OK;
}

/* ------------------------------------------------------------ watch */

/* The status watcher c should see now. */
static int watch_status(const struct rpc_call *c)
{
    if (c->w_fixed >= 0) return c->w_fixed;
    return atomic_load(&c->srv->serving) ? ST_SERVING : ST_NOT_SERVING;
}

/* A serialized HealthCheckResponse, or NULL on ENOMEM. */
static grpc_byte_buffer *status_bb(int status)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = status;
    return rpc_pb_to_bb(&resp.base);
}

/* Removes c from the server's watcher list. watch_mu held. */
static void unlink_watcher(struct rpc_call *c)
{
    for (struct rpc_call **p = &c->srv->watchers; *p != NULL; p = &(*p)->w_next) {
        if (*p == c) {
            *p = c->w_next;
            return;
        }
    }
}

/* Ends the stream with `code` (and, unless cancelled, the current status
 * first when the client has not seen it). watch_mu held. */
static void watch_finish(struct rpc_call *c, grpc_status_code code, const char *msg)
{
    if (c->w_final) return;
    c->w_final = true;
    unlink_watcher(c);
    server_count_call(c, code);
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->sent_initial) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n++].data.send_initial_metadata.count = 0;
    }
    int st = watch_status(c);
    if (code != GRPC_STATUS_CANCELLED && st != c->w_sent && (c->w_bb = status_bb(st)) != NULL) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->w_bb;
        c->w_sent = st;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    if (msg != NULL) {
        c->msg_slice = grpc_slice_from_static_string(msg);
        c->have_msg_slice = true;
        ops[n].data.send_status_from_server.status_details = &c->msg_slice;
    }
    n++;
    if (grpc_call_start_batch(c->call, ops, n, &c->t_final, NULL) == GRPC_CALL_OK) {
        c->w_pending++;
    } else if (c->w_bb != NULL) {
        grpc_byte_buffer_destroy(c->w_bb);
        c->w_bb = NULL;
    }
}

/* Sends the current status when the client has not seen it. watch_mu held, no send in flight. */
static void watch_send(struct rpc_call *c)
{
    int st = watch_status(c);
    if (c->w_final || st == c->w_sent) return;
    grpc_byte_buffer *bb = status_bb(st);
    if (bb == NULL) {
        watch_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (server_call_start_send(c, bb, &c->t_wsend) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(bb);
        watch_finish(c, GRPC_STATUS_CANCELLED, NULL);
        return;
    }
    c->w_sending = true;
    c->w_pending++;
    c->w_bb = bb;
    c->w_sent = st;
}

void health_watch_start(struct rpc_call *c)
{
    struct rpc_server *s = c->srv;
    Grpc__Health__V1__HealthCheckRequest *r = (void *)rpc_bb_decode(
        c->payload, &grpc__health__v1__health_check_request__descriptor, NULL);
    grpc_status_code code = GRPC_STATUS_OK;
    const char *msg = NULL;
    if (r == NULL) {
        code = GRPC_STATUS_INVALID_ARGUMENT;
        msg = "request is not a valid grpc.health.v1.HealthCheckRequest";
    }
    c->watch = true;
    c->w_fixed = r != NULL && !service_ok(s, r->service) ? ST_SERVICE_UNKNOWN : -1;
    if (r != NULL) protobuf_c_message_free_unpacked(&r->base, NULL);

    pthread_mutex_lock(&s->watch_mu);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_wclose, NULL) == GRPC_CALL_OK)
        c->w_pending++;
    else
        c->w_closed = true;
    c->w_next = s->watchers;
    s->watchers = c;
    if (code != GRPC_STATUS_OK)
        watch_finish(c, code, msg);
    else if (atomic_load(&s->stopping))
        watch_finish(c, GRPC_STATUS_UNAVAILABLE, "server shutting down");
    else if (c->w_closed)
        watch_finish(c, GRPC_STATUS_CANCELLED, NULL);
    else
        watch_send(c);
    bool done = c->w_final && c->w_pending == 0;
    pthread_mutex_unlock(&s->watch_mu);
    if (done) server_call_free(c);
}

void health_watch_event(struct rpc_call *c, enum tag_kind kind, bool ok)
{
    struct rpc_server *s = c->srv;
    pthread_mutex_lock(&s->watch_mu);
    c->w_pending--;
    if (kind == TAG_WATCH_SEND) {
        c->w_sending = false;
        grpc_byte_buffer_destroy(c->w_bb);
        c->w_bb = NULL;
        if (!ok || c->w_closed)
            watch_finish(c, GRPC_STATUS_CANCELLED, NULL);
        else if (atomic_load(&s->stopping))
            watch_finish(c, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        else
            watch_send(c);
    } else if (kind == TAG_WATCH_CLOSE) {
        c->w_closed = true;
        if (!c->w_sending) watch_finish(c, GRPC_STATUS_CANCELLED, NULL);
    } else if (c->w_bb != NULL) { /* TAG_FINAL: the status batch's message */
        grpc_byte_buffer_destroy(c->w_bb);
        c->w_bb = NULL;
    }
    bool done = c->w_final && c->w_pending == 0;
    pthread_mutex_unlock(&s->watch_mu);
    if (done) server_call_free(c);
}

void health_watch_notify(struct rpc_server *s)
{
    pthread_mutex_lock(&s->watch_mu);
    for (struct rpc_call *c = s->watchers; c != NULL; c = c->w_next)
        if (!c->w_sending) watch_send(c);
    pthread_mutex_unlock(&s->watch_mu);
}

void health_watch_shutdown(struct rpc_server *s)
{
    pthread_mutex_lock(&s->watch_mu);
    /* watch_finish unlinks, so take the head until only busy watchers remain */
    struct rpc_call *busy = NULL;
    while (s->watchers != NULL) {
        struct rpc_call *c = s->watchers;
        if (c->w_sending) { /* its send completion sees `stopping` and finishes it */
            s->watchers = c->w_next;
            c->w_next = busy;
            busy = c;
        } else {
            watch_finish(c, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        }
    }
    s->watchers = busy;
    pthread_mutex_unlock(&s->watch_mu);
}
