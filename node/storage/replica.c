/*
 * replica.c — the life of one shard replica: open and recovery, writes
 * (primary) and applies (backup), snapshots and the background thread that
 * schedules them, status, close and removal. Searches and gets are in
 * replica_read.c.
 *
 * Write path: validate the whole batch first (nothing reaches the WAL that
 * apply could refuse), then under write_lock: next LSN, pack the batch into
 * a reused buffer, wal_write, apply to the index (hnsw_insert_batch over a
 * reused id/vector scratch, then payloads, then deletes). Under fsync
 * `batch` the group-commit wait follows after the lock is released, so a
 * write is visible to searches a moment before it is durable; it is not
 * acknowledged before. If the WAL or an apply fails after the record may
 * have reached the disk, the in-memory state and the log can disagree, so
 * the replica marks itself failed and refuses writes until reopened
 * (recovery then rebuilds from what the disk really holds).
 *
 * Recovery: the newest valid snapshot (snapshot.c falls back to the
 * previous one when the newest is damaged), the WAL recovered (wal.c cuts a
 * damaged tail) and its records after the snapshot's LSN replayed through
 * the same apply code. Damage in the middle of the WAL (a bad record
 * followed by valid ones the snapshot does not hold) is not cut: the open
 * fails with REPLICA_ECORRUPT and leaves every file as it is. A WAL that
 * starts after snapshot_lsn + 1 leaves a gap
 * that cannot be filled locally: the open fails with REPLICA_ECORRUPT and
 * the node re-fetches the shard (TransferShard). A WAL that ends before the
 * snapshot (possible under fsync none) is cleared: the snapshot covers it.
 *
 * Snapshot triggers: the background thread takes one when any fires: WAL
 * bytes since the last snapshot, WAL records since it, or the age of the
 * oldest write not in a snapshot (so a quiet replica with a few writes is
 * still snapshotted and a restart after kill -9 replays a bounded WAL). The
 * thread sleeps on bg_cond until a write crosses a threshold, starts the
 * age clock, or the age deadline passes.
 *
 * Snapshots: snap_lock makes them one at a time. The state is captured under
 * write_lock: snapshot_write_state serialises the index (hnsw_write holds
 * the engine's mutation lock, which searches never take) and the payloads
 * (under the store's read lock, shared with searches) into the page cache
 * through 1 MiB stdio buffers. Writes therefore pause for about the time it
 * takes to copy the index and payloads into memory — roughly their size at
 * memory-copy speed, e.g. ~0.3-0.6 s for a million 128-d points — and no
 * disk wait: the fsync, rename and folder fsync happen after the lock is
 * released. (A copy-on-write capture would avoid the pause but needs the
 * engine's cooperation; not worth it at this pause length.) The newest two
 * snapshots are kept, and WAL segments are deleted only when wholly before
 * the older of the two, so falling back to it still finds every record
 * after it.
 */
#include "node/storage/replica_internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int replica_fail(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, REPLICA_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return code;
}

void replica_config_init(struct replica_config *c)
{
    memset(c, 0, sizeof *c);
    hnsw_params_init(&c->hnsw);
    c->ef_search = REPLICA_EF_SEARCH_DEFAULT;
    c->fsync = WAL_FSYNC_ALWAYS;
    c->wal_segment_bytes = WAL_SEGMENT_BYTES_DEFAULT;
    c->build_threads = 0;
    c->max_batch = REPLICA_MAX_BATCH_DEFAULT;
    c->max_payload = PAYLOAD_MAX_BYTES;
}

const char *replica_code_str(int code)
{
    switch (code) {
    case REPLICA_OK:
        return "ok";
    case REPLICA_EINVAL:
        return "invalid argument";
    case REPLICA_EDIM:
        return "wrong vector dimension";
    case REPLICA_EVALUE:
        return "invalid vector value";
    case REPLICA_EPAYLOAD_SIZE:
        return "payload too large";
    case REPLICA_EBATCH_SIZE:
        return "batch too large";
    case REPLICA_ELSN_GAP:
        return "LSN gap";
    case REPLICA_ENOMEM:
        return "out of memory";
    case REPLICA_EIO:
        return "I/O error";
    case REPLICA_EFAILED:
        return "replica failed";
    case REPLICA_ECORRUPT:
        return "unrecoverable data";
    case REPLICA_EMISMATCH:
        return "data of another configuration";
    case REPLICA_EUNAPPLIED:
        return "logged batch not applied";
    case REPLICA_EFULL:
        return "index full";
    case REPLICA_EINTERNAL:
        return "internal engine error";
    case REPLICA_ENOTFOUND:
        return "WAL records deleted";
    }
    return "unknown code";
}

int replica_code_grpc(int code)
{
    switch (code) {
    case REPLICA_OK:
    case REPLICA_ELSN_GAP:
        return 0;
    case REPLICA_EINVAL:
    case REPLICA_EDIM:
    case REPLICA_EVALUE:
        return 3; /* INVALID_ARGUMENT */
    case REPLICA_EPAYLOAD_SIZE:
    case REPLICA_EBATCH_SIZE:
    case REPLICA_ENOMEM:
    case REPLICA_EFULL:
        return 8; /* RESOURCE_EXHAUSTED */
    case REPLICA_EMISMATCH:
        return 9; /* FAILED_PRECONDITION */
    case REPLICA_EIO:
    case REPLICA_EFAILED:
        return 14; /* UNAVAILABLE */
    case REPLICA_ENOTFOUND:
        return 5; /* NOT_FOUND */
    case REPLICA_ECORRUPT:
        return 15; /* DATA_LOSS */
    case REPLICA_EUNAPPLIED:
    case REPLICA_EINTERNAL:
        break;
    }
    return 13; /* INTERNAL */
}

const char *replica_dir(const struct replica *r)
{
    return r->dir;
}

const char *replica_collection(const struct replica *r)
{
    return r->collection;
}

uint32_t replica_shard(const struct replica *r)
{
    return r->shard;
}

uint32_t replica_dim(const struct replica *r)
{
    return r->dim;
}

/* CLOCK_MONOTONIC milliseconds (never 0 on a running system). */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
}

/* Remembers a write-path or background failure for replica_status. */
static void note_error(struct replica *r, const char *msg)
{
    pthread_mutex_lock(&r->err_lock);
    snprintf(r->last_error, sizeof r->last_error, "%s", msg);
    pthread_mutex_unlock(&r->err_lock);
}

/* Stops writes after a failure that may have left memory and disk apart. */
static void mark_failed(struct replica *r, const char *msg)
{
    note_error(r, msg);
    atomic_store(&r->failed, true);
}

/* ---------------------------------------------------------------- validation */

/*
 * Checks a batch before anything is written: every vector has dim floats
 * that pass hnsw_vector_check, payloads and counts within the limits
 * (limits = false during replay: records already accepted stay valid if the
 * limits were lowered). *packed gets the encoded size.
 */
static int validate_batch(const struct replica *r, const Vecshard__V1__WriteBatch *b, bool limits,
                          size_t *packed, char *err)
{
    if (!b)
        return replica_fail(err, REPLICA_EINVAL, "batch is missing");
    if (limits && b->n_upserts + b->n_deletes > r->cfg.max_batch)
        return replica_fail(err, REPLICA_EBATCH_SIZE,
                            "batch has %zu upserts and %zu deletes, the limit is %u in total",
                            b->n_upserts, b->n_deletes, r->cfg.max_batch);
    if (b->n_deletes && !b->deletes)
        return replica_fail(err, REPLICA_EINVAL, "batch.deletes is missing");
    for (size_t i = 0; i < b->n_upserts; i++) {
        const Vecshard__V1__Point *p = b->upserts[i];
        if (!p)
            return replica_fail(err, REPLICA_EINVAL, "batch.upserts[%zu] is missing", i);
        if (p->n_vector != r->dim || !p->vector)
            return replica_fail(err, REPLICA_EDIM,
                                "batch.upserts[%zu].vector has %zu floats, collection dim is %u", i,
                                p->n_vector, r->dim);
        char what[48], herr[HNSW_ERR_MAX];
        snprintf(what, sizeof what, "batch.upserts[%zu].vector", i);
        if (hnsw_vector_check(r->metric, r->dim, p->vector, what, herr) != HNSW_OK)
            return replica_fail(err, REPLICA_EVALUE, "%s", herr);
        uint32_t maxp = limits ? r->cfg.max_payload : PAYLOAD_MAX_BYTES;
        if (p->payload.len > maxp)
            return replica_fail(err, REPLICA_EPAYLOAD_SIZE,
                                "batch.upserts[%zu].payload has %zu bytes, the limit is %u", i,
                                p->payload.len, maxp);
        if (p->payload.len && !p->payload.data)
            return replica_fail(err, REPLICA_EINVAL, "batch.upserts[%zu].payload is missing", i);
        if (p->n_attributes) {
            char where[48], aerr[REPLICA_ERR_MAX];
            snprintf(where, sizeof where, "batch.upserts[%zu]", i);
            if (!attrs_check(p->attributes, p->n_attributes, where, aerr, sizeof aerr))
                return replica_fail(err, REPLICA_EINVAL, "%s", aerr);
        }
    }
    size_t n = vecshard__v1__write_batch__get_packed_size(b);
    if (n > WAL_MAX_PAYLOAD)
        return replica_fail(err, REPLICA_EBATCH_SIZE,
                            "batch encodes to %zu bytes, the limit is %u", n, WAL_MAX_PAYLOAD);
    *packed = n;
    return REPLICA_OK;
}

/* ---------------------------------------------------------------- apply */

/* Grows the id/vector scratch to n rows. write_lock held (or opening). */
static int reserve_rows(struct replica *r, size_t n)
{
    if (n <= r->cap_rows)
        return 0;
    size_t c = r->cap_rows ? r->cap_rows : 256;
    while (c < n)
        c *= 2;
    uint64_t *ids = realloc(r->ids, c * sizeof *ids);
    if (!ids)
        return -1;
    r->ids = ids;
    float *v = realloc(r->vecs, c * r->dim * sizeof *v);
    if (!v)
        return -1;
    r->vecs = v;
    r->cap_rows = c;
    return 0;
}

int replica_engine_code(int rc)
{
    switch (rc) {
    case HNSW_EINVAL:
        return REPLICA_EVALUE;
    case HNSW_ENOMEM:
        return REPLICA_ENOMEM;
    case HNSW_EFULL:
        return REPLICA_EFULL;
    default:
        return REPLICA_EINTERNAL;
    }
}

/*
 * Applies a validated batch: upserts into the index (in one batch insert),
 * their payloads (an empty payload clears the old one: upsert replaces the
 * point), then deletes. write_lock held (or opening).
 */
static int apply_batch(struct replica *r, const Vecshard__V1__WriteBatch *b, char *err)
{
    size_t n = b->n_upserts;
    if (n) {
        char herr[HNSW_ERR_MAX];
        if (reserve_rows(r, n) != 0)
            return replica_fail(err, REPLICA_ENOMEM, "out of memory for a batch of %zu points", n);
        for (size_t i = 0; i < n; i++) {
            r->ids[i] = b->upserts[i]->id;
            memcpy(r->vecs + i * r->dim, b->upserts[i]->vector, r->dim * sizeof(float));
        }
        /*
         * One insert costs ~0.1-1 ms and starting a thread ~50 us, so threads
         * pay off from a few dozen points; below that one thread is faster.
         * (Batches of 1,000 on one thread held gRPC ingest at ~0.45x the
         * engine's batch insert.)
         */
        int threads = n >= 64 ? r->cfg.build_threads : 1;
        int rc = hnsw_insert_batch(r->idx, r->ids, r->vecs, n, threads, herr);
        if (rc)
            return replica_fail(err, replica_engine_code(rc), "applying the batch to the index: %s",
                                herr);
        for (size_t i = 0; i < n; i++) {
            const Vecshard__V1__Point *p = b->upserts[i];
            if (payload_put(r->ps, p->id, p->payload.data, (uint32_t)p->payload.len) != 0)
                return replica_fail(err, REPLICA_ENOMEM, "out of memory storing payloads");
        }
        /* Attributes are replaced whole; none given removes the old ones. */
        for (size_t i = 0; i < n; i++) {
            const Vecshard__V1__Point *p = b->upserts[i];
            size_t len = 0;
            if (p->n_attributes) {
                if (!r->ablob && !(r->ablob = malloc(ATTR_BLOB_MAX)))
                    return replica_fail(err, REPLICA_ENOMEM, "out of memory storing attributes");
                len = attrs_encode(p->attributes, p->n_attributes, r->ablob);
            }
            if (attr_put(r->as, p->id, r->ablob, (uint32_t)len) != 0)
                return replica_fail(err, REPLICA_ENOMEM, "out of memory storing attributes");
        }
    }
    for (size_t i = 0; i < b->n_deletes; i++) {
        hnsw_delete(r->idx, b->deletes[i]); /* absent ids are not an error */
        payload_remove(r->ps, b->deletes[i]);
        attr_remove(r->as, b->deletes[i]);
    }
    return REPLICA_OK;
}

/* Maps a WAL status to a replica code. */
static int wal_code(int rc)
{
    return rc == WAL_ENOMEM ? REPLICA_ENOMEM : rc == WAL_EFAILED ? REPLICA_EFAILED : REPLICA_EIO;
}

/*
 * Logs and applies one validated batch at lsn (= applied + 1). write_lock
 * held. packed is the batch's encoded size. *first is set when this record
 * is the first one since the last snapshot (it starts the age clock).
 */
static int write_locked(struct replica *r, uint64_t lsn, uint64_t epoch,
                        const Vecshard__V1__WriteBatch *b, const uint8_t *raw, size_t packed,
                        bool *first, char *err)
{
    if (atomic_load(&r->failed)) {
        pthread_mutex_lock(&r->err_lock);
        int rc = replica_fail(err, REPLICA_EFAILED, "replica refuses writes after: %s",
                              r->last_error);
        pthread_mutex_unlock(&r->err_lock);
        return rc;
    }
    if (raw == NULL && packed > r->cap_pack) {
        size_t c = r->cap_pack ? r->cap_pack : 4096;
        while (c < packed)
            c *= 2;
        uint8_t *p = realloc(r->pack, c);
        if (!p)
            return replica_fail(err, REPLICA_ENOMEM, "out of memory encoding the batch");
        r->pack = p;
        r->cap_pack = c;
    }
    /* A backup logs the primary's bytes as sent (raw); a primary packs the batch once. */
    size_t n = raw != NULL ? packed : vecshard__v1__write_batch__pack(b, r->pack);
    char msg[WAL_ERR_MAX];
    /* A backup's records (raw) are made durable together by replica_sync. */
    int rc = raw != NULL ? wal_write_deferred(r->wal, lsn, epoch, raw, (uint32_t)n, msg)
                         : wal_write(r->wal, lsn, epoch, r->pack, (uint32_t)n, msg);
    if (rc) {
        if (rc != WAL_ENOMEM)
            mark_failed(r, msg);
        return replica_fail(err, wal_code(rc), "WAL append of lsn %" PRIu64 ": %s", lsn, msg);
    }
    char amsg[REPLICA_ERR_MAX];
    if ((rc = apply_batch(r, b, amsg))) {
        char msg2[REPLICA_ERR_MAX];
        snprintf(msg2, sizeof msg2,
                 "lsn %" PRIu64 " is in the WAL but was not applied (%s): %.300s", lsn,
                 replica_code_str(rc), amsg);
        mark_failed(r, msg2);
        return replica_fail(err, REPLICA_EUNAPPLIED, "%s", msg2);
    }
    replica_history_note(r, lsn, epoch);
    atomic_store(&r->lsn, lsn);
    if (epoch > atomic_load(&r->epoch))
        atomic_store(&r->epoch, epoch);
    atomic_fetch_add(&r->wal_since_snapshot, WAL_RECORD_HEADER + n);
    atomic_fetch_add(&r->records_since_snapshot, 1);
    uint64_t none = 0;
    *first = atomic_compare_exchange_strong(&r->oldest_unsnap_ms, &none, now_ms());
    return REPLICA_OK;
}

/*
 * True when a snapshot trigger has fired: WAL bytes, WAL records or the age
 * of the oldest write not yet in a snapshot. Otherwise *wake_at gets the
 * CLOCK_MONOTONIC ms when the age trigger will fire (0: no deadline).
 */
static bool snapshot_due(struct replica *r, uint64_t *wake_at)
{
    const struct replica_config *c = &r->cfg;
    *wake_at = 0;
    if (c->snapshot_wal_bytes && atomic_load(&r->wal_since_snapshot) >= c->snapshot_wal_bytes)
        return true;
    if (c->snapshot_wal_records &&
        atomic_load(&r->records_since_snapshot) >= c->snapshot_wal_records)
        return true;
    uint64_t oldest = atomic_load(&r->oldest_unsnap_ms);
    if (!c->snapshot_age_ms || !oldest) return false;
    if (now_ms() >= oldest + c->snapshot_age_ms) return true;
    *wake_at = oldest + c->snapshot_age_ms;
    return false;
}

/*
 * Waits for the group fsync (fsync batch; not when !wait: replica_sync
 * makes a backup's records durable), then wakes the snapshot thread if a
 * trigger fired or the write started the age clock (first).
 */
static int finish_write(struct replica *r, uint64_t lsn, bool first, bool wait, char *err)
{
    char msg[WAL_ERR_MAX];
    int rc = wait ? wal_wait_durable(r->wal, lsn, msg) : WAL_OK;
    if (rc) {
        mark_failed(r, msg);
        return replica_fail(err, wal_code(rc), "WAL fsync of lsn %" PRIu64 ": %s", lsn, msg);
    }
    uint64_t wake_at;
    if (r->bg_running && (snapshot_due(r, &wake_at) || (first && r->cfg.snapshot_age_ms))) {
        pthread_mutex_lock(&r->bg_lock);
        pthread_cond_signal(&r->bg_cond);
        pthread_mutex_unlock(&r->bg_lock);
    }
    return REPLICA_OK;
}

int replica_write(struct replica *r, uint64_t epoch, const Vecshard__V1__WriteBatch *batch,
                  uint64_t *lsn, char *err)
{
    size_t packed;
    int rc = validate_batch(r, batch, true, &packed, err);
    if (rc)
        return rc;
    bool first = false;
    pthread_mutex_lock(&r->write_lock);
    uint64_t l = atomic_load(&r->lsn) + 1;
    rc = write_locked(r, l, epoch, batch, NULL, packed, &first, err);
    pthread_mutex_unlock(&r->write_lock);
    if (rc == REPLICA_OK) rc = finish_write(r, l, first, true, err);
    if (rc == REPLICA_OK && lsn)
        *lsn = l;
    return rc;
}

int replica_delete_matching(struct replica *r, uint64_t epoch, const struct filter *filter,
                            uint32_t limit, uint64_t *lsn, uint32_t *deleted, char *err)
{
    *deleted = 0;
    if (limit == 0 || limit > r->cfg.max_batch) limit = r->cfg.max_batch;
    pthread_mutex_lock(&r->write_lock);
    uint64_t l = atomic_load(&r->lsn);
    *lsn = l;
    /* Listed under the write lock: no write lands between the choice and the delete. */
    uint64_t *ids;
    size_t n;
    if (replica_matching(r, filter, &ids, &n)) {
        pthread_mutex_unlock(&r->write_lock);
        return replica_fail(err, REPLICA_ENOMEM, "out of memory listing matching points");
    }
    if (n == 0) {
        pthread_mutex_unlock(&r->write_lock);
        free(ids);
        return REPLICA_OK;
    }
    if (n > limit) n = limit;
    Vecshard__V1__WriteBatch b = VECSHARD__V1__WRITE_BATCH__INIT;
    b.deletes = ids;
    b.n_deletes = n;
    size_t packed;
    bool first = false;
    int rc = validate_batch(r, &b, true, &packed, err);
    if (rc == REPLICA_OK) rc = write_locked(r, ++l, epoch, &b, NULL, packed, &first, err);
    pthread_mutex_unlock(&r->write_lock);
    free(ids);
    if (rc == REPLICA_OK) rc = finish_write(r, l, first, true, err);
    if (rc == REPLICA_OK) {
        *lsn = l;
        *deleted = (uint32_t)n;
    }
    return rc;
}

int replica_apply(struct replica *r, uint64_t lsn, uint64_t epoch,
                  const Vecshard__V1__WriteBatch *batch, uint64_t *have, char *err)
{
    return replica_apply_raw(r, lsn, epoch, batch, NULL, 0, have, err);
}

/* replica_apply, logging raw (the batch's packed bytes, len of them) instead of packing it. */
int replica_apply_raw(struct replica *r, uint64_t lsn, uint64_t epoch,
                      const Vecshard__V1__WriteBatch *batch, const uint8_t *raw, size_t len,
                      uint64_t *have, char *err)
{
    size_t packed;
    int rc = validate_batch(r, batch, true, &packed, err);
    if (rc)
        return rc;
    if (raw != NULL)
        packed = len;
    pthread_mutex_lock(&r->write_lock);
    uint64_t applied = atomic_load(&r->lsn);
    if (lsn <= applied) {
        /* A resend of a record we already hold: acknowledged, no effect. */
        pthread_mutex_unlock(&r->write_lock);
        if (have)
            *have = applied;
        return REPLICA_OK;
    }
    if (lsn > applied + 1) {
        pthread_mutex_unlock(&r->write_lock);
        if (have)
            *have = applied;
        return replica_fail(err, REPLICA_ELSN_GAP,
                            "lsn %" PRIu64 " does not follow the applied lsn %" PRIu64
                            "; resend from %" PRIu64,
                            lsn, applied, applied + 1);
    }
    bool first = false;
    rc = write_locked(r, lsn, epoch, batch, raw, packed, &first, err);
    pthread_mutex_unlock(&r->write_lock);
    if (rc == REPLICA_OK) rc = finish_write(r, lsn, first, raw == NULL, err);
    if (have)
        *have = atomic_load(&r->lsn);
    return rc;
}

/* ---------------------------------------------------------------- snapshots */

/*
 * Records the total size of the snapshot files in the folder and the
 * modification time of the newest, for replica_status (which must not touch
 * the disk). At open and after every snapshot; snap_lock held or no other
 * user yet.
 */
static void note_snapshot_files(struct replica *r)
{
    uint64_t *lsns = NULL, bytes = 0;
    uint32_t n = 0;
    int64_t newest_ms = 0;
    char path[4096];
    struct stat sb;
    if (snapshot_list(r->dir, &lsns, &n, NULL) == SNAPSHOT_OK) {
        for (uint32_t i = 0; i < n; i++) {
            if (!snapshot_path(r->dir, lsns[i], path, sizeof path) || stat(path, &sb) != 0)
                continue;
            bytes += (uint64_t)sb.st_size;
            if (i == 0)
                newest_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        }
        free(lsns);
    }
    atomic_store(&r->snapshot_bytes, bytes);
    atomic_store(&r->snapshot_unix_ms, newest_ms);
}

int replica_snapshot(struct replica *r, bool *taken, char *err)
{
    char msg[SNAPSHOT_ERR_MAX];
    struct snapshot_writer *sw = NULL;
    struct snapshot_info info;
    uint64_t captured = 0, captured_records = 0, captured_oldest = 0;
    int rc = REPLICA_OK;
    if (taken)
        *taken = false;
    pthread_mutex_lock(&r->snap_lock);
    if (atomic_load(&r->lsn) == atomic_load(&r->snapshot_lsn))
        goto out;
    if (snapshot_begin(r->dir, &sw, msg) != SNAPSHOT_OK) {
        rc = replica_fail(err, REPLICA_EIO, "snapshot: %s", msg);
        goto out;
    }
    memset(&info, 0, sizeof info);
    snprintf(info.collection, sizeof info.collection, "%s", r->collection);
    info.shard = r->shard;

    pthread_mutex_lock(&r->write_lock);
    if (atomic_load(&r->failed)) {
        pthread_mutex_unlock(&r->write_lock);
        rc = replica_fail(err, REPLICA_EFAILED, "snapshot refused: the replica has failed");
        goto out;
    }
    info.lsn = atomic_load(&r->lsn);
    info.epoch = atomic_load(&r->epoch);
    captured = atomic_exchange(&r->wal_since_snapshot, 0);
    captured_records = atomic_exchange(&r->records_since_snapshot, 0);
    captured_oldest = atomic_exchange(&r->oldest_unsnap_ms, 0);
    int src = snapshot_write_state(sw, &info, r->idx, r->ps, r->as, msg);
    pthread_mutex_unlock(&r->write_lock);
    if (src) {
        rc = replica_fail(err, src == SNAPSHOT_ENOMEM ? REPLICA_ENOMEM : REPLICA_EIO,
                          "snapshot at lsn %" PRIu64 ": %s", info.lsn, msg);
        goto out;
    }
    /* The WAL must hold everything the snapshot does before the snapshot replaces it. */
    char wmsg[WAL_ERR_MAX];
    if (wal_sync(r->wal, wmsg) != WAL_OK) {
        rc = replica_fail(err, REPLICA_EIO, "snapshot: WAL fsync: %s", wmsg);
        goto out;
    }
    int crc = snapshot_commit(sw, NULL, msg);
    sw = NULL;
    if (crc) {
        rc = replica_fail(err, REPLICA_EIO, "snapshot at lsn %" PRIu64 ": %s", info.lsn, msg);
        goto out;
    }
    captured = captured_records = captured_oldest = 0;
    atomic_store(&r->snapshot_lsn, info.lsn);
    atomic_fetch_add(&r->snapshots_taken, 1);
    if (taken)
        *taken = true;
    uint64_t *lsns = NULL;
    uint32_t n = 0;
    if (snapshot_prune(r->dir, SNAPSHOT_KEEP, NULL, msg) != SNAPSHOT_OK ||
        snapshot_list(r->dir, &lsns, &n, msg) != SNAPSHOT_OK) {
        rc = replica_fail(err, REPLICA_EIO, "snapshot at lsn %" PRIu64 " taken, but: %s", info.lsn,
                          msg);
        goto out;
    }
    note_snapshot_files(r);
    /* Keep the WAL after the older kept snapshot, so falling back to it loses nothing. */
    if (n >= SNAPSHOT_KEEP && wal_delete_before(r->wal, lsns[SNAPSHOT_KEEP - 1] + 1, NULL, wmsg))
        rc = replica_fail(err, REPLICA_EIO, "snapshot at lsn %" PRIu64 " taken, but: %s", info.lsn,
                          wmsg);
    free(lsns);
out:
    snapshot_abort(sw);
    if (captured)
        atomic_fetch_add(&r->wal_since_snapshot, captured);
    if (captured_records) atomic_fetch_add(&r->records_since_snapshot, captured_records);
    /* The failed capture's writes are still the oldest unsnapshotted ones. */
    for (uint64_t cur = atomic_load(&r->oldest_unsnap_ms);
         captured_oldest && (cur == 0 || cur > captured_oldest);)
        if (atomic_compare_exchange_weak(&r->oldest_unsnap_ms, &cur, captured_oldest)) break;
    pthread_mutex_unlock(&r->snap_lock);
    return rc;
}

/* An absolute CLOCK_MONOTONIC time ms milliseconds (now_ms scale) for bg_cond. */
static struct timespec abs_ms(uint64_t ms)
{
    ms -= 1; /* now_ms adds 1 */
    return (struct timespec){.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
}

/* The background thread: a snapshot whenever a trigger (bytes, records, age) fires. */
static void *snapshot_main(void *arg)
{
    struct replica *r = arg;
    char msg[REPLICA_ERR_MAX];
    pthread_mutex_lock(&r->bg_lock);
    while (!r->stop) {
        uint64_t wake_at = 0;
        if (atomic_load(&r->failed) || !snapshot_due(r, &wake_at)) {
            if (wake_at && !atomic_load(&r->failed)) {
                struct timespec until = abs_ms(wake_at);
                pthread_cond_timedwait(&r->bg_cond, &r->bg_lock, &until);
            } else {
                pthread_cond_wait(&r->bg_cond, &r->bg_lock);
            }
            continue;
        }
        pthread_mutex_unlock(&r->bg_lock);
        int rc = replica_snapshot(r, NULL, msg);
        if (rc)
            note_error(r, msg);
        pthread_mutex_lock(&r->bg_lock);
        if (rc && !r->stop) {
            /* Back off before retrying a failing disk. */
            struct timespec until = abs_ms(now_ms() + 5000);
            pthread_cond_timedwait(&r->bg_cond, &r->bg_lock, &until);
        }
    }
    pthread_mutex_unlock(&r->bg_lock);
    return NULL;
}

int replica_repair(struct replica *r, char *err)
{
    char herr[HNSW_ERR_MAX];
    pthread_mutex_lock(&r->write_lock);
    int rc = hnsw_repair(r->idx, r->cfg.build_threads, herr);
    pthread_mutex_unlock(&r->write_lock);
    if (rc)
        return replica_fail(err, replica_engine_code(rc), "repair: %s", herr);
    return REPLICA_OK;
}

/* ---------------------------------------------------------------- open / close */

/* Creates dir and its missing parents. */
static int mkdir_p(const char *dir, char *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return replica_fail(err, REPLICA_EINVAL, "dir is too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return replica_fail(err, REPLICA_EIO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return replica_fail(err, REPLICA_EIO, "mkdir %s: %s", buf, strerror(errno));
    return REPLICA_OK;
}

/* Replays the WAL records after the snapshot through the write path's apply. */
static int replay(struct replica *r, struct replica_recovery *rec, char *err)
{
    struct wal_iter *it = NULL;
    char msg[REPLICA_ERR_MAX];
    uint64_t from = atomic_load(&r->lsn) + 1;
    int rc = wal_iter_open(r->wal, from, &it, msg);
    if (rc)
        return replica_fail(err, rc == WAL_ENOMEM ? REPLICA_ENOMEM : REPLICA_ECORRUPT,
                            "WAL replay from lsn %" PRIu64 ": %s", from, msg);
    for (;;) {
        struct wal_record wr;
        bool has;
        if ((rc = wal_iter_next(it, &wr, &has, msg))) {
            rc = replica_fail(err, rc == WAL_ENOMEM ? REPLICA_ENOMEM : REPLICA_EIO,
                              "WAL replay: %s", msg);
            break;
        }
        if (!has)
            break;
        Vecshard__V1__WriteBatch *b = vecshard__v1__write_batch__unpack(NULL, wr.len, wr.data);
        if (!b) {
            rc = replica_fail(err, REPLICA_ECORRUPT,
                              "WAL record lsn %" PRIu64 " does not decode as a WriteBatch", wr.lsn);
            break;
        }
        size_t packed;
        rc = validate_batch(r, b, false, &packed, msg);
        if (rc == REPLICA_OK)
            rc = apply_batch(r, b, msg);
        vecshard__v1__write_batch__free_unpacked(b, NULL);
        if (rc) {
            rc = replica_fail(err, rc == REPLICA_ENOMEM ? rc : REPLICA_ECORRUPT,
                              "WAL record lsn %" PRIu64 ": %s", wr.lsn, msg);
            break;
        }
        replica_history_note(r, wr.lsn, wr.epoch);
        atomic_store(&r->lsn, wr.lsn);
        if (wr.epoch > atomic_load(&r->epoch))
            atomic_store(&r->epoch, wr.epoch);
        atomic_fetch_add(&r->wal_since_snapshot, WAL_RECORD_HEADER + (uint64_t)wr.len);
        atomic_fetch_add(&r->records_since_snapshot, 1);
        rec->replayed++;
    }
    wal_iter_close(it);
    /* Replayed records are not in a snapshot: the age clock starts at the open. */
    if (rec->replayed) atomic_store(&r->oldest_unsnap_ms, now_ms());
    return rc;
}

/* Frees a replica whose thread is not running. */
static void destroy(struct replica *r)
{
    replica_tune_free(r);
    hnsw_free(r->idx);
    payload_store_free(r->ps);
    attr_store_free(r->as);
    free(r->ablob);
    free(r->ids);
    free(r->vecs);
    free(r->pack);
    pthread_mutex_destroy(&r->write_lock);
    pthread_mutex_destroy(&r->snap_lock);
    pthread_mutex_destroy(&r->err_lock);
    pthread_mutex_destroy(&r->bg_lock);
    pthread_mutex_destroy(&r->hist_lock);
    pthread_cond_destroy(&r->bg_cond);
    free(r->hist);
    free(r->dir);
    free(r->collection);
    free(r);
}

/*
 * SQ8 replicas keep their float vectors in a mapped scratch file in the
 * replica's folder (re-created at every open; the snapshot and WAL are the
 * durable copies), so resident memory holds the codes and the graph.
 */
static int place_vectors(struct replica *r, char *err)
{
    struct hnsw_stats st;
    hnsw_info(r->idx, &st);
    if (st.quant != r->cfg.hnsw.quant)
        return replica_fail(err, REPLICA_EMISMATCH,
                            "the snapshot's index has quantization %s; the collection has %s",
                            hnsw_quant_name(st.quant), hnsw_quant_name(r->cfg.hnsw.quant));
    if (st.quant == HNSW_QUANT_NONE) return REPLICA_OK;
    char path[4096], herr[HNSW_ERR_MAX];
    if (snprintf(path, sizeof path, "%s/vectors.scratch", r->dir) >= (int)sizeof path)
        return replica_fail(err, REPLICA_EINVAL, "replica path too long");
    if (hnsw_vectors_to_file(r->idx, path, herr))
        return replica_fail(err, REPLICA_EIO, "vector file: %s", herr);
    return REPLICA_OK;
}

/* Loads the snapshot (or starts empty), recovers the WAL and replays it. */
static int recover(struct replica *r, struct replica_recovery *rec, char *err)
{
    char msg[SNAPSHOT_ERR_MAX];
    struct snapshot_info info;
    struct snapshot_expect ex = {
        .collection = r->collection,
        .shard = r->shard,
        .dim = r->dim,
        .metric = r->metric,
        .M = r->cfg.hnsw.M,
        .ef_construction = r->cfg.hnsw.ef_construction,
    };
    int rc = snapshot_load_newest(r->dir, &ex, &info, &r->idx, &r->ps, &r->as,
                                  &rec->snapshot, msg);
    if (rc == SNAPSHOT_OK) {
        rec->snapshot_lsn = info.lsn;
        atomic_store(&r->snapshot_lsn, info.lsn);
        atomic_store(&r->lsn, info.lsn);
        atomic_store(&r->epoch, info.epoch);
        replica_history_reset(r, info.lsn, info.epoch);
    } else if (rc == SNAPSHOT_ENOTFOUND) {
        char herr[HNSW_ERR_MAX];
        if ((rc = hnsw_create(&r->cfg.hnsw, &r->idx, herr)))
            return replica_fail(err, rc == HNSW_ENOMEM ? REPLICA_ENOMEM : REPLICA_EINVAL,
                                "hnsw parameters: %s", herr);
        if (payload_store_create(&r->ps) != 0 || attr_store_create(&r->as) != 0)
            return replica_fail(err, REPLICA_ENOMEM, "out of memory");
    } else {
        return replica_fail(err,
                            rc == SNAPSHOT_EMISMATCH ? REPLICA_EMISMATCH
                            : rc == SNAPSHOT_ENOMEM  ? REPLICA_ENOMEM
                                                     : REPLICA_EIO,
                            "loading a snapshot: %s", msg);
    }
    if ((rc = place_vectors(r, err))) return rc;

    /* WAL damage followed only by records the snapshot holds loses nothing: cut it. */
    struct wal_options wo = {.fsync = r->cfg.fsync,
                             .segment_bytes = r->cfg.wal_segment_bytes,
                             .covered_lsn = atomic_load(&r->lsn)};
    char wmsg[WAL_ERR_MAX];
    if ((rc = wal_open(r->dir, &wo, &r->wal, &rec->wal, wmsg)))
        return replica_fail(err, rc == WAL_ECORRUPT ? REPLICA_ECORRUPT : wal_code(rc),
                            "opening the WAL of %s/%u: %s", r->collection, r->shard, wmsg);
    uint64_t snap = atomic_load(&r->lsn);
    if (rec->wal.records == 0)
        return REPLICA_OK;
    if (rec->wal.first_lsn > snap + 1)
        return replica_fail(err, REPLICA_ECORRUPT,
                            "the WAL starts at lsn %" PRIu64 " but the %s covers only up to lsn %" PRIu64
                            ": records %" PRIu64 "..%" PRIu64 " are missing",
                            rec->wal.first_lsn, snap ? "snapshot" : "empty state", snap, snap + 1,
                            rec->wal.first_lsn - 1);
    if (rec->wal.last_lsn < snap) {
        if ((rc = wal_reset(r->wal, wmsg)))
            return replica_fail(err, wal_code(rc), "clearing a WAL behind the snapshot: %s", wmsg);
        rec->wal_reset = true;
        return REPLICA_OK;
    }
    return replay(r, rec, err);
}

int replica_open(const struct replica_config *cfg, struct replica **out,
                 struct replica_recovery *rec_out, char *err)
{
    *out = NULL;
    struct replica_recovery rec_local;
    struct replica_recovery *rec = rec_out ? rec_out : &rec_local;
    memset(rec, 0, sizeof *rec);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!cfg || !cfg->dir || !*cfg->dir)
        return replica_fail(err, REPLICA_EINVAL, "config.dir is missing");
    if (!cfg->collection || !*cfg->collection ||
        strlen(cfg->collection) >= SNAPSHOT_COLLECTION_MAX)
        return replica_fail(err, REPLICA_EINVAL, "config.collection must have 1..%d characters",
                            SNAPSHOT_COLLECTION_MAX - 1);
    if (cfg->hnsw.dim == 0 || cfg->hnsw.dim > HNSW_MAX_DIM)
        return replica_fail(err, REPLICA_EINVAL, "config.hnsw.dim must be in 1..%d, got %u",
                            HNSW_MAX_DIM, cfg->hnsw.dim);
    if (cfg->fsync > WAL_FSYNC_NONE)
        return replica_fail(err, REPLICA_EINVAL, "config.fsync %d is not always, batch or none",
                            cfg->fsync);
    int rc = mkdir_p(cfg->dir, err);
    if (rc)
        return rc;
    struct replica *r = calloc(1, sizeof *r);
    if (!r)
        return replica_fail(err, REPLICA_ENOMEM, "out of memory");
    pthread_mutex_init(&r->write_lock, NULL);
    pthread_mutex_init(&r->snap_lock, NULL);
    pthread_mutex_init(&r->err_lock, NULL);
    pthread_mutex_init(&r->bg_lock, NULL);
    pthread_mutex_init(&r->hist_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->bg_cond, &ca);
    pthread_condattr_destroy(&ca);
    r->cfg = *cfg;
    if (!(r->dir = strdup(cfg->dir)) || !(r->collection = strdup(cfg->collection))) {
        rc = replica_fail(err, REPLICA_ENOMEM, "out of memory");
        goto fail;
    }
    r->cfg.dir = r->dir;
    r->cfg.collection = r->collection;
    r->shard = cfg->shard;
    r->dim = cfg->hnsw.dim;
    r->metric = cfg->hnsw.metric;
    if (r->cfg.ef_search == 0)
        r->cfg.ef_search = REPLICA_EF_SEARCH_DEFAULT;
    if (r->cfg.max_batch == 0)
        r->cfg.max_batch = REPLICA_MAX_BATCH_DEFAULT;
    if (r->cfg.max_payload == 0 || r->cfg.max_payload > PAYLOAD_MAX_BYTES)
        r->cfg.max_payload = PAYLOAD_MAX_BYTES;
    if (replica_tune_create(r) != 0) {
        rc = replica_fail(err, REPLICA_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = recover(r, rec, err)))
        goto fail;
    rec->lsn = atomic_load(&r->lsn);
    note_snapshot_files(r);
    if (r->cfg.snapshot_wal_bytes || r->cfg.snapshot_wal_records || r->cfg.snapshot_age_ms) {
        if (pthread_create(&r->bg, NULL, snapshot_main, r) != 0) {
            rc = replica_fail(err, REPLICA_ENOMEM, "cannot start the snapshot thread");
            goto fail;
        }
        r->bg_running = true;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rec->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    *out = r;
    return REPLICA_OK;
fail:
    wal_close(r->wal, NULL);
    destroy(r);
    return rc;
}

int replica_close(struct replica *r, char *err)
{
    if (!r)
        return REPLICA_OK;
    if (r->bg_running) {
        pthread_mutex_lock(&r->bg_lock);
        r->stop = true;
        pthread_cond_signal(&r->bg_cond);
        pthread_mutex_unlock(&r->bg_lock);
        pthread_join(r->bg, NULL);
    }
    char msg[WAL_ERR_MAX];
    int rc = wal_close(r->wal, msg);
    if (rc)
        rc = replica_fail(err, wal_code(rc), "closing the WAL: %s", msg);
    destroy(r);
    return rc;
}

/* True for the names of files a replica folder holds. */
static bool replica_file(const char *name)
{
    size_t n = strlen(name);
    bool wal = n > 8 && !strncmp(name, "wal-", 4) && !strcmp(name + n - 4, ".log");
    bool snap = n > 13 && !strncmp(name, "snapshot-", 9) &&
                (!strcmp(name + n - 4, ".vsx") || !strcmp(name + n - 12, ".vsx.corrupt"));
    return wal || snap || !strcmp(name, "snapshot.tmp");
}

int replica_remove_files(const char *dir, char *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? REPLICA_OK
                               : replica_fail(err, REPLICA_EIO, "open %s: %s", dir, strerror(errno));
    char path[4096];
    int rc = REPLICA_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!replica_file(e->d_name))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            (unlink(path) != 0 && errno != ENOENT)) {
            rc = replica_fail(err, REPLICA_EIO, "unlink %s: %s", path, strerror(errno));
            break;
        }
    }
    closedir(d);
    if (rc == REPLICA_OK && rmdir(dir) != 0)
        rc = replica_fail(err, REPLICA_EIO, "rmdir %s: %s", dir,
                          errno == ENOTEMPTY ? "it holds files that are not the replica's"
                                             : strerror(errno));
    return rc;
}

/* ---------------------------------------------------------------- status */

void replica_status(struct replica *r, struct replica_stat *st)
{
    memset(st, 0, sizeof *st);
    st->lsn = atomic_load(&r->lsn);
    st->epoch = atomic_load(&r->epoch);
    st->count = hnsw_count(r->idx);
    st->deleted = hnsw_deleted_count(r->idx);
    st->payloads = payload_count(r->ps);
    st->snapshot_lsn = atomic_load(&r->snapshot_lsn);
    st->attributes = attr_count(r->as);
    st->memory_bytes = hnsw_memory_bytes(r->idx) + payload_memory(r->ps) + attr_memory(r->as);
    st->snapshots_taken = atomic_load(&r->snapshots_taken);
    st->wal_bytes_since_snapshot = atomic_load(&r->wal_since_snapshot);
    st->wal_records_since_snapshot = atomic_load(&r->records_since_snapshot);
    st->failed = atomic_load(&r->failed);
    st->snapshot_unix_ms = atomic_load(&r->snapshot_unix_ms);
    st->wal_bytes = wal_bytes(r->wal);
    st->disk_bytes = st->wal_bytes + atomic_load(&r->snapshot_bytes);
    pthread_mutex_lock(&r->err_lock);
    snprintf(st->last_error, sizeof st->last_error, "%s", r->last_error);
    pthread_mutex_unlock(&r->err_lock);
}
