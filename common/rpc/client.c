/*
 * client.c — the client side: the channel pool, the background poller, the
 * one-batch unary call shared by rpc_unary and the fan-out, and the
 * server-streaming iterator.
 *
 * A unary call is a single batch of six ops (grpc-core-notes §3): send metadata,
 * message and half-close, receive initial metadata (mandatory, or the status
 * never arrives), message and status. rpc_unary runs it on a private pluck
 * completion queue created per call; that costs a few microseconds against a
 * ~100 µs loopback round trip and keeps no per-thread state that would have
 * to be torn down before grpc_shutdown. The fan-out (fanout.c) runs the same
 * batch on one "next" queue shared by all its calls.
 */
#include "common/rpc/rpc_internal.h"

#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

struct rpc_channel {
    char *addr;
    grpc_channel *ch; /* atomic: rpc_client_reload_tls swaps it (chan_core) */
    int64_t default_deadline_ms; /* the client's rpc_client_config.default_deadline_ms */
    /* rpc_client_set_local: the server fan-out calls run in; atomic */
    struct rpc_server *local;
    struct rpc_client *cl; /* the owner (its last_call_ms) */
    struct rpc_channel *next;
};

/* A channel replaced by a TLS reload: calls that started on it finish there,
 * so it is destroyed with the client, not at once. */
struct old_channel {
    grpc_channel *ch;
    struct old_channel *next;
};

struct rpc_client {
    pthread_mutex_t mu; /* protects the channel list, creds and old */
    struct rpc_channel *channels;
    struct tls_state *tls;          /* NULL: plaintext (tls.c) */
    grpc_channel_credentials *creds; /* TLS: what new channels use */
    struct old_channel *old;
    size_t max_msg;
    int keepalive_ms;
    int64_t default_deadline_ms;
    grpc_completion_queue *spare_cq; /* polled by `poller` so idle channels progress */
    pthread_t poller;
    bool poller_started;
    int64_t last_call_ms;  /* rpc_now_ms() of the latest call started; atomic */
    pthread_cond_t quit_cv; /* wakes a napping poller for rpc_client_destroy */
    bool quit;              /* under mu */
};

/* The spare poller parks in its queue only once no call has started for
 * this long; until then calls poll their own queues and it naps. */
#define SPARE_IDLE_MS 100

/* The core channel calls start on now. */
static grpc_channel *chan_core(struct rpc_channel *ch)
{
    return __atomic_load_n(&ch->ch, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------ one unary batch */

/* A unary call's deadline: the caller's, else now + the client's default
 * (streams keep "none": a transfer may run for hours). */
gpr_timespec client_unary_deadline(const struct rpc_channel *ch, const struct rpc_opts *o)
{
    int64_t d = o != NULL ? o->deadline_ms : 0;
    if (d == 0 && ch->default_deadline_ms > 0) d = rpc_now_ms() + ch->default_deadline_ms;
    return rpc_deadline_ts(d);
}

grpc_call_error client_call_start(struct client_call *c, struct rpc_channel *ch,
                                  grpc_completion_queue *cq, const char *method,
                                  const ProtobufCMessage *req, const struct rpc_opts *o, void *tag)
{
    memset(c, 0, sizeof *c);
    __atomic_store_n(&ch->cl->last_call_ms, rpc_now_ms(), __ATOMIC_RELAXED);
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    c->send = rpc_pb_to_bb(req);
    grpc_slice m = grpc_slice_from_copied_string(method);
    c->call = grpc_channel_create_call(chan_core(ch), NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
                                       client_unary_deadline(ch, o), NULL);
    grpc_slice_unref(m);
    if (c->call == NULL) return GRPC_CALL_ERROR;

    if (o != NULL && o->n_md > 0) {
        c->md = calloc(o->n_md, sizeof *c->md);
        if (c->md == NULL) return GRPC_CALL_ERROR;
        for (size_t i = 0; i < o->n_md; i++) {
            c->md[i].key = grpc_slice_from_copied_string(o->md[i].key);
            c->md[i].value = grpc_slice_from_copied_string(o->md[i].value);
        }
        c->n_md = o->n_md;
    }
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->md;
    if (o != NULL && o->wait_for_ready) ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trail_md;
    ops[5].data.recv_status_on_client.status = &c->code;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, 6, tag, NULL);
    if (e == GRPC_CALL_OK) c->in_flight = true;
    return e;
}

void client_call_end(struct client_call *c, const ProtobufCMessageDescriptor *d,
                     ProtobufCMessage **resp, struct rpc_status *st)
{
    if (resp != NULL) *resp = NULL;
    if (!c->in_flight) {
        rpc_status_set(st, GRPC_STATUS_INTERNAL, "cannot start the call (out of memory?)");
    } else if (c->code == GRPC_STATUS_OK && resp != NULL && d != NULL &&
               (*resp = rpc_bb_to_pb(c->recv, d)) == NULL) {
        char m[RPC_DETAILS_MAX];
        snprintf(m, sizeof m, "reply is not a valid %s", d->name);
        rpc_status_set(st, GRPC_STATUS_INTERNAL, m);
    } else {
        rpc_status_fill(st, c->code, &c->details, &c->trail_md);
    }
    if (c->in_flight) grpc_slice_unref(c->details);
    if (c->error_string != NULL) gpr_free((void *)c->error_string);
    if (c->send != NULL) grpc_byte_buffer_destroy(c->send);
    if (c->recv != NULL) grpc_byte_buffer_destroy(c->recv);
    for (size_t i = 0; i < c->n_md; i++) {
        grpc_slice_unref(c->md[i].key);
        grpc_slice_unref(c->md[i].value);
    }
    free(c->md);
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
    if (c->call != NULL) grpc_call_unref(c->call);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------ pool */

/* Background poller: keeps the core's I/O moving while no call is waiting
 * (reconnects in ~1-3 s instead of ~11 s, grpc-core-notes §6.6). While
 * calls are being made it naps instead of parking in its queue: every
 * call polls its own, and one more parked thread would take part in each
 * hand-off of the epoll role (grpc-core-notes §6.9; the CLI's CPU per
 * single-query search fell from ~103 to ~77 us without it). */
static void *spare_poller(void *arg)
{
    struct rpc_client *cl = arg;
    for (;;) {
        pthread_mutex_lock(&cl->mu);
        bool quit = cl->quit;
        int64_t idle = rpc_now_ms() - __atomic_load_n(&cl->last_call_ms, __ATOMIC_RELAXED);
        if (!quit && idle < SPARE_IDLE_MS) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (SPARE_IDLE_MS - idle) * 1000000;
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&cl->quit_cv, &cl->mu, &ts);
            pthread_mutex_unlock(&cl->mu);
            continue;
        }
        pthread_mutex_unlock(&cl->mu);
        gpr_timespec until = quit ? gpr_inf_future(GPR_CLOCK_REALTIME)
                                  : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                 gpr_time_from_millis(SPARE_IDLE_MS, GPR_TIMESPAN));
        if (grpc_completion_queue_next(cl->spare_cq, until, NULL).type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
    }
}

struct rpc_client *rpc_client_create(const struct rpc_client_config *cfg)
{
    struct tls_state *tls = NULL;
    if (cfg != NULL && rpc_tls_on(cfg->tls) &&
        (tls = tls_state_new(cfg->tls, false, NULL, 0)) == NULL)
        return NULL; /* rpc_tls_check tells why */
    grpc_channel_credentials *creds = tls != NULL ? tls_channel_credentials(tls) : NULL;
    struct rpc_client *cl = tls == NULL || creds != NULL ? calloc(1, sizeof *cl) : NULL;
    if (cl == NULL) {
        if (creds != NULL) grpc_channel_credentials_release(creds);
        tls_state_free(tls);
        return NULL;
    }
    cl->tls = tls;
    cl->creds = creds;
    cl->max_msg = cfg != NULL && cfg->max_msg_bytes > 0 ? cfg->max_msg_bytes : RPC_DEFAULT_MAX_MSG;
    if (cl->max_msg > INT32_MAX) cl->max_msg = INT32_MAX;
    cl->keepalive_ms = cfg != NULL && cfg->keepalive_ms != 0 ? cfg->keepalive_ms : 10000;
    cl->default_deadline_ms =
        cfg != NULL && cfg->default_deadline_ms > 0 ? cfg->default_deadline_ms : 0;
    pthread_mutex_init(&cl->mu, NULL);
    pthread_cond_init(&cl->quit_cv, NULL);
    grpc_init();
    cl->spare_cq = grpc_completion_queue_create_for_next(NULL);
    cl->poller_started = !(cfg != NULL && cfg->no_spare_poller) &&
                         pthread_create(&cl->poller, NULL, spare_poller, cl) == 0;
    return cl;
}

void rpc_client_destroy(struct rpc_client *cl)
{
    if (cl == NULL) return;
    for (struct rpc_channel *ch = cl->channels, *next; ch != NULL; ch = next) {
        next = ch->next;
        grpc_channel_destroy(ch->ch);
        free(ch->addr);
        free(ch);
    }
    for (struct old_channel *o = cl->old, *next; o != NULL; o = next) {
        next = o->next;
        grpc_channel_destroy(o->ch);
        free(o);
    }
    if (cl->creds != NULL) grpc_channel_credentials_release(cl->creds);
    tls_state_free(cl->tls);
    pthread_mutex_lock(&cl->mu);
    cl->quit = true;
    pthread_cond_signal(&cl->quit_cv);
    pthread_mutex_unlock(&cl->mu);
    grpc_completion_queue_shutdown(cl->spare_cq);
    if (cl->poller_started)
        pthread_join(cl->poller, NULL);
    else
        spare_poller(cl);
    grpc_completion_queue_destroy(cl->spare_cq);
    pthread_cond_destroy(&cl->quit_cv);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
    grpc_shutdown();
}

/* Creates the grpc_channel for addr with the client's limits and TLS
 * (called with cl->mu held). */
static grpc_channel *channel_open(const struct rpc_client *cl, const char *addr)
{
    grpc_arg args[7] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)cl->max_msg}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = (int)cl->max_msg}},
    };
    size_t n = 2;
    if (cl->keepalive_ms > 0) {
        args[n++] =
            (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = cl->keepalive_ms}};
        args[n++] = (grpc_arg){
            GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = cl->keepalive_ms / 2}};
        args[n++] =
            (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}};
    }
    /*
     * vecshard retries at its own level (the router per shard, the CLI per
     * batch); the core's transparent-retry layer only buffers every message
     * and measured ~10-15 us per call on loopback.
     */
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_RETRIES, {.integer = 0}};
    const char *name = cl->tls != NULL ? tls_state_server_name(cl->tls) : NULL;
    if (name != NULL)
        args[n++] = (grpc_arg){
            GRPC_ARG_STRING, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, {.string = (char *)name}};
    grpc_channel_args ca = {n, args};
    if (cl->creds != NULL) return grpc_channel_create(addr, cl->creds, &ca);
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(addr, cr, &ca);
    grpc_channel_credentials_release(cr);
    return ch;
}

int rpc_client_reload_tls(struct rpc_client *cl, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (cl->tls == NULL) return 0;
    if (tls_state_reload(cl->tls, err, errlen) != 0) return -1;
    grpc_channel_credentials *creds = tls_channel_credentials(cl->tls);
    if (creds == NULL) {
        if (err != NULL && errlen > 0) snprintf(err, errlen, "cannot create TLS credentials");
        return -1;
    }
    pthread_mutex_lock(&cl->mu);
    grpc_channel_credentials_release(cl->creds);
    cl->creds = creds;
    int rc = 0;
    for (struct rpc_channel *ch = cl->channels; ch != NULL; ch = ch->next) {
        struct old_channel *o = malloc(sizeof *o);
        if (o == NULL) { /* keep this one: it still works with the old files */
            rc = -1;
            if (err != NULL && errlen > 0) snprintf(err, errlen, "out of memory");
            continue;
        }
        o->ch = ch->ch;
        o->next = cl->old;
        cl->old = o;
        __atomic_store_n(&ch->ch, channel_open(cl, ch->addr), __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&cl->mu);
    return rc;
}

struct rpc_channel *rpc_client_channel(struct rpc_client *cl, const char *addr)
{
    pthread_mutex_lock(&cl->mu);
    struct rpc_channel *ch;
    for (ch = cl->channels; ch != NULL; ch = ch->next)
        if (strcmp(ch->addr, addr) == 0) goto out;
    ch = calloc(1, sizeof *ch);
    if (ch == NULL || (ch->addr = strdup(addr)) == NULL) {
        free(ch);
        ch = NULL;
        goto out;
    }
    ch->ch = channel_open(cl, addr); /* never NULL: a bad target fails its calls */
    ch->default_deadline_ms = cl->default_deadline_ms;
    ch->cl = cl;
    ch->next = cl->channels;
    cl->channels = ch;
out:
    pthread_mutex_unlock(&cl->mu);
    return ch;
}

const char *rpc_channel_addr(const struct rpc_channel *ch)
{
    return ch->addr;
}

int rpc_client_set_local(struct rpc_client *cl, const char *addr, struct rpc_server *srv)
{
    struct rpc_channel *ch = rpc_client_channel(cl, addr);
    if (ch == NULL) return -1;
    __atomic_store_n(&ch->local, srv, __ATOMIC_RELEASE);
    return 0;
}

struct rpc_server *client_channel_local(const struct rpc_channel *ch)
{
    return __atomic_load_n(&ch->local, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------ unary */

grpc_status_code rpc_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                           const struct rpc_opts *opts, struct rpc_status *st)
{
    struct rpc_status local;
    if (st == NULL) st = &local;
    struct client_call c;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    if (client_call_start(&c, ch, cq, method, req, opts, &c) == GRPC_CALL_OK)
        grpc_completion_queue_pluck(cq, &c, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    client_call_end(&c, resp_desc, resp, st);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return st->code;
}

/* ------------------------------------------------------------ server streaming */

struct rpc_client_stream {
    grpc_call *call;
    grpc_completion_queue *cq;
    const ProtobufCMessageDescriptor *desc;
    grpc_byte_buffer *send;
    grpc_metadata *md;
    size_t n_md;
    grpc_metadata_array init_md;
    bool ended;                /* the server sent its last message */
    struct rpc_status failure; /* a local error (bad reply), reported by close */
    bool failed;
};

/* Runs one batch on the stream's call and waits for it. */
static bool stream_batch(struct rpc_client_stream *s, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(s->call, ops, n, s, NULL) != GRPC_CALL_OK) return false;
    return grpc_completion_queue_pluck(s->cq, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).success;
}

struct rpc_client_stream *rpc_client_stream_open(struct rpc_channel *ch, const char *method,
                                                 const ProtobufCMessage *req,
                                                 const ProtobufCMessageDescriptor *resp_desc,
                                                 const struct rpc_opts *o)
{
    struct rpc_client_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->desc = resp_desc;
    grpc_metadata_array_init(&s->init_md);
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice m = grpc_slice_from_copied_string(method);
    __atomic_store_n(&ch->cl->last_call_ms, rpc_now_ms(), __ATOMIC_RELAXED);
    s->call = grpc_channel_create_call(chan_core(ch), NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                       rpc_deadline_ts(o != NULL ? o->deadline_ms : 0), NULL);
    grpc_slice_unref(m);
    s->send = rpc_pb_to_bb(req);
    if (o != NULL && o->n_md > 0 && (s->md = calloc(o->n_md, sizeof *s->md)) != NULL) {
        for (size_t i = 0; i < o->n_md; i++) {
            s->md[i].key = grpc_slice_from_copied_string(o->md[i].key);
            s->md[i].value = grpc_slice_from_copied_string(o->md[i].value);
        }
        s->n_md = o->n_md;
    }
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = s->n_md;
    ops[0].data.send_initial_metadata.metadata = s->md;
    if (o != NULL && o->wait_for_ready) ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    if (s->call == NULL || !stream_batch(s, ops, 4))
        s->ended = true; /* the status batch in close says why */
    return s;
}

int rpc_client_stream_next(struct rpc_client_stream *s, ProtobufCMessage **msg)
{
    *msg = NULL;
    if (s->ended) return 0;
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!stream_batch(s, &op, 1) || bb == NULL) {
        if (bb != NULL) grpc_byte_buffer_destroy(bb);
        s->ended = true;
        return 0;
    }
    *msg = rpc_bb_to_pb(bb, s->desc);
    grpc_byte_buffer_destroy(bb);
    if (*msg == NULL) {
        char m[RPC_DETAILS_MAX];
        snprintf(m, sizeof m, "stream message is not a valid %s", s->desc->name);
        rpc_status_set(&s->failure, GRPC_STATUS_INTERNAL, m);
        s->failed = true;
        grpc_call_cancel(s->call, NULL);
        s->ended = true;
        return 0;
    }
    return 1;
}

void rpc_client_stream_cancel(struct rpc_client_stream *s)
{
    if (s->call != NULL) grpc_call_cancel(s->call, NULL);
}

grpc_status_code rpc_client_stream_close(struct rpc_client_stream *s, struct rpc_status *st)
{
    struct rpc_status local;
    if (st == NULL) st = &local;
    if (s->call == NULL) {
        rpc_status_set(st, GRPC_STATUS_INTERNAL, "cannot create the call");
    } else {
        if (!s->ended) grpc_call_cancel(s->call, NULL);
        grpc_metadata_array trail;
        grpc_metadata_array_init(&trail);
        grpc_status_code code = GRPC_STATUS_UNKNOWN;
        grpc_slice details = grpc_empty_slice();
        const char *error_string = NULL;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        op.data.recv_status_on_client.trailing_metadata = &trail;
        op.data.recv_status_on_client.status = &code;
        op.data.recv_status_on_client.status_details = &details;
        op.data.recv_status_on_client.error_string = &error_string;
        stream_batch(s, &op, 1);
        if (s->failed)
            *st = s->failure;
        else
            rpc_status_fill(st, code, &details, &trail);
        grpc_slice_unref(details);
        if (error_string != NULL) gpr_free((void *)error_string);
        grpc_metadata_array_destroy(&trail);
        grpc_call_unref(s->call);
    }
    for (size_t i = 0; i < s->n_md; i++) {
        grpc_slice_unref(s->md[i].key);
        grpc_slice_unref(s->md[i].value);
    }
    free(s->md);
    if (s->send != NULL) grpc_byte_buffer_destroy(s->send);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_completion_queue_shutdown(s->cq);
    grpc_completion_queue_destroy(s->cq);
    free(s);
    return st->code;
}
