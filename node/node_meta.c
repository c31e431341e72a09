/*
 * node_meta.c — registration lease, shard-map cache and reconciliation.
 *
 * Cache. Each watched prefix (collections/, shards/, nodes/) has a table of parsed
 * entries and the revision it was last listed at. A list replaces the table
 * whole; a watch event changes one entry and is ignored when its revision is
 * not newer than the last list, because that list already contains it. This
 * one rule lets three sources feed the same table safely: the initial list,
 * the watch (resuming from list + 1, re-listing after compaction) and the
 * fresh list the lease thread takes after every (re-)registration.
 *
 * Reconciliation. Every change bumps `gen` and wakes the sync thread, which
 * derives the assignments (shard entries whose `replicas` holds this node
 * and whose collection is known) and hands them to node_shards_reconcile
 * outside the lock, with the registered nodes' addresses (node_shards_set_nodes: the
 * replication senders' peers, kept through etcd outages). Nothing is reconciled before both
 * prefixes were listed once: until then the registry keeps what node_shards_load_local opened.
 *
 * Bad JSON in etcd is logged at each change and each (re-)list, and the entry is skipped (a
 * shard entry that cannot be read never causes data to be deleted: the
 * previous parsed value is kept).
 *
 * Locking: `lock` protects the caches, gen / applied_gen, the lease state,
 * the watch pointers (the lease thread pokes the watches after a
 * re-registration) and the stop flags; `cv` signals changes of any of them.
 * The registry's own lock is never taken while `lock` is held.
 */
#define _GNU_SOURCE
#include "node/node_meta.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cluster/cluster.h"
#include "common/util/clock.h"
#include "common/util/log.h"
#include "node/storage/trash.h"

enum { P_COLL = 0, P_SHARD = 1, P_NODE = 2, NPREFIX = 3 };

/* One parsed shard-map entry. */
struct shard_entry {
    char name[NODE_NAME_MAX + 1];
    uint32_t shard;
    uint64_t epoch;
    char primary[NODE_ID_MAX + 1];
    struct node_ids replicas, in_sync;
    bool mine; /* `replicas` lists this node */
};

/* One registered node: nodes/<id>. */
struct node_entry {
    char id[NODE_ID_MAX + 1];
    char addr[256];
};

/* One cached key under a watched prefix. */
struct cache_ent {
    char *key; /* relative to the prefix */
    bool bad;  /* value unreadable and no good one seen: only the key's names are set */
    union {
        struct node_collection coll;
        struct shard_entry shard;
        struct node_entry node;
    } u;
};

/* Watch context: which prefix of which meta. */
struct watch_arg {
    struct node_meta *m;
    int p;
};

struct cache {
    struct cache_ent *v;
    size_t n, cap;
    int64_t list_rev; /* revision of the last list; 0 = never listed */
};

struct node_meta {
    char *prefix, *node_id, *addr, *version, *node_key, *data_dir;
    int64_t trash_grace_ms;
    char *prefixes[NPREFIX]; /* "<prefix>/collections/", "<prefix>/shards/", "<prefix>/nodes/" */
    uint64_t capacity;
    int64_t started_at_ms;
    int lease_ttl;
    etcd_client *etcd;
    struct node_shards *reg;

    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct cache cache[NPREFIX];
    uint64_t gen, applied_gen; /* cache changes made / reconciled */
    bool stop_sync, stop_lease;
    bool registered, lost;
    int64_t lease;
    etcd_lease_keeper *keeper;
    bool watch_ok[NPREFIX];

    etcd_watch *watch[NPREFIX];
    struct watch_arg wargs[NPREFIX];
    pthread_t sync_thread, lease_thread;
    bool sync_running, lease_running;
};

/* ------------------------------------------------------------ helpers */

/* Sleeps on m->cv until woken or `ms` passed; lock held. */
static void timed_wait(struct node_meta *m, long ms)
{
    struct timespec ts = clock_mono_after_ms(ms);
    pthread_cond_timedwait(&m->cv, &m->lock, &ts);
}

/* Unix milliseconds now. */
static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ JSON documents */

/* Parses a collection document (common/cluster codec; fields in docs/node.md). */
int node_collection_parse(const char *json, size_t len, struct node_collection *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct cluster_collection c;
    if (cluster_collection_parse(json, len, &c, err, errlen) != 0) return -1;
    memcpy(out->name, c.name, sizeof out->name);
    out->dim = c.dim;
    out->metric = (enum hnsw_metric)c.metric; /* same numbering */
    out->m = c.m;
    out->ef_construction = c.ef_construction;
    out->ef_search = c.ef_search;
    out->shards = c.shards;
    out->replication_factor = c.replication_factor;
    out->created_at = c.created_at;
    out->quant = (enum hnsw_quant)c.quant;
    return 0;
}

/* Formats c through the cluster codec (node_shards.h). */
char *node_collection_format(const struct node_collection *c)
{
    struct cluster_collection cc = {
        .dim = c->dim,
        .metric = (enum cluster_metric)c->metric, /* same numbering */
        .m = c->m,
        .ef_construction = c->ef_construction,
        .ef_search = c->ef_search,
        .shards = c->shards,
        .replication_factor = c->replication_factor,
        .created_at = c->created_at,
        .quant = c->quant,
    };
    snprintf(cc.name, sizeof cc.name, "%s", c->name);
    return cluster_collection_format(&cc);
}

/* Copies up to NODE_REPLICAS_MAX ids of a cluster list. */
static void node_ids_from(struct node_ids *out, const struct cluster_ids *in)
{
    out->n = 0;
    for (uint32_t i = 0; i < in->n && out->n < NODE_REPLICAS_MAX; i++)
        snprintf(out->v[out->n++], sizeof out->v[0], "%s", in->v[i]);
}

/* Parses a shard-map document; sets e->mine when `replicas` lists node_id. */
static int shard_parse(const char *json, size_t len, const char *node_id, struct shard_entry *e,
                       char *err, size_t errlen)
{
    struct cluster_shard s;
    if (cluster_shard_parse(json, len, &s, err, errlen) != 0) return -1;
    e->epoch = s.epoch;
    snprintf(e->primary, sizeof e->primary, "%s", s.primary);
    e->mine = cluster_ids_has(&s.replicas, node_id);
    node_ids_from(&e->replicas, &s.replicas);
    node_ids_from(&e->in_sync, &s.in_sync);
    cluster_shard_clear(&s);
    return 0;
}

/*
 * Parses key rel (relative to prefix p) and its value into ent->u; logs why
 * not. 0 = ok; 1 = the key is good (names in ent->u are set) but the value
 * is unreadable; -1 = the key itself is not ours to use.
 */
static int parse_entry(struct node_meta *m, int p, const char *rel, const char *val, size_t len,
                       struct cache_ent *ent)
{
    char err[NODE_ERR_MAX];
    if (p == P_COLL) {
        if (!cluster_name_ok(rel, strlen(rel))) {
            log_warn("ignoring collection key with a bad name", "key=%s%s", m->prefixes[p],
                     log_quote(rel));
            return -1;
        }
        if (node_collection_parse(val, len, &ent->u.coll, err, sizeof err)) {
            log_warn("ignoring unreadable collection config", "collection=%s error=%s", rel,
                     log_quote(err));
            snprintf(ent->u.coll.name, sizeof ent->u.coll.name, "%s", rel);
            return 1;
        }
        if (ent->u.coll.name[0] != '\0' && strcmp(ent->u.coll.name, rel) != 0)
            log_warn("collection config names another collection; using the key", "key=%s name=%s",
                     rel, ent->u.coll.name);
        snprintf(ent->u.coll.name, sizeof ent->u.coll.name, "%s", rel);
        return 0;
    }
    if (p == P_NODE) {
        struct cluster_node n;
        if (rel[0] == '\0' || strchr(rel, '/') != NULL || strlen(rel) > NODE_ID_MAX) return -1;
        if (cluster_node_parse(val, len, &n, err, sizeof err) != 0) {
            log_warn("ignoring unreadable node registration", "node=%s error=%s", rel,
                     log_quote(err));
            return -1;
        }
        snprintf(ent->u.node.id, sizeof ent->u.node.id, "%s", rel);
        snprintf(ent->u.node.addr, sizeof ent->u.node.addr, "%s", n.addr);
        cluster_node_clear(&n);
        return 0;
    }
    if (cluster_key_parse_shard(rel, ent->u.shard.name, &ent->u.shard.shard) != 0) {
        log_warn("ignoring shard key not of the form <collection>/<shard>", "key=%s%s",
                 m->prefixes[p], log_quote(rel));
        return -1;
    }
    if (shard_parse(val, len, m->node_id, &ent->u.shard, err, sizeof err)) {
        log_warn("ignoring unreadable shard entry", "collection=%s shard=%u error=%s",
                 ent->u.shard.name, ent->u.shard.shard, log_quote(err));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ cache */

/* Index of rel in the cache, or -1. */
static long cache_find(const struct cache *c, const char *rel)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].key, rel) == 0) return (long)i;
    return -1;
}

/* Frees every entry of c (not the list revision). */
static void cache_clear(struct cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i].key);
    free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
}

/* Sets rel to a parsed value (ent->key is taken over). Lock held. */
static int cache_set(struct cache *c, struct cache_ent *ent)
{
    long i = cache_find(c, ent->key);
    if (i >= 0) {
        free(c->v[i].key);
        c->v[i] = *ent;
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct cache_ent *v = realloc(c->v, cap * sizeof *v);
        if (v == NULL) return -1;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = *ent;
    return 0;
}

/* Removes rel from the cache, if present. Lock held. */
static void cache_del(struct cache *c, const char *rel)
{
    long i = cache_find(c, rel);
    if (i < 0) return;
    free(c->v[i].key);
    c->v[i] = c->v[--c->n];
}

/*
 * Parses one pair and stores it in `into`. An unreadable value keeps the
 * entry `fallback` holds for the key (the last good value, or an earlier
 * "bad" marker); with none, a "bad" marker is stored so that the replicas it
 * may describe are left alone. Returns true if `into` changed. Lock held.
 */
static bool ingest(struct node_meta *m, int p, const char *rel, const char *val, size_t len,
                   const struct cache *fallback, struct cache *into)
{
    struct cache_ent ent;
    memset(&ent, 0, sizeof ent);
    int rc = parse_entry(m, p, rel, val, len, &ent);
    if (rc < 0) return false;
    if (rc > 0) {
        long j = cache_find(fallback, rel);
        if (j >= 0 && fallback == into) return false;
        if (j >= 0)
            ent = fallback->v[j];
        else
            ent.bad = true;
    }
    ent.key = strdup(rel);
    if (ent.key == NULL || cache_set(into, &ent)) {
        free(ent.key);
        log_error("out of memory caching etcd key", "key=%s%s", m->prefixes[p], log_quote(rel));
        return false;
    }
    return true;
}

/* Applies one PUT (val != NULL) or DELETE of full key `key` to prefix p. Lock held. */
static bool apply_change(struct node_meta *m, int p, const char *key, const char *val, size_t len)
{
    size_t pl = strlen(m->prefixes[p]);
    if (strncmp(key, m->prefixes[p], pl) != 0) return false;
    const char *rel = key + pl;
    if (val == NULL) {
        if (cache_find(&m->cache[p], rel) < 0) return false;
        cache_del(&m->cache[p], rel);
        return true;
    }
    return ingest(m, p, rel, val, len, &m->cache[p], &m->cache[p]);
}

/* Replaces the table of prefix p with a listing taken at kvs->revision. Lock held. */
static void apply_list(struct node_meta *m, int p, const etcd_kvs *kvs)
{
    if (kvs->revision <= m->cache[p].list_rev) return; /* a newer list already applied */
    struct cache old = m->cache[p];
    memset(&m->cache[p], 0, sizeof m->cache[p]);
    m->cache[p].list_rev = kvs->revision > 0 ? kvs->revision : 1;
    size_t pl = strlen(m->prefixes[p]);
    for (size_t i = 0; i < kvs->n; i++) {
        const etcd_kv *kv = &kvs->kvs[i];
        if (strncmp(kv->key, m->prefixes[p], pl) == 0)
            ingest(m, p, kv->key + pl, kv->value, kv->value_len, &old, &m->cache[p]);
    }
    cache_clear(&old);
    m->gen++;
    pthread_cond_broadcast(&m->cv);
}

/* Lists both prefixes and applies them. 0, or -1 if etcd did not answer. */
static int resync(struct node_meta *m)
{
    etcd_kvs kvs[NPREFIX];
    memset(kvs, 0, sizeof kvs);
    etcd_err err;
    for (int p = 0; p < NPREFIX; p++) {
        etcd_status st = etcd_range(m->etcd, m->prefixes[p], 0, &kvs[p], &err);
        if (st != ETCD_OK) {
            log_debug("cannot list etcd prefix", "prefix=%s error=%s", m->prefixes[p],
                      log_quote(err.msg));
            for (int q = 0; q < NPREFIX; q++)
                etcd_kvs_free(&kvs[q]);
            return -1;
        }
    }
    pthread_mutex_lock(&m->lock);
    for (int p = 0; p < NPREFIX; p++)
        apply_list(m, p, &kvs[p]);
    pthread_mutex_unlock(&m->lock);
    for (int p = 0; p < NPREFIX; p++)
        etcd_kvs_free(&kvs[p]);
    return 0;
}

/* ------------------------------------------------------------ watch callbacks */

/* Applies a batch of watch events. */
static void on_events(void *arg, const etcd_event *ev, size_t n, int64_t revision)
{
    struct watch_arg *wa = arg;
    struct node_meta *m = wa->m;
    pthread_mutex_lock(&m->lock);
    bool changed = false;
    if (!m->watch_ok[wa->p]) {
        m->watch_ok[wa->p] = true;
        log_info("etcd watch connected", "prefix=%s revision=%lld", m->prefixes[wa->p],
                 (long long)revision);
    }
    for (size_t i = 0; i < n; i++) {
        if (ev[i].kv.mod_revision <= m->cache[wa->p].list_rev) continue;
        changed |=
            apply_change(m, wa->p, ev[i].kv.key,
                         ev[i].type == ETCD_EVENT_PUT ? ev[i].kv.value : NULL, ev[i].kv.value_len);
    }
    if (changed) {
        m->gen++;
        pthread_cond_broadcast(&m->cv);
    }
    pthread_mutex_unlock(&m->lock);
}

/* Replaces the table after the watch re-listed (compaction). */
static void on_relist(void *arg, const etcd_kvs *snapshot)
{
    struct watch_arg *wa = arg;
    log_info("etcd history compacted; re-listed", "prefix=%s revision=%lld keys=%zu",
             wa->m->prefixes[wa->p], (long long)snapshot->revision, snapshot->n);
    pthread_mutex_lock(&wa->m->lock);
    apply_list(wa->m, wa->p, snapshot);
    pthread_mutex_unlock(&wa->m->lock);
}

/* Logs a broken watch stream once until it works again. */
static void on_watch_error(void *arg, etcd_status why, const char *msg)
{
    struct watch_arg *wa = arg;
    if (strstr(msg, "idle") != NULL || why == ETCD_ECANCELED) {
        /* A quiet stream re-established by the dead-peer check, or our own reconnect. */
        log_debug("etcd watch re-established", "prefix=%s reason=%s", wa->m->prefixes[wa->p],
                  log_quote(msg));
        return;
    }
    pthread_mutex_lock(&wa->m->lock);
    bool was_ok = wa->m->watch_ok[wa->p];
    wa->m->watch_ok[wa->p] = false;
    pthread_mutex_unlock(&wa->m->lock);
    if (was_ok)
        log_warn("etcd watch broken; serving from the cached shard map while it reconnects",
                 "prefix=%s status=%s error=%s", wa->m->prefixes[wa->p], etcd_status_str(why),
                 log_quote(msg));
}

/* ------------------------------------------------------------ reconcile */

/* Builds the assignment and collection lists from the cache. Lock held. */
static int derive(struct node_meta *m, struct node_assignment **as, size_t *nas,
                  struct node_collection **cs, size_t *ncs)
{
    struct cache *cc = &m->cache[P_COLL], *sc = &m->cache[P_SHARD];
    *as = calloc(sc->n + 1, sizeof **as);
    *cs = calloc(cc->n + 1, sizeof **cs);
    if (*as == NULL || *cs == NULL) {
        free(*as);
        free(*cs);
        return -1;
    }
    *ncs = 0;
    for (size_t i = 0; i < cc->n; i++)
        if (!cc->v[i].bad) (*cs)[(*ncs)++] = cc->v[i].u.coll;
    *nas = 0;
    for (size_t i = 0; i < sc->n; i++) {
        const struct shard_entry *e = &sc->v[i].u.shard;
        if (!sc->v[i].bad && !e->mine) continue;
        long ci = cache_find(cc, e->name);
        if (ci < 0) continue; /* collection not (or no longer) defined */
        if (sc->v[i].bad || cc->v[ci].bad) {
            /* Unreadable entry or config: whatever is open for it stays as it is. */
            struct node_assignment *a = &(*as)[(*nas)++];
            snprintf(a->coll.name, sizeof a->coll.name, "%s", e->name);
            a->shard = e->shard;
            a->keep = true;
            continue;
        }
        const struct node_collection *coll = &cc->v[ci].u.coll;
        if (e->shard >= coll->shards) {
            log_warn("shard entry beyond the collection's shard count; ignored",
                     "collection=%s shard=%u shards=%u", e->name, e->shard, coll->shards);
            continue;
        }
        struct node_assignment *a = &(*as)[(*nas)++];
        a->coll = *coll;
        a->shard = e->shard;
        a->epoch = e->epoch;
        snprintf(a->primary, sizeof a->primary, "%s", e->primary);
        a->replicas = e->replicas;
        a->in_sync = e->in_sync;
    }
    return 0;
}

/* Copies the registered nodes out of the cache (*out malloc'ed; NULL on ENOMEM). Lock held. */
static size_t copy_nodes(struct node_meta *m, struct node_entry **out)
{
    struct cache *nc = &m->cache[P_NODE];
    *out = calloc(nc->n + 1, sizeof **out);
    if (*out == NULL) return 0;
    for (size_t i = 0; i < nc->n; i++)
        (*out)[i] = nc->v[i].u.node;
    return nc->n;
}

/* Hands the registered nodes (ids and addresses) to the registry. Lock not held. */
static void publish_nodes(struct node_meta *m, const struct node_entry *v, size_t n)
{
    char **ids = calloc(n + 1, sizeof *ids), **addrs = calloc(n + 1, sizeof *addrs);
    if (ids != NULL && addrs != NULL) {
        for (size_t i = 0; i < n; i++) {
            ids[i] = (char *)v[i].id;
            addrs[i] = (char *)v[i].addr;
        }
        node_shards_set_nodes(m->reg, ids, addrs, n);
    }
    free(ids);
    free(addrs);
}

/*
 * Why trash entry t may be purged now ("" if it must stay): its collection key is absent or has
 * another created_at, or its shard entry is absent or does not list this node. Read fresh from
 * etcd; an unreachable etcd or an unreadable value keeps the entry.
 */
static const char *purge_reason(struct node_meta *m, const struct trash_entry *t)
{
    char err[NODE_ERR_MAX];
    const char *why = "";
    etcd_kv kv;
    memset(&kv, 0, sizeof kv);
    char *key = cluster_key_collection(m->prefix, t->collection);
    etcd_status st = key != NULL ? etcd_get(m->etcd, key, &kv, NULL) : ETCD_ENOMEM;
    free(key);
    if (st == ETCD_ENOTFOUND) return "its collection was dropped";
    if (st != ETCD_OK) return "";
    struct node_collection c;
    int rc = node_collection_parse(kv.value, kv.value_len, &c, err, sizeof err);
    etcd_kv_clear(&kv);
    if (rc != 0) return "";
    if (c.created_at != t->created_at) return "its collection was recreated (another created_at)";
    key = cluster_key_shard(m->prefix, t->collection, t->shard);
    st = key != NULL ? etcd_get(m->etcd, key, &kv, NULL) : ETCD_ENOMEM;
    free(key);
    if (st == ETCD_ENOTFOUND) return "its shard entry is gone";
    if (st != ETCD_OK) return "";
    struct shard_entry e;
    memset(&e, 0, sizeof e);
    if (shard_parse(kv.value, kv.value_len, m->node_id, &e, err, sizeof err) == 0 && !e.mine)
        why = "the shard is no longer assigned to this node";
    etcd_kv_clear(&kv);
    return why;
}

/* Purges the trash entries past the grace period that etcd says are gone. Lock not held. */
static void purge_trash(struct node_meta *m)
{
    char err[TRASH_ERR_MAX];
    struct trash_entry *t = NULL;
    long n = trash_list(m->data_dir, &t, err);
    if (n < 0) log_warn("cannot list the trash", "error=%s", log_quote(err));
    int64_t now = unix_ms();
    for (long i = 0; i < n; i++) {
        if (now - t[i].trashed_at < m->trash_grace_ms) continue;
        const char *why = purge_reason(m, &t[i]);
        if (why[0] == '\0') continue;
        if (trash_purge(m->data_dir, t[i].name, err) == 0)
            log_info("purged replica files from the trash",
                     "collection=%s shard=%u trash=%s "
                     "reason=%s",
                     t[i].collection, t[i].shard, log_quote(t[i].name), log_quote(why));
        else
            log_error("cannot purge trash entry", "trash=%s error=%s", log_quote(t[i].name),
                      log_quote(err));
    }
    free(t);
}

/* The sync thread: list, watch, reconcile on every change. */
static void *sync_main(void *arg)
{
    struct node_meta *m = arg;
    bool warned = false;
    for (;;) {
        pthread_mutex_lock(&m->lock);
        bool stop = m->stop_sync;
        bool listed = m->cache[P_COLL].list_rev > 0 && m->cache[P_SHARD].list_rev > 0 &&
                      m->cache[P_NODE].list_rev > 0;
        pthread_mutex_unlock(&m->lock);
        if (stop) return NULL;
        if (listed) break;
        if (resync(m) == 0) break;
        if (!warned) {
            log_warn("etcd unreachable; serving local replicas until it answers", "etcd_prefix=%s",
                     m->prefix);
            warned = true;
        }
        pthread_mutex_lock(&m->lock);
        if (!m->stop_sync) timed_wait(m, 1000);
        pthread_mutex_unlock(&m->lock);
    }

    for (int p = 0; p < NPREFIX; p++) {
        etcd_watch_opts o = {
            .prefix = m->prefixes[p],
            .progress_notify = true,
            .idle_timeout_ms = 60000,
            .on_events = on_events,
            .on_relist = on_relist,
            .on_error = on_watch_error,
            .arg = &m->wargs[p],
        };
        pthread_mutex_lock(&m->lock);
        o.start_revision = m->cache[p].list_rev + 1;
        m->watch_ok[p] = true;
        pthread_mutex_unlock(&m->lock);
        etcd_err err;
        etcd_watch *w = NULL;
        etcd_status st = etcd_watch_start(m->etcd, &o, &w, &err);
        pthread_mutex_lock(&m->lock);
        m->watch[p] = w;
        pthread_mutex_unlock(&m->lock);
        if (st != ETCD_OK)
            log_error("cannot start etcd watch; the shard map will only refresh on re-registration",
                      "prefix=%s error=%s", m->prefixes[p], log_quote(err.msg));
    }
    log_info("watching the shard map", "collections=%zu shards=%zu", m->cache[P_COLL].n,
             m->cache[P_SHARD].n);

    /* Trash purge period: a quarter of the grace, within 250 ms .. 60 s. */
    long purge_every = m->trash_grace_ms / 4;
    if (purge_every < 250) purge_every = 250;
    if (purge_every > 60000) purge_every = 60000;
    struct timespec next_purge;
    clock_gettime(CLOCK_MONOTONIC, &next_purge);
    pthread_mutex_lock(&m->lock);
    while (!m->stop_sync) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next_purge.tv_sec ||
            (now.tv_sec == next_purge.tv_sec && now.tv_nsec >= next_purge.tv_nsec)) {
            pthread_mutex_unlock(&m->lock);
            purge_trash(m);
            pthread_mutex_lock(&m->lock);
            next_purge = clock_mono_after_ms(purge_every);
            continue;
        }
        if (m->gen == m->applied_gen) {
            pthread_cond_timedwait(&m->cv, &m->lock, &next_purge);
            continue;
        }
        uint64_t gen = m->gen;
        struct node_assignment *as;
        struct node_collection *cs;
        size_t nas, ncs;
        int rc = derive(m, &as, &nas, &cs, &ncs);
        struct node_entry *nodes = NULL;
        size_t nnodes = copy_nodes(m, &nodes);
        pthread_mutex_unlock(&m->lock);
        if (nodes != NULL) publish_nodes(m, nodes, nnodes);
        free(nodes);
        if (rc == 0) {
            node_shards_reconcile(m->reg, as, nas, cs, ncs);
            free(as);
            free(cs);
        } else {
            log_error("out of memory deriving assignments; retrying", NULL);
        }
        pthread_mutex_lock(&m->lock);
        if (rc == 0)
            m->applied_gen = gen;
        else
            timed_wait(m, 1000);
        pthread_cond_broadcast(&m->cv);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* ------------------------------------------------------------ lease */

/* Keeper callback: the lease is gone; wake the lease thread. */
static void on_lease_lost(void *arg, int64_t lease, etcd_status why)
{
    struct node_meta *m = arg;
    /* Writes go on: the epoch rule keeps a deposed primary from acknowledging alone
     * (docs/replication.md §8), so the node does not fence itself. */
    log_error("etcd lease lost; registering again (writes and reads continue)",
              "lease=%llx reason=%s", (unsigned long long)lease, etcd_status_str(why));
    pthread_mutex_lock(&m->lock);
    m->lost = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->lock);
}

/* The registration value (JSON); malloc'ed. */
static char *node_value(struct node_meta *m)
{
    struct cluster_node n = {
        .addr = m->addr,
        .version = m->version,
        .node_id = m->node_id,
        .started_at = m->started_at_ms,
        .capacity = m->capacity,
    };
    return cluster_node_format(&n);
}

/* Grants a lease, writes the node key on it and starts the keeper. */
static int register_once(struct node_meta *m, bool quiet)
{
    etcd_err err;
    int64_t lease = 0;
    char *val = NULL;
    etcd_kv prev;
    memset(&prev, 0, sizeof prev);
    etcd_lease_keeper *keeper = NULL;
    etcd_status st = etcd_lease_grant(m->etcd, m->lease_ttl, &lease, NULL, &err);
    if (st != ETCD_OK) goto fail;
    val = node_value(m);
    if (val == NULL) {
        snprintf(err.msg, sizeof err.msg, "out of memory");
        goto fail;
    }
    st = etcd_put(m->etcd, m->node_key, val, strlen(val), lease, &prev, NULL, &err);
    if (st != ETCD_OK) goto fail;
    if (prev.key != NULL && prev.lease != 0 && prev.lease != lease)
        log_warn("replaced an older registration of this node id whose lease had not expired",
                 "key=%s old_lease=%llx", m->node_key, (unsigned long long)prev.lease);
    st = etcd_lease_keeper_start(m->etcd, lease, m->lease_ttl, on_lease_lost, m, &keeper, &err);
    if (st != ETCD_OK) goto fail;
    pthread_mutex_lock(&m->lock);
    m->lease = lease;
    m->keeper = keeper;
    m->lost = false;
    pthread_mutex_unlock(&m->lock);
    log_info("registered in etcd", "key=%s addr=%s lease=%llx ttl=%d", m->node_key,
             log_quote(m->addr), (unsigned long long)lease, m->lease_ttl);
    etcd_kv_clear(&prev);
    free(val);
    return 0;
fail:
    if (!quiet)
        log_warn("cannot register in etcd; retrying", "key=%s error=%s", m->node_key,
                 log_quote(err.msg));
    if (lease != 0) etcd_lease_revoke(m->etcd, lease, NULL);
    etcd_kv_clear(&prev);
    free(val);
    return -1;
}

/* Stops the keeper of the current lease (lock not held); optionally revokes it. */
static void drop_lease(struct node_meta *m, bool revoke)
{
    pthread_mutex_lock(&m->lock);
    etcd_lease_keeper *k = m->keeper;
    int64_t lease = m->lease;
    m->keeper = NULL;
    m->lease = 0;
    m->registered = false;
    pthread_mutex_unlock(&m->lock);
    if (k != NULL) etcd_lease_keeper_stop(k);
    if (revoke && lease != 0) {
        etcd_err err;
        etcd_status st = etcd_lease_revoke(m->etcd, lease, &err);
        if (st == ETCD_OK)
            log_info("revoked etcd lease; node key removed", "key=%s", m->node_key);
        else
            log_warn("cannot revoke etcd lease; the node key expires with it", "key=%s error=%s",
                     m->node_key, log_quote(err.msg));
    }
}

/* The lease thread: register, refresh the map; again after a loss. */
static void *lease_main(void *arg)
{
    struct node_meta *m = arg;
    int failures = 0;
    pthread_mutex_lock(&m->lock);
    while (!m->stop_lease) {
        if (m->registered) {
            if (!m->lost) {
                pthread_cond_wait(&m->cv, &m->lock);
                continue;
            }
            pthread_mutex_unlock(&m->lock);
            drop_lease(m, false);
            pthread_mutex_lock(&m->lock);
            continue;
        }
        bool stale_keeper = m->keeper != NULL; /* lost before registration completed */
        pthread_mutex_unlock(&m->lock);
        if (stale_keeper) drop_lease(m, true);
        int rc = register_once(m, failures > 0 && failures % 30 != 0);
        /* A fresh list of the shard map is reconciled before the node counts as registered. */
        while (rc == 0) {
            if (resync(m) == 0) break;
            pthread_mutex_lock(&m->lock);
            bool stop = m->stop_lease || m->lost;
            if (!stop) timed_wait(m, 500);
            pthread_mutex_unlock(&m->lock);
            if (stop) rc = -1;
        }
        pthread_mutex_lock(&m->lock);
        if (rc != 0) {
            failures++;
            if (m->keeper != NULL) {
                pthread_mutex_unlock(&m->lock);
                drop_lease(m, true);
                pthread_mutex_lock(&m->lock);
            }
            if (!m->stop_lease) timed_wait(m, 1000);
            continue;
        }
        failures = 0;
        /* A lease loss may have left a watch stream on a dead connection. */
        for (int p = 0; p < NPREFIX; p++)
            if (m->watch[p] != NULL) etcd_watch_reconnect(m->watch[p]);
        uint64_t want = m->gen;
        while (m->applied_gen < want && !m->stop_lease && !m->stop_sync && !m->lost)
            timed_wait(m, 200);
        if (m->lost || m->stop_lease) continue;
        m->registered = true;
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

/* Starts the lease and sync threads. */
int node_meta_start(const struct node_meta_config *cfg, struct node_shards *reg,
                    struct node_meta **out, char *err, size_t errlen)
{
    struct node_meta *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    m->etcd = cfg->etcd;
    m->reg = reg;
    m->capacity = cfg->capacity;
    m->started_at_ms = cfg->started_at_ms ? cfg->started_at_ms : unix_ms();
    m->lease_ttl = cfg->lease_ttl;
    m->trash_grace_ms = cfg->trash_grace_ms;
    m->data_dir = strdup(cfg->data_dir != NULL ? cfg->data_dir : ".");
    m->prefix = strdup(cfg->prefix);
    m->node_id = strdup(cfg->node_id);
    m->addr = strdup(cfg->addr);
    m->version = strdup(cfg->version);
    if (m->data_dir == NULL || m->prefix == NULL || m->node_id == NULL || m->addr == NULL ||
        m->version == NULL || (m->node_key = cluster_key_node(cfg->prefix, cfg->node_id)) == NULL ||
        (m->prefixes[P_COLL] = cluster_key_dir(cfg->prefix, "collections")) == NULL ||
        (m->prefixes[P_SHARD] = cluster_key_dir(cfg->prefix, "shards")) == NULL ||
        (m->prefixes[P_NODE] = cluster_key_dir(cfg->prefix, "nodes")) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    m->wargs[P_COLL] = (struct watch_arg){m, P_COLL};
    m->wargs[P_SHARD] = (struct watch_arg){m, P_SHARD};
    m->wargs[P_NODE] = (struct watch_arg){m, P_NODE};

    int e = pthread_create(&m->sync_thread, NULL, sync_main, m);
    if (e != 0) {
        snprintf(err, errlen, "cannot start the etcd sync thread: %s", strerror(e));
        goto fail;
    }
    m->sync_running = true;
    e = pthread_create(&m->lease_thread, NULL, lease_main, m);
    if (e != 0) {
        snprintf(err, errlen, "cannot start the etcd lease thread: %s", strerror(e));
        goto fail;
    }
    m->lease_running = true;
    *out = m;
    return 0;
fail:
    node_meta_stop(m);
    return -1;
}

/* True while registered with a live lease. */
bool node_meta_registered(struct node_meta *m)
{
    pthread_mutex_lock(&m->lock);
    bool r = m->registered && !m->lost;
    pthread_mutex_unlock(&m->lock);
    return r;
}

/* The etcd side for metrics and /readyz (node_meta.h). */
void node_meta_status(struct node_meta *m, struct node_meta_status *st)
{
    pthread_mutex_lock(&m->lock);
    st->registered = m->registered && !m->lost;
    st->lease_live = m->keeper != NULL && !m->lost;
    /* The keeper is stopped only after drop_lease took it out under this lock. */
    st->keepalive_age_ms = m->keeper != NULL ? etcd_lease_keeper_ok_age_ms(m->keeper) : -1;
    st->watches_ok = true;
    for (int p = 0; p < NPREFIX; p++)
        st->watches_ok &= m->watch_ok[p];
    pthread_mutex_unlock(&m->lock);
    struct etcd_client_health h;
    etcd_client_health(m->etcd, &h);
    st->etcd_reachable = h.ok_age_ms >= 0 && (h.fail_age_ms < 0 || h.fail_age_ms > h.ok_age_ms);
}

/* Stops the watches and the sync thread. */
void node_meta_stop_sync(struct node_meta *m)
{
    pthread_mutex_lock(&m->lock);
    m->stop_sync = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->lock);
    if (m->sync_running) pthread_join(m->sync_thread, NULL);
    m->sync_running = false;
    for (int p = 0; p < NPREFIX; p++) {
        pthread_mutex_lock(&m->lock);
        etcd_watch *w = m->watch[p];
        m->watch[p] = NULL;
        pthread_mutex_unlock(&m->lock);
        etcd_watch_stop(w);
    }
}

/* Stops the watches, the reconciler and the lease thread, and revokes the lease. */
void node_meta_leave(struct node_meta *m)
{
    if (m == NULL) return;
    node_meta_stop_sync(m);
    pthread_mutex_lock(&m->lock);
    m->stop_lease = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->lock);
    if (m->lease_running) pthread_join(m->lease_thread, NULL);
    m->lease_running = false;
    drop_lease(m, true); /* a no-op the second time: the lease is 0 */
}

/* Stops everything, revokes the lease and frees m. */
void node_meta_stop(struct node_meta *m)
{
    if (m == NULL) return;
    node_meta_leave(m);
    for (int p = 0; p < NPREFIX; p++) {
        cache_clear(&m->cache[p]);
        free(m->prefixes[p]);
    }
    free(m->prefix);
    free(m->data_dir);
    free(m->node_id);
    free(m->addr);
    free(m->version);
    free(m->node_key);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
