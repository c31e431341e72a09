/*
 * shard_call.c — the per-shard call-with-retry loop (shard_call.h).
 *
 * One event loop: start every wanted shard, then wait for the next reply
 * (or the next paused resend, or the deadline), hand each shard of the
 * reply its verdict — answered, resend now, resend later, failed — and
 * start the resends. A call's slot in `calls` is made before the call is
 * started, so a reply always finds the shards it carried.
 *
 * Writes resolve the primary from the current routing view at every try
 * (a refresh may have moved it); reads pick from the request's view, whose
 * node ids the `tried` lists borrow.
 */
#define _GNU_SOURCE
#include "router/shard_call.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics/metrics.h"
#include "common/util/clock.h"
#include "common/util/log.h"

/* One started call: the node and the shards it carries. */
struct sc_call {
    char node[129];
    uint32_t *shards;
    size_t n;
    int64_t start_us;      /* when it was started (its answer's latency is noted per node) */
    bool finished;         /* its reply was handled (and its load released) */
    grpc_status_code code; /* once finished: the answer's, or DEADLINE_EXCEEDED / CANCELLED */
};

int shard_call_init(struct shard_call *sc, struct router *r, const struct rt_view *v,
                    const struct rt_collection *coll, const struct shard_call_policy *pol,
                    const struct shard_call_ops *ops, void *arg, int64_t deadline)
{
    memset(sc, 0, sizeof *sc);
    sc->r = r;
    sc->v = v;
    sc->coll = coll;
    sc->pol = *pol;
    if (sc->pol.max_tries < 1 || sc->pol.max_tries > SHARD_CALL_MAX_TRIES)
        sc->pol.max_tries = SHARD_CALL_MAX_TRIES;
    sc->ops = *ops;
    sc->arg = arg;
    sc->deadline = deadline;
    sc->unit = calloc(coll->shards, sizeof *sc->unit);
    sc->extra = calloc(v->n_nodes + 1, sizeof *sc->extra);
    sc->retry = calloc(coll->shards, sizeof *sc->retry);
    sc->fo = rpc_fanout_create();
    return sc->unit && sc->extra && sc->retry && sc->fo ? 0 : -1;
}

void shard_call_want(struct shard_call *sc, uint32_t shard)
{
    sc->unit[shard].state = SHARD_CALL_PENDING;
    sc->unit[shard].hedge_call = -1;
}

/* Marks shard s failed with a message. */
static void unit_fail(struct shard_call *sc, uint32_t s, grpc_status_code code, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));
static void unit_fail(struct shard_call *sc, uint32_t s, grpc_status_code code, const char *fmt,
                      ...)
{
    struct shard_call_unit *u = &sc->unit[s];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->msg, sizeof u->msg, fmt, ap);
    va_end(ap);
    u->code = code;
    u->state = SHARD_CALL_FAILED;
    u->retry_at = 0;
}

/* Starts one call to node carrying shards[0..n); false if it could not be
 * started (the shards are then failed). list is copied. */
static bool start_call(struct shard_call *sc, const struct rt_node *node, const uint32_t *list,
                       size_t n, uint64_t epoch)
{
    if (sc->n_calls == sc->cap_calls) {
        int cap = sc->cap_calls ? 2 * sc->cap_calls : 16;
        struct sc_call *nc = realloc(sc->calls, (size_t)cap * sizeof *nc);
        if (nc == NULL) goto oom;
        sc->calls = nc;
        sc->cap_calls = cap;
    }
    struct sc_call *call = &sc->calls[sc->n_calls];
    memset(call, 0, sizeof *call);
    call->start_us = clock_mono_us();
    call->shards = malloc(n * sizeof *call->shards);
    if (call->shards == NULL) goto oom;
    memcpy(call->shards, list, n * sizeof *list);
    call->n = n;
    snprintf(call->node, sizeof call->node, "%s", node->id);
    struct rpc_channel *ch = rpc_client_channel(sc->r->client, node->addr);
    struct rpc_opts opts = router_node_opts(sc->deadline);
    int idx = ch != NULL ? sc->ops.send(sc->arg, sc->fo, ch, list, n, epoch, &opts) : -1;
    if (idx < 0 || idx != sc->n_calls) {
        free(call->shards);
        goto oom;
    }
    sc->n_calls++;
    for (size_t i = 0; i < n; i++) {
        struct shard_call_unit *u = &sc->unit[list[i]];
        u->state = SHARD_CALL_RUNNING;
        u->retry_at = 0;
        u->inflight++;
        snprintf(u->addr, sizeof u->addr, "%s", node->addr);
    }
    router_load_add(sc->r, node->id, 1);
    return true;
oom:
    for (size_t i = 0; i < n; i++)
        unit_fail(sc, list[i], GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return false;
}

/* Hedge policy: sends shard s, alone, to an in-sync replica it has not tried. */
static void start_hedge(struct shard_call *sc, uint32_t s)
{
    struct shard_call_unit *u = &sc->unit[s];
    u->hedge_at = 0;
    char why[200];
    const struct rt_node *node =
        u->tries < sc->pol.max_tries
            ? router_pick_replica(sc->r, sc->v, sc->coll, s, u->tried, u->tries, NULL, why,
                                  sizeof why)
            : NULL;
    if (node == NULL) return; /* nowhere else to ask: wait for the first try */
    u->tried[u->tries++] = node->id;
    u->hedge_call = sc->n_calls;
    log_debug("hedging shard call", "method=%s collection=%s shard=%u slow=%s hedge=%s",
              sc->pol.method, sc->coll->name, s, u->node, node->id);
    if (!start_call(sc, node, &s, 1, 0)) u->hedge_call = -1;
}

/* Cancels the calls still running whose every shard is answered. */
static void cancel_answered(struct shard_call *sc)
{
    for (int i = 0; i < sc->n_calls; i++) {
        struct sc_call *call = &sc->calls[i];
        if (call->finished) continue;
        bool all = true;
        for (size_t j = 0; j < call->n && all; j++)
            all = sc->unit[call->shards[j]].state == SHARD_CALL_DONE;
        if (all) rpc_fanout_cancel(sc->fo, i);
    }
}

/* Primary policy: the next try of shard s, to its primary in the current view. */
static void start_primary(struct shard_call *sc, uint32_t s)
{
    struct shard_call_unit *u = &sc->unit[s];
    const char *name = sc->coll->name;
    if (u->tries >= sc->pol.max_tries) {
        u->state = SHARD_CALL_FAILED;
        return;
    }
    u->tries++;
    struct rt_view *v = rt_acquire(sc->r->rt);
    const struct rt_collection *coll = rt_view_collection(v, name);
    if (coll == NULL || s >= coll->shards) {
        unit_fail(sc, s, GRPC_STATUS_NOT_FOUND, "collection \"%s\" was dropped", name);
        goto out;
    }
    const struct cluster_shard *sh = &coll->shard[s];
    if (u->fresh.present && u->fresh.epoch > sh->epoch) sh = &u->fresh;
    if (!sh->present || sh->primary[0] == '\0') {
        unit_fail(sc, s, GRPC_STATUS_UNAVAILABLE, "shard %u has no primary in etcd", s);
        goto out;
    }
    snprintf(u->node, sizeof u->node, "%s", sh->primary);
    const struct rt_node *node = rt_view_node(v, sh->primary);
    if (node == NULL) {
        u->addr[0] = '\0';
        unit_fail(sc, s, GRPC_STATUS_UNAVAILABLE,
                  "shard %u has no live primary (%s is not registered)", s, sh->primary);
        goto out;
    }
    start_call(sc, node, &s, 1, sh->epoch);
out:
    rt_release(v);
}

/* In-sync policy: the next tries of the listed shards, each on a replica it
 * has not tried; with batch, one call per node. */
static void start_in_sync(struct shard_call *sc, const uint32_t *list, size_t n)
{
    size_t nn = sc->v->n_nodes;
    uint32_t **per = calloc(nn + 1, sizeof *per);
    size_t *cnt = calloc(nn + 1, sizeof *cnt);
    if (per == NULL || cnt == NULL) goto oom;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = list[i];
        struct shard_call_unit *u = &sc->unit[s];
        char why[200];
        const struct rt_node *node =
            u->tries < sc->pol.max_tries
                ? router_pick_replica(sc->r, sc->v, sc->coll, s, u->tried, u->tries,
                                      sc->pol.batch ? sc->extra : NULL, why, sizeof why)
                : NULL;
        if (node == NULL) {
            if (u->tries == 0)
                unit_fail(sc, s, GRPC_STATUS_UNAVAILABLE, "no live in-sync replica: %s", why);
            else
                u->state = SHARD_CALL_FAILED; /* keeps the last failure */
            continue;
        }
        u->tried[u->tries++] = node->id;
        snprintf(u->node, sizeof u->node, "%s", node->id);
        if (sc->pol.hedge && u->hedge_call < 0) {
            int64_t after = router_hedge_after_us(sc->r, sc->v, sc->coll, s);
            u->hedge_at = after > 0 ? clock_mono_us() + after : 0;
        }
        size_t k = (size_t)(node - sc->v->nodes);
        if (!sc->pol.batch) {
            start_call(sc, node, &s, 1, 0);
            continue;
        }
        if (per[k] == NULL && (per[k] = calloc(n, sizeof **per)) == NULL) goto oom;
        per[k][cnt[k]++] = s;
        sc->extra[k]++;
    }
    for (size_t k = 0; k < nn; k++)
        if (cnt[k] > 0) start_call(sc, &sc->v->nodes[k], per[k], cnt[k], 0);
    for (size_t k = 0; k < nn; k++)
        free(per[k]);
    free(per);
    free(cnt);
    return;
oom:
    for (size_t k = 0; per != NULL && k < nn; k++)
        free(per[k]);
    free(per);
    free(cnt);
    for (size_t i = 0; i < n; i++)
        if (sc->unit[list[i]].state == SHARD_CALL_PENDING)
            unit_fail(sc, list[i], GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

/* Starts the next try of every listed shard. */
static void start_list(struct shard_call *sc, const uint32_t *list, size_t n)
{
    if (!sc->pol.primary) {
        start_in_sync(sc, list, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        start_primary(sc, list[i]);
}

/* Epoch carried by a placement error's vs-epoch trailer; false if none. */
static bool trailer_epoch(const struct rpc_status *st, uint64_t *epoch)
{
    const char *e = rpc_status_trailer(st, "vs-epoch");
    if (e == NULL) return false;
    char *end;
    unsigned long long v = strtoull(e, &end, 10);
    if (end == e) return false;
    *epoch = v;
    return true;
}

/* Makes the router's idea of shard s at least `epoch` (watch, else etcd). */
static void refresh_shard(struct shard_call *sc, uint32_t s, uint64_t epoch)
{
    int64_t left = sc->deadline - rpc_now_ms();
    if (rt_wait_shard_epoch(sc->r->rt, sc->coll->name, s, epoch, left < 1000 ? left : 1000)) return;
    char err[160];
    char *key = cluster_key_shard(sc->r->cfg->etcd_prefix, sc->coll->name, s);
    etcd_kv kv = {0};
    if (key != NULL && etcd_get(sc->r->etcd, key, &kv, NULL) == ETCD_OK) {
        struct cluster_shard fresh;
        if (cluster_shard_parse(kv.value, kv.value_len, &fresh, err, sizeof err) == 0) {
            cluster_shard_clear(&sc->unit[s].fresh);
            sc->unit[s].fresh = fresh;
        }
    }
    etcd_kv_clear(&kv);
    free(key);
}

/* Primary policy: what to do after shard s's call failed with st. */
static void verdict_primary(struct shard_call *sc, uint32_t s, const struct rpc_status *st)
{
    struct shard_call_unit *u = &sc->unit[s];
    u->code = st->code;
    snprintf(u->msg, sizeof u->msg, "%s: %s", rpc_status_name(st->code), st->details);
    uint64_t epoch = 0;
    bool retry = false;
    int64_t pause = 0;
    if (st->code == GRPC_STATUS_FAILED_PRECONDITION && trailer_epoch(st, &epoch)) {
        refresh_shard(sc, s, epoch);
        retry = true;
    } else if (router_retryable(st->code) && st->code != GRPC_STATUS_DEADLINE_EXCEEDED) {
        retry = true;
        pause = 50LL << (u->tries > 0 ? u->tries - 1 : 0);
    }
    if (!retry || u->tries >= sc->pol.max_tries || rpc_now_ms() + pause >= sc->deadline) {
        u->state = SHARD_CALL_FAILED;
        return;
    }
    log_debug("retrying shard call", "method=%s collection=%s shard=%u attempt=%d node=%s error=%s",
              sc->pol.method, sc->coll->name, s, u->tries + 1, u->node, log_quote(u->msg));
    metrics_add(sc->r->m.shard_retries, (const char *const[]){router_method_name(sc->pol.method)},
                1);
    if (pause == 0) {
        u->state = SHARD_CALL_PENDING;
        sc->retry[sc->n_retry++] = s;
    } else {
        u->state = SHARD_CALL_WAITING;
        u->retry_at = rpc_now_ms() + pause;
    }
}

/* In-sync policy: shard s failed on its replica (u->msg set); try the next. */
static void verdict_in_sync(struct shard_call *sc, uint32_t s, bool retry)
{
    struct shard_call_unit *u = &sc->unit[s];
    if (!retry || rpc_now_ms() >= sc->deadline) {
        u->state = SHARD_CALL_FAILED;
        return;
    }
    log_debug("retrying shard call", "method=%s collection=%s shard=%u failed_on=%s error=%s",
              sc->pol.method, sc->coll->name, s, u->node, log_quote(u->msg));
    metrics_add(sc->r->m.shard_retries, (const char *const[]){router_method_name(sc->pol.method)},
                1);
    u->state = SHARD_CALL_PENDING;
    sc->retry[sc->n_retry++] = s;
}

/* Handles the end of call idx; resends go to sc->retry. Returns OK or an
 * abort code. */
static grpc_status_code on_reply(struct shard_call *sc, int idx)
{
    struct sc_call *call = &sc->calls[idx];
    const struct rpc_status *st = rpc_fanout_status(sc->fo, idx);
    const ProtobufCMessage *resp = rpc_fanout_response(sc->fo, idx);
    call->finished = true;
    call->code = st->code;
    router_load_add(sc->r, call->node, -1);
    if (sc->pol.abort_on_bad_request &&
        (st->code == GRPC_STATUS_INVALID_ARGUMENT || st->code == GRPC_STATUS_RESOURCE_EXHAUSTED)) {
        sc->abort_code = st->code;
        sc->abort_shard = call->shards[0];
        snprintf(sc->abort_node, sizeof sc->abort_node, "%s", call->node);
        snprintf(sc->abort_addr, sizeof sc->abort_addr, "%s", sc->unit[call->shards[0]].addr);
        snprintf(sc->abort_details, sizeof sc->abort_details, "%s", st->details);
        return st->code;
    }
    if (st->code == GRPC_STATUS_OK && !sc->pol.primary)
        router_latency_note(sc->r, call->node, (uint32_t)(clock_mono_us() - call->start_us));
    bool answered_one = false;
    for (size_t i = 0; i < call->n; i++) {
        uint32_t s = call->shards[i];
        struct shard_call_unit *u = &sc->unit[s];
        u->inflight--;
        if (u->state == SHARD_CALL_DONE) continue; /* the other call of a hedge answered first */
        bool is_hedge = u->hedge_call == idx;
        if (st->code == GRPC_STATUS_OK) {
            char why[RPC_DETAILS_MAX + 64] = "";
            if (sc->ops.answered == NULL ||
                sc->ops.answered(sc->arg, resp, i, s, call->node, why, sizeof why)) {
                u->state = SHARD_CALL_DONE;
                answered_one = true;
                if (u->hedge_call >= 0)
                    metrics_add(sc->r->m.hedges, (const char *const[]){is_hedge ? "won" : "lost"},
                                1);
                continue;
            }
            u->code = GRPC_STATUS_UNAVAILABLE;
            snprintf(u->msg, sizeof u->msg, "%s", why);
            if (u->inflight > 0) continue; /* the other call may still answer */
            if (u->hedge_call >= 0) metrics_add(sc->r->m.hedges, (const char *const[]){"failed"}, 1);
            u->hedge_call = -1;
            verdict_in_sync(sc, s, true);
            continue;
        }
        if (sc->pol.primary) {
            verdict_primary(sc, s, st);
            continue;
        }
        u->code = st->code;
        snprintf(u->msg, sizeof u->msg, "node %s: %s: %s", call->node, rpc_status_name(st->code),
                 st->details);
        if (u->inflight > 0) continue; /* a hedge: the other call may still answer */
        if (u->hedge_call >= 0) metrics_add(sc->r->m.hedges, (const char *const[]){"failed"}, 1);
        u->hedge_call = -1;
        verdict_in_sync(sc, s, sc->pol.retry_code == NULL || sc->pol.retry_code(st->code));
    }
    if (answered_one) cancel_answered(sc);
    return GRPC_STATUS_OK;
}

/* Fails every shard still running or waiting: the deadline passed, or the
 * request was aborted. Calls still running end as `code` (DEADLINE_EXCEEDED
 * or CANCELLED) in the metrics. */
static void expire(struct shard_call *sc, grpc_status_code code)
{
    for (uint32_t s = 0; s < sc->coll->shards; s++) {
        struct shard_call_unit *u = &sc->unit[s];
        if (u->state != SHARD_CALL_RUNNING && u->state != SHARD_CALL_WAITING) continue;
        if (sc->pol.primary)
            unit_fail(sc, s, GRPC_STATUS_DEADLINE_EXCEEDED,
                      "DEADLINE_EXCEEDED: no answer from the primary before the deadline");
        else
            unit_fail(sc, s, GRPC_STATUS_DEADLINE_EXCEEDED,
                      "node %s: no answer before the deadline", u->node);
    }
    for (int i = 0; i < sc->n_calls; i++)
        if (!sc->calls[i].finished) {
            sc->calls[i].finished = true;
            sc->calls[i].code = code;
            router_load_add(sc->r, sc->calls[i].node, -1);
        }
}

/* Counts the request's node calls and, unless it was aborted, its failed
 * shards. Every call has finished (answered or expired) by now. */
static void account(struct shard_call *sc)
{
    const char *method = router_method_name(sc->pol.method);
    for (int i = 0; i < sc->n_calls; i++) {
        /* Still running at the end: a hedge's slower call, cancelled (shard_call_free waits). */
        grpc_status_code code = sc->calls[i].finished ? sc->calls[i].code : GRPC_STATUS_CANCELLED;
        metrics_add(sc->r->m.shard_calls,
                    (const char *const[]){sc->calls[i].node, method, rpc_status_name(code)}, 1);
    }
    size_t failed = 0;
    for (uint32_t s = 0; s < sc->coll->shards; s++)
        failed += sc->unit[s].state == SHARD_CALL_FAILED;
    if (failed > 0 && sc->abort_code == GRPC_STATUS_OK)
        metrics_add(sc->r->m.shard_failures, (const char *const[]){method}, (double)failed);
}

/* The event loop of shard_call_run. */
static grpc_status_code run(struct shard_call *sc)
{
    sc->n_retry = 0;
    for (uint32_t s = 0; s < sc->coll->shards; s++)
        if (sc->unit[s].state == SHARD_CALL_PENDING) sc->retry[sc->n_retry++] = s;
    size_t n = sc->n_retry;
    sc->n_retry = 0;
    start_list(sc, sc->retry, n);
    for (;;) {
        bool running = false;
        int64_t due = 0, hedge = 0;
        for (uint32_t s = 0; s < sc->coll->shards; s++) {
            const struct shard_call_unit *u = &sc->unit[s];
            running |= u->state == SHARD_CALL_RUNNING;
            if (u->state == SHARD_CALL_WAITING && (due == 0 || u->retry_at < due))
                due = u->retry_at;
            if (u->state == SHARD_CALL_RUNNING && u->hedge_at && (hedge == 0 || u->hedge_at < hedge))
                hedge = u->hedge_at;
        }
        if (!running && due == 0) return GRPC_STATUS_OK;
        int64_t until = due != 0 && due < sc->deadline ? due : sc->deadline;
        int64_t hedge_wait = hedge ? hedge - clock_mono_us() : 0;
        int idx;
        if (running && hedge && hedge_wait < (until - rpc_now_ms()) * 1000)
            idx = rpc_fanout_next_us(sc->fo, hedge_wait);
        else
            idx = running ? rpc_fanout_next(sc->fo, until) : -1;
        if (idx >= 0) {
            sc->n_retry = 0;
            grpc_status_code code = on_reply(sc, idx);
            if (code != GRPC_STATUS_OK) {
                expire(sc, GRPC_STATUS_CANCELLED);
                return code;
            }
            n = sc->n_retry;
            sc->n_retry = 0;
            if (n > 0) start_list(sc, sc->retry, n);
            continue;
        }
        if (idx == -1) router_sleep_ms(until - rpc_now_ms());
        int64_t now = rpc_now_ms(), now_us = clock_mono_us();
        if (now >= sc->deadline) {
            expire(sc, GRPC_STATUS_DEADLINE_EXCEEDED);
            return GRPC_STATUS_OK;
        }
        for (uint32_t s = 0; s < sc->coll->shards; s++) {
            struct shard_call_unit *u = &sc->unit[s];
            if (u->state == SHARD_CALL_WAITING && u->retry_at <= now) start_primary(sc, s);
            if (u->state == SHARD_CALL_RUNNING && u->hedge_at && u->hedge_at <= now_us &&
                u->hedge_call < 0) {
                metrics_add(sc->r->m.hedges, (const char *const[]){"sent"}, 1);
                start_hedge(sc, s);
            }
        }
    }
}

grpc_status_code shard_call_run(struct shard_call *sc)
{
    grpc_status_code code = run(sc);
    account(sc);
    return code;
}

grpc_status_code shard_call_coverage(struct shard_call *sc, struct rpc_call *c, const char *what,
                                     float min_coverage, uint32_t *missing, uint32_t *n_missing,
                                     uint32_t *ok)
{
    uint32_t S = sc->coll->shards;
    *ok = *n_missing = 0;
    for (uint32_t s = 0; s < S; s++) {
        if (sc->unit[s].state == SHARD_CALL_DONE)
            (*ok)++;
        else
            missing[(*n_missing)++] = s;
    }
    double mc = min_coverage == 0 ? 1.0 : (double)min_coverage;
    uint32_t need = (uint32_t)ceil(mc * S - 1e-9);
    if (*ok >= need) return GRPC_STATUS_OK;
    struct router_msg msg = {0};
    router_msg_add(&msg, "%s covered %u of %u shards, min_coverage %g needs %u: missing ", what,
                   *ok, S, mc, need);
    for (uint32_t i = 0; i < *n_missing; i++)
        router_msg_add(&msg, "%sshard %u (%s)", i ? ", " : "", missing[i],
                       sc->unit[missing[i]].msg[0] ? sc->unit[missing[i]].msg : "unknown");
    return rpc_call_error(c, GRPC_STATUS_UNAVAILABLE, "%s", msg.buf);
}

void shard_call_free(struct shard_call *sc)
{
    if (sc->fo != NULL) rpc_fanout_destroy(sc->fo);
    for (int i = 0; i < sc->n_calls; i++) {
        if (!sc->calls[i].finished) router_load_add(sc->r, sc->calls[i].node, -1);
        free(sc->calls[i].shards);
    }
    for (uint32_t s = 0; sc->unit != NULL && s < sc->coll->shards; s++)
        cluster_shard_clear(&sc->unit[s].fresh);
    free(sc->calls);
    free(sc->unit);
    free(sc->extra);
    free(sc->retry);
    memset(sc, 0, sizeof *sc);
}
