/*
 * route_table.c — list + watch of `<prefix>/` in etcd, parsed into immutable
 * reference-counted views (route_table.h has the concurrency rules).
 *
 * The watch thread keeps the raw key/value pairs (sorted by key) and, after
 * every watch message or re-list, parses all of them into a new view. The
 * cluster map is small (a few keys per node, collection and shard), so a
 * full rebuild is simpler than patching views and costs microseconds; it
 * also means a bad value can never leave a half-applied view behind.
 */
#define _GNU_SOURCE
#include "router/route_table.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util/clock.h"
#include "common/util/log.h"

/* One raw pair from etcd. */
struct raw_kv {
    char *key;
    char *value;
    size_t value_len;
    int64_t mod_revision;
    int64_t create_revision;
};

struct route_table {
    etcd_client *etcd;
    char *prefix; /* "<etcd-prefix>/" */
    size_t prefix_len;

    /* lock protects `cur`, `stopping`, `watch`, `loaded_ms` and `updates`;
     * cv signals a new view or a stop. */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct rt_view *cur;
    bool stopping;
    int64_t started_ms, loaded_ms; /* CLOCK_MONOTONIC ms; loaded_ms 0 until the first listing */
    uint64_t updates;

    /* Owned by the loader / watch thread (one at a time). */
    struct raw_kv *raw;
    size_t n_raw, cap_raw;
    bool watch_broken;

    pthread_t loader;
    bool loader_started;
    etcd_watch *watch;
};

/* ------------------------------------------------------------ views */

/* Frees a view and everything in it. */
static void view_free(struct rt_view *v)
{
    for (size_t i = 0; i < v->n_nodes; i++) {
        free(v->nodes[i].id);
        free(v->nodes[i].addr);
        free(v->nodes[i].version);
    }
    free(v->nodes);
    for (size_t i = 0; i < v->n_colls; i++) {
        struct rt_collection *c = &v->colls[i];
        for (uint32_t s = 0; s < c->shards; s++)
            cluster_shard_clear(&c->shard[s]);
        free(c->shard);
        free(c->name);
    }
    free(v->colls);
    free(v->controller);
    for (size_t i = 0; i < v->n_drains; i++)
        cluster_drain_clear(&v->drains[i]);
    free(v->drains);
    for (size_t i = 0; i < v->n_moves; i++)
        cluster_move_clear(&v->moves[i]);
    free(v->moves);
    free(v);
}

struct rt_view *rt_acquire(struct route_table *rt)
{
    pthread_mutex_lock(&rt->lock);
    struct rt_view *v = rt->cur;
    atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&rt->lock);
    return v;
}

void rt_release(struct rt_view *v)
{
    if (v != NULL && atomic_fetch_sub(&v->refs, 1) == 1) view_free(v);
}

static int cmp_node(const void *a, const void *b)
{
    return strcmp(((const struct rt_node *)a)->id, ((const struct rt_node *)b)->id);
}

static int cmp_coll(const void *a, const void *b)
{
    return strcmp(((const struct rt_collection *)a)->name, ((const struct rt_collection *)b)->name);
}

const struct rt_collection *rt_view_collection(const struct rt_view *v, const char *name)
{
    struct rt_collection key = {.name = (char *)name};
    return bsearch(&key, v->colls, v->n_colls, sizeof key, cmp_coll);
}

const struct rt_node *rt_view_node(const struct rt_view *v, const char *id)
{
    struct rt_node key = {.id = (char *)id};
    return bsearch(&key, v->nodes, v->n_nodes, sizeof key, cmp_node);
}

/* ------------------------------------------------------------ documents */

/* Parses a collection config (name from the key) into c. 0 or -1 with err. */
static int coll_parse(const char *name, const char *json, size_t len, struct rt_collection *c,
                      char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    struct cluster_collection doc;
    if (cluster_collection_parse(json, len, &doc, err, errlen) != 0) return -1;
    c->dim = doc.dim;
    c->metric = doc.metric;
    c->m = doc.m;
    c->ef_construction = doc.ef_construction;
    c->ef_search = doc.ef_search;
    c->shards = doc.shards;
    c->replication_factor = doc.replication_factor;
    c->created_at = doc.created_at;
    c->quant = doc.quant;
    c->name = strdup(name);
    c->shard = calloc(c->shards, sizeof *c->shard);
    if (c->name == NULL || c->shard == NULL) {
        snprintf(err, errlen, "out of memory");
        free(c->name);
        free(c->shard);
        memset(c, 0, sizeof *c);
        return -1;
    }
    return 0;
}

/* Parses a node registration (id from the key) into n. 0 or -1 with err. */
static int node_parse(const char *id, const char *json, size_t len, struct rt_node *n, char *err,
                      size_t errlen)
{
    memset(n, 0, sizeof *n);
    struct cluster_node doc;
    if (cluster_node_parse(json, len, &doc, err, errlen) != 0) return -1;
    n->id = strdup(id);
    n->addr = doc.addr;
    n->version = doc.version;
    n->started_at = doc.started_at;
    free(doc.node_id);
    if (n->id == NULL) {
        free(n->addr), free(n->version);
        memset(n, 0, sizeof *n);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Logs a value that could not be parsed (the key is skipped). */
static void log_bad(const char *key, const char *why)
{
    log_warn("ignoring unreadable etcd value", "key=%s error=%s", log_quote(key), log_quote(why));
}

static int cmp_drain(const void *a, const void *b)
{
    return strcmp(((const struct cluster_drain *)a)->node_id,
                  ((const struct cluster_drain *)b)->node_id);
}

static int cmp_move(const void *a, const void *b)
{
    return strcmp(((const struct cluster_move *)a)->id, ((const struct cluster_move *)b)->id);
}

/* Builds a view from the raw pairs; NULL on ENOMEM. */
static struct rt_view *build_view(struct route_table *rt, int64_t revision)
{
    struct rt_view *v = calloc(1, sizeof *v);
    if (v == NULL) return NULL;
    atomic_init(&v->refs, 1);
    v->revision = revision;
    v->nodes = calloc(rt->n_raw + 1, sizeof *v->nodes);
    v->colls = calloc(rt->n_raw + 1, sizeof *v->colls);
    v->drains = calloc(rt->n_raw + 1, sizeof *v->drains);
    v->moves = calloc(rt->n_raw + 1, sizeof *v->moves);
    if (v->nodes == NULL || v->colls == NULL || v->drains == NULL || v->moves == NULL) goto fail;
    char err[160];
    const struct raw_kv *leader = NULL;
    /* Pass 1: nodes, collections and the controller. */
    for (size_t i = 0; i < rt->n_raw; i++) {
        const struct raw_kv *kv = &rt->raw[i];
        struct cluster_key k;
        switch (cluster_key_parse(kv->key + rt->prefix_len, &k)) {
        case CLUSTER_KEY_NODE:
            if (node_parse(k.node_id, kv->value, kv->value_len, &v->nodes[v->n_nodes], err,
                           sizeof err) == 0)
                v->n_nodes++;
            else
                log_bad(kv->key, err);
            break;
        case CLUSTER_KEY_COLLECTION: {
            struct rt_collection *c = &v->colls[v->n_colls];
            if (coll_parse(k.name, kv->value, kv->value_len, c, err, sizeof err) == 0) {
                c->mod_revision = kv->mod_revision;
                v->n_colls++;
            } else {
                log_bad(kv->key, err);
            }
            break;
        }
        case CLUSTER_KEY_DRAIN:
            if (cluster_drain_parse(kv->value, kv->value_len, &v->drains[v->n_drains], err,
                                    sizeof err) == 0)
                v->n_drains++;
            else
                log_bad(kv->key, err);
            break;
        case CLUSTER_KEY_MOVE: {
            struct cluster_move *mv = &v->moves[v->n_moves];
            if (cluster_move_parse(kv->value, kv->value_len, mv, err, sizeof err) == 0) {
                mv->mod_revision = kv->mod_revision;
                v->n_moves++;
            } else {
                log_bad(kv->key, err);
            }
            break;
        }
        default:
            if (strncmp(kv->key + rt->prefix_len, "collections/", 12) == 0)
                log_bad(kv->key, "not a valid collection name");
            /* The controller election: the oldest candidate key leads (etcd's rule). */
            if (strncmp(kv->key + rt->prefix_len, "controller/", 11) == 0 &&
                (leader == NULL || kv->create_revision < leader->create_revision))
                leader = kv;
            break;
        }
    }
    if (leader != NULL) {
        v->controller = strndup(leader->value, strcspn(leader->value, " "));
        if (v->controller == NULL) goto fail;
    }
    qsort(v->nodes, v->n_nodes, sizeof *v->nodes, cmp_node);
    qsort(v->colls, v->n_colls, sizeof *v->colls, cmp_coll);
    qsort(v->drains, v->n_drains, sizeof *v->drains, cmp_drain);
    qsort(v->moves, v->n_moves, sizeof *v->moves, cmp_move);
    /* Pass 2: shard entries of known collections. */
    for (size_t i = 0; i < rt->n_raw; i++) {
        const struct raw_kv *kv = &rt->raw[i];
        struct cluster_key k;
        if (cluster_key_parse(kv->key + rt->prefix_len, &k) != CLUSTER_KEY_SHARD) continue;
        struct rt_collection *c = (struct rt_collection *)rt_view_collection(v, k.name);
        if (c == NULL || k.shard >= c->shards) continue;
        struct cluster_shard s;
        if (cluster_shard_parse(kv->value, kv->value_len, &s, err, sizeof err) != 0) {
            log_bad(kv->key, err);
            continue;
        }
        s.mod_revision = kv->mod_revision;
        cluster_shard_clear(&c->shard[k.shard]);
        c->shard[k.shard] = s;
    }
    return v;
fail:
    view_free(v);
    return NULL;
}

/* Publishes a new view built from the raw pairs. */
static void publish(struct route_table *rt, int64_t revision)
{
    struct rt_view *v = build_view(rt, revision);
    if (v == NULL) {
        log_error("out of memory building the routing table; keeping the previous one", NULL);
        return;
    }
    pthread_mutex_lock(&rt->lock);
    struct rt_view *old = rt->cur;
    rt->cur = v;
    rt->updates++;
    pthread_cond_broadcast(&rt->cv);
    pthread_mutex_unlock(&rt->lock);
    rt_release(old);
}

/* ------------------------------------------------------------ raw pairs */

static void raw_free(struct raw_kv *kv)
{
    free(kv->key);
    free(kv->value);
}

static void raw_clear(struct route_table *rt)
{
    for (size_t i = 0; i < rt->n_raw; i++)
        raw_free(&rt->raw[i]);
    rt->n_raw = 0;
}

/* Index of key in the sorted raw list, or where it would go (*found false). */
static size_t raw_find(const struct route_table *rt, const char *key, bool *found)
{
    size_t lo = 0, hi = rt->n_raw;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(rt->raw[mid].key, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* Inserts or replaces a pair; false on ENOMEM. */
static bool raw_put(struct route_table *rt, const etcd_kv *kv)
{
    struct raw_kv n = {strdup(kv->key), malloc(kv->value_len + 1), kv->value_len, kv->mod_revision,
                       kv->create_revision};
    if (n.key == NULL || n.value == NULL) {
        raw_free(&n);
        return false;
    }
    memcpy(n.value, kv->value, kv->value_len);
    n.value[kv->value_len] = '\0';
    bool found;
    size_t i = raw_find(rt, kv->key, &found);
    if (found) {
        raw_free(&rt->raw[i]);
        rt->raw[i] = n;
        return true;
    }
    if (rt->n_raw == rt->cap_raw) {
        size_t cap = rt->cap_raw ? rt->cap_raw * 2 : 64;
        struct raw_kv *r = realloc(rt->raw, cap * sizeof *r);
        if (r == NULL) {
            raw_free(&n);
            return false;
        }
        rt->raw = r;
        rt->cap_raw = cap;
    }
    memmove(&rt->raw[i + 1], &rt->raw[i], (rt->n_raw - i) * sizeof *rt->raw);
    rt->raw[i] = n;
    rt->n_raw++;
    return true;
}

static void raw_delete(struct route_table *rt, const char *key)
{
    bool found;
    size_t i = raw_find(rt, key, &found);
    if (!found) return;
    raw_free(&rt->raw[i]);
    memmove(&rt->raw[i], &rt->raw[i + 1], (rt->n_raw - i - 1) * sizeof *rt->raw);
    rt->n_raw--;
}

/* Replaces every raw pair with a listing. */
static void raw_load(struct route_table *rt, const etcd_kvs *kvs)
{
    raw_clear(rt);
    for (size_t i = 0; i < kvs->n; i++)
        if (!raw_put(rt, &kvs->kvs[i]))
            log_error("out of memory loading the routing table", "key=%s",
                      log_quote(kvs->kvs[i].key));
}

/* ------------------------------------------------------------ watch */

static void restored(struct route_table *rt)
{
    if (rt->watch_broken) {
        rt->watch_broken = false;
        log_info("etcd watch restored", NULL);
    }
}

static void on_events(void *arg, const etcd_event *ev, size_t n, int64_t revision)
{
    struct route_table *rt = arg;
    restored(rt);
    for (size_t i = 0; i < n; i++) {
        if (ev[i].type == ETCD_EVENT_DELETE)
            raw_delete(rt, ev[i].kv.key);
        else if (!raw_put(rt, &ev[i].kv))
            log_error("out of memory applying an etcd event", "key=%s", log_quote(ev[i].kv.key));
    }
    publish(rt, revision);
}

/* Logs what a (re-)list produced. */
static void log_loaded(struct route_table *rt)
{
    struct rt_view *v = rt_acquire(rt);
    log_info("routing table loaded", "revision=%lld nodes=%zu collections=%zu",
             (long long)v->revision, v->n_nodes, v->n_colls);
    rt_release(v);
}

static void on_relist(void *arg, const etcd_kvs *snapshot)
{
    struct route_table *rt = arg;
    restored(rt);
    raw_load(rt, snapshot);
    publish(rt, snapshot->revision);
    log_loaded(rt);
}

static void on_error(void *arg, etcd_status why, const char *msg)
{
    struct route_table *rt = arg;
    if (!rt->watch_broken) {
        rt->watch_broken = true;
        log_warn("etcd watch broken; serving from the cached routing table", "status=%s error=%s",
                 etcd_status_str(why), log_quote(msg));
    }
}

/* Loader thread: list until etcd answers, publish, then start the watch. */
static void *loader_main(void *arg)
{
    struct route_table *rt = arg;
    bool warned = false;
    for (;;) {
        pthread_mutex_lock(&rt->lock);
        bool stop = rt->stopping;
        pthread_mutex_unlock(&rt->lock);
        if (stop) return NULL;
        etcd_kvs kvs = {0};
        etcd_err err;
        etcd_status st = etcd_range(rt->etcd, rt->prefix, 0, &kvs, &err);
        if (st == ETCD_OK) {
            raw_load(rt, &kvs);
            int64_t rev = kvs.revision;
            etcd_kvs_free(&kvs);
            publish(rt, rev);
            pthread_mutex_lock(&rt->lock);
            rt->loaded_ms = clock_mono_ms();
            pthread_mutex_unlock(&rt->lock);
            log_loaded(rt);
            etcd_watch_opts wo = {
                .prefix = rt->prefix,
                .start_revision = rev + 1,
                .progress_notify = true,
                .idle_timeout_ms = 60000,
                .on_events = on_events,
                .on_relist = on_relist,
                .on_error = on_error,
                .arg = rt,
            };
            pthread_mutex_lock(&rt->lock);
            if (!rt->stopping && etcd_watch_start(rt->etcd, &wo, &rt->watch, &err) != ETCD_OK)
                log_error("cannot start the etcd watch", "error=%s", log_quote(err.msg));
            pthread_mutex_unlock(&rt->lock);
            return NULL;
        }
        if (!warned) {
            log_warn("etcd unreachable; no routing table yet, retrying every second",
                     "status=%s error=%s", etcd_status_str(st), log_quote(err.msg));
            warned = true;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_mutex_lock(&rt->lock);
        if (!rt->stopping) pthread_cond_timedwait(&rt->cv, &rt->lock, &ts);
        pthread_mutex_unlock(&rt->lock);
    }
}

/* ------------------------------------------------------------ life cycle */

int rt_start(etcd_client *etcd, const char *prefix, struct route_table **out, char *err,
             size_t errlen)
{
    struct route_table *rt = calloc(1, sizeof *rt);
    if (rt == NULL || asprintf(&rt->prefix, "%s/", prefix) < 0) {
        free(rt);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rt->etcd = etcd;
    rt->prefix_len = strlen(rt->prefix);
    rt->started_ms = clock_mono_ms();
    pthread_mutex_init(&rt->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->cv, &ca);
    pthread_condattr_destroy(&ca);
    rt->cur = calloc(1, sizeof *rt->cur);
    if (rt->cur == NULL) goto fail;
    atomic_init(&rt->cur->refs, 1);
    int e = pthread_create(&rt->loader, NULL, loader_main, rt);
    if (e != 0) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(e));
        goto fail_msg;
    }
    rt->loader_started = true;
    *out = rt;
    return 0;
fail:
    snprintf(err, errlen, "out of memory");
fail_msg:
    rt_stop(rt);
    return -1;
}

void rt_stop(struct route_table *rt)
{
    if (rt == NULL) return;
    pthread_mutex_lock(&rt->lock);
    rt->stopping = true;
    pthread_cond_broadcast(&rt->cv);
    pthread_mutex_unlock(&rt->lock);
    if (rt->loader_started) pthread_join(rt->loader, NULL);
    pthread_mutex_lock(&rt->lock);
    etcd_watch *w = rt->watch;
    rt->watch = NULL;
    pthread_mutex_unlock(&rt->lock);
    etcd_watch_stop(w);
    raw_clear(rt);
    free(rt->raw);
    rt_release(rt->cur);
    pthread_cond_destroy(&rt->cv);
    pthread_mutex_destroy(&rt->lock);
    free(rt->prefix);
    free(rt);
}

void rt_health(struct route_table *rt, struct rt_health *out)
{
    int64_t now = clock_mono_ms(), since;
    pthread_mutex_lock(&rt->lock);
    out->loaded = rt->loaded_ms != 0;
    out->revision = rt->cur->revision;
    out->updates = rt->updates;
    since = out->loaded ? rt->loaded_ms : rt->started_ms;
    int64_t down_since = 0;
    out->watch_live = rt->watch != NULL && etcd_watch_live(rt->watch, &down_since);
    pthread_mutex_unlock(&rt->lock);
    /* The watch starts right after the listing: its own "since" is no earlier. */
    if (down_since > since) since = down_since;
    out->stale_ms = out->watch_live ? 0 : now - since;
}

bool rt_wait_revision(struct route_table *rt, int64_t rev, int64_t timeout_ms)
{
    struct timespec until = clock_mono_after_ms(timeout_ms);
    pthread_mutex_lock(&rt->lock);
    while (rt->cur->revision < rev && !rt->stopping)
        if (pthread_cond_timedwait(&rt->cv, &rt->lock, &until) == ETIMEDOUT) break;
    bool ok = rt->cur->revision >= rev;
    pthread_mutex_unlock(&rt->lock);
    return ok;
}

bool rt_wait_shard_epoch(struct route_table *rt, const char *name, uint32_t shard, uint64_t epoch,
                         int64_t timeout_ms)
{
    struct timespec until = clock_mono_after_ms(timeout_ms);
    pthread_mutex_lock(&rt->lock);
    bool ok = false;
    for (;;) {
        const struct rt_collection *c = rt_view_collection(rt->cur, name);
        if (c == NULL || shard >= c->shards || c->shard[shard].epoch >= epoch) {
            ok = true;
            break;
        }
        if (rt->stopping || pthread_cond_timedwait(&rt->cv, &rt->lock, &until) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&rt->lock);
    return ok;
}

bool rt_view_named(const struct rt_view *v, const char *id)
{
    for (size_t k = 0; k < v->n_colls; k++)
        for (uint32_t s = 0; s < v->colls[k].shards; s++)
            if (cluster_ids_has(&v->colls[k].shard[s].replicas, id) ||
                strcmp(v->colls[k].shard[s].primary, id) == 0)
                return true;
    return false;
}

bool rt_view_draining(const struct rt_view *v, const char *id)
{
    for (size_t i = 0; i < v->n_drains; i++)
        if (strcmp(v->drains[i].node_id, id) == 0) return true;
    return false;
}
