/*
 * replica_history.c — the epoch history of a replica (docs/replication.md
 * §2) and the backup-side apply of records as the primary sent them.
 *
 * The history is the list of (epoch, first_lsn) runs of the records the
 * replica applied since it opened (replayed from the WAL, written, or
 * applied from a primary), plus a base: the LSN and epoch of the snapshot
 * it loaded (0, 0 without one). epoch_at(lsn) is known for every LSN from
 * the base up to the applied LSN, unknown before the base. Runs are
 * appended only when the epoch changes, so the list holds one entry per
 * primary change, never one per record.
 *
 * replica_apply_packed logs its record without the per-record fsync of the
 * `always` policy; replica_sync makes a call's records durable together
 * before the backup acknowledges them.
 *
 * Threading: hist_lock (a leaf, replica_internal.h) protects the list; it
 * is appended to under write_lock (writes, applies, replay) and read from
 * any thread.
 */
#include "node/storage/replica_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Sets the base of the history (the snapshot's LSN and epoch) and empties it. */
void replica_history_reset(struct replica *r, uint64_t base_lsn, uint64_t base_epoch)
{
    pthread_mutex_lock(&r->hist_lock);
    r->nhist = 0;
    r->hist_base_lsn = base_lsn;
    r->hist_base_epoch = base_epoch;
    pthread_mutex_unlock(&r->hist_lock);
}

/* Records that the record at lsn (the next one) has epoch. write_lock held. */
void replica_history_note(struct replica *r, uint64_t lsn, uint64_t epoch)
{
    pthread_mutex_lock(&r->hist_lock);
    bool same = r->nhist > 0 ? r->hist[r->nhist - 1].epoch == epoch
                             : lsn == r->hist_base_lsn + 1 && r->hist_base_lsn > 0 &&
                                   r->hist_base_epoch == epoch;
    if (!same) {
        if (r->nhist == r->cap_hist) {
            size_t cap = r->cap_hist ? r->cap_hist * 2 : 8;
            struct replica_epoch_run *v = realloc(r->hist, cap * sizeof *v);
            if (v == NULL) {
                /* Forget the oldest runs rather than fail the write: matching falls back to
                 * "unknown", which costs a transfer, never a wrong answer. */
                r->hist_base_lsn = lsn - 1;
                r->hist_base_epoch = r->nhist > 0 ? r->hist[r->nhist - 1].epoch : 0;
                r->nhist = 0;
                pthread_mutex_unlock(&r->hist_lock);
                return;
            }
            r->hist = v;
            r->cap_hist = cap;
        }
        r->hist[r->nhist++] = (struct replica_epoch_run){.epoch = epoch, .first_lsn = lsn};
    }
    pthread_mutex_unlock(&r->hist_lock);
}

bool replica_epoch_at(struct replica *r, uint64_t lsn, uint64_t *epoch)
{
    *epoch = 0;
    if (lsn == 0) return true; /* before the first record */
    if (lsn > atomic_load(&r->lsn)) return false;
    pthread_mutex_lock(&r->hist_lock);
    bool known = false;
    if (lsn == r->hist_base_lsn) {
        *epoch = r->hist_base_epoch;
        known = true;
    } else if (lsn > r->hist_base_lsn) {
        for (size_t i = r->nhist; i-- > 0;)
            if (r->hist[i].first_lsn <= lsn) {
                *epoch = r->hist[i].epoch;
                known = true;
                break;
            }
        if (!known && r->hist_base_lsn > 0) {
            *epoch = r->hist_base_epoch; /* runs start later: same epoch as the base */
            known = true;
        }
    }
    pthread_mutex_unlock(&r->hist_lock);
    return known;
}

bool replica_first_lsn_after_epoch(struct replica *r, uint64_t epoch, uint64_t *lsn)
{
    *lsn = atomic_load(&r->lsn) + 1;
    pthread_mutex_lock(&r->hist_lock);
    bool known = !(r->hist_base_lsn > 0 && r->hist_base_epoch > epoch);
    for (size_t i = 0; known && i < r->nhist; i++)
        if (r->hist[i].epoch > epoch) {
            *lsn = r->hist[i].first_lsn;
            break;
        }
    pthread_mutex_unlock(&r->hist_lock);
    return known;
}

uint64_t replica_history_base(struct replica *r)
{
    pthread_mutex_lock(&r->hist_lock);
    uint64_t b = r->hist_base_lsn;
    pthread_mutex_unlock(&r->hist_lock);
    return b;
}

int replica_apply_packed(struct replica *r, uint64_t lsn, uint64_t epoch, const uint8_t *bytes,
                         size_t len, uint64_t *have, char *err)
{
    if (have) *have = atomic_load(&r->lsn);
    Vecshard__V1__WriteBatch *b = vecshard__v1__write_batch__unpack(NULL, len, bytes);
    if (b == NULL)
        return replica_fail(err, REPLICA_EINVAL,
                            "records[lsn %" PRIu64 "].batch does not decode as a WriteBatch", lsn);
    int rc = replica_apply_raw(r, lsn, epoch, b, bytes, len, have, err);
    vecshard__v1__write_batch__free_unpacked(b, NULL);
    return rc;
}

int replica_sync(struct replica *r, char *err)
{
    if (r->cfg.fsync == WAL_FSYNC_NONE) return REPLICA_OK;
    char msg[WAL_ERR_MAX];
    int rc = wal_sync(r->wal, msg);
    if (rc == WAL_OK) return REPLICA_OK;
    return replica_fail(err, rc == WAL_EFAILED ? REPLICA_EFAILED : REPLICA_EIO,
                        "WAL fsync of applied records: %s", msg);
}

int replica_wal_iter(struct replica *r, uint64_t from_lsn, struct wal_iter **out, char *err)
{
    char msg[WAL_ERR_MAX];
    int rc = wal_iter_open(r->wal, from_lsn, out, msg);
    if (rc == WAL_OK) return REPLICA_OK;
    return replica_fail(err,
                        rc == WAL_ENOTFOUND ? REPLICA_ENOTFOUND
                        : rc == WAL_ENOMEM  ? REPLICA_ENOMEM
                                            : REPLICA_EIO,
                        "WAL from lsn %" PRIu64 ": %s", from_lsn, msg);
}
