/*
 * write.c — Upsert and Delete (docs/design.md §4 from the router's side).
 *
 * The request is validated whole first (nothing is sent if any point is
 * bad), then split by shard (hash_shard, common/util/hash.h). Each group
 * becomes one ShardNode.Write to its shard's primary carrying the epoch the
 * router knows; all groups go out at once on one rpc_fanout, and the handler
 * thread reacts to each reply as it lands:
 *
 *   - stale epoch / not primary (FAILED_PRECONDITION + vs-epoch trailer):
 *     wait briefly for the watch to bring that epoch, else read the shard
 *     key from etcd, and resend at once to the (maybe new) primary;
 *   - node behind the router's map, replica not open yet, connection
 *     trouble: resend after 50, 100, 200 ms;
 *   - anything else: the group fails.
 *
 * Writes are idempotent per (id, LSN), so resending is safe. The call is
 * acknowledged only when every group succeeded.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/hash.h"
#include "common/util/log.h"
#include "router/router.h"

#define WRITE_ATTEMPTS 4 /* first try + 3 retries per group */

/* One shard's part of the request. */
struct wgroup {
    uint32_t shard;
    Vecshard__V1__Point **pts; /* borrowed from the request */
    size_t n_pts;
    uint64_t *ids;
    size_t n_ids;
    int attempts;
    int64_t retry_at; /* > 0: waiting to be resent at this time */
    bool running, done, failed;
    struct cluster_shard fresh; /* shard entry read from etcd, if newer than the cache */
    char node[129];             /* primary of the last attempt */
    char addr[256];
    grpc_status_code code;
    char msg[RPC_DETAILS_MAX + 32];
};

/* Everything one Upsert / Delete call works with. */
struct wctx {
    struct router *r;
    const char *collection;
    struct wgroup *groups; /* by shard; groups with nothing to do are done */
    uint32_t n_groups;
    struct rpc_fanout *fo;
    int *call_group; /* fan-out call index -> group */
    int cap_calls;
    int64_t deadline; /* for node calls */
};

/* Marks g failed with a message. */
static void wfail(struct wgroup *g, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void wfail(struct wgroup *g, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    g->code = code;
    g->failed = true;
    g->running = false;
    g->retry_at = 0;
}

/* Sends group g to its shard's current primary (or fails it). */
static void wstart(struct wctx *w, struct wgroup *g)
{
    g->attempts++;
    g->retry_at = 0;
    struct rt_view *v = rt_acquire(w->r->rt);
    const struct rt_collection *coll = rt_view_collection(v, w->collection);
    if (coll == NULL || g->shard >= coll->shards) {
        wfail(g, GRPC_STATUS_NOT_FOUND, "collection \"%s\" was dropped", w->collection);
        goto out;
    }
    const struct cluster_shard *sh = &coll->shard[g->shard];
    if (g->fresh.present && g->fresh.epoch > sh->epoch) sh = &g->fresh;
    if (!sh->present || sh->primary[0] == '\0') {
        wfail(g, GRPC_STATUS_UNAVAILABLE, "shard %u has no primary in etcd", g->shard);
        goto out;
    }
    snprintf(g->node, sizeof g->node, "%s", sh->primary);
    const struct rt_node *node = rt_view_node(v, sh->primary);
    if (node == NULL) {
        g->addr[0] = '\0';
        wfail(g, GRPC_STATUS_UNAVAILABLE, "shard %u has no live primary (%s is not registered)",
              g->shard, sh->primary);
        goto out;
    }
    snprintf(g->addr, sizeof g->addr, "%s", node->addr);
    struct rpc_channel *ch = rpc_client_channel(w->r->client, node->addr);
    Vecshard__V1__WriteBatch batch = VECSHARD__V1__WRITE_BATCH__INIT;
    batch.upserts = g->pts;
    batch.n_upserts = g->n_pts;
    batch.deletes = g->ids;
    batch.n_deletes = g->n_ids;
    Vecshard__V1__WriteRequest req = VECSHARD__V1__WRITE_REQUEST__INIT;
    req.collection = (char *)w->collection;
    req.shard = g->shard;
    req.epoch = sh->epoch;
    req.batch = &batch;
    /* Room for the call's index first: a call started without it would
     * finish with no group to hand its reply to. */
    int next = rpc_fanout_count(w->fo);
    if (next >= w->cap_calls) {
        int cap = w->cap_calls > 0 ? w->cap_calls * 2 : 16;
        int *cg = realloc(w->call_group, (size_t)cap * sizeof *cg);
        if (cg == NULL) {
            wfail(g, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        w->call_group = cg;
        w->cap_calls = cap;
    }
    struct rpc_opts opts = {.deadline_ms = w->deadline};
    int idx = ch != NULL ? rpc_fanout_start(w->fo, ch, NODE_SVC "Write", &req.base,
                                            &vecshard__v1__write_response__descriptor, &opts)
                         : -1;
    if (idx < 0 || idx != next) {
        wfail(g, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    w->call_group[idx] = (int)(g - w->groups);
    g->running = true;
    router_load_add(w->r, g->node, 1);
out:
    rt_release(v);
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

/* Makes the router's idea of the shard at least `epoch` (watch, else etcd). */
static void refresh_shard(struct wctx *w, struct wgroup *g, uint64_t epoch)
{
    int64_t left = w->deadline - rpc_now_ms();
    if (rt_wait_shard_epoch(w->r->rt, w->collection, g->shard, epoch, left < 1000 ? left : 1000))
        return;
    char err[160];
    char *key = cluster_key_shard(w->r->cfg->etcd_prefix, w->collection, g->shard);
    etcd_kv kv = {0};
    if (key != NULL && etcd_get(w->r->etcd, key, &kv, NULL) == ETCD_OK) {
        struct cluster_shard s;
        if (cluster_shard_parse(kv.value, kv.value_len, &s, err, sizeof err) == 0) {
            cluster_shard_clear(&g->fresh);
            g->fresh = s;
        }
    }
    etcd_kv_clear(&kv);
    free(key);
}

/* Handles the reply to one call of group g. */
static void wdone(struct wctx *w, struct wgroup *g, const struct rpc_status *st)
{
    g->running = false;
    router_load_add(w->r, g->node, -1);
    if (st->code == GRPC_STATUS_OK) {
        g->done = true;
        return;
    }
    g->code = st->code;
    snprintf(g->msg, sizeof g->msg, "%s: %s", rpc_status_name(st->code), st->details);
    uint64_t epoch = 0;
    bool has_epoch = trailer_epoch(st, &epoch);
    bool retry = false;
    int64_t pause = 0;
    if (st->code == GRPC_STATUS_FAILED_PRECONDITION && has_epoch) {
        refresh_shard(w, g, epoch);
        retry = true;
    } else if (router_retryable(st->code) && st->code != GRPC_STATUS_DEADLINE_EXCEEDED) {
        retry = true;
        pause = 50LL << (g->attempts > 0 ? g->attempts - 1 : 0);
    }
    if (retry && g->attempts < WRITE_ATTEMPTS && rpc_now_ms() + pause < w->deadline) {
        log_debug("retrying write", "collection=%s shard=%u attempt=%d node=%s code=%s error=%s",
                  w->collection, g->shard, g->attempts + 1, g->node, rpc_status_name(st->code),
                  log_quote(st->details));
        if (pause == 0)
            wstart(w, g);
        else
            g->retry_at = rpc_now_ms() + pause;
        return;
    }
    g->failed = true;
}

/* Runs every group to completion or the deadline. */
static void wrun(struct wctx *w)
{
    for (uint32_t i = 0; i < w->n_groups; i++)
        if (!w->groups[i].done) wstart(w, &w->groups[i]);
    for (;;) {
        bool running = false;
        int64_t due = 0;
        for (uint32_t i = 0; i < w->n_groups; i++) {
            struct wgroup *g = &w->groups[i];
            running |= g->running;
            if (g->retry_at > 0 && (due == 0 || g->retry_at < due)) due = g->retry_at;
        }
        if (!running && due == 0) return;
        int64_t until = due != 0 && due < w->deadline ? due : w->deadline;
        int idx = running ? rpc_fanout_next(w->fo, until) : -1;
        if (idx >= 0) {
            wdone(w, &w->groups[w->call_group[idx]], rpc_fanout_status(w->fo, idx));
            continue;
        }
        if (idx == -1) router_sleep_ms(until - rpc_now_ms());
        int64_t now = rpc_now_ms();
        if (now >= w->deadline) {
            for (uint32_t i = 0; i < w->n_groups; i++) {
                struct wgroup *g = &w->groups[i];
                if (g->running) router_load_add(w->r, g->node, -1);
                if (g->running || g->retry_at > 0)
                    wfail(g, GRPC_STATUS_DEADLINE_EXCEEDED,
                          "DEADLINE_EXCEEDED: no answer from the primary before the deadline");
            }
            return;
        }
        for (uint32_t i = 0; i < w->n_groups; i++)
            if (w->groups[i].retry_at > 0 && w->groups[i].retry_at <= now) wstart(w, &w->groups[i]);
    }
}

/* Replies to the client: OK (reply already set up by the caller) or the
 * error of the lowest failed shard naming all failed ones. */
static grpc_status_code wfinish(struct wctx *w, struct rpc_call *c)
{
    uint32_t n_failed = 0, n_used = 0;
    struct wgroup *first = NULL;
    for (uint32_t i = 0; i < w->n_groups; i++) {
        struct wgroup *g = &w->groups[i];
        if (g->n_pts + g->n_ids > 0) n_used++;
        if (!g->failed) continue;
        n_failed++;
        if (first == NULL) first = g;
    }
    if (first == NULL) return GRPC_STATUS_OK;
    struct router_msg m = {0};
    router_msg_add(&m, "%u of %u shards failed: ", n_failed, n_used);
    for (uint32_t i = 0; i < w->n_groups; i++) {
        struct wgroup *g = &w->groups[i];
        if (!g->failed) continue;
        if (g->addr[0] != '\0')
            router_msg_add(&m, "%sshard %u (primary %s at %s): %s", g == first ? "" : "; ",
                           g->shard, g->node, g->addr, g->msg);
        else /* no call was made: the message already names the shard */
            router_msg_add(&m, "%s%s", g == first ? "" : "; ", g->msg);
    }
    if (n_failed < n_used)
        router_msg_add(&m, "; the other shards were written (retrying the whole call is safe)");
    grpc_status_code code = first->code;
    if (code == GRPC_STATUS_OK) code = GRPC_STATUS_UNAVAILABLE;
    return rpc_call_error(c, code, "%s", m.buf);
}

/* Frees what the groups own. */
static void wfree(struct wctx *w)
{
    if (w->fo != NULL) rpc_fanout_destroy(w->fo);
    for (uint32_t i = 0; w->groups != NULL && i < w->n_groups; i++) {
        free(w->groups[i].pts);
        free(w->groups[i].ids);
        cluster_shard_clear(&w->groups[i].fresh);
    }
    free(w->groups);
    free(w->call_group);
}

/* Sets up the groups of a call on coll (count per shard known). 0 or -1. */
static int winit(struct wctx *w, struct router *r, struct rpc_call *c,
                 const struct rt_collection *coll)
{
    memset(w, 0, sizeof *w);
    w->r = r;
    w->collection = coll->name;
    w->n_groups = coll->shards;
    w->groups = calloc(coll->shards, sizeof *w->groups);
    w->fo = rpc_fanout_create();
    w->deadline = router_node_deadline(router_deadline(r, c));
    if (w->groups == NULL || w->fo == NULL) return -1;
    for (uint32_t s = 0; s < coll->shards; s++)
        w->groups[s].shard = s;
    return 0;
}

grpc_status_code router_upsert(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__UpsertRequest *req = (const Vecshard__V1__UpsertRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    struct wctx w;
    uint32_t *count = NULL;
    memset(&w, 0, sizeof w);
    if (req->n_points == 0) {
        code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "points is empty");
        goto out;
    }
    if (req->n_points > ROUTER_MAX_POINTS) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "points has %zu entries, the limit is %u per call", req->n_points,
                              ROUTER_MAX_POINTS);
        goto out;
    }
    for (size_t i = 0; i < req->n_points; i++) {
        const Vecshard__V1__Point *p = req->points[i];
        char what[48];
        snprintf(what, sizeof what, "points[%zu].vector", i);
        code = router_check_vector(c, what, p->vector, p->n_vector, coll);
        if (code != GRPC_STATUS_OK) goto out;
        if (p->payload.len > ROUTER_MAX_PAYLOAD) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  "points[%zu].payload has %zu bytes, the limit is %u", i,
                                  p->payload.len, ROUTER_MAX_PAYLOAD);
            goto out;
        }
    }
    count = calloc(coll->shards, sizeof *count);
    if (count == NULL || winit(&w, r, c, coll) != 0) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_points; i++)
        count[hash_shard(req->points[i]->id, coll->shards)]++;
    for (uint32_t s = 0; s < coll->shards; s++) {
        w.groups[s].done = count[s] == 0;
        if (count[s] > 0 && (w.groups[s].pts = calloc(count[s], sizeof(void *))) == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < req->n_points; i++) {
        struct wgroup *g = &w.groups[hash_shard(req->points[i]->id, coll->shards)];
        g->pts[g->n_pts++] = req->points[i];
    }
    wrun(&w);
    code = wfinish(&w, c);
    if (code == GRPC_STATUS_OK) {
        Vecshard__V1__UpsertResponse resp = VECSHARD__V1__UPSERT_RESPONSE__INIT;
        resp.upserted = (uint32_t)req->n_points;
        rpc_call_reply(c, &resp.base);
    }
out:
    free(count);
    wfree(&w);
    rt_release(v);
    return code;
}

grpc_status_code router_delete(struct rpc_call *c, const ProtobufCMessage *m, void *u)
{
    struct router *r = u;
    const Vecshard__V1__DeleteRequest *req = (const Vecshard__V1__DeleteRequest *)m;
    struct rt_view *v;
    const struct rt_collection *coll;
    grpc_status_code code = router_collection(r, c, "collection", req->collection, &v, &coll);
    if (code != GRPC_STATUS_OK) return code;
    struct wctx w;
    uint32_t *count = NULL;
    memset(&w, 0, sizeof w);
    if (req->n_ids == 0) {
        code = rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "ids is empty");
        goto out;
    }
    if (req->n_ids > ROUTER_MAX_POINTS) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                              "ids has %zu entries, the limit is %u per call", req->n_ids,
                              ROUTER_MAX_POINTS);
        goto out;
    }
    count = calloc(coll->shards, sizeof *count);
    if (count == NULL || winit(&w, r, c, coll) != 0) {
        code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_ids; i++)
        count[hash_shard(req->ids[i], coll->shards)]++;
    for (uint32_t s = 0; s < coll->shards; s++) {
        w.groups[s].done = count[s] == 0;
        if (count[s] > 0 && (w.groups[s].ids = calloc(count[s], sizeof(uint64_t))) == NULL) {
            code = rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < req->n_ids; i++) {
        struct wgroup *g = &w.groups[hash_shard(req->ids[i], coll->shards)];
        g->ids[g->n_ids++] = req->ids[i];
    }
    wrun(&w);
    code = wfinish(&w, c);
    if (code == GRPC_STATUS_OK) {
        Vecshard__V1__DeleteResponse resp = VECSHARD__V1__DELETE_RESPONSE__INIT;
        resp.deleted = (uint32_t)req->n_ids;
        rpc_call_reply(c, &resp.base);
    }
out:
    free(count);
    wfree(&w);
    rt_release(v);
    return code;
}
