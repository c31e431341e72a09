/*
 * wal.h — the write-ahead log of one shard replica: public API and ownership.
 *
 * The log is a folder of segment files `wal-<first_lsn>.log` (first_lsn
 * zero-padded to 20 digits so names sort by LSN). Each record carries one
 * LSN, the placement epoch it was written under and an opaque payload (the
 * node stores a packed WriteBatch). LSNs are consecutive across the whole
 * log. The exact byte layout and the recovery rules are at the top of wal.c
 * and in docs/storage.md.
 *
 * Concurrency: every call may be made from any thread; one mutex inside the
 * log serialises appends, rotation, deletion and the group-commit state.
 * wal_close needs no other call running. Iterators own their own file
 * descriptors and may be used while appends and deletions go on; they see
 * the records that existed when they were opened.
 *
 * Errors: calls return an enum wal_status (WAL_OK = 0) and, when err is not
 * NULL, write a one-line message into it (at least WAL_ERR_MAX bytes). After
 * a failed write or fsync the log refuses further appends (WAL_EFAILED):
 * whether the failed bytes reached the disk is unknowable, so the replica
 * must be reopened (recovery decides from what is really on disk).
 */
#ifndef VS_NODE_WAL_H
#define VS_NODE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_ERR_MAX               256
#define WAL_SEGMENT_BYTES_DEFAULT (64ull << 20)
/* Largest record payload accepted (a 64 MiB message plus slack). */
#define WAL_MAX_PAYLOAD (128u << 20)
/* Bytes of the fixed record header: len, crc, lsn, epoch. */
#define WAL_RECORD_HEADER 24
/* Bytes of the segment header: magic, version, reserved, first_lsn. */
#define WAL_SEGMENT_HEADER 24

enum wal_status {
    WAL_OK = 0,
    WAL_EINVAL,    /* bad argument, e.g. an LSN that does not follow the last one */
    WAL_ENOMEM,    /* allocation failed */
    WAL_EIO,       /* a read, write, fsync, rename or unlink failed (errno text in the message) */
    WAL_EFORMAT,   /* an iterator met a record that fails its CRC (the file changed under it) */
    WAL_ENOTFOUND, /* iteration from an LSN whose records were already deleted */
    WAL_EFAILED,   /* an earlier write or fsync failed; the log accepts no more appends */
    WAL_ECORRUPT,  /* wal_open: damage followed by valid records; nothing was cut (see rec) */
};

/* When an append is made durable. */
enum wal_fsync {
    WAL_FSYNC_ALWAYS = 0, /* fdatasync before the append returns (default) */
    WAL_FSYNC_BATCH,      /* group commit: concurrent appenders share one fdatasync */
    WAL_FSYNC_NONE,       /* never; the OS writes back when it likes */
};

/* How the first damaged record was damaged (what recovery cut off). */
enum wal_damage {
    WAL_DAMAGE_NONE = 0,
    WAL_DAMAGE_TORN,   /* the file ends inside a record (a write cut short by a crash) */
    WAL_DAMAGE_CRC,    /* the record's CRC does not match its bytes */
    WAL_DAMAGE_LENGTH, /* the length field is impossible (over WAL_MAX_PAYLOAD) */
    WAL_DAMAGE_LSN,    /* the LSN does not follow the previous record (or the file name) */
    WAL_DAMAGE_HEADER, /* the segment header is short, foreign or disagrees with the name */
};

struct wal_options {
    enum wal_fsync fsync;   /* default WAL_FSYNC_ALWAYS */
    uint64_t segment_bytes; /* rotate once a segment reaches this size; default 64 MiB */
    /* wal_open: records up to this LSN are held elsewhere (the snapshot the
       replica loaded); damage followed only by such records is cut like a
       torn tail instead of refused. 0 (default): none. */
    uint64_t covered_lsn;
};

/*
 * What wal_open found. When `truncated` is set the log was cut: the caller
 * should log `reason` (it names the file, the offset and the cause). When
 * `corrupt` is set (wal_open returned WAL_ECORRUPT) nothing was cut: the
 * damage at segment/offset is followed by valid records later_first_lsn ..
 * later_last_lsn, which are acknowledged writes.
 */
struct wal_recovery {
    uint64_t first_lsn, last_lsn; /* records kept; both 0 when the log is empty */
    uint64_t records;             /* records kept */
    uint32_t segments;            /* segment files kept */
    bool truncated;               /* damage was found and cut off */
    enum wal_damage damage;       /* the first damage found */
    char segment[64];             /* file name of the segment that was cut */
    uint64_t offset;              /* byte offset in it where it was cut */
    uint64_t bytes_dropped;       /* bytes removed: the tail of that file and every later file */
    uint32_t segments_deleted;    /* later segment files deleted (plus the cut one if emptied) */
    bool empty_tail_removed;      /* a last segment holding no record was removed (not damage) */
    bool corrupt;                 /* damage followed by valid records: the log was left as is */
    uint64_t later_first_lsn, later_last_lsn; /* LSNs of the valid records after the damage */
    uint64_t later_records;                   /* how many valid records follow the damage */
    char reason[512];                         /* one line describing the damage; empty when none */
};

/* Counters of an open log. */
struct wal_stats {
    uint64_t first_lsn, last_lsn; /* 0, 0 when empty */
    uint64_t durable_lsn;         /* highest LSN known fsynced */
    uint64_t bytes;               /* sum of segment file sizes */
    uint32_t segments;
    uint64_t fsyncs; /* fdatasync calls made on segments since open (group commit shares them) */
};

/* One record handed out by an iterator; data belongs to the iterator. */
struct wal_record {
    uint64_t lsn, epoch;
    const uint8_t *data; /* valid until the next wal_iter_next or wal_iter_close */
    uint32_t len;
};

struct wal;
struct wal_iter;

/* Fills o with the defaults. */
void wal_options_init(struct wal_options *o);
/* Parses "always", "batch" or "none"; returns -1 if none. */
int wal_fsync_parse(const char *s);
/* The policy's name. */
const char *wal_fsync_name(enum wal_fsync p);
/* A static description of a status code. */
const char *wal_status_str(int status);
/* A static name of a damage kind ("torn record", "CRC mismatch", ...). */
const char *wal_damage_str(enum wal_damage d);

/*
 * Opens (recovers) the log in dir, which must exist. Scans the segments in
 * LSN order and stops at the first torn or bad-CRC record, impossible
 * length, LSN discontinuity or bad segment header. It then searches every
 * byte after that point, in that file and in every later one, for a record
 * whose CRC verifies (LSN at least the one expected there). None found: the
 * damage is a torn tail (an interrupted append, a zero-filled tail); the
 * file is truncated there (ftruncate + fsync; a file left without records
 * is deleted), every later segment deleted, the folder fsynced and the cut
 * described in *rec. A valid record found: the damage is corruption in the
 * middle of acknowledged history; nothing is changed on disk, *rec
 * describes it (corrupt, segment, offset, later_*), err says which file
 * and offset, and WAL_ECORRUPT is returned — unless every valid record
 * after the damage has an LSN <= o->covered_lsn (a snapshot holds them):
 * then it is cut like a torn tail. A last segment holding no
 * record is removed too. *out belongs to the caller (wal_close).
 */
int wal_open(const char *dir, const struct wal_options *o, struct wal **out,
             struct wal_recovery *rec, char *err);
/* Makes everything appended durable, closes the files and frees w. NULL is a no-op. */
int wal_close(struct wal *w, char *err);

/*
 * Appends one record and returns once it is durable under the log's policy:
 * ALWAYS and BATCH return after an fdatasync that covers it (BATCH shares
 * that fsync with concurrent appenders), NONE right after write(2). lsn must
 * be last_lsn + 1 (any value > 0 when the log is empty). The payload is
 * copied to the file; the caller keeps it.
 */
int wal_append(struct wal *w, uint64_t lsn, uint64_t epoch, const void *payload, uint32_t len,
               char *err);
/*
 * The two halves of wal_append, for callers that hold their own lock while
 * writing: wal_write writes the record (and under ALWAYS also fsyncs it);
 * wal_wait_durable(lsn) then waits for a group fsync covering lsn under
 * BATCH (no-op under ALWAYS and NONE). Call it without the caller's lock so
 * other appenders can join the same fsync.
 */
int wal_write(struct wal *w, uint64_t lsn, uint64_t epoch, const void *payload, uint32_t len,
              char *err);
int wal_wait_durable(struct wal *w, uint64_t lsn, char *err);
/*
 * wal_write without the fsync of the ALWAYS policy: the caller makes a run
 * of records durable with one wal_sync (a backup applying a Replicate call's
 * records acknowledges them together).
 */
int wal_write_deferred(struct wal *w, uint64_t lsn, uint64_t epoch, const void *payload,
                       uint32_t len, char *err);
/* Fsyncs the active segment now, whatever the policy (snapshots, shutdown). */
int wal_sync(struct wal *w, char *err);

/*
 * Deletes every segment whose records all have LSN < lsn (never the active
 * segment) and fsyncs the folder. *deleted (may be NULL) gets the count.
 */
int wal_delete_before(struct wal *w, uint64_t lsn, uint32_t *deleted, char *err);
/*
 * Deletes every segment: the next append may start at any LSN. For a log
 * left behind a snapshot that already covers all of it.
 */
int wal_reset(struct wal *w, char *err);
/*
 * Cuts every record with LSN > lsn (a deposed primary's unacknowledged
 * tail): ftruncate of the segment holding lsn + 1 at that record (deleted
 * when the record is its first), deletion of every later segment, fsync of
 * the files and the folder. The next append is lsn + 1 (any LSN when
 * nothing is left). *cut (may be NULL) gets the number of records removed;
 * lsn >= the last LSN cuts nothing. A failure leaves the log WAL_EFAILED.
 */
int wal_truncate_after(struct wal *w, uint64_t lsn, uint64_t *cut, char *err);
/* Fills *st. */
void wal_stats(struct wal *w, struct wal_stats *st);
/* The sum of the segment sizes (wal_stats.bytes) without taking the log's lock,
 * so it never waits for an fsync (metrics, status). Any thread. */
uint64_t wal_bytes(const struct wal *w);

/*
 * Opens an iterator over the records with LSN >= from_lsn that exist now, in
 * LSN order. WAL_ENOTFOUND if records at from_lsn were already deleted
 * (from_lsn < first_lsn). An LSN past the end gives an empty iteration.
 * *out belongs to the caller (wal_iter_close).
 */
int wal_iter_open(struct wal *w, uint64_t from_lsn, struct wal_iter **out, char *err);
/*
 * Reads the next record into *r: returns WAL_OK with *has = true, or WAL_OK
 * with *has = false at the end; WAL_EFORMAT / WAL_EIO if a file cannot be
 * read back (checked with its CRC again).
 */
int wal_iter_next(struct wal_iter *it, struct wal_record *r, bool *has, char *err);
/* Closes the iterator's files and frees it. NULL is a no-op. */
void wal_iter_close(struct wal_iter *it);

/* Writes the file name of the segment starting at lsn into buf (>= 32 bytes). */
void wal_segment_name(uint64_t first_lsn, char *buf, size_t size);

#endif
