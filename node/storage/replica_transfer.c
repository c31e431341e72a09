/*
 * replica_transfer.c — what a full copy of a replica reads from it: the pin
 * of the newest snapshot and the WAL after it for a TransferShard sender
 * (replica_pin), and the content digest replicas are compared by
 * (replica_digest; docs/replication.md §6, §11).
 *
 * Pin: under snap_lock no snapshot is taken, pruned or WAL segment deleted
 * (replica_snapshot does all three under it), so the snapshot file opened
 * and the WAL iterator opened after its LSN describe one moment; the LSN
 * and epoch are read under write_lock, where every record up to that LSN is
 * already in the WAL, so the iterator (opened after the read) holds them.
 * Lock order as replica_internal.h: snap_lock, then write_lock.
 *
 * Digest: two 64-bit FNV-1a streams with different offset bases and
 * primes, fed the same bytes, each finished with the splitmix64 finaliser.
 * Not cryptographic: it tells equal content from different content, which
 * is all the tests and operators ask of it. The content is captured under
 * write_lock (writes wait; searches do not).
 */
#include "node/storage/replica_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util/hash.h"

/* ---------------------------------------------------------------- pin */

/*
 * One pin attempt under snap_lock: 1 when a snapshot must be taken first
 * (records but none, or the WAL no longer reaches back to it), 0 pinned,
 * or a negative replica code.
 */
static int pin_locked(struct replica *r, struct replica_pin *pin, char *err)
{
    char msg[WAL_ERR_MAX];
    uint64_t snap = atomic_load(&r->snapshot_lsn);
    pthread_mutex_lock(&r->write_lock);
    pin->last_lsn = atomic_load(&r->lsn);
    pin->last_epoch = atomic_load(&r->epoch);
    pthread_mutex_unlock(&r->write_lock);
    if (snap == 0 && pin->last_lsn > 0) return 1;
    int rc = wal_iter_open(r->wal, snap + 1, &pin->records, msg);
    if (rc == WAL_ENOTFOUND) return 1;
    if (rc != WAL_OK)
        return -replica_fail(err, rc == WAL_ENOMEM ? REPLICA_ENOMEM : REPLICA_EIO,
                             "pinning the WAL after lsn %" PRIu64 ": %s", snap, msg);
    pin->snap_lsn = snap;
    if (snap == 0) return 0;
    char path[4096];
    struct stat sb;
    if (!snapshot_path(r->dir, snap, path, sizeof path))
        return -replica_fail(err, REPLICA_EIO, "snapshot path of %s is too long", r->dir);
    pin->snap_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (pin->snap_fd < 0 || fstat(pin->snap_fd, &sb) != 0)
        return -replica_fail(err, REPLICA_EIO, "open %s: %s", path, strerror(errno));
    pin->snap_bytes = (uint64_t)sb.st_size;
    return 0;
}

int replica_pin(struct replica *r, struct replica_pin *pin, char *err)
{
    memset(pin, 0, sizeof *pin);
    pin->snap_fd = -1;
    for (int attempt = 0;; attempt++) {
        pthread_mutex_lock(&r->snap_lock);
        int rc = pin_locked(r, pin, err);
        pthread_mutex_unlock(&r->snap_lock);
        if (rc == 0) return REPLICA_OK;
        replica_pin_release(pin);
        if (rc < 0) return -rc;
        if (attempt == 2)
            return replica_fail(err, REPLICA_EIO,
                                "pinning a snapshot: the WAL does not reach back to the newest "
                                "snapshot even after taking one");
        if ((rc = replica_snapshot(r, NULL, err)) != REPLICA_OK) return rc;
    }
}

void replica_pin_release(struct replica_pin *pin)
{
    if (pin->snap_fd >= 0) close(pin->snap_fd);
    pin->snap_fd = -1;
    wal_iter_close(pin->records);
    pin->records = NULL;
}

/* ---------------------------------------------------------------- digest */

/* Two FNV-1a streams fed the same bytes. */
struct digest_state {
    uint64_t a, b;
};

/* Feeds len bytes of p to both streams. */
static void digest_feed(struct digest_state *d, const void *p, size_t len)
{
    const uint8_t *s = p;
    uint64_t a = d->a, b = d->b;
    for (size_t i = 0; i < len; i++) {
        a = (a ^ s[i]) * 0x100000001b3ull;      /* FNV-1a 64 prime */
        b = (b ^ s[i]) * 0x00000100000001b3ull; /* the same prime on a second basis ... */
        b ^= b >> 29;                           /* ... decorrelated by a shift per byte */
    }
    d->a = a;
    d->b = b;
}

/* Feeds v as 8 (or 4) little-endian bytes. */
static void digest_u64(struct digest_state *d, uint64_t v, int bytes)
{
    uint8_t le[8];
    for (int i = 0; i < bytes; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    digest_feed(d, le, (size_t)bytes);
}

/* Orders ids ascending. */
static int id_cmp(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

int replica_digest(struct replica *r, uint8_t out[REPLICA_DIGEST_BYTES], uint64_t *points,
                   char *err)
{
    struct digest_state d = {.a = 0xcbf29ce484222325ull, .b = 0x84222325cbf29ce4ull};
    float *vec = malloc((size_t)r->dim * sizeof *vec);
    uint64_t *ids = NULL, n = 0;
    int rc = REPLICA_OK;
    if (vec == NULL) return replica_fail(err, REPLICA_ENOMEM, "out of memory");
    pthread_mutex_lock(&r->write_lock);
    if (hnsw_ids(r->idx, &ids, &n) != HNSW_OK) {
        rc = replica_fail(err, REPLICA_ENOMEM, "out of memory listing %" PRIu64 " ids",
                          hnsw_count(r->idx));
        goto out;
    }
    if (n > 1) qsort(ids, n, sizeof *ids, id_cmp);
    payload_read_lock(r->ps);
    attr_read_lock(r->as);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t plen = 0, alen = 0;
        const uint8_t *pl = payload_peek(r->ps, ids[i], &plen);
        const uint8_t *at = attr_peek(r->as, ids[i], &alen);
        if (hnsw_get(r->idx, ids[i], vec) != HNSW_OK) {
            rc = replica_fail(err, REPLICA_EINTERNAL, "id %" PRIu64 " vanished during the digest",
                              ids[i]);
            break;
        }
        digest_u64(&d, ids[i], 8);
        digest_feed(&d, vec, (size_t)r->dim * sizeof *vec);
        digest_u64(&d, plen, 4);
        digest_feed(&d, pl, plen);
        if (alen) { /* points without attributes hash as before attributes existed */
            digest_u64(&d, 0x41545452u, 4); /* "ATTR" */
            digest_u64(&d, alen, 4);
            digest_feed(&d, at, alen);
        }
    }
    attr_read_unlock(r->as);
    payload_read_unlock(r->ps);
out:
    pthread_mutex_unlock(&r->write_lock);
    free(ids);
    free(vec);
    if (rc != REPLICA_OK) return rc;
    uint64_t a = hash_id64(d.a ^ n), b = hash_id64(d.b + n);
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(a >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(b >> (56 - 8 * i));
    }
    if (points != NULL) *points = n;
    return REPLICA_OK;
}
