/*
 * transfer.c — full copies of a replica between nodes (transfer.h;
 * docs/replication.md §6): the TransferShard sender and the receiver's jobs.
 *
 * Sender (transfer_serve, on an rpc worker thread): borrows the replica only
 * to pin it (replica_pin: the newest snapshot's descriptor and a WAL
 * iterator after it, both independent of the replica afterwards), gives it
 * back, and streams from the pin: SnapshotChunk of at most 1 MiB with a
 * CRC-32C, then WalRecord {lsn, epoch, batch, crc32c} up to the pinned LSN,
 * then TransferEnd. The rate limit is a token bucket of one chunk
 * (TRANSFER_CHUNK) refilled at max_bytes_per_sec; the wait is sliced so a
 * server shutdown stops it within 100 ms.
 *
 * Receiver: one job per (collection, shard), kept in `jobs` for ever (its
 * progress and last error outlive it). A job runs on a detached thread: it
 * marks the entry RECOVERING (node_shards_begin_recovery), pulls the stream
 * into <data-dir>/<collection>/<shard>.incoming/ (the snapshot as
 * snapshot-<lsn>.vsx, the records into a fresh WAL through wal_append with
 * each record's own epoch), checks every CRC, the order of chunks and LSNs
 * and the final `end`, fsyncs the files and both folders, and hands the
 * folder to node_shards_install. A failure removes the folder, returns the
 * entry to its previous state and keeps the reason.
 *
 * Threading: `lock` protects `jobs`, every job's fields, `active` and
 * `stopping`; `cv` signals a job's end. transfers_destroy sets stopping,
 * cancels the open streams (rpc_client_stream_cancel) and waits until
 * `active` is 0. A job never holds `lock` across I/O.
 */
#define _GNU_SOURCE
#include "node/replication/transfer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util/crc32c.h"
#include "common/util/log.h"
#include "node/node_service_internal.h"
#include "node/storage/dir.h"
#include "node/storage/replica.h"
#include "node/storage/trash.h"

#define TRANSFER_CHUNK   (1u << 20) /* bytes of snapshot per SnapshotChunk (the wire's limit) */
#define STAGING_SUFFIX   ".incoming"
#define TRANSFER_METHOD  "/vecshard.v1.ShardNode/TransferShard"
#define TRANSFER_ERR_MAX 256

/* One receiver job and its lasting progress. */
struct transfer_job {
    char collection[NODE_NAME_MAX + 1];
    uint32_t shard;
    uint64_t epoch;
    char primary_id[NODE_ID_MAX + 1];
    char primary_addr[256];
    bool running;
    uint64_t bytes_done, bytes_total, completed;
    char last_error[TRANSFER_ERR_MAX];
    struct rpc_client_stream *stream; /* while pulling; cancelled by transfers_destroy */
    struct transfers *t;
};

struct transfers {
    struct node_shards *reg;
    struct rpc_client *rpc;
    char *data_dir, *node_id;
    uint64_t max_bytes_per_sec;

    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct transfer_job **jobs;
    size_t njobs, cap;
    int active;    /* jobs running */
    bool stopping; /* transfers_destroy began: no new job, running ones stop */
    /* transfers_stats (atomics, no lock) */
    _Atomic uint32_t sending;
    _Atomic uint64_t received_bytes, sent_bytes, received_ok, received_failed, sent_ok, sent_failed;
};

/* ------------------------------------------------------------ staging folders */

/* Writes <data-dir>/<collection>/<shard>.incoming into buf; false if too long. */
static bool staging_path(const struct transfers *t, const char *collection, uint32_t shard,
                         char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s/%u" STAGING_SUFFIX, t->data_dir, collection, shard);
    return n > 0 && (size_t)n < size;
}

/* Removes a staging folder and what a transfer put into it (a missing one is fine). */
static void staging_remove(const char *dir)
{
    char err[REPLICA_ERR_MAX];
    if (replica_remove_files(dir, err) != REPLICA_OK)
        log_error("cannot remove a transfer's staging folder", "dir=%s error=%s", log_quote(dir),
                  log_quote(err));
}

/* True when name ends with ".incoming" after a shard number. */
static bool is_staging_name(const char *name)
{
    size_t n = strlen(name), s = strlen(STAGING_SUFFIX);
    if (n <= s || strcmp(name + n - s, STAGING_SUFFIX) != 0) return false;
    for (size_t i = 0; i < n - s; i++)
        if (name[i] < '0' || name[i] > '9') return false;
    return true;
}

/* Removes every <data-dir>/<collection>/<shard>.incoming left by a crash. */
static void remove_stale_staging(const char *data_dir)
{
    DIR *d = opendir(data_dir);
    if (d == NULL) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, TRASH_DIR) == 0) continue;
        char cdir[PATH_MAX];
        if (snprintf(cdir, sizeof cdir, "%s/%s", data_dir, de->d_name) >= (int)sizeof cdir)
            continue;
        DIR *cd = opendir(cdir);
        if (cd == NULL) continue;
        struct dirent *se;
        while ((se = readdir(cd)) != NULL) {
            char path[PATH_MAX];
            if (!is_staging_name(se->d_name) ||
                snprintf(path, sizeof path, "%s/%s", cdir, se->d_name) >= (int)sizeof path)
                continue;
            log_warn("removing the staging folder of a transfer interrupted by a restart", "dir=%s",
                     log_quote(path));
            staging_remove(path);
        }
        closedir(cd);
    }
    closedir(d);
}

/* ------------------------------------------------------------ create / destroy */

/* Creates the machinery and removes stale staging folders. */
int transfers_create(const struct transfer_config *cfg, struct transfers **out, char *err,
                     size_t errlen)
{
    struct transfers *t = calloc(1, sizeof *t);
    if (t == NULL || (t->data_dir = strdup(cfg->data_dir)) == NULL ||
        (t->node_id = strdup(cfg->node_id)) == NULL) {
        if (t != NULL) free(t->data_dir);
        free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->reg = cfg->reg;
    t->rpc = cfg->rpc;
    t->max_bytes_per_sec = cfg->max_bytes_per_sec;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cv, NULL);
    remove_stale_staging(t->data_dir);
    *out = t;
    return 0;
}

/* Stops the jobs (cancelling their streams), waits for them, frees t. */
void transfers_destroy(struct transfers *t)
{
    if (t == NULL) return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    for (size_t i = 0; i < t->njobs; i++)
        if (t->jobs[i]->stream != NULL) rpc_client_stream_cancel(t->jobs[i]->stream);
    while (t->active > 0)
        pthread_cond_wait(&t->cv, &t->lock);
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < t->njobs; i++)
        free(t->jobs[i]);
    free(t->jobs);
    free(t->data_dir);
    free(t->node_id);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ------------------------------------------------------------ receiver */

/* What a job has written so far into its staging folder. */
struct pull {
    char dir[PATH_MAX];
    int snap_fd;         /* snapshot-<lsn>.vsx being written; -1 before the first chunk */
    uint64_t snap_lsn;   /* from the first chunk */
    uint64_t snap_total; /* its total_size */
    uint64_t snap_done;  /* bytes written */
    struct wal *wal;     /* opened at the first record */
    uint64_t last_lsn, last_epoch, records;
    bool ended;
};

/* Fails the pull with a message; returns -1. */
static int pull_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pull_fail(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, TRANSFER_ERR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

/* Adds n bytes to the job's progress (total grows with the records, unknown in advance). */
static void job_progress(struct transfer_job *j, uint64_t n, uint64_t total)
{
    atomic_fetch_add(&j->t->received_bytes, n);
    pthread_mutex_lock(&j->t->lock);
    j->bytes_done += n;
    if (total > j->bytes_total) j->bytes_total = total;
    if (j->bytes_done > j->bytes_total) j->bytes_total = j->bytes_done;
    pthread_mutex_unlock(&j->t->lock);
}

/* Writes one snapshot chunk into the staging folder after checking it. 0 or -1. */
static int pull_snapshot(struct transfer_job *j, struct pull *p,
                         const Vecshard__V1__SnapshotChunk *c, char *err)
{
    if (p->wal != NULL || p->ended)
        return pull_fail(err, "snapshot chunk at offset %" PRIu64 " after the WAL records",
                         c->offset);
    if (c->data.len > TRANSFER_CHUNK)
        return pull_fail(err, "snapshot chunk of %zu bytes (limit %u)", c->data.len,
                         TRANSFER_CHUNK);
    if (crc32c(c->data.data, c->data.len) != c->crc32c)
        return pull_fail(err, "snapshot chunk at offset %" PRIu64 ": CRC-32C mismatch", c->offset);
    if (p->snap_fd < 0) {
        char path[PATH_MAX];
        if (c->lsn == 0 || c->offset != 0 || !snapshot_path(p->dir, c->lsn, path, sizeof path))
            return pull_fail(err, "first snapshot chunk: lsn %" PRIu64 " offset %" PRIu64, c->lsn,
                             c->offset);
        p->snap_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (p->snap_fd < 0) return pull_fail(err, "create %s: %s", path, strerror(errno));
        p->snap_lsn = c->lsn;
        p->snap_total = c->total_size;
        p->last_lsn = c->lsn;
    }
    if (c->lsn != p->snap_lsn || c->offset != p->snap_done || c->total_size != p->snap_total ||
        p->snap_done + c->data.len > p->snap_total)
        return pull_fail(
            err,
            "snapshot chunk out of order: lsn %" PRIu64 " offset %" PRIu64 " total %" PRIu64
            ", expected lsn %" PRIu64 " offset %" PRIu64 " total %" PRIu64,
            c->lsn, c->offset, c->total_size, p->snap_lsn, p->snap_done, p->snap_total);
    for (size_t off = 0; off < c->data.len;) {
        ssize_t w = write(p->snap_fd, c->data.data + off, c->data.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return pull_fail(err, "writing the snapshot: %s", strerror(errno));
        off += (size_t)w;
    }
    p->snap_done += c->data.len;
    job_progress(j, c->data.len, p->snap_total);
    return 0;
}

/* Appends one record to the staging WAL after checking it. 0 or -1. */
static int pull_record(struct transfer_job *j, struct pull *p, const Vecshard__V1__WalRecord *r,
                       char *err)
{
    char werr[WAL_ERR_MAX];
    if (p->ended) return pull_fail(err, "record lsn %" PRIu64 " after the end", r->lsn);
    if (p->snap_fd >= 0 && p->snap_done != p->snap_total)
        return pull_fail(err, "record lsn %" PRIu64 " before the snapshot was complete", r->lsn);
    if (r->lsn != p->last_lsn + 1)
        return pull_fail(err, "record lsn %" PRIu64 " does not follow lsn %" PRIu64, r->lsn,
                         p->last_lsn);
    if (r->batch.len > WAL_MAX_PAYLOAD || crc32c(r->batch.data, r->batch.len) != r->crc32c)
        return pull_fail(err, "record lsn %" PRIu64 ": CRC-32C mismatch", r->lsn);
    if (p->wal == NULL) {
        struct wal_options wo;
        struct wal_recovery rec;
        wal_options_init(&wo);
        wo.fsync = WAL_FSYNC_NONE; /* one fsync at the end (wal_close) covers the whole copy */
        if (wal_open(p->dir, &wo, &p->wal, &rec, werr) != WAL_OK)
            return pull_fail(err, "opening the staging WAL: %s", werr);
    }
    if (wal_append(p->wal, r->lsn, r->epoch, r->batch.data, (uint32_t)r->batch.len, werr) != WAL_OK)
        return pull_fail(err, "appending record lsn %" PRIu64 ": %s", r->lsn, werr);
    p->last_lsn = r->lsn;
    p->last_epoch = r->epoch;
    p->records++;
    job_progress(j, r->batch.len, 0);
    return 0;
}

/* Checks the stream's end message. 0 or -1. */
static int pull_end(struct pull *p, const Vecshard__V1__TransferEnd *e, char *err)
{
    if (p->ended) return pull_fail(err, "a second end message");
    if (e->last_lsn != p->last_lsn || e->records != p->records || e->snapshot_bytes != p->snap_done)
        return pull_fail(err,
                         "end says last_lsn %" PRIu64 ", %" PRIu64 " records, %" PRIu64
                         " snapshot bytes; received last_lsn %" PRIu64 ", %" PRIu64
                         " records, %" PRIu64 " bytes",
                         e->last_lsn, e->records, e->snapshot_bytes, p->last_lsn, p->records,
                         p->snap_done);
    if (p->snap_done != p->snap_total)
        return pull_fail(err, "snapshot incomplete: %" PRIu64 " of %" PRIu64 " bytes", p->snap_done,
                         p->snap_total);
    p->ended = true;
    return 0;
}

/* Makes the staging folder durable: snapshot file, WAL, the folder and its parent. 0 or -1. */
static int pull_sync(struct pull *p, char *err)
{
    char werr[WAL_ERR_MAX];
    if (p->snap_fd >= 0) {
        int rc = fsync(p->snap_fd);
        close(p->snap_fd);
        p->snap_fd = -1;
        if (rc != 0) return pull_fail(err, "fsync of the snapshot: %s", strerror(errno));
    }
    int rc = wal_close(p->wal, werr);
    p->wal = NULL;
    if (rc != WAL_OK) return pull_fail(err, "closing the staging WAL: %s", werr);
    char derr[TRANSFER_ERR_MAX], parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", p->dir);
    char *slash = strrchr(parent, '/');
    if (slash != NULL) *slash = '\0';
    if (dir_fsync(p->dir, derr, sizeof derr) != 0 || dir_fsync(parent, derr, sizeof derr) != 0)
        return pull_fail(err, "%s", derr);
    return 0;
}

/* Pulls the whole stream into p->dir. 0 or -1 with err. */
static int pull_stream(struct transfer_job *j, struct pull *p, char *err)
{
    struct transfers *t = j->t;
    struct rpc_channel *ch = rpc_client_channel(t->rpc, j->primary_addr);
    if (ch == NULL) return pull_fail(err, "out of memory");
    Vecshard__V1__TransferShardRequest req = VECSHARD__V1__TRANSFER_SHARD_REQUEST__INIT;
    req.collection = j->collection;
    req.shard = j->shard;
    req.from_lsn = 0;
    req.epoch = j->epoch;
    req.node_id = t->node_id;
    struct rpc_client_stream *s = rpc_client_stream_open(
        ch, TRANSFER_METHOD, &req.base, &vecshard__v1__transfer_chunk__descriptor, NULL);
    if (s == NULL) return pull_fail(err, "out of memory");
    pthread_mutex_lock(&t->lock);
    j->stream = s;
    if (t->stopping) rpc_client_stream_cancel(s);
    pthread_mutex_unlock(&t->lock);

    int rc = 0;
    ProtobufCMessage *m;
    while (rc == 0 && rpc_client_stream_next(s, &m) == 1) {
        Vecshard__V1__TransferChunk *c = (Vecshard__V1__TransferChunk *)m;
        switch (c->body_case) {
        case VECSHARD__V1__TRANSFER_CHUNK__BODY_SNAPSHOT:
            rc = pull_snapshot(j, p, c->snapshot, err);
            break;
        case VECSHARD__V1__TRANSFER_CHUNK__BODY_RECORD:
            rc = pull_record(j, p, c->record, err);
            break;
        case VECSHARD__V1__TRANSFER_CHUNK__BODY_END:
            rc = pull_end(p, c->end, err);
            break;
        default:
            rc = pull_fail(err, "a stream message with no body");
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    pthread_mutex_lock(&t->lock);
    j->stream = NULL;
    bool stopping = t->stopping;
    pthread_mutex_unlock(&t->lock);
    struct rpc_status st;
    grpc_status_code code = rpc_client_stream_close(s, &st);
    if (rc != 0) return rc;
    if (stopping) return pull_fail(err, "the node is shutting down");
    if (code != GRPC_STATUS_OK)
        return pull_fail(err, "TransferShard from %s (%s): %s: %s", j->primary_id, j->primary_addr,
                         rpc_status_name(code), st.details);
    if (!p->ended) return pull_fail(err, "the stream ended without its end message");
    return 0;
}

/* Seconds since t0 (CLOCK_MONOTONIC). */
static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* A job's thread: recover, pull, install; on failure clean up and keep the reason. */
static void *job_main(void *arg)
{
    struct transfer_job *j = arg;
    struct transfers *t = j->t;
    char err[TRANSFER_ERR_MAX] = "", nerr[NODE_ERR_MAX];
    struct pull p = {.snap_fd = -1};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool recovering = false, installed = false;
    double stream_secs = 0; /* until the copy is durable in the staging folder */
    if (!staging_path(t, j->collection, j->shard, p.dir, sizeof p.dir)) {
        pull_fail(err, "staging path too long");
        goto done;
    }
    if (node_shards_begin_recovery(t->reg, j->collection, j->shard, nerr) != 0) {
        pull_fail(err, "%s", nerr);
        goto done;
    }
    recovering = true;
    log_info("transfer started", "collection=%s shard=%u from=%s addr=%s epoch=%" PRIu64,
             j->collection, j->shard, log_quote(j->primary_id), log_quote(j->primary_addr),
             j->epoch);
    staging_remove(p.dir);
    if (dir_mkdirs(p.dir) != 0) {
        pull_fail(err, "mkdir %s: %s", p.dir, strerror(errno));
        goto done;
    }
    if (pull_stream(j, &p, err) != 0 || pull_sync(&p, err) != 0) goto done;
    stream_secs = seconds_since(&t0);
    if (node_shards_install(t->reg, j->collection, j->shard, p.dir, nerr) != 0) {
        pull_fail(err, "%s", nerr);
        goto done;
    }
    installed = true;
done:
    if (p.snap_fd >= 0) close(p.snap_fd);
    if (p.wal != NULL) wal_close(p.wal, NULL);
    double secs = seconds_since(&t0);
    if (!installed) {
        if (recovering) {
            staging_remove(p.dir);
            node_shards_end_recovery(t->reg, j->collection, j->shard);
        }
        log_error("transfer failed; the replica keeps its previous state",
                  "collection=%s shard=%u from=%s error=%s seconds=%.3f", j->collection, j->shard,
                  log_quote(j->primary_id), log_quote(err), secs);
    } else {
        pthread_mutex_lock(&t->lock);
        uint64_t bytes = j->bytes_done;
        pthread_mutex_unlock(&t->lock);
        log_info("transfer installed",
                 "collection=%s shard=%u from=%s last_lsn=%" PRIu64 " snapshot_lsn=%" PRIu64
                 " records=%" PRIu64 " bytes=%" PRIu64 " stream_seconds=%.3f stream_mb_per_s=%.1f"
                 " seconds=%.3f",
                 j->collection, j->shard, log_quote(j->primary_id), p.last_lsn, p.snap_lsn,
                 p.records, bytes, stream_secs,
                 stream_secs > 0 ? (double)bytes / stream_secs / 1e6 : 0.0, secs);
    }
    pthread_mutex_lock(&t->lock);
    j->running = false;
    if (installed) j->completed++;
    atomic_fetch_add(installed ? &t->received_ok : &t->received_failed, 1);
    snprintf(j->last_error, sizeof j->last_error, "%s", installed ? "" : err);
    t->active--;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* The job record of (collection, shard), created if asked; NULL if absent or on ENOMEM. Lock held.
 */
static struct transfer_job *job_find(struct transfers *t, const char *collection, uint32_t shard,
                                     bool create)
{
    for (size_t i = 0; i < t->njobs; i++)
        if (t->jobs[i]->shard == shard && strcmp(t->jobs[i]->collection, collection) == 0)
            return t->jobs[i];
    if (!create) return NULL;
    if (t->njobs == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct transfer_job **v = realloc(t->jobs, cap * sizeof *v);
        if (v == NULL) return NULL;
        t->jobs = v;
        t->cap = cap;
    }
    struct transfer_job *j = calloc(1, sizeof *j);
    if (j == NULL) return NULL;
    snprintf(j->collection, sizeof j->collection, "%s", collection);
    j->shard = shard;
    j->t = t;
    t->jobs[t->njobs++] = j;
    return j;
}

/* Starts a job for (collection, shard) unless one runs. */
int transfers_start(struct transfers *t, const char *collection, uint32_t shard, uint64_t epoch,
                    const char *primary_id, const char *primary_addr)
{
    pthread_mutex_lock(&t->lock);
    struct transfer_job *j = job_find(t, collection, shard, true);
    int rc = 0;
    if (j == NULL) {
        rc = -1;
    } else if (!j->running && !t->stopping) {
        j->epoch = epoch;
        snprintf(j->primary_id, sizeof j->primary_id, "%s", primary_id ? primary_id : "");
        snprintf(j->primary_addr, sizeof j->primary_addr, "%s", primary_addr ? primary_addr : "");
        j->bytes_done = j->bytes_total = 0;
        j->last_error[0] = '\0';
        pthread_attr_t attr;
        pthread_t th;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        j->running = true;
        t->active++;
        if (pthread_create(&th, &attr, job_main, j) != 0) {
            j->running = false;
            t->active--;
            snprintf(j->last_error, sizeof j->last_error, "cannot start a thread: %s",
                     strerror(errno));
            rc = -1;
        }
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* Copies the progress of (collection, shard). */
void transfers_progress(struct transfers *t, const char *collection, uint32_t shard,
                        struct transfer_progress *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_lock(&t->lock);
    const struct transfer_job *j = job_find(t, collection, shard, false);
    if (j != NULL) {
        p->running = j->running;
        p->bytes_done = j->bytes_done;
        p->bytes_total = j->bytes_total;
        p->completed = j->completed;
        snprintf(p->last_error, sizeof p->last_error, "%s", j->last_error);
    }
    pthread_mutex_unlock(&t->lock);
}

/* Counters since start-up (transfer.h). */
void transfers_stats(struct transfers *t, struct transfer_stats *st)
{
    pthread_mutex_lock(&t->lock);
    st->receiving = (uint32_t)t->active;
    pthread_mutex_unlock(&t->lock);
    st->sending = atomic_load(&t->sending);
    st->received_bytes = atomic_load(&t->received_bytes);
    st->sent_bytes = atomic_load(&t->sent_bytes);
    st->received_ok = atomic_load(&t->received_ok);
    st->received_failed = atomic_load(&t->received_failed);
    st->sent_ok = atomic_load(&t->sent_ok);
    st->sent_failed = atomic_load(&t->sent_failed);
}

/* ------------------------------------------------------------ sender */

/* The pacing of one stream: a token bucket of one chunk refilled at `rate` bytes/s; it also
 * counts what passed into the sent_bytes total. */
struct pacer {
    _Atomic uint64_t *sent; /* the transfers' sent_bytes */
    uint64_t rate;          /* 0 = unlimited */
    double tokens;
    struct timespec last;
};

/* Waits until n bytes may be sent; false when the server began to stop meanwhile. */
static bool pace(struct pacer *pc, size_t n, struct rpc_server *srv)
{
    if (pc->rate == 0) return true;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double dt = (double)(now.tv_sec - pc->last.tv_sec) +
                    (double)(now.tv_nsec - pc->last.tv_nsec) * 1e-9;
        pc->last = now;
        pc->tokens += dt * (double)pc->rate;
        if (pc->tokens > TRANSFER_CHUNK) pc->tokens = TRANSFER_CHUNK;
        if (pc->tokens >= (double)n || (n > TRANSFER_CHUNK && pc->tokens >= TRANSFER_CHUNK)) {
            pc->tokens -= (double)n;
            return true;
        }
        if (rpc_server_stopping(srv)) return false;
        double wait = ((double)n - pc->tokens) / (double)pc->rate;
        if (wait > 0.1) wait = 0.1;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait * 1e9) + 1};
        nanosleep(&ts, NULL);
    }
}

/* Streams the pinned snapshot; 0, or -1 when a send failed (err says why). */
static int send_snapshot(struct rpc_stream *st, const struct replica_pin *pin, struct pacer *pc,
                         struct rpc_server *srv, uint8_t *buf, char *err)
{
    for (uint64_t off = 0; off < pin->snap_bytes;) {
        size_t n = pin->snap_bytes - off < TRANSFER_CHUNK ? (size_t)(pin->snap_bytes - off)
                                                          : TRANSFER_CHUNK;
        ssize_t got = pread(pin->snap_fd, buf, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return pull_fail(err, "reading the snapshot: %s", strerror(errno));
        Vecshard__V1__SnapshotChunk sc = VECSHARD__V1__SNAPSHOT_CHUNK__INIT;
        sc.lsn = pin->snap_lsn;
        sc.offset = off;
        sc.total_size = pin->snap_bytes;
        sc.data.data = buf;
        sc.data.len = (size_t)got;
        sc.crc32c = crc32c(buf, (size_t)got);
        Vecshard__V1__TransferChunk c = VECSHARD__V1__TRANSFER_CHUNK__INIT;
        c.body_case = VECSHARD__V1__TRANSFER_CHUNK__BODY_SNAPSHOT;
        c.snapshot = &sc;
        if (!pace(pc, (size_t)got, srv) || rpc_stream_send(st, &c.base) != 0)
            return pull_fail(err, "the receiver went away or the server is stopping");
        atomic_fetch_add(pc->sent, (uint64_t)got);
        off += (uint64_t)got;
    }
    return 0;
}

/* Streams the pinned records up to last_lsn; 0 or -1 with err. *n gets the count sent. */
static int send_records(struct rpc_stream *st, struct replica_pin *pin, struct pacer *pc,
                        struct rpc_server *srv, uint64_t *n, uint64_t *last_epoch, char *err)
{
    char werr[WAL_ERR_MAX];
    for (;;) {
        struct wal_record wr;
        bool has = false;
        if (wal_iter_next(pin->records, &wr, &has, werr) != WAL_OK)
            return pull_fail(err, "reading the WAL: %s", werr);
        if (!has || wr.lsn > pin->last_lsn) break;
        Vecshard__V1__WalRecord rec = VECSHARD__V1__WAL_RECORD__INIT;
        rec.lsn = wr.lsn;
        rec.epoch = wr.epoch;
        rec.batch.data = (uint8_t *)wr.data;
        rec.batch.len = wr.len;
        rec.crc32c = crc32c(wr.data, wr.len);
        Vecshard__V1__TransferChunk c = VECSHARD__V1__TRANSFER_CHUNK__INIT;
        c.body_case = VECSHARD__V1__TRANSFER_CHUNK__BODY_RECORD;
        c.record = &rec;
        if (!pace(pc, wr.len, srv) || rpc_stream_send(st, &c.base) != 0)
            return pull_fail(err, "the receiver went away or the server is stopping");
        atomic_fetch_add(pc->sent, (uint64_t)wr.len);
        (*n)++;
        *last_epoch = wr.epoch;
        if (wr.lsn == pin->last_lsn) return 0;
    }
    if (pin->last_lsn > pin->snap_lsn)
        return pull_fail(err, "the WAL ended before the pinned lsn %" PRIu64, pin->last_lsn);
    return 0;
}

/* TransferShard: pins the replica and streams it (see the file comment). */
grpc_status_code transfer_serve(struct transfers *t, struct rpc_call *c,
                                const Vecshard__V1__TransferShardRequest *req,
                                struct rpc_stream *st)
{
    struct node_shard_view v;
    struct node_shard *e = node_shards_acquire(t->reg, req->collection, req->shard, &v);
    if (e == NULL)
        return rpc_call_error(c, GRPC_STATUS_NOT_FOUND,
                              "shard %u of collection \"%s\" is not hosted on this node",
                              req->shard, req->collection);
    grpc_status_code code = GRPC_STATUS_OK;
    char err[REPLICA_ERR_MAX];
    struct replica_pin pin = {.snap_fd = -1};
    if (v.state == NODE_STATE_DAMAGED)
        code = rpc_call_error(c, GRPC_STATUS_DATA_LOSS, "replica %s/%u is DAMAGED: %s",
                              req->collection, req->shard, v.reason);
    else if (v.rep == NULL)
        code = rpc_call_error(c, GRPC_STATUS_UNAVAILABLE, "replica %s/%u is not READY (%s)",
                              req->collection, req->shard,
                              v.state == NODE_STATE_RECOVERING ? "recovering" : "loading");
    else if (req->epoch < v.epoch) {
        node_svc_placement_trailers(c, &v);
        code = rpc_call_error(c, GRPC_STATUS_FAILED_PRECONDITION,
                              "stale epoch %" PRIu64 ": replica %s/%u is at epoch %" PRIu64,
                              req->epoch, req->collection, req->shard, v.epoch);
    } else {
        int rc = replica_pin(v.rep, &pin, err);
        if (rc != REPLICA_OK)
            code = rpc_call_error(c, (grpc_status_code)replica_code_grpc(rc), "%s", err);
    }
    node_shards_release(t->reg, e);
    if (code != GRPC_STATUS_OK) return code;

    struct rpc_server *srv = rpc_call_server(c);
    struct pacer pc = {
        .sent = &t->sent_bytes, .rate = t->max_bytes_per_sec, .tokens = TRANSFER_CHUNK};
    clock_gettime(CLOCK_MONOTONIC, &pc.last);
    struct timespec t0 = pc.last;
    uint8_t *buf = malloc(TRANSFER_CHUNK);
    uint64_t records = 0, last_epoch = pin.last_epoch;
    char why[TRANSFER_ERR_MAX] = "";
    log_info("transfer sending",
             "collection=%s shard=%u to=%s snapshot_lsn=%" PRIu64 " snapshot_bytes=%" PRIu64
             " last_lsn=%" PRIu64,
             req->collection, req->shard, log_quote(req->node_id), pin.snap_lsn, pin.snap_bytes,
             pin.last_lsn);
    int rc = buf == NULL ? pull_fail(why, "out of memory") : 0;
    atomic_fetch_add(&t->sending, 1);
    if (rc == 0) rc = send_snapshot(st, &pin, &pc, srv, buf, why);
    if (rc == 0) rc = send_records(st, &pin, &pc, srv, &records, &last_epoch, why);
    if (rc == 0) {
        Vecshard__V1__TransferEnd end = VECSHARD__V1__TRANSFER_END__INIT;
        end.last_lsn = pin.last_lsn;
        end.last_epoch = last_epoch;
        end.snapshot_bytes = pin.snap_bytes;
        end.records = records;
        Vecshard__V1__TransferChunk m = VECSHARD__V1__TRANSFER_CHUNK__INIT;
        m.body_case = VECSHARD__V1__TRANSFER_CHUNK__BODY_END;
        m.end = &end;
        if (rpc_stream_send(st, &m.base) != 0)
            rc = pull_fail(why, "the receiver went away or the server is stopping");
    }
    free(buf);
    replica_pin_release(&pin);
    atomic_fetch_sub(&t->sending, 1);
    atomic_fetch_add(rc != 0 ? &t->sent_failed : &t->sent_ok, 1);
    double secs = seconds_since(&t0);
    if (rc != 0) {
        log_warn("transfer sending stopped", "collection=%s shard=%u to=%s error=%s seconds=%.3f",
                 req->collection, req->shard, log_quote(req->node_id), log_quote(why), secs);
        return rpc_call_error(c, GRPC_STATUS_UNAVAILABLE, "%s", why);
    }
    log_info("transfer sent",
             "collection=%s shard=%u to=%s last_lsn=%" PRIu64 " records=%" PRIu64
             " snapshot_bytes=%" PRIu64 " seconds=%.3f",
             req->collection, req->shard, log_quote(req->node_id), pin.last_lsn, records,
             pin.snap_bytes, secs);
    return GRPC_STATUS_OK;
}
