/*
 * router_util.c — helpers shared by the VecShard handlers: deadlines,
 * collection look-up with the etcd fallback, vector validation, the
 * per-node outstanding-call table and the replica choice of reads
 * (docs/design.md §5: in-sync only, round-robin weighted by outstanding calls).
 */
#define _GNU_SOURCE
#include "common/filter/filter.h"
#include "router/router.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cluster/name.h"
#include "common/hnsw/hnsw.h"
#include "common/util/log.h"

int64_t router_deadline(const struct router *r, struct rpc_call *c)
{
    int64_t d = rpc_call_deadline_ms(c);
    return d != 0 ? d : rpc_now_ms() + r->cfg->default_timeout_ms;
}

int64_t router_node_deadline(int64_t deadline)
{
    int64_t left = deadline - rpc_now_ms();
    int64_t margin = left / 10;
    if (margin > 50) margin = 50;
    if (margin < 0) margin = 0;
    return deadline - margin;
}

grpc_status_code router_check_name(struct rpc_call *c, const char *field, const char *name)
{
    char err[160];
    if (cluster_name_check(field, name, name != NULL ? strlen(name) : 0, err, sizeof err))
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
    return GRPC_STATUS_OK;
}

grpc_status_code router_collection(struct router *r, struct rpc_call *c, const char *field,
                                   const char *name, struct rt_view **view,
                                   const struct rt_collection **coll)
{
    *view = NULL;
    *coll = NULL;
    grpc_status_code code = router_check_name(c, field, name);
    if (code != GRPC_STATUS_OK) return code;
    struct rt_view *v = rt_acquire(r->rt);
    const struct rt_collection *found = rt_view_collection(v, name);
    if (found == NULL) {
        /* Maybe created through another router a moment ago: ask etcd. */
        char *key = cluster_key_collection(r->cfg->etcd_prefix, name);
        etcd_kv kv = {0};
        if (key != NULL && etcd_get(r->etcd, key, &kv, NULL) == ETCD_OK) {
            rt_wait_revision(r->rt, kv.mod_revision, 2000);
            rt_release(v);
            v = rt_acquire(r->rt);
            found = rt_view_collection(v, name);
        }
        etcd_kv_clear(&kv);
        free(key);
    }
    if (found == NULL) {
        rt_release(v);
        return rpc_call_error(c, GRPC_STATUS_NOT_FOUND, "collection \"%s\" not found", name);
    }
    *view = v;
    *coll = found;
    return GRPC_STATUS_OK;
}

grpc_status_code router_check_vector(struct rpc_call *c, const char *what, const float *v, size_t n,
                                     const struct rt_collection *coll)
{
    if (n != coll->dim)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT,
                              "%s has %zu floats, collection dim is %u", what, n, coll->dim);
    char err[HNSW_ERR_MAX];
    /* cluster_metric and hnsw_metric share their values (common/cluster/doc.c asserts it). */
    if (hnsw_vector_check((enum hnsw_metric)coll->metric, coll->dim, v, what, err) != HNSW_OK)
        return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
    return GRPC_STATUS_OK;
}

grpc_status_code router_check_filter(struct rpc_call *c, const Vecshard__V1__Filter *f)
{
    if (f == NULL) return GRPC_STATUS_OK;
    struct filter *compiled;
    char err[FILTER_ERR_MAX];
    int rc = filter_compile(f, "filter", &compiled, err, sizeof err);
    filter_free(compiled);
    if (rc == -2) return rpc_call_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", err);
    if (rc) return rpc_call_error(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
    return GRPC_STATUS_OK;
}

/* Slot of id in the load table, added if new; -1 if the table is full. Lock held. */
static int load_slot(struct router_load *l, const char *id)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->slot[i].id, id) == 0) return i;
    if (l->n == ROUTER_LOAD_SLOTS) return -1;
    snprintf(l->slot[l->n].id, sizeof l->slot[l->n].id, "%s", id);
    l->slot[l->n].outstanding = 0;
    l->slot[l->n].p95_us = -1;
    return l->n++;
}

void router_load_add(struct router *r, const char *id, int delta)
{
    pthread_mutex_lock(&r->load.lock);
    int i = load_slot(&r->load, id);
    if (i >= 0) r->load.slot[i].outstanding += delta;
    pthread_mutex_unlock(&r->load.lock);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/*
 * Adds us to node id's ring and keeps its p95 with it: once per answered
 * call, so a search's hedging threshold (every shard, every replica) is a
 * read, not a sort.
 */
void router_latency_note(struct router *r, const char *id, uint32_t us)
{
    pthread_mutex_lock(&r->load.lock);
    int i = load_slot(&r->load, id);
    if (i >= 0) {
        __typeof__(r->load.slot[0]) *sl = &r->load.slot[i];
        sl->lat_us[sl->lat_next] = us;
        sl->lat_next = (sl->lat_next + 1) % ROUTER_LATENCY_RING;
        if (sl->lat_n < ROUTER_LATENCY_RING) sl->lat_n++;
        if (sl->lat_n >= 8) {
            uint32_t v[ROUTER_LATENCY_RING];
            memcpy(v, sl->lat_us, (size_t)sl->lat_n * sizeof *v);
            qsort(v, (size_t)sl->lat_n, sizeof *v, cmp_u32);
            sl->p95_us = v[(sl->lat_n * 95 + 99) / 100 - 1];
        }
    }
    pthread_mutex_unlock(&r->load.lock);
}

/* p95 of node id's recent latencies in microseconds; -1 with fewer than 8. */
static int64_t latency_p95(struct router *r, const char *id)
{
    pthread_mutex_lock(&r->load.lock);
    int i = load_slot(&r->load, id);
    int64_t p = i >= 0 ? r->load.slot[i].p95_us : -1;
    pthread_mutex_unlock(&r->load.lock);
    return p;
}

int64_t router_hedge_after_us(struct router *r, const struct rt_view *v,
                              const struct rt_collection *coll, uint32_t s)
{
    int64_t cap = (int64_t)r->cfg->hedge_max_ms * 1000;
    const struct cluster_shard *sh = &coll->shard[s];
    if (cap <= 0 || !sh->present) return 0;
    int live = 0;
    int64_t best = cap;
    for (uint32_t k = 0; k < sh->in_sync.n; k++) {
        if (rt_view_node(v, sh->in_sync.v[k]) == NULL) continue;
        live++;
        int64_t p = latency_p95(r, sh->in_sync.v[k]);
        if (p >= 0 && p < best) best = p;
    }
    if (live < 2) return 0;
    return best < ROUTER_HEDGE_MIN_US ? ROUTER_HEDGE_MIN_US : best;
}

/* Outstanding calls of id (0 if unknown). */
static int load_get(struct router *r, const char *id)
{
    pthread_mutex_lock(&r->load.lock);
    int i = load_slot(&r->load, id);
    int n = i >= 0 ? r->load.slot[i].outstanding : 0;
    pthread_mutex_unlock(&r->load.lock);
    return n;
}

const struct rt_node *router_pick_replica(struct router *r, const struct rt_view *v,
                                          const struct rt_collection *coll, uint32_t s,
                                          const char *const *tried, int n_tried, const int *extra,
                                          char *why, size_t whylen)
{
    const struct cluster_shard *sh = &coll->shard[s];
    if (!sh->present) {
        snprintf(why, whylen, "no shard entry in etcd");
        return NULL;
    }
    if (sh->in_sync.n == 0) {
        snprintf(why, whylen, "no in-sync replica");
        return NULL;
    }
    unsigned start = atomic_fetch_add(&r->load.rr, 1);
    const struct rt_node *best = NULL;
    int best_load = 0;
    size_t off = 0;
    why[0] = '\0';
    for (uint32_t k = 0; k < sh->in_sync.n; k++) {
        const char *id = sh->in_sync.v[(start + k) % sh->in_sync.n];
        bool was_tried = false;
        for (int t = 0; t < n_tried && !was_tried; t++)
            was_tried = strcmp(tried[t], id) == 0;
        const struct rt_node *n = rt_view_node(v, id);
        if (was_tried || n == NULL) {
            if (off < whylen)
                off += (size_t)snprintf(why + off, whylen - off, "%s%s %s", off ? ", " : "", id,
                                        was_tried ? "failed" : "is not registered");
            continue;
        }
        int load = load_get(r, id) + (extra != NULL ? extra[n - v->nodes] : 0);
        bool local = r->local_node != NULL && strcmp(id, r->local_node) == 0;
        if (best == NULL || load < best_load || (load == best_load && local)) {
            best = n;
            best_load = load;
        }
    }
    return best;
}

void router_sleep_ms(int64_t ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
}

bool router_retryable(grpc_status_code code)
{
    return code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_CANCELLED ||
           code == GRPC_STATUS_DEADLINE_EXCEEDED || code == GRPC_STATUS_NOT_FOUND ||
           code == GRPC_STATUS_UNKNOWN || code == GRPC_STATUS_INTERNAL;
}

int64_t router_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void router_msg_add(struct router_msg *m, const char *fmt, ...)
{
    if (m->len >= sizeof m->buf - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->buf + m->len, sizeof m->buf - m->len, fmt, ap);
    va_end(ap);
    if (n > 0) m->len += (size_t)n;
    if (m->len >= sizeof m->buf) m->len = sizeof m->buf - 1;
}

void router_shard_status(struct router *r, const struct rt_view *v, const bool *want,
                         const char *collection, int64_t deadline,
                         Vecshard__V1__ShardStatusResponse **out)
{
    for (size_t i = 0; i < v->n_nodes; i++)
        out[i] = NULL;
    struct rpc_fanout *fo = rpc_fanout_create();
    size_t *node_of = calloc(v->n_nodes + 1, sizeof *node_of);
    if (fo == NULL || node_of == NULL) goto out;
    Vecshard__V1__ShardStatusRequest req = VECSHARD__V1__SHARD_STATUS_REQUEST__INIT;
    req.collection = (char *)collection;
    struct rpc_opts opts = router_node_opts(deadline);
    for (size_t i = 0; i < v->n_nodes; i++) {
        if (!want[i]) continue;
        struct rpc_channel *ch = rpc_client_channel(r->client, v->nodes[i].addr);
        if (ch == NULL) continue;
        int idx = rpc_fanout_start(fo, ch, NODE_SVC "ShardStatus", &req.base,
                                   &vecshard__v1__shard_status_response__descriptor, &opts);
        if (idx >= 0) node_of[idx] = i;
    }
    rpc_fanout_wait(fo, deadline);
    for (int k = 0; k < rpc_fanout_count(fo); k++)
        if (rpc_fanout_response(fo, k) != NULL)
            out[node_of[k]] = (Vecshard__V1__ShardStatusResponse *)rpc_fanout_take(fo, k);
out:
    free(node_of);
    if (fo != NULL) rpc_fanout_destroy(fo);
}

void router_shard_status_free(Vecshard__V1__ShardStatusResponse **st, size_t n)
{
    for (size_t i = 0; st != NULL && i < n; i++)
        if (st[i] != NULL) protobuf_c_message_free_unpacked(&st[i]->base, NULL);
}

const Vecshard__V1__ShardReplicaStatus *
router_replica_status(const Vecshard__V1__ShardStatusResponse *st, const char *collection,
                      uint32_t shard)
{
    for (size_t i = 0; st != NULL && i < st->n_shards; i++)
        if (st->shards[i]->shard == shard && strcmp(st->shards[i]->collection, collection) == 0)
            return st->shards[i];
    return NULL;
}
