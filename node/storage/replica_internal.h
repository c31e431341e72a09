/*
 * replica_internal.h — the replica's struct, shared by replica.c (open,
 * writes, snapshots, close) and replica_read.c (search, get).
 *
 * Lock order (outermost first): snap_lock, write_lock, then the engine's
 * own locks, the payload store's rwlock, the attribute store's rwlock (an
 * apply finishes its index calls before touching payloads, and its
 * payloads before attributes; a reader that needs both takes the payload
 * lock first). The engine's locks may be taken under the attribute store's
 * read lock (a filtered search). err_lock, bg_lock, hist_lock and the
 * automatic-ef lock are leaves.
 */
#ifndef VS_NODE_REPLICA_INTERNAL_H
#define VS_NODE_REPLICA_INTERNAL_H

#include "node/storage/attr_store.h"
#include "node/storage/payload.h"
#include "node/storage/replica.h"

#include <pthread.h>
#include <stdatomic.h>

/* A run of records with one epoch, from first_lsn to the next run's first LSN - 1. */
struct replica_epoch_run {
    uint64_t epoch, first_lsn;
};

struct replica {
    char *dir, *collection;
    uint32_t shard, dim;
    enum hnsw_metric metric;
    struct replica_config cfg; /* dir and collection point at the copies above */
    struct hnsw_index *idx;    /* safe for concurrent use by itself */
    struct payload_store *ps;  /* has its own rwlock */
    struct attr_store *as;     /* has its own rwlock */
    struct wal *wal;           /* has its own mutex */

    /*
     * write_lock serialises writes and applies (LSN order == WAL order ==
     * apply order) and the state capture of a snapshot; it protects the
     * scratch buffers below. lsn, epoch and failed are written under it
     * and read anywhere (atomics).
     */
    pthread_mutex_t write_lock;
    _Atomic uint64_t lsn, epoch;
    atomic_bool failed;
    _Atomic uint64_t wal_since_snapshot;     /* record bytes appended since the last capture */
    _Atomic uint64_t records_since_snapshot; /* records appended (or replayed) since then */
    _Atomic uint64_t oldest_unsnap_ms;       /* CLOCK_MONOTONIC ms of the first of them; 0: none */
    uint64_t *ids;
    float *vecs;
    size_t cap_rows;
    uint8_t *pack;
    size_t cap_pack;
    uint8_t *ablob; /* one point's encoded attributes (ATTR_BLOB_MAX bytes) */

    /* snap_lock: one snapshot at a time. snapshot_lsn, snapshot_bytes and
     * snapshot_unix_ms are written under it (and at open), read anywhere. */
    pthread_mutex_t snap_lock;
    _Atomic uint64_t snapshot_lsn;
    _Atomic uint64_t snapshots_taken;
    _Atomic uint64_t snapshot_bytes;  /* size of the snapshot files kept on disk */
    _Atomic int64_t snapshot_unix_ms; /* mtime of the newest one, Unix ms; 0: none */

    /* err_lock protects last_error. */
    pthread_mutex_t err_lock;
    char last_error[REPLICA_ERR_MAX];

    /* hist_lock (a leaf) protects the epoch history (replica_history.c). */
    pthread_mutex_t hist_lock;
    struct replica_epoch_run *hist; /* runs of equal epochs after the base, ascending */
    size_t nhist, cap_hist;
    uint64_t hist_base_lsn, hist_base_epoch; /* the loaded snapshot's LSN and epoch (0, 0) */

    /* bg_lock protects stop; bg_cond (CLOCK_MONOTONIC) wakes the snapshot thread. */
    pthread_mutex_t bg_lock;
    pthread_cond_t bg_cond;
    bool stop, bg_running;
    pthread_t bg;

    /* Automatic ef (replica_tune.c): curves and past queries, under its own leaf lock. */
    struct replica_tune *tune;
};

/* Creates the replica's automatic-ef state (r->dim set); -1 when out of memory. */
int replica_tune_create(struct replica *r);
/* Waits for a background calibration to finish (before the index goes away). */
void replica_tune_stop(struct replica *r);
/* replica_tune_stop, then frees the state. NULL state is a no-op. */
void replica_tune_free(struct replica *r);
/* Keeps v (dim floats) among the recent queries calibrations measure; never blocks. */
void replica_tune_note_query(struct replica *r, const float *v);
/*
 * The ef for recall@k `target` from the curve for k (measured now when
 * there is none yet; re-measured in the background when stale) and the
 * curve's recall estimate there.
 */
int replica_auto_ef(struct replica *r, uint32_t k, float target, uint32_t *ef, float *est,
                    char *err);

/* Empties the epoch history and sets its base (the snapshot's LSN and epoch). */
void replica_history_reset(struct replica *r, uint64_t base_lsn, uint64_t base_epoch);
/* Adds the record at lsn (the next one) with epoch to the history. write_lock held. */
void replica_history_note(struct replica *r, uint64_t lsn, uint64_t epoch);
/* replica_apply, logging raw (len bytes: the batch as packed by the primary) when not NULL. */
int replica_apply_raw(struct replica *r, uint64_t lsn, uint64_t epoch,
                      const Vecshard__V1__WriteBatch *batch, const uint8_t *raw, size_t len,
                      uint64_t *have, char *err);

/*
 * The ids of the live points matching f, under the attribute store's read
 * lock: from the indexes when they can list the filter (attr_matching),
 * otherwise every live point tested. *ids is malloc'ed; -1 when out of memory.
 */
int replica_matching(struct replica *r, const struct filter *f, uint64_t **ids, size_t *n);

/* The replica code for an engine status: only a failed allocation is REPLICA_ENOMEM. */
int replica_engine_code(int hnsw_status);

/* Writes a message into err (if any) and returns code. */
int replica_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
