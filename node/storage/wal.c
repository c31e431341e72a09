/*
 * wal.c — the segmented write-ahead log of one shard replica: recovery,
 * appends with group commit, rotation, deletion and iteration.
 *
 * On disk (little-endian), a folder of segment files named
 * `wal-<first_lsn>.log`, first_lsn printed with 20 digits so that names sort
 * by LSN. Each file is
 *
 *   segment header (24 bytes):
 *     u8  magic[8]  "VSWAL\r\n\x1a"   (CR LF and ^Z catch text-mode mangling)
 *     u32 version   1
 *     u32 reserved  0
 *     u64 first_lsn the LSN in the file name; the first record carries it
 *   records, back to back:
 *     u32 len       bytes of payload only (the record occupies 24 + len bytes)
 *     u32 crc       CRC-32C over the 16 bytes of lsn and epoch as stored,
 *                   followed by the len payload bytes (not over len itself:
 *                   a damaged len makes the CRC range wrong, which fails it)
 *     u64 lsn       consecutive across the whole log, starting anywhere > 0
 *     u64 epoch     placement epoch the record was written under
 *     u8  payload[len]   for the node: a packed vecshard.v1.WriteBatch
 *
 * Recovery (wal_open) scans the segments in name order and stops at the
 * first damage: a short or foreign segment header, a first_lsn that
 * disagrees with the file name or does not follow the previous file, a
 * record cut short by the end of the file (torn), a length over
 * WAL_MAX_PAYLOAD, a CRC mismatch, or an LSN that is not the previous one
 * plus one. It then tells a torn tail from corruption: it looks at every
 * byte offset after the damage, in that file and every later one, for a
 * record whose length fits, whose LSN is at least the one expected there
 * and whose CRC verifies. A crash can only damage the record being
 * appended (or leave zeros the file system allocated for it), so a valid
 * record after the damage means acknowledged history is damaged in the
 * middle. Then nothing is touched: wal_open returns WAL_ECORRUPT naming the
 * file, the offset and the LSNs of the valid records after it, and the
 * replica refuses to open (cutting would silently drop those writes and
 * hand their LSNs out again). Only when nothing valid follows (or only
 * records the caller's snapshot already holds, options.covered_lsn) is the
 * damage cut like a torn tail: the file is truncated at the start of that record
 * (ftruncate + fdatasync; a file left with no record is deleted), every
 * later segment deleted and the folder fsynced. The log stays a gap-free
 * prefix of the history. What was found is returned in struct wal_recovery
 * for the caller to log; this file never prints. (The byte-wise search is
 * cheap: most offsets fail the length or LSN test before any CRC is
 * computed, and it runs only when damage was found.)
 *
 * Durability: a record is appended with one writev on an O_APPEND file.
 * ALWAYS fdatasyncs before returning. BATCH is group commit: an appender
 * whose record is not yet durable either becomes the leader (it notes the
 * last written LSN, drops the lock, fdatasyncs, and publishes durable_lsn)
 * or waits on the condition variable for the leader in progress; one fsync
 * covers every record written before it started. A new segment is created
 * and its folder entry fsynced before its first record; the previous
 * segment is fsynced as it is closed, so fsyncing the active file is always
 * enough. A failed write or fsync makes the log refuse further appends
 * (after a failed fsync the page cache state is unknown; retrying could
 * report success for lost data).
 */
#include "node/storage/wal.h"
#include "common/util/crc32c.h"
#include "node/storage/dir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the WAL format is little-endian; add byte swapping for this host"
#endif

#define WAL_VERSION 1
static const char seg_magic[8] = {'V', 'S', 'W', 'A', 'L', '\r', '\n', 0x1a};

struct seg_header {
    char magic[8];
    uint32_t version, reserved;
    uint64_t first_lsn;
};

struct rec_header {
    uint32_t len, crc;
    uint64_t lsn, epoch;
};

_Static_assert(sizeof(struct seg_header) == WAL_SEGMENT_HEADER, "segment header layout");
_Static_assert(sizeof(struct rec_header) == WAL_RECORD_HEADER, "record header layout");

/* One segment file of the log. */
struct segment {
    uint64_t first_lsn;
    uint64_t bytes; /* file size up to the end of the last complete record */
};

struct wal {
    char *dir;
    struct wal_options opt;
    /*
     * lock protects every field below; cond is signalled when a group
     * fsync ends. A BATCH leader runs fdatasync on `fd` without the lock
     * while `syncing` is set: whoever closes or replaces fd waits for
     * syncing to clear first.
     */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct segment *segs; /* ascending first_lsn; the last one is active */
    uint32_t nsegs, cap;
    int fd; /* active segment, O_APPEND; -1 when there is none */
    uint64_t first_lsn, last_lsn, durable_lsn;
    bool syncing;
    bool failed;
    char fail_msg[WAL_ERR_MAX];
    uint64_t fsyncs;
    /* The sum of segs[].bytes, republished under lock after every change so
     * wal_bytes can read it without the lock (which an fsync may hold). */
    _Atomic uint64_t bytes_pub;
};

struct wal_iter {
    FILE **files; /* one per segment from the starting one, opened up front */
    uint64_t *sizes;
    uint32_t nfiles, cur;
    uint64_t pos;       /* byte offset in files[cur] */
    uint64_t from, end; /* yield lsn in [from, end] */
    uint64_t prev;      /* last lsn read, for the continuity check */
    uint8_t *buf;
    size_t cap;
};

/* ---------------------------------------------------------------- helpers */

/* Writes a message into err (if any) and returns rc. */
static int fail(char *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, int rc, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, WAL_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void wal_options_init(struct wal_options *o)
{
    memset(o, 0, sizeof *o);
    o->fsync = WAL_FSYNC_ALWAYS;
    o->segment_bytes = WAL_SEGMENT_BYTES_DEFAULT;
}

int wal_fsync_parse(const char *s)
{
    if (!s) return -1;
    if (!strcmp(s, "always")) return WAL_FSYNC_ALWAYS;
    if (!strcmp(s, "batch")) return WAL_FSYNC_BATCH;
    if (!strcmp(s, "none")) return WAL_FSYNC_NONE;
    return -1;
}

const char *wal_fsync_name(enum wal_fsync p)
{
    switch (p) {
    case WAL_FSYNC_ALWAYS:
        return "always";
    case WAL_FSYNC_BATCH:
        return "batch";
    case WAL_FSYNC_NONE:
        return "none";
    }
    return "?";
}

const char *wal_status_str(int status)
{
    switch (status) {
    case WAL_OK:
        return "ok";
    case WAL_EINVAL:
        return "invalid argument";
    case WAL_ENOMEM:
        return "out of memory";
    case WAL_EIO:
        return "I/O error";
    case WAL_EFORMAT:
        return "damaged record";
    case WAL_ENOTFOUND:
        return "records already deleted";
    case WAL_EFAILED:
        return "log failed earlier";
    case WAL_ECORRUPT:
        return "damaged record followed by valid records";
    }
    return "unknown status";
}

const char *wal_damage_str(enum wal_damage d)
{
    switch (d) {
    case WAL_DAMAGE_NONE:
        return "none";
    case WAL_DAMAGE_TORN:
        return "torn record";
    case WAL_DAMAGE_CRC:
        return "CRC mismatch";
    case WAL_DAMAGE_LENGTH:
        return "impossible record length";
    case WAL_DAMAGE_LSN:
        return "LSN discontinuity";
    case WAL_DAMAGE_HEADER:
        return "bad segment header";
    }
    return "?";
}

void wal_segment_name(uint64_t first_lsn, char *buf, size_t size)
{
    snprintf(buf, size, "wal-%020" PRIu64 ".log", first_lsn);
}

/* Writes dir/name into buf; false if it does not fit. */
static bool join(char *buf, size_t size, const char *dir, const char *name)
{
    return snprintf(buf, size, "%s/%s", dir, name) < (int)size;
}

/* Path of the segment starting at first_lsn. */
static void seg_path(const struct wal *w, uint64_t first_lsn, char *buf, size_t size)
{
    char name[32];
    wal_segment_name(first_lsn, name, sizeof name);
    join(buf, size, w->dir, name);
}

/* Fsyncs a folder so that creations, renames and unlinks in it are durable. */
static int fsync_dir(const char *dir, char *err)
{
    return dir_fsync(dir, err, WAL_ERR_MAX) == 0 ? WAL_OK : WAL_EIO;
}

/* Grows *buf to at least n bytes; false on allocation failure. */
static bool reserve(uint8_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap) return true;
    size_t c = *cap ? *cap : 4096;
    while (c < n)
        c *= 2;
    uint8_t *p = realloc(*buf, c);
    if (!p) return false;
    *buf = p;
    *cap = c;
    return true;
}

/* Republishes the sum of the segment sizes for wal_bytes. lock held (or no other user yet). */
static void publish_bytes(struct wal *w)
{
    uint64_t b = 0;
    for (uint32_t i = 0; i < w->nsegs; i++)
        b += w->segs[i].bytes;
    atomic_store(&w->bytes_pub, b);
}

/* Appends a segment to the table; false on allocation failure. */
static bool segs_push(struct wal *w, uint64_t first_lsn, uint64_t bytes)
{
    if (w->nsegs == w->cap) {
        uint32_t c = w->cap ? w->cap * 2 : 16;
        struct segment *s = realloc(w->segs, c * sizeof *s);
        if (!s) return false;
        w->segs = s;
        w->cap = c;
    }
    w->segs[w->nsegs++] = (struct segment){first_lsn, bytes};
    publish_bytes(w);
    return true;
}

/* ---------------------------------------------------------------- reading records */

enum rd { RD_OK, RD_END, RD_DAMAGED, RD_NOMEM, RD_IO };

/*
 * Reads the record at the stream's position, `avail` bytes before the end
 * of the valid data. The payload lands in *buf (grown as needed).
 */
static enum rd read_record(FILE *f, uint64_t avail, struct rec_header *h, uint8_t **buf,
                           size_t *cap, enum wal_damage *dmg)
{
    if (avail == 0) return RD_END;
    if (avail < sizeof *h) {
        *dmg = WAL_DAMAGE_TORN;
        return RD_DAMAGED;
    }
    if (fread(h, sizeof *h, 1, f) != 1) return RD_IO;
    if (h->len > WAL_MAX_PAYLOAD) {
        *dmg = WAL_DAMAGE_LENGTH;
        return RD_DAMAGED;
    }
    if (avail - sizeof *h < h->len) {
        *dmg = WAL_DAMAGE_TORN;
        return RD_DAMAGED;
    }
    if (!reserve(buf, cap, h->len ? h->len : 1)) return RD_NOMEM;
    if (h->len && fread(*buf, h->len, 1, f) != 1) return RD_IO;
    uint32_t crc = crc32c_extend(0, &h->lsn, 16);
    crc = crc32c_extend(crc, *buf, h->len);
    if (crc != h->crc) {
        *dmg = WAL_DAMAGE_CRC;
        return RD_DAMAGED;
    }
    return RD_OK;
}

/* ---------------------------------------------------------------- recovery */

/* Damage found while scanning: where, what, and a description. */
struct cut {
    uint32_t seg;    /* index in the sorted name list */
    uint64_t offset; /* where the kept bytes of that file end */
    enum wal_damage dmg;
    char why[160];
};

/*
 * Scans one segment file: checks its header, then its records while they
 * follow *expect (0 = take the file's first_lsn). Fills *keep with the
 * bytes of complete good records and *nrec with their count; returns
 * WAL_OK with c->dmg set on damage, or an error for I/O / memory failures.
 */
static int scan_segment(const char *path, uint64_t name_lsn, uint64_t *expect, uint64_t *keep,
                        uint64_t *nrec, uint8_t **buf, size_t *cap, struct cut *c, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, WAL_EIO, "open %s: %s", path, strerror(errno));
    int rc = WAL_OK;
    struct stat st;
    struct seg_header sh;
    *keep = 0;
    *nrec = 0;
    if (fstat(fileno(f), &st) != 0) {
        rc = fail(err, WAL_EIO, "stat %s: %s", path, strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < sizeof sh) {
        c->dmg = WAL_DAMAGE_HEADER;
        snprintf(c->why, sizeof c->why, "segment header is cut short (%" PRIu64 " bytes)", size);
        goto out;
    }
    if (fread(&sh, sizeof sh, 1, f) != 1) {
        rc = fail(err, WAL_EIO, "read %s: %s", path, strerror(errno));
        goto out;
    }
    if (memcmp(sh.magic, seg_magic, sizeof seg_magic) != 0 || sh.version != WAL_VERSION ||
        sh.first_lsn != name_lsn) {
        c->dmg = WAL_DAMAGE_HEADER;
        snprintf(
            c->why, sizeof c->why,
            "segment header is foreign or disagrees with the name (version %u, first lsn %" PRIu64
            ")",
            sh.version, sh.first_lsn);
        goto out;
    }
    if (*expect && name_lsn != *expect) {
        c->dmg = WAL_DAMAGE_LSN;
        snprintf(c->why, sizeof c->why, "segment starts at lsn %" PRIu64 ", expected %" PRIu64,
                 name_lsn, *expect);
        goto out;
    }
    *expect = name_lsn;
    uint64_t off = sizeof sh;
    for (;;) {
        struct rec_header h;
        enum wal_damage d = WAL_DAMAGE_NONE;
        enum rd r = read_record(f, size - off, &h, buf, cap, &d);
        if (r == RD_END) break;
        if (r == RD_NOMEM) {
            rc = fail(err, WAL_ENOMEM, "out of memory reading %s", path);
            goto out;
        }
        if (r == RD_IO) {
            rc =
                fail(err, WAL_EIO, "read %s: %s", path, ferror(f) ? strerror(errno) : "short read");
            goto out;
        }
        if (r == RD_DAMAGED) {
            c->dmg = d;
            if (d == WAL_DAMAGE_TORN)
                snprintf(c->why, sizeof c->why,
                         "record after lsn %" PRIu64 " is cut short by the end of the file",
                         *expect - 1);
            else if (d == WAL_DAMAGE_LENGTH)
                snprintf(c->why, sizeof c->why,
                         "record after lsn %" PRIu64 " claims %u payload bytes", *expect - 1,
                         h.len);
            else
                snprintf(c->why, sizeof c->why, "record (lsn field %" PRIu64 ") fails its CRC",
                         h.lsn);
            break;
        }
        if (h.lsn != *expect) {
            c->dmg = WAL_DAMAGE_LSN;
            snprintf(c->why, sizeof c->why, "record has lsn %" PRIu64 ", expected %" PRIu64, h.lsn,
                     *expect);
            break;
        }
        off += sizeof h + h.len;
        (*expect)++;
        (*nrec)++;
    }
    *keep = off;
out:
    fclose(f);
    return rc;
}

/* Cuts the log at c: truncates or deletes that file, deletes every later one. */
static int apply_cut(const char *dir, const uint64_t *names, uint32_t n, const struct cut *c,
                     struct wal_recovery *rec, char *err)
{
    char path[4096], name[32];
    struct stat st;
    for (uint32_t i = c->seg; i < n; i++) {
        wal_segment_name(names[i], name, sizeof name);
        if (!join(path, sizeof path, dir, name))
            return fail(err, WAL_EINVAL, "path under %s is too long", dir);
        uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        if (i == c->seg && c->offset > WAL_SEGMENT_HEADER) {
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0) return fail(err, WAL_EIO, "open %s: %s", path, strerror(errno));
            int bad = ftruncate(fd, (off_t)c->offset) != 0 || fdatasync(fd) != 0;
            int e = errno;
            close(fd);
            if (bad) return fail(err, WAL_EIO, "truncate %s: %s", path, strerror(e));
            rec->bytes_dropped += size - c->offset;
            continue;
        }
        if (unlink(path) != 0 && errno != ENOENT)
            return fail(err, WAL_EIO, "unlink %s: %s", path, strerror(errno));
        rec->bytes_dropped += size;
        rec->segments_deleted++;
    }
    return fsync_dir(dir, err);
}

/* Valid records found after a damage point. */
struct later {
    uint64_t first_lsn, last_lsn, records;
};

/* True if a whole record with lsn >= min_lsn and a matching CRC starts at m[p]. */
static bool valid_at(const uint8_t *m, uint64_t size, uint64_t p, uint64_t min_lsn,
                     struct rec_header *h)
{
    if (size - p < sizeof *h) return false;
    memcpy(h, m + p, sizeof *h);
    if (h->len > WAL_MAX_PAYLOAD || h->len > size - p - sizeof *h || h->lsn < min_lsn) return false;
    uint32_t crc = crc32c_extend(0, m + p + 8, 16);
    return crc32c_extend(crc, m + p + sizeof *h, h->len) == h->crc;
}

/* Adds the valid records of path at byte offsets >= from to *l (see the top of the file). */
static int scan_valid(const char *path, uint64_t from, uint64_t min_lsn, struct later *l, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(err, WAL_EIO, "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(err, WAL_EIO, "stat %s: %s", path, strerror(e));
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size <= from || size - from < WAL_RECORD_HEADER) {
        close(fd);
        return WAL_OK;
    }
    const uint8_t *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return fail(err, WAL_EIO, "mmap %s: %s", path, strerror(e));
    struct rec_header h;
    for (uint64_t p = from; size - p >= WAL_RECORD_HEADER;) {
        if (!valid_at(m, size, p, min_lsn, &h)) {
            p++;
            continue;
        }
        if (l->records == 0 || h.lsn < l->first_lsn) l->first_lsn = h.lsn;
        if (h.lsn > l->last_lsn) l->last_lsn = h.lsn;
        l->records++;
        p += sizeof h + h.len;
    }
    munmap((void *)m, size);
    return WAL_OK;
}

/*
 * Looks for valid records after the damage at byte `from` of segment
 * names[seg]: in the rest of that file and in every later file (from its
 * first byte, so a damaged header hides nothing).
 */
static int find_later(const char *dir, const uint64_t *names, uint32_t n, uint32_t seg,
                      uint64_t from, uint64_t min_lsn, struct later *l, char *err)
{
    char path[4096], name[32];
    memset(l, 0, sizeof *l);
    if (min_lsn == 0) min_lsn = 1;
    for (uint32_t i = seg; i < n; i++) {
        wal_segment_name(names[i], name, sizeof name);
        if (!join(path, sizeof path, dir, name))
            return fail(err, WAL_EINVAL, "path under %s is too long", dir);
        int rc = scan_valid(path, i == seg ? from : 0, min_lsn, l, err);
        if (rc) return rc;
    }
    return WAL_OK;
}

/* Lists the segment names in dir, sorted; *names belongs to the caller. */
static int list_segments(const char *dir, uint64_t **names, uint32_t *n, char *err)
{
    if (dir_list_lsns(dir, "wal-", ".log", false, names, n, err, WAL_ERR_MAX) == 0) return WAL_OK;
    return errno == ENOMEM ? WAL_ENOMEM : WAL_EIO;
}

/* Scans every segment, cuts at the first damage and fills the segment table. */
static int recover(struct wal *w, struct wal_recovery *rec, char *err)
{
    uint64_t *names = NULL;
    uint32_t n = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    char path[4096], name[32];
    int rc = list_segments(w->dir, &names, &n, err);
    if (rc) goto out;
    uint64_t expect = 0;
    struct cut c = {.dmg = WAL_DAMAGE_NONE};
    for (uint32_t i = 0; i < n; i++) {
        wal_segment_name(names[i], name, sizeof name);
        if (!join(path, sizeof path, w->dir, name)) {
            rc = fail(err, WAL_EINVAL, "path under %s is too long", w->dir);
            goto out;
        }
        uint64_t keep = 0, nrec = 0;
        c.seg = i;
        if ((rc = scan_segment(path, names[i], &expect, &keep, &nrec, &buf, &cap, &c, err)))
            goto out;
        if (c.dmg == WAL_DAMAGE_NONE && nrec == 0 && i + 1 < n) {
            c.dmg = WAL_DAMAGE_LSN;
            snprintf(c.why, sizeof c.why, "segment holds no record but later segments exist");
        }
        if (c.dmg != WAL_DAMAGE_NONE) {
            c.offset = keep;
            rec->damage = c.dmg;
            snprintf(rec->segment, sizeof rec->segment, "%s", name);
            rec->offset = keep;
            /*
             * A record that fails its CRC (or is cut short) is not evidence
             * itself: look from the byte after its start. One whose CRC holds
             * but whose LSN is out of place is, and a bad header hides
             * nothing: look from the damage itself.
             */
            bool own_bad =
                c.dmg == WAL_DAMAGE_CRC || c.dmg == WAL_DAMAGE_TORN || c.dmg == WAL_DAMAGE_LENGTH;
            struct later l;
            if ((rc = find_later(w->dir, names, n, i, keep + (own_bad ? 1 : 0), expect, &l, err)))
                goto out;
            if (l.records && l.last_lsn > w->opt.covered_lsn) {
                rec->corrupt = true;
                rec->later_first_lsn = l.first_lsn;
                rec->later_last_lsn = l.last_lsn;
                rec->later_records = l.records;
                snprintf(rec->reason, sizeof rec->reason,
                         "%s at byte %" PRIu64 " of %s: %s; followed by %" PRIu64
                         " valid record(s), lsn %" PRIu64 "..%" PRIu64,
                         wal_damage_str(c.dmg), keep, name, c.why, l.records, l.first_lsn,
                         l.last_lsn);
                rc = fail(err, WAL_ECORRUPT,
                          "wal %s offset %" PRIu64 ": damaged record (%s) followed by valid "
                          "records up to lsn %" PRIu64 "; refusing to truncate acknowledged "
                          "writes",
                          name, keep, wal_damage_str(c.dmg), l.last_lsn);
                goto out;
            }
            rec->truncated = true;
            if ((rc = apply_cut(w->dir, names, n, &c, rec, err))) goto out;
            if (nrec) {
                w->last_lsn = expect - 1;
                if (!segs_push(w, names[i], keep)) {
                    rc = fail(err, WAL_ENOMEM, "out of memory");
                    goto out;
                }
            }
            int k = snprintf(rec->reason, sizeof rec->reason,
                             "%s at byte %" PRIu64 " of %s: %s; kept records up to lsn %" PRIu64
                             ", dropped %" PRIu64 " bytes and %u later segment(s)",
                             wal_damage_str(c.dmg), keep, name, c.why, w->last_lsn,
                             rec->bytes_dropped, n - i - 1);
            if (l.records && k > 0 && (size_t)k < sizeof rec->reason)
                snprintf(rec->reason + k, sizeof rec->reason - (size_t)k,
                         " (their %" PRIu64 " valid record(s), lsn %" PRIu64 "..%" PRIu64
                         ", are all at or below the covered lsn %" PRIu64 ")",
                         l.records, l.first_lsn, l.last_lsn, w->opt.covered_lsn);
            break;
        }
        if (nrec == 0) {
            /* A last segment created just before a crash, before its first record. */
            if (unlink(path) != 0 || (rc = fsync_dir(w->dir, err)) != WAL_OK) {
                if (!rc) rc = fail(err, WAL_EIO, "unlink %s: %s", path, strerror(errno));
                goto out;
            }
            rec->empty_tail_removed = true;
            break;
        }
        if (!segs_push(w, names[i], keep)) {
            rc = fail(err, WAL_ENOMEM, "out of memory");
            goto out;
        }
        if (w->first_lsn == 0) w->first_lsn = names[i];
        w->last_lsn = expect - 1;
    }
    if (w->nsegs && w->first_lsn == 0) w->first_lsn = w->segs[0].first_lsn;
out:
    free(names);
    free(buf);
    return rc;
}

int wal_open(const char *dir, const struct wal_options *o, struct wal **out,
             struct wal_recovery *rec, char *err)
{
    *out = NULL;
    memset(rec, 0, sizeof *rec);
    struct wal *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return fail(err, WAL_ENOMEM, "out of memory");
    }
    wal_options_init(&w->opt);
    if (o) w->opt = *o;
    if (w->opt.segment_bytes == 0) w->opt.segment_bytes = WAL_SEGMENT_BYTES_DEFAULT;
    w->fd = -1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    int rc;
    if (w->opt.fsync > WAL_FSYNC_NONE) {
        rc = fail(err, WAL_EINVAL, "fsync policy %d is not always, batch or none", w->opt.fsync);
        goto fail;
    }
    if ((rc = recover(w, rec, err))) goto fail;
    if (w->nsegs) {
        char path[4096];
        seg_path(w, w->segs[w->nsegs - 1].first_lsn, path, sizeof path);
        w->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (w->fd < 0) {
            rc = fail(err, WAL_EIO, "open %s: %s", path, strerror(errno));
            goto fail;
        }
        /* What a crashed process left in the page cache is made durable before we rely on it. */
        if (fdatasync(w->fd) != 0) {
            rc = fail(err, WAL_EIO, "fdatasync %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    w->durable_lsn = w->last_lsn;
    rec->first_lsn = w->first_lsn;
    rec->last_lsn = w->last_lsn;
    rec->records = w->nsegs ? w->last_lsn - w->first_lsn + 1 : 0;
    rec->segments = w->nsegs;
    *out = w;
    return WAL_OK;
fail:
    if (w->fd >= 0) close(w->fd);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->segs);
    free(w->dir);
    free(w);
    return rc;
}

/* ---------------------------------------------------------------- appending */

/* Marks the log failed with a message; returns WAL_EIO. Lock held. */
static int set_failed(struct wal *w, char *err, const char *what, int e)
{
    w->failed = true;
    snprintf(w->fail_msg, sizeof w->fail_msg, "%s: %s", what, strerror(e));
    return fail(err, WAL_EIO, "%s", w->fail_msg);
}

/* Waits until no group fsync runs outside the lock. Lock held. */
static void wait_not_syncing(struct wal *w)
{
    while (w->syncing)
        pthread_cond_wait(&w->cond, &w->lock);
}

/* Closes the active segment (fsynced unless NONE) and starts one at lsn. Lock held. */
static int rotate(struct wal *w, uint64_t lsn, char *err)
{
    char path[4096];
    wait_not_syncing(w);
    if (w->fd >= 0) {
        if (w->opt.fsync != WAL_FSYNC_NONE) {
            if (fdatasync(w->fd) != 0)
                return set_failed(w, err, "fdatasync of the full segment", errno);
            w->fsyncs++;
            w->durable_lsn = w->last_lsn;
        }
        close(w->fd);
        w->fd = -1;
    }
    seg_path(w, lsn, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return set_failed(w, err, "creating a WAL segment", errno);
    struct seg_header sh = {.version = WAL_VERSION, .first_lsn = lsn};
    memcpy(sh.magic, seg_magic, sizeof seg_magic);
    if (write(fd, &sh, sizeof sh) != (ssize_t)sizeof sh) {
        int e = errno ? errno : EIO;
        close(fd);
        unlink(path);
        return set_failed(w, err, "writing a WAL segment header", e);
    }
    if (w->opt.fsync != WAL_FSYNC_NONE) {
        char msg[WAL_ERR_MAX];
        if (fdatasync(fd) != 0 || fsync_dir(w->dir, msg) != WAL_OK) {
            int e = errno;
            close(fd);
            return set_failed(w, err, "making a new WAL segment durable", e);
        }
    }
    if (!segs_push(w, lsn, sizeof sh)) {
        close(fd);
        unlink(path);
        return fail(err, WAL_ENOMEM, "out of memory");
    }
    w->fd = fd;
    return WAL_OK;
}

/* Writes all of iov or fails; returns 0 or an errno value. */
static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t k = writev(fd, iov, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

/* wal_write and wal_write_deferred: sync says whether the ALWAYS policy fsyncs here. */
static int write_record(struct wal *w, uint64_t lsn, uint64_t epoch, const void *payload,
                        uint32_t len, bool sync, char *err)
{
    if (len > WAL_MAX_PAYLOAD)
        return fail(err, WAL_EINVAL, "record of %u bytes exceeds the %u-byte limit", len,
                    WAL_MAX_PAYLOAD);
    if (len && !payload) return fail(err, WAL_EINVAL, "payload is missing");
    pthread_mutex_lock(&w->lock);
    int rc = WAL_OK;
    if (w->failed) {
        rc = fail(err, WAL_EFAILED, "the WAL failed earlier (%s); reopen the replica", w->fail_msg);
        goto out;
    }
    if (lsn == 0 || (w->last_lsn && lsn != w->last_lsn + 1)) {
        rc = fail(err, WAL_EINVAL, "lsn %" PRIu64 " does not follow the last lsn %" PRIu64, lsn,
                  w->last_lsn);
        goto out;
    }
    if (w->fd < 0 || w->segs[w->nsegs - 1].bytes >= w->opt.segment_bytes) {
        if ((rc = rotate(w, lsn, err))) goto out;
    }
    struct rec_header h = {.len = len, .lsn = lsn, .epoch = epoch};
    h.crc = crc32c_extend(crc32c_extend(0, &h.lsn, 16), payload, len);
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)payload, len}};
    int e = write_all(w->fd, iov, len ? 2 : 1);
    struct segment *s = &w->segs[w->nsegs - 1];
    if (e) {
        /* Take a partial record back off the file so the next open does not see it as damage. */
        if (ftruncate(w->fd, (off_t)s->bytes) != 0) e = errno;
        rc = set_failed(w, err, "appending a WAL record", e);
        goto out;
    }
    s->bytes += sizeof h + len;
    publish_bytes(w);
    if (w->first_lsn == 0) w->first_lsn = lsn;
    w->last_lsn = lsn;
    if (sync && w->opt.fsync == WAL_FSYNC_ALWAYS) {
        wait_not_syncing(w);
        if (fdatasync(w->fd) != 0) {
            rc = set_failed(w, err, "fdatasync of a WAL record", errno);
            goto out;
        }
        w->fsyncs++;
        w->durable_lsn = lsn;
    }
out:
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int wal_write(struct wal *w, uint64_t lsn, uint64_t epoch, const void *payload, uint32_t len,
              char *err)
{
    return write_record(w, lsn, epoch, payload, len, true, err);
}

int wal_write_deferred(struct wal *w, uint64_t lsn, uint64_t epoch, const void *payload,
                       uint32_t len, char *err)
{
    return write_record(w, lsn, epoch, payload, len, false, err);
}

int wal_wait_durable(struct wal *w, uint64_t lsn, char *err)
{
    if (w->opt.fsync != WAL_FSYNC_BATCH) return WAL_OK;
    pthread_mutex_lock(&w->lock);
    int rc = WAL_OK;
    while (w->durable_lsn < lsn) {
        if (w->failed) {
            rc = fail(err, WAL_EFAILED, "the WAL failed (%s)", w->fail_msg);
            break;
        }
        if (w->syncing) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        /* Become the leader: one fdatasync for everything written so far. */
        uint64_t target = w->last_lsn;
        int fd = w->fd;
        w->syncing = true;
        pthread_mutex_unlock(&w->lock);
        int r = fdatasync(fd), e = errno;
        pthread_mutex_lock(&w->lock);
        w->syncing = false;
        w->fsyncs++;
        if (r != 0)
            rc = set_failed(w, err, "fdatasync of the WAL (group commit)", e);
        else if (target > w->durable_lsn)
            w->durable_lsn = target;
        pthread_cond_broadcast(&w->cond);
        if (rc) break;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int wal_append(struct wal *w, uint64_t lsn, uint64_t epoch, const void *payload, uint32_t len,
               char *err)
{
    int rc = wal_write(w, lsn, epoch, payload, len, err);
    return rc ? rc : wal_wait_durable(w, lsn, err);
}

int wal_sync(struct wal *w, char *err)
{
    pthread_mutex_lock(&w->lock);
    int rc = WAL_OK;
    wait_not_syncing(w);
    if (w->failed)
        rc = fail(err, WAL_EFAILED, "the WAL failed earlier (%s)", w->fail_msg);
    else if (w->fd >= 0 && w->durable_lsn < w->last_lsn) {
        if (fdatasync(w->fd) != 0)
            rc = set_failed(w, err, "fdatasync of the WAL", errno);
        else {
            w->fsyncs++;
            w->durable_lsn = w->last_lsn;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int wal_close(struct wal *w, char *err)
{
    if (!w) return WAL_OK;
    int rc = w->failed ? WAL_OK : wal_sync(w, err);
    if (w->fd >= 0) close(w->fd);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->segs);
    free(w->dir);
    free(w);
    return rc;
}

/* ---------------------------------------------------------------- deleting */

int wal_delete_before(struct wal *w, uint64_t lsn, uint32_t *deleted, char *err)
{
    char path[4096];
    uint32_t k = 0;
    int rc = WAL_OK;
    pthread_mutex_lock(&w->lock);
    while (k + 1 < w->nsegs && w->segs[k + 1].first_lsn <= lsn) {
        seg_path(w, w->segs[k].first_lsn, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = fail(err, WAL_EIO, "unlink %s: %s", path, strerror(errno));
            break;
        }
        k++;
    }
    if (k) {
        memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof *w->segs);
        w->nsegs -= k;
        publish_bytes(w);
        w->first_lsn = w->segs[0].first_lsn;
        int r = fsync_dir(w->dir, rc ? NULL : err);
        if (!rc) rc = r;
    }
    pthread_mutex_unlock(&w->lock);
    if (deleted) *deleted = k;
    return rc;
}

int wal_reset(struct wal *w, char *err)
{
    char path[4096];
    int rc = WAL_OK;
    pthread_mutex_lock(&w->lock);
    wait_not_syncing(w);
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    for (uint32_t i = 0; i < w->nsegs; i++) {
        seg_path(w, w->segs[i].first_lsn, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT && !rc)
            rc = fail(err, WAL_EIO, "unlink %s: %s", path, strerror(errno));
    }
    w->nsegs = 0;
    publish_bytes(w);
    w->first_lsn = w->last_lsn = w->durable_lsn = 0;
    int r = fsync_dir(w->dir, rc ? NULL : err);
    if (!rc) rc = r;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

uint64_t wal_bytes(const struct wal *w)
{
    return atomic_load(&w->bytes_pub);
}

void wal_stats(struct wal *w, struct wal_stats *st)
{
    pthread_mutex_lock(&w->lock);
    st->first_lsn = w->first_lsn;
    st->last_lsn = w->last_lsn;
    st->durable_lsn = w->durable_lsn;
    st->segments = w->nsegs;
    st->fsyncs = w->fsyncs;
    st->bytes = 0;
    for (uint32_t i = 0; i < w->nsegs; i++)
        st->bytes += w->segs[i].bytes;
    pthread_mutex_unlock(&w->lock);
}

/* Byte offset in the segment file fd (records from first_lsn) where record `lsn` starts. */
static int record_offset(int fd, uint64_t first_lsn, uint64_t lsn, uint64_t size, uint64_t *off,
                         char *err)
{
    uint64_t pos = WAL_SEGMENT_HEADER;
    for (uint64_t l = first_lsn; l < lsn; l++) {
        struct rec_header h;
        if (pos + sizeof h > size || pread(fd, &h, sizeof h, (off_t)pos) != (ssize_t)sizeof h)
            return fail(err, WAL_EFORMAT, "segment of lsn %" PRIu64 " ends before lsn %" PRIu64,
                        first_lsn, lsn);
        if (h.lsn != l)
            return fail(err, WAL_EFORMAT, "record has lsn %" PRIu64 ", expected %" PRIu64, h.lsn,
                        l);
        pos += sizeof h + h.len;
    }
    *off = pos;
    return WAL_OK;
}

int wal_truncate_after(struct wal *w, uint64_t lsn, uint64_t *cut, char *err)
{
    char path[4096];
    int rc = WAL_OK;
    uint64_t removed = 0;
    pthread_mutex_lock(&w->lock);
    wait_not_syncing(w);
    if (w->failed) {
        rc = fail(err, WAL_EFAILED, "the WAL failed earlier (%s); reopen the replica", w->fail_msg);
        goto out;
    }
    if (w->nsegs == 0 || lsn >= w->last_lsn) goto out;
    removed = w->last_lsn - (lsn + 1 < w->first_lsn ? w->first_lsn - 1 : lsn);
    /* The active descriptor may belong to a segment that goes; reopened below. */
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    uint32_t k = 0; /* the segment holding lsn + 1 */
    while (k + 1 < w->nsegs && w->segs[k + 1].first_lsn <= lsn + 1)
        k++;
    for (uint32_t i = w->nsegs; i-- > k;) {
        struct segment *s = &w->segs[i];
        seg_path(w, s->first_lsn, path, sizeof path);
        if (i > k || s->first_lsn > lsn) {
            if (unlink(path) != 0 && errno != ENOENT) {
                rc = set_failed(w, err, "deleting a WAL segment after a truncation point", errno);
                goto out;
            }
            w->nsegs = i;
            publish_bytes(w);
            continue;
        }
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            rc = set_failed(w, err, "opening a WAL segment to truncate it", errno);
            goto out;
        }
        uint64_t off = 0;
        rc = record_offset(fd, s->first_lsn, lsn + 1, s->bytes, &off, err);
        if (rc == WAL_OK && (ftruncate(fd, (off_t)off) != 0 || fdatasync(fd) != 0))
            rc = set_failed(w, err, "truncating a WAL segment", errno);
        close(fd);
        if (rc) goto out;
        s->bytes = off;
        publish_bytes(w);
    }
    if (w->nsegs == 0) {
        w->first_lsn = w->last_lsn = w->durable_lsn = 0;
    } else {
        w->last_lsn = lsn;
        if (w->durable_lsn > lsn) w->durable_lsn = lsn;
        seg_path(w, w->segs[w->nsegs - 1].first_lsn, path, sizeof path);
        w->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (w->fd < 0) {
            rc = set_failed(w, err, "reopening the active WAL segment", errno);
            goto out;
        }
    }
    rc = fsync_dir(w->dir, err);
out:
    pthread_mutex_unlock(&w->lock);
    if (cut) *cut = rc == WAL_OK ? removed : 0;
    return rc;
}

/* ---------------------------------------------------------------- iterating */

int wal_iter_open(struct wal *w, uint64_t from_lsn, struct wal_iter **out, char *err)
{
    *out = NULL;
    struct wal_iter *it = calloc(1, sizeof *it);
    if (!it) return fail(err, WAL_ENOMEM, "out of memory");
    int rc = WAL_OK;
    char path[4096];
    pthread_mutex_lock(&w->lock);
    it->from = from_lsn;
    it->end = w->last_lsn;
    if (w->nsegs && from_lsn < w->first_lsn) {
        rc = fail(err, WAL_ENOTFOUND,
                  "records from lsn %" PRIu64 " were deleted; the WAL starts at lsn %" PRIu64,
                  from_lsn, w->first_lsn);
        goto unlock;
    }
    uint32_t start = 0;
    while (start + 1 < w->nsegs && w->segs[start + 1].first_lsn <= from_lsn)
        start++;
    uint32_t n = from_lsn > w->last_lsn ? 0 : w->nsegs - start;
    if (n && (!(it->files = calloc(n, sizeof *it->files)) ||
              !(it->sizes = calloc(n, sizeof *it->sizes)))) {
        rc = fail(err, WAL_ENOMEM, "out of memory");
        goto unlock;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct segment *s = &w->segs[start + i];
        seg_path(w, s->first_lsn, path, sizeof path);
        if (!(it->files[i] = fopen(path, "rb"))) {
            rc = fail(err, WAL_EIO, "open %s: %s", path, strerror(errno));
            goto unlock;
        }
        it->nfiles++;
        it->sizes[i] = s->bytes;
    }
unlock:
    pthread_mutex_unlock(&w->lock);
    if (rc) {
        wal_iter_close(it);
        return rc;
    }
    it->pos = WAL_SEGMENT_HEADER;
    if (it->nfiles && fseeko(it->files[0], WAL_SEGMENT_HEADER, SEEK_SET) != 0) {
        wal_iter_close(it);
        return fail(err, WAL_EIO, "seek in a WAL segment: %s", strerror(errno));
    }
    *out = it;
    return WAL_OK;
}

int wal_iter_next(struct wal_iter *it, struct wal_record *r, bool *has, char *err)
{
    *has = false;
    while (it->cur < it->nfiles) {
        FILE *f = it->files[it->cur];
        struct rec_header h;
        enum wal_damage d = WAL_DAMAGE_NONE;
        enum rd k = read_record(f, it->sizes[it->cur] - it->pos, &h, &it->buf, &it->cap, &d);
        if (k == RD_END) {
            if (++it->cur < it->nfiles) {
                it->pos = WAL_SEGMENT_HEADER;
                if (fseeko(it->files[it->cur], WAL_SEGMENT_HEADER, SEEK_SET) != 0)
                    return fail(err, WAL_EIO, "seek in a WAL segment: %s", strerror(errno));
            }
            continue;
        }
        if (k == RD_NOMEM) return fail(err, WAL_ENOMEM, "out of memory reading the WAL");
        if (k == RD_IO)
            return fail(err, WAL_EIO, "reading the WAL failed after lsn %" PRIu64, it->prev);
        if (k == RD_DAMAGED || (it->prev && h.lsn != it->prev + 1))
            return fail(err, WAL_EFORMAT, "WAL record after lsn %" PRIu64 " is damaged (%s)",
                        it->prev, k == RD_DAMAGED ? wal_damage_str(d) : "LSN discontinuity");
        it->pos += sizeof h + h.len;
        it->prev = h.lsn;
        if (h.lsn > it->end) break;
        if (h.lsn < it->from) continue;
        r->lsn = h.lsn;
        r->epoch = h.epoch;
        r->data = it->buf;
        r->len = h.len;
        *has = true;
        return WAL_OK;
    }
    it->cur = it->nfiles;
    return WAL_OK;
}

void wal_iter_close(struct wal_iter *it)
{
    if (!it) return;
    for (uint32_t i = 0; i < it->nfiles; i++)
        fclose(it->files[i]);
    free(it->files);
    free(it->sizes);
    free(it->buf);
    free(it);
}
