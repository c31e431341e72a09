/*
 * replica_internal.h — the replica's struct, shared by replica.c (open,
 * writes, snapshots, close) and replica_read.c (search, get).
 *
 * Lock order (outermost first): snap_lock, write_lock, then the engine's
 * own locks and the payload store's rwlock (never held together: an apply
 * finishes its index calls before touching payloads). err_lock and bg_lock
 * are leaves.
 */
#ifndef VS_NODE_REPLICA_INTERNAL_H
#define VS_NODE_REPLICA_INTERNAL_H

#include "node/storage/payload.h"
#include "node/storage/replica.h"

#include <pthread.h>
#include <stdatomic.h>

struct replica {
    char *dir, *collection;
    uint32_t shard, dim;
    enum hnsw_metric metric;
    struct replica_config cfg; /* dir and collection point at the copies above */
    struct hnsw_index *idx;    /* safe for concurrent use by itself */
    struct payload_store *ps;  /* has its own rwlock */
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
    _Atomic uint64_t wal_since_snapshot; /* record bytes appended since the last capture */
    _Atomic uint64_t records_since_snapshot; /* records appended (or replayed) since then */
    _Atomic uint64_t oldest_unsnap_ms;       /* CLOCK_MONOTONIC ms of the first of them; 0: none */
    uint64_t *ids;
    float *vecs;
    size_t cap_rows;
    uint8_t *pack;
    size_t cap_pack;

    /* snap_lock: one snapshot at a time. snapshot_lsn is written under it. */
    pthread_mutex_t snap_lock;
    _Atomic uint64_t snapshot_lsn;
    _Atomic uint64_t snapshots_taken;

    /* err_lock protects last_error. */
    pthread_mutex_t err_lock;
    char last_error[REPLICA_ERR_MAX];

    /* bg_lock protects stop; bg_cond (CLOCK_MONOTONIC) wakes the snapshot thread. */
    pthread_mutex_t bg_lock;
    pthread_cond_t bg_cond;
    bool stop, bg_running;
    pthread_t bg;
};

/* The replica code for an engine status: only a failed allocation is REPLICA_ENOMEM. */
int replica_engine_code(int hnsw_status);

/* Writes a message into err (if any) and returns code. */
int replica_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
