/*
 * snapshot.h — point-in-time images of a shard replica: the HNSW index and
 * the payload store at one LSN, in `snapshot-<lsn>.vsx` files (lsn printed
 * with 20 digits). Public API and ownership; the byte layout is at the top
 * of snapshot.c and in docs/storage.md.
 *
 * Writing is split so that the replica can hold its write lock only while
 * the state is copied into the page cache: snapshot_begin (no lock needed)
 * creates the temp file, snapshot_write_state (caller keeps the index and
 * the store unchanged meanwhile) serialises, snapshot_commit (no lock
 * needed) fsyncs, renames and fsyncs the folder.
 *
 * Loading validates the magic, version, header CRC, every section's length
 * and CRC, the embedded index (hnsw_read checks its own sections and graph
 * invariants) and the counts in the header, and refuses with a message;
 * it never crashes on a damaged file. snapshot_load_newest falls back to an
 * older snapshot when the newest is damaged and moves the damaged file
 * aside as `<name>.corrupt` so it is never chosen again.
 *
 * Errors: enum snapshot_status (SNAPSHOT_OK = 0) and a message in err (at
 * least SNAPSHOT_ERR_MAX bytes) when err is not NULL.
 */
#ifndef VS_NODE_SNAPSHOT_H
#define VS_NODE_SNAPSHOT_H

#include "common/hnsw/hnsw.h"
#include "node/storage/attr_store.h"
#include "node/storage/payload.h"

#include <stdbool.h>
#include <stdint.h>

#define SNAPSHOT_ERR_MAX 384
#define SNAPSHOT_COLLECTION_MAX 72 /* bytes of the collection-name field, NUL-padded */
/* Snapshots snapshot_prune keeps (the newest, and one to fall back to). */
#define SNAPSHOT_KEEP 2

enum snapshot_status {
    SNAPSHOT_OK = 0,
    SNAPSHOT_EINVAL,    /* bad argument */
    SNAPSHOT_ENOMEM,    /* allocation failed */
    SNAPSHOT_EIO,       /* a file could not be read, written, renamed or listed */
    SNAPSHOT_EFORMAT,   /* the file is truncated, corrupt, foreign or of a newer version */
    SNAPSHOT_EMISMATCH, /* a valid file of another collection, shard or HNSW configuration */
    SNAPSHOT_ENOTFOUND, /* no snapshot file in the folder */
};

/* What a snapshot's header records. */
struct snapshot_info {
    uint32_t dim;
    enum hnsw_metric metric;
    uint32_t M, ef_construction;
    uint64_t lsn;   /* every record up to this LSN is in the image */
    uint64_t epoch; /* epoch of the last record in the image */
    uint64_t count, deleted;          /* live and deleted-but-linked points of the index */
    uint64_t payloads, payload_bytes; /* payloads stored and their total length */
    uint64_t attributes;              /* points with attributes (format 2; 0 in format 1) */
    uint32_t version;                 /* format version of the file (loads) */
    int64_t created_ms;               /* Unix milliseconds */
    uint32_t shard;
    char collection[SNAPSHOT_COLLECTION_MAX];
    uint64_t file_bytes; /* size of the file (filled by loads and commits) */
};

/* What loading expects; a file that disagrees is SNAPSHOT_EMISMATCH. */
struct snapshot_expect {
    const char *collection; /* NULL: not checked */
    uint32_t shard;
    uint32_t dim;
    enum hnsw_metric metric;
    uint32_t M, ef_construction;
};

/* A snapshot file that snapshot_load_newest refused. */
struct snapshot_rejected {
    uint64_t lsn;
    char reason[SNAPSHOT_ERR_MAX];
};

/* What snapshot_load_newest did, for the caller's log. */
struct snapshot_recovery {
    bool loaded;           /* a snapshot was loaded (its info is in the out argument) */
    uint32_t nrejected;    /* damaged snapshots moved aside (newest first), at most 4 reported */
    struct snapshot_rejected rejected[4];
    uint32_t temps_removed; /* leftover temp files of interrupted snapshots */
};

struct snapshot_writer;

/* A static description of a status code. */
const char *snapshot_status_str(int status);
/* Writes "<dir>/snapshot-<lsn>.vsx" into buf; false if it does not fit. */
bool snapshot_path(const char *dir, uint64_t lsn, char *buf, size_t size);

/* Creates `dir/snapshot.tmp`; *out belongs to the caller until commit or abort. */
int snapshot_begin(const char *dir, struct snapshot_writer **out, char *err);
/*
 * Serialises idx, ps and as with the header fields of *info into the temp
 * file (buffered, not yet durable). The caller must keep them free of
 * mutations until it returns; searches may run. Fills info->count,
 * deleted, payloads, payload_bytes, attributes and created_ms.
 */
int snapshot_write_state(struct snapshot_writer *sw, struct snapshot_info *info,
                         struct hnsw_index *idx, struct payload_store *ps, struct attr_store *as,
                         char *err);
/*
 * Flushes and fsyncs the temp file, renames it to snapshot-<info.lsn>.vsx,
 * fsyncs the folder and frees sw (also on failure, removing the temp file).
 * *file_bytes (may be NULL) gets the file's size.
 */
int snapshot_commit(struct snapshot_writer *sw, uint64_t *file_bytes, char *err);
/* Removes the temp file and frees sw. NULL is a no-op. */
void snapshot_abort(struct snapshot_writer *sw);

/*
 * Loads one snapshot file (format 1, without attributes, or 2); validates
 * everything. On success *idx, *ps and *as are new objects owned by the
 * caller and *info is filled; on failure they are NULL. expect may be NULL.
 */
int snapshot_load(const char *path, const struct snapshot_expect *expect,
                  struct snapshot_info *info, struct hnsw_index **idx,
                  struct payload_store **ps, struct attr_store **as, char *err);
/*
 * Loads the newest snapshot in dir that is valid. A damaged one
 * (SNAPSHOT_EFORMAT) is renamed to <name>.corrupt, reported in *rec, and
 * the next older one is tried. Stale temp files are removed. Returns
 * SNAPSHOT_ENOTFOUND when no valid snapshot remains (rec says whether
 * damaged ones were seen); a mismatch or I/O error stops the search and is
 * returned as is.
 */
int snapshot_load_newest(const char *dir, const struct snapshot_expect *expect,
                         struct snapshot_info *info, struct hnsw_index **idx,
                         struct payload_store **ps, struct attr_store **as,
                         struct snapshot_recovery *rec, char *err);
/*
 * LSNs of the snapshot files in dir, newest first; *lsns belongs to the
 * caller (free). *n is 0 (and *lsns NULL) when there are none.
 */
int snapshot_list(const char *dir, uint64_t **lsns, uint32_t *n, char *err);
/* Deletes all but the newest `keep` snapshots and fsyncs the folder; *deleted may be NULL. */
int snapshot_prune(const char *dir, uint32_t keep, uint32_t *deleted, char *err);

#endif
