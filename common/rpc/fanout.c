/*
 * fanout.c — many concurrent unary calls waited on by one thread: the
 * router's search fan-out (one call per node) and write routing (one call per
 * shard primary).
 *
 * All calls of a fan-out share one "next" completion queue, so the waiting
 * thread learns about each reply as it lands (rpc_fanout_next) and can react
 * — merge it, or retry a failed shard on another replica while the deadline
 * allows — instead of only seeing the slowest one. Calls are independent
 * grpc_calls: they may go to the same or different channels.
 *
 * A call on a channel bound to a server of this process (rpc_client_set_local)
 * is only prepared by rpc_fanout_start; rpc_fanout_next runs it on the
 * waiting thread (after every remote call has been started, so they proceed
 * meanwhile), the oldest first, before it waits for remote replies.
 */
#include "common/rpc/rpc_internal.h"

#include <stdlib.h>
#include <string.h>

struct fo_call {
    struct client_call c;
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *resp;
    struct rpc_status st;
    int index;
    bool running;   /* batch in flight: a completion will come */
    bool timed_out; /* cancelled by rpc_fanout_wait at its deadline */
    /* an in-process call not yet run (server_local_prepare), or NULL */
    struct rpc_call *local;
};

struct rpc_fanout {
    grpc_completion_queue *cq;
    struct fo_call **calls; /* by index; stable pointers serve as tags */
    int n, cap;
    int running;
    int *ready; /* indexes that failed to start or were cancelled before running */
    int n_ready;
    int n_local; /* calls with f->local set */
};

struct rpc_fanout *rpc_fanout_create(void)
{
    struct rpc_fanout *fo = calloc(1, sizeof *fo);
    return fo; /* the queue comes with the first remote call: in-process ones need none */
}

int rpc_fanout_start(struct rpc_fanout *fo, struct rpc_channel *ch, const char *method,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                     const struct rpc_opts *opts)
{
    if (fo->n == fo->cap) {
        int cap = fo->cap ? 2 * fo->cap : 16;
        struct fo_call **nc = realloc(fo->calls, (size_t)cap * sizeof *nc);
        if (nc == NULL) return -1;
        fo->calls = nc;
        int *nr = realloc(fo->ready, (size_t)cap * sizeof *nr);
        if (nr == NULL) return -1;
        fo->ready = nr;
        fo->cap = cap;
    }
    struct fo_call *f = calloc(1, sizeof *f);
    if (f == NULL) return -1;
    f->desc = resp_desc;
    f->index = fo->n;
    f->st.code = GRPC_STATUS__DO_NOT_USE;
    fo->calls[fo->n++] = f;
    struct rpc_server *srv = client_channel_local(ch);
    if (srv != NULL) {
        gpr_timespec deadline = client_unary_deadline(ch, opts);
        f->local = server_local_prepare(srv, method, req, opts, deadline, &f->st);
        if (f->local != NULL) {
            f->running = true;
            fo->running++;
            fo->n_local++;
        } else {
            fo->ready[fo->n_ready++] = f->index;
        }
        return f->index;
    }
    if (fo->cq == NULL) fo->cq = grpc_completion_queue_create_for_next(NULL);
    if (fo->cq != NULL &&
        client_call_start(&f->c, ch, fo->cq, method, req, opts, f) == GRPC_CALL_OK) {
        f->running = true;
        fo->running++;
    } else {
        client_call_end(&f->c, NULL, NULL, &f->st);
        fo->ready[fo->n_ready++] = f->index;
    }
    return f->index;
}

/* rpc_fanout_next until the absolute time `until`. */
static int next_until(struct rpc_fanout *fo, gpr_timespec until)
{
    if (fo->n_ready > 0) {
        int i = fo->ready[0];
        memmove(fo->ready, fo->ready + 1, (size_t)--fo->n_ready * sizeof *fo->ready);
        return i;
    }
    if (fo->n_local > 0) {
        for (int i = 0; i < fo->n; i++) {
            struct fo_call *f = fo->calls[i];
            if (f->local == NULL) continue;
            struct rpc_call *c = f->local;
            f->local = NULL;
            fo->n_local--;
            f->running = false;
            fo->running--;
            server_local_run(c, f->desc, &f->resp, &f->st);
            return f->index;
        }
    }
    while (fo->running > 0) {
        grpc_event ev = grpc_completion_queue_next(fo->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) return -2;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        struct fo_call *f = ev.tag;
        f->running = false;
        fo->running--;
        client_call_end(&f->c, f->desc, &f->resp, &f->st);
        if (f->timed_out && f->st.code == GRPC_STATUS_CANCELLED)
            rpc_status_set(&f->st, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
        return f->index;
    }
    return -1;
}

int rpc_fanout_next(struct rpc_fanout *fo, int64_t wait_until_ms)
{
    return next_until(fo, rpc_deadline_ts(wait_until_ms));
}

int rpc_fanout_next_us(struct rpc_fanout *fo, int64_t timeout_us)
{
    if (timeout_us < 0) timeout_us = 0;
    return next_until(fo, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_micros(timeout_us, GPR_TIMESPAN)));
}

/* Cancels call f: a local one that has not run is answered at once (the
 * next rpc_fanout_next returns it), a remote one completes promptly. */
static void cancel_call(struct rpc_fanout *fo, struct fo_call *f, bool timed_out)
{
    if (f->local != NULL) {
        server_local_drop(f->local);
        f->local = NULL;
        fo->n_local--;
        f->running = false;
        fo->running--;
        if (timed_out)
            rpc_status_set(&f->st, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
        else
            rpc_status_set(&f->st, GRPC_STATUS_CANCELLED, "Cancelled");
        fo->ready[fo->n_ready++] = f->index;
    } else if (f->running) {
        f->timed_out = timed_out;
        grpc_call_cancel(f->c.call, NULL);
    }
}

/* Cancels every running call; each then completes promptly. */
static void cancel_running(struct rpc_fanout *fo, bool timed_out)
{
    for (int i = 0; i < fo->n; i++) {
        struct fo_call *f = fo->calls[i];
        if (f->running) cancel_call(fo, f, timed_out);
    }
}

int rpc_fanout_wait(struct rpc_fanout *fo, int64_t deadline_ms)
{
    for (;;) {
        int r = rpc_fanout_next(fo, deadline_ms);
        if (r == -1) break;
        if (r == -2) {
            cancel_running(fo, true);
            deadline_ms = 0;
        }
    }
    int ok = 0;
    for (int i = 0; i < fo->n; i++)
        ok += fo->calls[i]->st.code == GRPC_STATUS_OK;
    return ok;
}

int rpc_fanout_count(const struct rpc_fanout *fo)
{
    return fo->n;
}

void rpc_fanout_cancel(struct rpc_fanout *fo, int i)
{
    if (i < 0 || i >= fo->n) return;
    struct fo_call *f = fo->calls[i];
    if (f->running) cancel_call(fo, f, false);
}

const struct rpc_status *rpc_fanout_status(const struct rpc_fanout *fo, int i)
{
    return &fo->calls[i]->st;
}

const ProtobufCMessage *rpc_fanout_response(const struct rpc_fanout *fo, int i)
{
    return fo->calls[i]->resp;
}

ProtobufCMessage *rpc_fanout_take(struct rpc_fanout *fo, int i)
{
    ProtobufCMessage *m = fo->calls[i]->resp;
    fo->calls[i]->resp = NULL;
    return m;
}

void rpc_fanout_destroy(struct rpc_fanout *fo)
{
    if (fo == NULL) return;
    cancel_running(fo, false);
    fo->n_ready = 0;
    while (rpc_fanout_next(fo, 0) != -1)
        ;
    for (int i = 0; i < fo->n; i++) {
        if (fo->calls[i]->resp != NULL) protobuf_c_message_free_unpacked(fo->calls[i]->resp, NULL);
        free(fo->calls[i]);
    }
    if (fo->cq != NULL) {
        grpc_completion_queue_shutdown(fo->cq);
        while (grpc_completion_queue_next(fo->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(fo->cq);
    }
    free(fo->calls);
    free(fo->ready);
    free(fo);
}
