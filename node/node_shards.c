/*
 * node_shards.c — the registry of open replicas: opening what etcd assigns,
 * closing and deleting what it no longer does, lending replicas to the
 * gRPC handlers.
 *
 * Entries live in an array of pointers under `lock`. An entry is created in
 * state LOADING before its replica is opened (so ShardStatus shows it and
 * Search answers UNAVAILABLE for it instead of NOT_FOUND), and open_entry
 * classifies it: READY when replica_open returns, DAMAGED (kept, with a
 * reason, no replica) when its files are missing although its collection is
 * older than the data dir, or when replica_open says REPLICA_ECORRUPT.
 * Removal takes the entry out of the array first (new borrowers get
 * NOT_FOUND), waits on `cv` until its borrow count is 0, then closes the
 * replica and moves its folder into the trash (trash.h): the only safe
 * order when handlers on other threads may still be searching it. Files are
 * never deleted here; node_meta purges the trash once etcd confirms.
 *
 * Start-up and shutdown fan out over a small pool of threads (pool_run,
 * --load-threads): node_shards_load_local lists every replica on disk as
 * LOADING, then opens them in parallel; node_shards_snapshot_all snapshots
 * them in parallel. Each pool thread works on its own entries; the table
 * is only touched under `lock`.
 *
 * Files this module owns (the replica folders are the storage layer's):
 *   <data-dir>/<collection>/collection.json  the configuration the replicas
 *   of that collection were opened with (written via a temp file + fsync +
 *   rename), read back by node_shards_load_local after a restart.
 */
#define _GNU_SOURCE
#include "node/node_shards.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cluster/name.h"
#include "common/util/clock.h"
#include "common/util/log.h"
#include "node/storage/dir.h"
#include "node/storage/trash.h"
#include "node/storage/replica.h"

#define COLLECTION_FILE "collection.json"

struct node_shard {
    struct node_collection coll;
    uint32_t shard;
    uint64_t epoch;
    enum node_role role;
    char primary[NODE_ID_MAX + 1];
    struct node_ids replicas, in_sync;
    enum node_state state;
    bool truncating;
    uint64_t truncations;
    enum node_state recovering_from; /* state to return to when a transfer fails (RECOVERING) */
    struct replica *rep;       /* NULL while LOADING and when DAMAGED; hidden while RECOVERING */
    int refs;                  /* borrowers (node_shards_acquire) */
    char reason[NODE_ERR_MAX]; /* why DAMAGED */
    char dir[PATH_MAX];
};

/* A node of the cluster as last seen in etcd. */
struct known_node {
    char id[NODE_ID_MAX + 1];
    char addr[256];
    bool registered;
};

/* One --reset-replica item. */
struct reset_ref {
    char name[NODE_NAME_MAX + 1];
    uint32_t shard;
};

struct node_shards {
    char *data_dir, *node_id;
    int fsync;
    uint64_t snapshot_wal_bytes, snapshot_wal_records, snapshot_age_ms;
    int load_threads;
    uint32_t max_batch, max_payload;
    int64_t dir_created_at;
    struct reset_ref *resets; /* read-only after create */
    size_t nresets;

    /* lock protects everything below; cv signals a borrow count reaching 0. */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct node_shard **v;
    size_t n, cap;
    struct node_collection *colls;
    size_t ncolls;
    struct known_node *nodes; /* every node seen under <prefix>/nodes/ */
    size_t nnodes;
};

/* ------------------------------------------------------------ files */

/* Writes "a/b" into buf; false if it does not fit (data-dir length is checked at create). */
static bool join(char *buf, size_t size, const char *a, const char *b)
{
    int n = snprintf(buf, size, "%s/%s", a, b);
    return n >= 0 && (size_t)n < size;
}

/* Writes <data-dir>/<name>/collection.json atomically. 0 or -1 (logged). */
static int write_collection_file(struct node_shards *reg, const struct node_collection *c)
{
    char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
    char *text = NULL;
    int fd = -1;
    if (!join(dir, sizeof dir, reg->data_dir, c->name) ||
        !join(path, sizeof path, dir, COLLECTION_FILE) ||
        !join(tmp, sizeof tmp, dir, COLLECTION_FILE ".tmp")) {
        errno = ENAMETOOLONG;
        goto fail;
    }
    text = node_collection_format(c);
    if (text == NULL) goto fail;
    if (dir_mkdirs(dir) != 0) goto fail;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto fail;
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) != 0)
        goto fail;
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    dir_fsync(dir, NULL, 0);
    free(text);
    return 0;
fail:
    log_error("cannot write collection config", "path=%s error=%s", log_quote(path),
              log_quote(strerror(errno)));
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(text);
    return -1;
}

/* Reads <dir>/collection.json into *c. 0 or -1 (logged). */
static int read_collection_file(const char *dir, struct node_collection *c)
{
    char path[PATH_MAX], err[NODE_ERR_MAX];
    if (!join(path, sizeof path, dir, COLLECTION_FILE)) return -1;
    FILE *f = fopen(path, "re");
    if (f == NULL) return -1;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (node_collection_parse(buf, n, c, err, sizeof err) != 0) {
        log_warn("ignoring unreadable collection config on disk", "path=%s error=%s",
                 log_quote(path), log_quote(err));
        return -1;
    }
    return 0;
}

/* Removes collection.json and the collection folder if nothing else is in it. */
static void remove_collection_dir(struct node_shards *reg, const char *name)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (!join(dir, sizeof dir, reg->data_dir, name) ||
        !join(path, sizeof path, dir, COLLECTION_FILE))
        return;
    unlink(path);
    if (rmdir(dir) == 0) {
        dir_fsync(reg->data_dir, NULL, 0);
        log_info("removed collection folder", "collection=%s", name);
    }
}

/* ------------------------------------------------------------ table */

/* Index of (collection, shard) in the table, or -1. Lock held. */
static long find(struct node_shards *reg, const char *collection, uint32_t shard)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->v[i]->shard == shard && strcmp(reg->v[i]->coll.name, collection) == 0)
            return (long)i;
    return -1;
}

/* Appends e to the table. Lock held. 0 or -1 (ENOMEM). */
static int table_add(struct node_shards *reg, struct node_shard *e)
{
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        struct node_shard **v = realloc(reg->v, cap * sizeof *v);
        if (v == NULL) return -1;
        reg->v = v;
        reg->cap = cap;
    }
    reg->v[reg->n++] = e;
    return 0;
}

/* Takes e out of the table. Lock held. */
static void table_remove(struct node_shards *reg, struct node_shard *e)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->v[i] == e) {
            reg->v[i] = reg->v[--reg->n];
            return;
        }
}

/* The role of this node in an entry naming primary. */
static enum node_role role_of(const struct node_shards *reg, const char *primary)
{
    return primary[0] == '\0'                   ? NODE_ROLE_UNKNOWN
           : strcmp(primary, reg->node_id) == 0 ? NODE_ROLE_PRIMARY
                                                : NODE_ROLE_BACKUP;
}

/* True if the collection's replica files would be incompatible with *b. */
static bool config_changed(const struct node_collection *a, const struct node_collection *b)
{
    if (a->dim != b->dim || a->metric != b->metric || a->m != b->m ||
        a->ef_construction != b->ef_construction || a->quant != b->quant)
        return true;
    return a->created_at != 0 && b->created_at != 0 && a->created_at != b->created_at;
}

/* Adds or replaces a collection config in reg->colls. Lock held. */
static void remember_collection(struct node_shards *reg, const struct node_collection *c)
{
    for (size_t i = 0; i < reg->ncolls; i++)
        if (strcmp(reg->colls[i].name, c->name) == 0) {
            reg->colls[i] = *c;
            return;
        }
    struct node_collection *v = realloc(reg->colls, (reg->ncolls + 1) * sizeof *v);
    if (v == NULL) return;
    reg->colls = v;
    reg->colls[reg->ncolls++] = *c;
}

/* ------------------------------------------------------------ open / close */

/* True when folder dir exists and holds anything. */
static bool dir_has_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) return false;
    bool any = false;
    struct dirent *de;
    while (!any && (de = readdir(d)) != NULL)
        any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return any;
}

/* True when --reset-replica names (collection, shard). Read-only: any thread. */
static bool reset_requested(const struct node_shards *reg, const char *collection, uint32_t shard)
{
    for (size_t i = 0; i < reg->nresets; i++)
        if (reg->resets[i].shard == shard && strcmp(reg->resets[i].name, collection) == 0)
            return true;
    return false;
}

/* Formats Unix ms as "2026-12-02T01:02:03.456Z (1796173323456)". */
static void fmt_time(int64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char day[32] = "?";
    if (gmtime_r(&t, &tm) != NULL) strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ (%lld)", day, (int)(ms % 1000), (long long)ms);
}

/* Moves e's folder back from the newest matching trash entry, if any (not wiped ones). */
static void restore_from_trash(struct node_shards *reg, struct node_shard *e)
{
    if (e->coll.created_at == 0) return; /* cannot tell which incarnation a trash entry is */
    char err[TRASH_ERR_MAX];
    struct trash_entry *t = NULL;
    long n = trash_list(reg->data_dir, &t, err);
    if (n < 0) log_warn("cannot look into the trash", "error=%s", log_quote(err));
    long best = -1;
    for (long i = 0; i < n; i++)
        if (!t[i].wiped && t[i].shard == e->shard && t[i].created_at == e->coll.created_at &&
            strcmp(t[i].collection, e->coll.name) == 0 &&
            (best < 0 || t[i].trashed_at > t[best].trashed_at))
            best = i;
    if (best >= 0) {
        rmdir(e->dir); /* an empty folder left behind; the rename needs the name free */
        if (trash_restore(reg->data_dir, t[best].name, e->dir, err) == 0)
            log_warn("restored replica from the trash: it is assigned to this node again",
                     "collection=%s shard=%u trash=%s", e->coll.name, e->shard,
                     log_quote(t[best].name));
        else
            log_error("cannot restore replica from the trash", "collection=%s shard=%u error=%s",
                      e->coll.name, e->shard, log_quote(err));
    }
    free(t);
}

/* Marks e DAMAGED with a reason (logged). Returns 0: the entry stays. */
static int mark_damaged(struct node_shards *reg, struct node_shard *e, const char *why)
{
    log_error("replica is DAMAGED: it refuses writes and reads until an operator resets it "
              "(--reset-replica)",
              "collection=%s shard=%u dir=%s reason=%s", e->coll.name, e->shard, log_quote(e->dir),
              log_quote(why));
    pthread_mutex_lock(&reg->lock);
    snprintf(e->reason, sizeof e->reason, "%s", why);
    e->state = NODE_STATE_DAMAGED;
    pthread_mutex_unlock(&reg->lock);
    return 0;
}

static int open_files(struct node_shards *reg, struct node_shard *e, bool reset);

/*
 * Opens the replica of e (state LOADING, already in the table) and classifies the result: READY;
 * DAMAGED when its files are missing although the collection predates the data dir, or when
 * replica_open says REPLICA_ECORRUPT (unless --reset-replica names it: then missing files are
 * accepted and damaged ones moved to the trash, and it opens empty). Returns 0 when e stays in
 * the table, -1 when it must be dropped (any other failure; the next reconcile retries). Touches
 * only e, under `lock`, so several threads may open different entries at once.
 */
static int open_entry(struct node_shards *reg, struct node_shard *e)
{
    bool reset = reset_requested(reg, e->coll.name, e->shard);
    if (!dir_has_files(e->dir)) {
        restore_from_trash(reg, e);
        if (!dir_has_files(e->dir) && reg->dir_created_at > 0 && e->coll.created_at > 0 &&
            e->coll.created_at < reg->dir_created_at) {
            char coll_t[64], dir_t[64], why[NODE_ERR_MAX];
            fmt_time(e->coll.created_at, coll_t, sizeof coll_t);
            fmt_time(reg->dir_created_at, dir_t, sizeof dir_t);
            snprintf(why, sizeof why,
                     "no data on disk, but collection created at %s before this data dir "
                     "(identity created %s): the data dir was emptied or replaced",
                     coll_t, dir_t);
            if (!reset) return mark_damaged(reg, e, why);
            log_warn("replica files are missing; --reset-replica accepts it as empty",
                     "collection=%s shard=%u reason=%s", e->coll.name, e->shard, log_quote(why));
        }
    }
    return open_files(reg, e, reset);
}

/*
 * The open step of open_entry, also used by node_shards_install (whose folder is a complete
 * transferred copy, even when empty): replica_open and the classification of its result.
 */
static int open_files(struct node_shards *reg, struct node_shard *e, bool reset)
{
    struct replica_config rc;
    replica_config_init(&rc);
    rc.dir = e->dir;
    rc.collection = e->coll.name;
    rc.shard = e->shard;
    hnsw_params_init(&rc.hnsw);
    rc.hnsw.dim = e->coll.dim;
    rc.hnsw.metric = e->coll.metric;
    rc.hnsw.M = e->coll.m;
    rc.hnsw.ef_construction = e->coll.ef_construction;
    rc.hnsw.quant = e->coll.quant;
    rc.ef_search = e->coll.ef_search;
    rc.fsync = (enum wal_fsync)reg->fsync;
    rc.snapshot_wal_bytes = reg->snapshot_wal_bytes;
    rc.snapshot_wal_records = reg->snapshot_wal_records;
    rc.snapshot_age_ms = reg->snapshot_age_ms;
    rc.max_batch = reg->max_batch;
    rc.max_payload = reg->max_payload;

    struct replica *rep = NULL;
    struct replica_recovery rec;
    memset(&rec, 0, sizeof rec);
    char err[REPLICA_ERR_MAX];
    int code = replica_open(&rc, &rep, &rec, err);
    if (code == REPLICA_ECORRUPT && !reset) return mark_damaged(reg, e, err);
    if (code == REPLICA_ECORRUPT) {
        char terr[TRASH_ERR_MAX], name[256] = "";
        log_warn("replica files are damaged; --reset-replica moves them to the trash and opens "
                 "it empty",
                 "collection=%s shard=%u error=%s", e->coll.name, e->shard, log_quote(err));
        if (trash_move(reg->data_dir, e->dir, e->coll.name, e->shard, e->coll.created_at, true,
                       name, terr) != 0) {
            log_error("cannot move damaged replica to the trash", "collection=%s shard=%u error=%s",
                      e->coll.name, e->shard, log_quote(terr));
            return mark_damaged(reg, e, err);
        }
        memset(&rec, 0, sizeof rec);
        code = replica_open(&rc, &rep, &rec, err);
    }
    if (code != REPLICA_OK) {
        log_error("cannot open replica", "collection=%s shard=%u dir=%s code=%s error=%s",
                  e->coll.name, e->shard, log_quote(e->dir), replica_code_str(code),
                  log_quote(err));
        return -1;
    }
    for (uint32_t i = 0; i < rec.snapshot.nrejected && i < 4; i++)
        log_warn("damaged snapshot set aside", "collection=%s shard=%u snapshot_lsn=%llu error=%s",
                 e->coll.name, e->shard, (unsigned long long)rec.snapshot.rejected[i].lsn,
                 log_quote(rec.snapshot.rejected[i].reason));
    if (rec.wal.truncated)
        log_warn("WAL tail damaged; cut at the last good record",
                 "collection=%s shard=%u damage=%s reason=%s bytes_dropped=%llu", e->coll.name,
                 e->shard, log_quote(wal_damage_str(rec.wal.damage)), log_quote(rec.wal.reason),
                 (unsigned long long)rec.wal.bytes_dropped);
    struct replica_stat st;
    replica_status(rep, &st);
    log_info("opened replica",
             "collection=%s shard=%u lsn=%llu count=%llu snapshot_lsn=%llu replayed=%llu "
             "seconds=%.3f",
             e->coll.name, e->shard, (unsigned long long)rec.lsn, (unsigned long long)st.count,
             (unsigned long long)rec.snapshot_lsn, (unsigned long long)rec.replayed, rec.seconds);

    pthread_mutex_lock(&reg->lock);
    e->rep = rep;
    e->state = NODE_STATE_READY;
    if (e->epoch == 0) e->epoch = st.epoch;
    pthread_mutex_unlock(&reg->lock);
    return 0;
}

/* Creates a LOADING entry for (coll, shard) in the table; NULL on ENOMEM (logged). */
static struct node_shard *add_loading(struct node_shards *reg, const struct node_collection *coll,
                                      uint32_t shard, uint64_t epoch, const char *primary,
                                      const struct node_ids *replicas,
                                      const struct node_ids *in_sync)
{
    struct node_shard *e = calloc(1, sizeof *e);
    if (e == NULL) {
        log_error("out of memory adding replica", "collection=%s shard=%u", coll->name, shard);
        return NULL;
    }
    e->coll = *coll;
    e->shard = shard;
    e->epoch = epoch;
    snprintf(e->primary, sizeof e->primary, "%s", primary);
    e->role = role_of(reg, primary);
    if (replicas != NULL) e->replicas = *replicas;
    if (in_sync != NULL) e->in_sync = *in_sync;
    e->state = NODE_STATE_LOADING;
    snprintf(e->dir, sizeof e->dir, "%s/%s/%u", reg->data_dir, coll->name, shard);

    pthread_mutex_lock(&reg->lock);
    int rc = table_add(reg, e);
    pthread_mutex_unlock(&reg->lock);
    if (rc != 0) {
        free(e);
        return NULL;
    }
    return e;
}

/* Opens a LOADING entry; on failure takes it out of the table again. */
static void open_or_drop(struct node_shards *reg, struct node_shard *e)
{
    if (open_entry(reg, e) == 0) return;
    pthread_mutex_lock(&reg->lock);
    table_remove(reg, e);
    while (e->refs > 0)
        pthread_cond_wait(&reg->cv, &reg->lock);
    pthread_mutex_unlock(&reg->lock);
    free(e);
}

/* Creates a LOADING entry for an assignment, opens it; on failure drops it again. */
static void add_and_open(struct node_shards *reg, const struct node_assignment *a)
{
    struct node_shard *e =
        add_loading(reg, &a->coll, a->shard, a->epoch, a->primary, &a->replicas, &a->in_sync);
    if (e != NULL) open_or_drop(reg, e);
}

/* Entries worked on by a pool of threads (start-up opens, shutdown snapshots). */
struct pool_job {
    struct node_shards *reg;
    struct node_shard **v;
    size_t n;
    atomic_size_t next;
    void (*fn)(struct pool_job *job, struct node_shard *e);
    struct timespec deadline; /* shutdown snapshots: none starts after it */
    atomic_int done, failed, skipped;
};

/* A pool thread: takes the next entry until none is left. */
static void *pool_worker(void *arg)
{
    struct pool_job *job = arg;
    for (size_t i; (i = atomic_fetch_add(&job->next, 1)) < job->n;)
        job->fn(job, job->v[i]);
    return NULL;
}

/* Runs job->fn over job->v on min(n, threads) threads (the caller's among them). */
static void pool_run(struct pool_job *job, int threads)
{
    if (threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus > 8 ? 8 : cpus > 0 ? (int)cpus : 1;
    }
    if ((size_t)threads > job->n) threads = (int)job->n;
    pthread_t *t = calloc(threads > 1 ? (size_t)threads - 1 : 1, sizeof *t);
    int started = 0;
    for (int i = 0; t != NULL && i + 1 < threads; i++, started++)
        if (pthread_create(&t[i], NULL, pool_worker, job) != 0) break;
    pool_worker(job);
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
}

/* Pool step of node_shards_load_local. */
static void load_one(struct pool_job *job, struct node_shard *e)
{
    open_or_drop(job->reg, e);
}

/* Takes e out of the table, waits for its borrowers, closes it; trashes its files if asked. */
static void remove_entry(struct node_shards *reg, struct node_shard *e, bool trash_files,
                         const char *why)
{
    pthread_mutex_lock(&reg->lock);
    table_remove(reg, e);
    while (e->refs > 0)
        pthread_cond_wait(&reg->cv, &reg->lock);
    pthread_mutex_unlock(&reg->lock);
    char err[REPLICA_ERR_MAX];
    if (replica_close(e->rep, err) != REPLICA_OK)
        log_error("closing replica failed", "collection=%s shard=%u error=%s", e->coll.name,
                  e->shard, log_quote(err));
    if (trash_files) {
        char name[256] = "";
        if (trash_move(reg->data_dir, e->dir, e->coll.name, e->shard, e->coll.created_at, false,
                       name, err) != 0)
            log_error("cannot move replica files to the trash; left in place",
                      "collection=%s shard=%u dir=%s error=%s", e->coll.name, e->shard,
                      log_quote(e->dir), log_quote(err));
        else
            log_info("closed replica and moved its files to the trash",
                     "collection=%s shard=%u "
                     "reason=%s trash=%s",
                     e->coll.name, e->shard, log_quote(why), log_quote(name));
    } else {
        log_info("closed replica", "collection=%s shard=%u", e->coll.name, e->shard);
    }
    free(e);
}

/* ------------------------------------------------------------ public */

/* Parses "coll/shard[,coll/shard...]" (NULL or "" = none) into a malloc'ed array. 0 or -1. */
static int parse_reset_list(const char *s, struct reset_ref **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (s == NULL || s[0] == '\0') return 0;
    size_t cap = 1;
    for (const char *p = s; *p != '\0'; p++)
        cap += *p == ',';
    struct reset_ref *v = calloc(cap, sizeof *v);
    if (v == NULL) return -1;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ','), *slash = strchr(p, '/');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (slash == NULL || slash >= p + len || (size_t)(slash - p) > NODE_NAME_MAX) goto bad;
        struct reset_ref *r = &v[(*n)++];
        memcpy(r->name, p, (size_t)(slash - p));
        r->name[slash - p] = '\0';
        char num[16];
        size_t nl = len - (size_t)(slash - p) - 1;
        if (nl == 0 || nl >= sizeof num || !cluster_name_ok(r->name, strlen(r->name))) goto bad;
        memcpy(num, slash + 1, nl);
        num[nl] = '\0';
        char *end;
        errno = 0;
        unsigned long sh = strtoul(num, &end, 10);
        if (num[0] < '0' || num[0] > '9' || *end != '\0' || errno != 0 || sh > UINT32_MAX) goto bad;
        r->shard = (uint32_t)sh;
        if (comma == NULL) break;
        p = comma + 1;
    }
    *out = v;
    return 0;
bad:
    free(v);
    *n = 0;
    return -1;
}

/* Checks a --reset-replica list. */
int node_shards_reset_list_check(const char *s)
{
    struct reset_ref *v;
    size_t n;
    if (parse_reset_list(s, &v, &n) != 0) return -1;
    free(v);
    return 0;
}

/* Creates the registry and the data folder. */
int node_shards_create(const struct node_shards_config *cfg, struct node_shards **out, char *err)
{
    struct node_shards *reg = calloc(1, sizeof *reg);
    if (reg == NULL) {
        snprintf(err, NODE_ERR_MAX, "out of memory");
        return -1;
    }
    pthread_mutex_init(&reg->lock, NULL);
    pthread_cond_init(&reg->cv, NULL);
    reg->data_dir = strdup(cfg->data_dir);
    reg->node_id = strdup(cfg->node_id);
    reg->fsync = cfg->fsync;
    reg->snapshot_wal_bytes = cfg->snapshot_wal_bytes;
    reg->snapshot_wal_records = cfg->snapshot_wal_records;
    reg->snapshot_age_ms = cfg->snapshot_age_ms;
    reg->load_threads = cfg->load_threads;
    reg->max_batch = cfg->max_batch;
    reg->max_payload = cfg->max_payload;
    reg->dir_created_at = cfg->dir_created_at;
    if (parse_reset_list(cfg->reset_replicas, &reg->resets, &reg->nresets) != 0) {
        snprintf(err, NODE_ERR_MAX, "--reset-replica: \"%.200s\" is not coll/shard[,coll/shard...]",
                 cfg->reset_replicas);
        goto fail;
    }
    if (reg->data_dir == NULL || reg->node_id == NULL) {
        snprintf(err, NODE_ERR_MAX, "out of memory");
        goto fail;
    }
    if (strlen(reg->data_dir) > PATH_MAX - 256) {
        snprintf(err, NODE_ERR_MAX, "data dir path is too long (%zu bytes)", strlen(reg->data_dir));
        goto fail;
    }
    if (dir_mkdirs(reg->data_dir) != 0) {
        snprintf(err, NODE_ERR_MAX, "cannot create data dir %s: %s", reg->data_dir,
                 strerror(errno));
        goto fail;
    }
    *out = reg;
    return 0;
fail:
    node_shards_destroy(reg);
    return -1;
}

/*
 * Reopens the replicas found on disk (role unknown until etcd answers): every
 * one is put in the table as LOADING first (ShardStatus lists it, calls on it
 * answer UNAVAILABLE), then they are opened in parallel by a pool of
 * load_threads threads.
 */
int node_shards_load_local(struct node_shards *reg)
{
    DIR *d = opendir(reg->data_dir);
    if (d == NULL) return 0;
    int opened = 0;
    struct pool_job job = {.reg = reg, .fn = load_one};
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !cluster_name_ok(de->d_name, strlen(de->d_name))) continue;
        char cdir[PATH_MAX];
        struct node_collection coll;
        if (!join(cdir, sizeof cdir, reg->data_dir, de->d_name) ||
            read_collection_file(cdir, &coll) != 0)
            continue;
        memcpy(coll.name, de->d_name, strlen(de->d_name) + 1); /* name_ok: <= 64 bytes */
        pthread_mutex_lock(&reg->lock);
        remember_collection(reg, &coll);
        pthread_mutex_unlock(&reg->lock);
        DIR *sd = opendir(cdir);
        if (sd == NULL) continue;
        struct dirent *se;
        while ((se = readdir(sd)) != NULL) {
            char *end;
            errno = 0;
            unsigned long sh = strtoul(se->d_name, &end, 10);
            if (se->d_name[0] < '0' || se->d_name[0] > '9' || *end != '\0' || errno != 0 ||
                sh >= coll.shards)
                continue;
            if (job.n == cap) {
                cap = cap ? cap * 2 : 64;
                struct node_shard **v = realloc(job.v, cap * sizeof *v);
                if (v == NULL) break;
                job.v = v;
            }
            struct node_shard *e = add_loading(reg, &coll, (uint32_t)sh, 0, "", NULL, NULL);
            if (e != NULL) job.v[job.n++] = e;
        }
        closedir(sd);
    }
    closedir(d);
    pool_run(&job, reg->load_threads);
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++)
        opened += reg->v[i]->rep != NULL;
    pthread_mutex_unlock(&reg->lock);
    free(job.v);
    if (opened > 0) log_info("reopened local replicas; roles wait for etcd", "replicas=%d", opened);
    return opened;
}

/* Makes the open set match the assignments (see node_shards.h). */
void node_shards_reconcile(struct node_shards *reg, const struct node_assignment *a, size_t n,
                           const struct node_collection *collections, size_t n_collections)
{
    /* 1. Collections and metadata of replicas that stay; pick the ones to drop. */
    struct node_shard **drop = NULL;
    char **drop_why = NULL;
    size_t ndrop = 0;
    pthread_mutex_lock(&reg->lock);
    struct node_collection *colls = malloc((n_collections + 1) * sizeof *colls);
    if (colls != NULL) {
        memcpy(colls, collections, n_collections * sizeof *colls);
        free(reg->colls);
        reg->colls = colls;
        reg->ncolls = n_collections;
    }
    drop = calloc(reg->n + 1, sizeof *drop);
    drop_why = calloc(reg->n + 1, sizeof *drop_why);
    for (size_t i = 0; i < reg->n && drop != NULL && drop_why != NULL; i++) {
        struct node_shard *e = reg->v[i];
        const struct node_assignment *as = NULL;
        for (size_t j = 0; j < n && as == NULL; j++)
            if (a[j].shard == e->shard && strcmp(a[j].coll.name, e->coll.name) == 0) as = &a[j];
        if (as != NULL && as->keep) continue;
        if (as == NULL || config_changed(&e->coll, &as->coll)) {
            drop_why[ndrop] = as == NULL ? "no longer assigned to this node"
                                         : "collection was recreated with another configuration";
            drop[ndrop++] = e;
            continue;
        }
        e->coll.ef_search = as->coll.ef_search;
        e->coll.created_at = as->coll.created_at;
        e->coll.shards = as->coll.shards;
        e->coll.replication_factor = as->coll.replication_factor;
        /* The node's own CAS (node_shards_adopt) may be ahead of the watch: never go back. */
        if (e->role != NODE_ROLE_UNKNOWN && as->epoch < e->epoch) continue;
        enum node_role role = role_of(reg, as->primary);
        if (role != e->role || as->epoch != e->epoch)
            log_info("replica role", "collection=%s shard=%u role=%s epoch=%llu primary=%s",
                     e->coll.name, e->shard,
                     role == NODE_ROLE_PRIMARY  ? "primary"
                     : role == NODE_ROLE_BACKUP ? "backup"
                                                : "unknown",
                     (unsigned long long)as->epoch, log_quote(as->primary));
        e->role = role;
        e->epoch = as->epoch;
        e->replicas = as->replicas;
        e->in_sync = as->in_sync;
        snprintf(e->primary, sizeof e->primary, "%s", as->primary);
    }
    pthread_mutex_unlock(&reg->lock);

    /* 2. Close what is no longer ours; its files go to the trash. */
    for (size_t i = 0; i < ndrop; i++) {
        char name[NODE_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", drop[i]->coll.name);
        remove_entry(reg, drop[i], true, drop_why[i]);
        bool still_used = false;
        pthread_mutex_lock(&reg->lock);
        for (size_t j = 0; j < reg->n; j++)
            if (strcmp(reg->v[j]->coll.name, name) == 0) still_used = true;
        pthread_mutex_unlock(&reg->lock);
        for (size_t j = 0; j < n; j++)
            if (strcmp(a[j].coll.name, name) == 0) still_used = true;
        if (!still_used) remove_collection_dir(reg, name);
    }
    free(drop);
    free(drop_why);

    /* 3. Open (or create) what is new. */
    for (size_t j = 0; j < n; j++) {
        if (a[j].keep) continue;
        pthread_mutex_lock(&reg->lock);
        bool have = find(reg, a[j].coll.name, a[j].shard) >= 0;
        pthread_mutex_unlock(&reg->lock);
        if (have) continue;
        if (write_collection_file(reg, &a[j].coll) != 0) continue;
        log_info("opening assigned replica", "collection=%s shard=%u epoch=%llu primary=%s",
                 a[j].coll.name, a[j].shard, (unsigned long long)a[j].epoch,
                 log_quote(a[j].primary));
        add_and_open(reg, &a[j]);
    }
}

/* True when ids lists id. */
bool node_ids_has(const struct node_ids *ids, const char *id)
{
    for (uint32_t i = 0; i < ids->n; i++)
        if (strcmp(ids->v[i], id) == 0) return true;
    return false;
}

/* Takes a newer shard entry the node learned itself (see node_shards.h). */
bool node_shards_adopt(struct node_shards *reg, const char *collection, uint32_t shard,
                       uint64_t epoch, const char *primary, const struct node_ids *replicas,
                       const struct node_ids *in_sync)
{
    pthread_mutex_lock(&reg->lock);
    long i = find(reg, collection, shard);
    bool applied = i >= 0 && epoch > reg->v[i]->epoch;
    if (applied) {
        struct node_shard *e = reg->v[i];
        e->epoch = epoch;
        snprintf(e->primary, sizeof e->primary, "%s", primary);
        e->role = role_of(reg, primary);
        if (replicas != NULL) e->replicas = *replicas;
        if (in_sync != NULL) e->in_sync = *in_sync;
        log_info("replica role", "collection=%s shard=%u role=%s epoch=%llu primary=%s source=self",
                 collection, shard, e->role == NODE_ROLE_PRIMARY ? "primary" : "backup",
                 (unsigned long long)epoch, log_quote(primary));
    }
    pthread_mutex_unlock(&reg->lock);
    return applied;
}

/* Replaces the registered node list, keeping gone nodes' last addresses. */
void node_shards_set_nodes(struct node_shards *reg, char *const *ids, char *const *addrs, size_t n)
{
    pthread_mutex_lock(&reg->lock);
    for (size_t k = 0; k < reg->nnodes; k++)
        reg->nodes[k].registered = false;
    for (size_t i = 0; i < n; i++) {
        struct known_node *kn = NULL;
        for (size_t k = 0; k < reg->nnodes && kn == NULL; k++)
            if (strcmp(reg->nodes[k].id, ids[i]) == 0) kn = &reg->nodes[k];
        if (kn == NULL) {
            struct known_node *v = realloc(reg->nodes, (reg->nnodes + 1) * sizeof *v);
            if (v == NULL) continue;
            reg->nodes = v;
            kn = &reg->nodes[reg->nnodes++];
            snprintf(kn->id, sizeof kn->id, "%s", ids[i]);
        }
        snprintf(kn->addr, sizeof kn->addr, "%s", addrs[i]);
        kn->registered = true;
    }
    pthread_mutex_unlock(&reg->lock);
}

/* Address of a node (see node_shards.h). */
int node_shards_node_addr(struct node_shards *reg, const char *id, char *addr, size_t size)
{
    int rc = -1;
    pthread_mutex_lock(&reg->lock);
    for (size_t k = 0; k < reg->nnodes && rc < 0; k++)
        if (strcmp(reg->nodes[k].id, id) == 0) {
            snprintf(addr, size, "%s", reg->nodes[k].addr);
            rc = reg->nodes[k].registered ? 1 : 0;
        }
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

/* Cuts a replica's tail after after_lsn (see node_shards.h). */
int node_shards_truncate(struct node_shards *reg, const char *collection, uint32_t shard,
                         uint64_t after_lsn, uint64_t *cut, char *err, size_t errlen)
{
    *cut = 0;
    pthread_mutex_lock(&reg->lock);
    long i = find(reg, collection, shard);
    struct node_shard *e = i >= 0 ? reg->v[i] : NULL;
    if (e == NULL || e->state != NODE_STATE_READY || e->rep == NULL || e->truncating) {
        pthread_mutex_unlock(&reg->lock);
        snprintf(err, errlen, "replica %s/%u is not READY", collection, shard);
        return -1;
    }
    /* Our own borrow keeps a concurrent removal waiting until the replica is back. */
    e->refs++;
    e->truncating = true;
    pthread_mutex_unlock(&reg->lock);
    struct replica_stat st;
    replica_status(e->rep, &st);
    pthread_mutex_lock(&reg->lock);
    if (st.lsn <= after_lsn) {
        /* Nothing after the point (e.g. a retried TRUNCATE whose reply was lost): no reopen. */
        e->truncating = false;
        if (--e->refs == 0) pthread_cond_broadcast(&reg->cv);
        pthread_mutex_unlock(&reg->lock);
        return 0;
    }
    if (st.snapshot_lsn > after_lsn) {
        e->truncating = false;
        if (--e->refs == 0) pthread_cond_broadcast(&reg->cv);
        pthread_mutex_unlock(&reg->lock);
        snprintf(err, errlen,
                 "the snapshot at lsn %llu holds records after the truncation point %llu",
                 (unsigned long long)st.snapshot_lsn, (unsigned long long)after_lsn);
        return -1;
    }
    e->state = NODE_STATE_LOADING;
    struct replica *rep = e->rep;
    e->rep = NULL;
    while (e->refs > 1)
        pthread_cond_wait(&reg->cv, &reg->lock);
    pthread_mutex_unlock(&reg->lock);

    char rerr[REPLICA_ERR_MAX], werr[WAL_ERR_MAX];
    int rc = 0;
    if (replica_close(rep, rerr) != REPLICA_OK)
        log_error("closing replica for truncation failed", "collection=%s shard=%u error=%s",
                  collection, shard, log_quote(rerr));
    struct wal_options wo;
    wal_options_init(&wo);
    wo.fsync = (enum wal_fsync)reg->fsync;
    struct wal_recovery wrec;
    struct wal *w = NULL;
    if (wal_open(e->dir, &wo, &w, &wrec, werr) != WAL_OK ||
        wal_truncate_after(w, after_lsn, cut, werr) != WAL_OK) {
        snprintf(err, errlen, "cutting the WAL after lsn %llu: %s", (unsigned long long)after_lsn,
                 werr);
        rc = -1;
    }
    wal_close(w, NULL);
    if (open_entry(reg, e) != 0 || e->rep == NULL) {
        if (rc == 0) snprintf(err, errlen, "reopening the replica after the truncation failed");
        rc = -1;
    }
    pthread_mutex_lock(&reg->lock);
    e->truncating = false;
    if (rc == 0) e->truncations++;
    if (e->rep == NULL && e->state == NODE_STATE_LOADING) {
        e->state = NODE_STATE_DAMAGED;
        snprintf(e->reason, sizeof e->reason, "truncation after lsn %llu failed: %s",
                 (unsigned long long)after_lsn, err);
    }
    if (--e->refs == 0) pthread_cond_broadcast(&reg->cv);
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

/* Fills a view of e. Lock held. */
static void fill_view(const struct node_shard *e, struct node_shard_view *v)
{
    v->coll = e->coll;
    v->shard = e->shard;
    v->epoch = e->epoch;
    v->role = e->role;
    v->state = e->state;
    snprintf(v->primary, sizeof v->primary, "%s", e->primary);
    v->replicas = e->replicas;
    v->in_sync = e->in_sync;
    v->truncating = e->truncating;
    v->truncations = e->truncations;
    v->rep = e->state == NODE_STATE_RECOVERING ? NULL : e->rep;
    snprintf(v->reason, sizeof v->reason, "%s", e->state == NODE_STATE_DAMAGED ? e->reason : "");
}

/* Borrows an entry. */
struct node_shard *node_shards_acquire(struct node_shards *reg, const char *collection,
                                       uint32_t shard, struct node_shard_view *view)
{
    pthread_mutex_lock(&reg->lock);
    long i = find(reg, collection, shard);
    struct node_shard *e = NULL;
    if (i >= 0) {
        e = reg->v[i];
        e->refs++;
        fill_view(e, view);
    }
    pthread_mutex_unlock(&reg->lock);
    return e;
}

/* Returns a borrowed entry. */
void node_shards_release(struct node_shards *reg, struct node_shard *e)
{
    if (e == NULL) return;
    pthread_mutex_lock(&reg->lock);
    if (--e->refs <= 1) pthread_cond_broadcast(&reg->cv); /* 1: node_shards_install waits */
    pthread_mutex_unlock(&reg->lock);
}

/* Copies a known collection config. */
bool node_shards_collection(struct node_shards *reg, const char *name, struct node_collection *out)
{
    bool found = false;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->ncolls && !found; i++)
        if (strcmp(reg->colls[i].name, name) == 0) {
            *out = reg->colls[i];
            found = true;
        }
    for (size_t i = 0; i < reg->n && !found; i++)
        if (strcmp(reg->v[i]->coll.name, name) == 0) {
            *out = reg->v[i]->coll;
            found = true;
        }
    pthread_mutex_unlock(&reg->lock);
    return found;
}

/* Orders views by (collection, shard). */
static int view_cmp(const void *pa, const void *pb)
{
    const struct node_shard_view *a = pa, *b = pb;
    int c = strcmp(a->coll.name, b->coll.name);
    if (c != 0) return c;
    return a->shard < b->shard ? -1 : a->shard > b->shard;
}

/* Lists views of the hosted replicas matching the filter. */
long node_shards_list(struct node_shards *reg, const char *collection, const uint32_t *shards,
                      size_t n_shards, struct node_shard_view **out)
{
    pthread_mutex_lock(&reg->lock);
    struct node_shard_view *v = calloc(reg->n + 1, sizeof *v);
    if (v == NULL) {
        pthread_mutex_unlock(&reg->lock);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < reg->n; i++) {
        const struct node_shard *e = reg->v[i];
        if (collection != NULL && collection[0] != '\0' && strcmp(e->coll.name, collection) != 0)
            continue;
        bool want = shards == NULL || n_shards == 0;
        for (size_t j = 0; j < n_shards && !want; j++)
            want = shards[j] == e->shard;
        if (!want) continue;
        fill_view(e, &v[k++]);
    }
    pthread_mutex_unlock(&reg->lock);
    qsort(v, k, sizeof *v, view_cmp);
    *out = v;
    return (long)k;
}

/* Number of hosted replicas. */
uint32_t node_shards_count(struct node_shards *reg)
{
    pthread_mutex_lock(&reg->lock);
    uint32_t n = (uint32_t)reg->n;
    pthread_mutex_unlock(&reg->lock);
    return n;
}

/* True once CLOCK_MONOTONIC has passed t. */
static bool past(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* Pool step of node_shards_snapshot_all: one replica, unless time is up or nothing is new. */
static void snapshot_one(struct pool_job *job, struct node_shard *e)
{
    struct replica_stat st;
    replica_status(e->rep, &st);
    if (st.lsn == st.snapshot_lsn || st.failed) return;
    if (past(&job->deadline)) {
        atomic_fetch_add(&job->skipped, 1);
        log_warn("no snapshot on shutdown: the time allowed is used up",
                 "collection=%s shard=%u lsn=%llu snapshot_lsn=%llu", e->coll.name, e->shard,
                 (unsigned long long)st.lsn, (unsigned long long)st.snapshot_lsn);
        return;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[REPLICA_ERR_MAX];
    bool taken = false;
    int rc = replica_snapshot(e->rep, &taken, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (rc != REPLICA_OK) {
        atomic_fetch_add(&job->failed, 1);
        log_error("snapshot on shutdown failed", "collection=%s shard=%u error=%s", e->coll.name,
                  e->shard, log_quote(err));
    } else if (taken) {
        atomic_fetch_add(&job->done, 1);
        log_info("snapshot on shutdown", "collection=%s shard=%u lsn=%llu seconds=%.3f",
                 e->coll.name, e->shard, (unsigned long long)st.lsn, secs);
    }
}

/* Snapshots every open replica with unsnapshotted writes (see node_shards.h). */
void node_shards_snapshot_all(struct node_shards *reg, long timeout_ms)
{
    struct pool_job job = {.reg = reg, .fn = snapshot_one};
    job.deadline = clock_mono_after_ms(timeout_ms);
    pthread_mutex_lock(&reg->lock);
    job.v = calloc(reg->n + 1, sizeof *job.v);
    for (size_t i = 0; job.v != NULL && i < reg->n; i++)
        if (reg->v[i]->rep != NULL && reg->v[i]->state == NODE_STATE_READY) {
            reg->v[i]->refs++;
            job.v[job.n++] = reg->v[i];
        }
    pthread_mutex_unlock(&reg->lock);
    pool_run(&job, reg->load_threads);
    for (size_t i = 0; i < job.n; i++)
        node_shards_release(reg, job.v[i]);
    free(job.v);
    log_info("shutdown snapshots", "taken=%d failed=%d skipped=%d", atomic_load(&job.done),
             atomic_load(&job.failed), atomic_load(&job.skipped));
}

/* Closes every replica and frees the registry. */
void node_shards_destroy(struct node_shards *reg)
{
    if (reg == NULL) return;
    for (;;) {
        pthread_mutex_lock(&reg->lock);
        struct node_shard *e = reg->n > 0 ? reg->v[reg->n - 1] : NULL;
        pthread_mutex_unlock(&reg->lock);
        if (e == NULL) break;
        remove_entry(reg, e, false, NULL);
    }
    free(reg->v);
    free(reg->resets);
    free(reg->colls);
    free(reg->nodes);
    free(reg->data_dir);
    free(reg->node_id);
    pthread_cond_destroy(&reg->cv);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

/* ------------------------------------------------------------ transfers (transfer.h) */

/* Marks (collection, shard) RECOVERING for a transfer into it. */
int node_shards_begin_recovery(struct node_shards *reg, const char *collection, uint32_t shard,
                               char *err)
{
    int rc = -1;
    pthread_mutex_lock(&reg->lock);
    long i = find(reg, collection, shard);
    struct node_shard *e = i >= 0 ? reg->v[i] : NULL;
    if (e == NULL)
        snprintf(err, NODE_ERR_MAX, "shard %u of collection \"%s\" is not hosted on this node",
                 shard, collection);
    else if (e->state != NODE_STATE_READY && e->state != NODE_STATE_DAMAGED)
        snprintf(err, NODE_ERR_MAX, "replica %s/%u is %s", collection, shard,
                 e->state == NODE_STATE_LOADING ? "still loading" : "already recovering");
    else {
        e->recovering_from = e->state;
        e->state = NODE_STATE_RECOVERING;
        rc = 0;
    }
    pthread_mutex_unlock(&reg->lock);
    if (rc == 0)
        log_info("replica is RECOVERING: a full transfer into it started", "collection=%s shard=%u",
                 collection, shard);
    return rc;
}

/* Returns a RECOVERING entry to the state it had before (a failed transfer). */
void node_shards_end_recovery(struct node_shards *reg, const char *collection, uint32_t shard)
{
    pthread_mutex_lock(&reg->lock);
    long i = find(reg, collection, shard);
    if (i >= 0 && reg->v[i]->state == NODE_STATE_RECOVERING)
        reg->v[i]->state = reg->v[i]->recovering_from;
    pthread_mutex_unlock(&reg->lock);
}

/*
 * Swaps the staged folder in for a RECOVERING entry (see node_shards.h). The
 * entry is held by one extra borrow throughout, so a concurrent removal
 * (reconcile) waits until the swap is over; the replica is hidden from
 * borrowers while RECOVERING, so once the other borrows are given back
 * nobody uses the old replica.
 */
int node_shards_install(struct node_shards *reg, const char *collection, uint32_t shard,
                        const char *staged_dir, char *err)
{
    pthread_mutex_lock(&reg->lock);
    long i = find(reg, collection, shard);
    struct node_shard *e = i >= 0 ? reg->v[i] : NULL;
    if (e == NULL || e->state != NODE_STATE_RECOVERING) {
        pthread_mutex_unlock(&reg->lock);
        snprintf(err, NODE_ERR_MAX, "replica %s/%u is %s", collection, shard,
                 e == NULL ? "no longer hosted on this node" : "not RECOVERING");
        return -1;
    }
    e->refs++;
    for (;;) {
        i = find(reg, collection, shard);
        if (e->refs <= 1 || i < 0 || reg->v[i] != e) break;
        pthread_cond_wait(&reg->cv, &reg->lock);
    }
    if (i < 0 || reg->v[i] != e) {
        if (--e->refs == 0) pthread_cond_broadcast(&reg->cv);
        pthread_mutex_unlock(&reg->lock);
        snprintf(err, NODE_ERR_MAX, "replica %s/%u was removed from this node during the transfer",
                 collection, shard);
        return -1;
    }
    struct replica *old = e->rep;
    e->rep = NULL;
    pthread_mutex_unlock(&reg->lock);

    char rerr[REPLICA_ERR_MAX], why[NODE_ERR_MAX] = "";
    char name[256] = "";
    if (replica_close(old, rerr) != REPLICA_OK)
        log_warn("closing the replica replaced by a transfer failed",
                 "collection=%s shard=%u error=%s", collection, shard, log_quote(rerr));
    if (trash_move(reg->data_dir, e->dir, collection, shard, e->coll.created_at, false, name,
                   rerr) != 0)
        snprintf(why, sizeof why, "moving the old folder to the trash: %.400s", rerr);
    else if (rename(staged_dir, e->dir) != 0)
        snprintf(why, sizeof why, "rename %.180s -> %.180s: %.60s", staged_dir, e->dir,
                 strerror(errno));
    else {
        char parent[PATH_MAX];
        if (join(parent, sizeof parent, reg->data_dir, collection)) dir_fsync(parent, NULL, 0);
        if (open_files(reg, e, false) != 0)
            snprintf(why, sizeof why, "the transferred copy does not open (see the log)");
    }
    int rc = 0;
    pthread_mutex_lock(&reg->lock);
    if (why[0] != '\0') {
        snprintf(e->reason, sizeof e->reason, "installing a transferred copy failed: %.450s", why);
        e->state = NODE_STATE_DAMAGED;
        snprintf(err, NODE_ERR_MAX, "%s", e->reason);
        rc = -1;
    } else if (e->state == NODE_STATE_DAMAGED) {
        snprintf(err, NODE_ERR_MAX, "%s", e->reason);
        rc = -1;
    }
    if (--e->refs == 0) pthread_cond_broadcast(&reg->cv);
    pthread_mutex_unlock(&reg->lock);
    if (rc == 0)
        log_info("installed a transferred copy of the replica; the old folder is in the trash",
                 "collection=%s shard=%u trash=%s", collection, shard, log_quote(name));
    else
        log_error("cannot install a transferred copy", "collection=%s shard=%u error=%s",
                  collection, shard, log_quote(err));
    return rc;
}
