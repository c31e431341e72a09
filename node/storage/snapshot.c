/*
 * snapshot.c — the replica snapshot file: writing, loading, choosing the
 * newest valid one, pruning.
 *
 * Layout of `snapshot-<lsn>.vsx` (little-endian):
 *
 *   "VSSNAP\r\n"            8-byte magic
 *   u32 version             SNAP_VERSION; newer files are refused
 *   u32 header_len          sizeof(struct disk_header)
 *   struct disk_header      dim, metric, M, ef_construction, lsn, epoch,
 *                           counts (live, deleted, payloads, payload bytes),
 *                           created_ms, shard, collection name
 *   u32 crc32c(header)
 *   sections, in this order, each [u32 tag][u32 0][u64 len][len bytes][u32 crc32c(bytes)]:
 *     INDX  the HNSW index as hnsw_write streams it (vectors, ids, levels and
 *           flags — deleted-but-linked points included —, links)
 *     PAYL  u64 count, then count x (u64 id, u32 len, len bytes)
 *     ATTR  (version 2) u64 count, then count x (u64 id, u32 len, len bytes
 *           of an attribute blob, common/filter/attrs.h)
 *     END_  empty
 *
 * Version 1 files (no ATTR section) still load: their points have no
 * attributes. Every new snapshot is version 2.
 *
 * The index stream has its own header and per-section CRCs; it is still
 * wrapped in an outer section with a length and a CRC so that every byte of
 * the file is covered by a checksum of this format and the parser of the
 * embedded stream can never read past its section (it reads through a
 * bounded stream). Both directions go through a fopencookie stream that
 * computes the CRC and counts bytes on the fly, so the index is read and
 * written once, without a second copy in memory.
 *
 * Writing goes to `snapshot.tmp`, which is fsynced, renamed to its final
 * name and the folder fsynced (snapshot_commit); a crash leaves either no
 * new file or a complete one, plus perhaps a temp file that the next load
 * removes.
 */
#define _GNU_SOURCE /* fopencookie */
#include "node/storage/snapshot.h"
#include "common/util/crc32c.h"
#include "node/storage/dir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the snapshot format is little-endian; add byte swapping for this host"
#endif

#define SNAP_VERSION 2 /* written; 1 is still read */
#define SNAP_VERSION_MIN 1
#define TMP_NAME     "snapshot.tmp"
static const char snap_magic[8] = {'V', 'S', 'S', 'N', 'A', 'P', '\r', '\n'};

enum {
    SEC_INDX = 0x58444e49, /* "INDX" */
    SEC_PAYL = 0x4c594150, /* "PAYL" */
    SEC_ATTR = 0x52545441, /* "ATTR" */
    SEC_END = 0x5f444e45,  /* "END_" */
};

struct disk_header {
    uint32_t dim, metric, M, ef_construction;
    uint64_t lsn, epoch;
    uint64_t count, deleted;
    uint64_t payloads, payload_bytes;
    int64_t created_ms;
    uint32_t shard, reserved;
    char collection[SNAPSHOT_COLLECTION_MAX];
};

struct snapshot_writer {
    char *dir;
    char *tmp;
    FILE *f;
    struct snapshot_info info;
};

/* Writes a message into err (if any) and returns rc. */
static int fail(char *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, int rc, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, SNAPSHOT_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return rc;
}

const char *snapshot_status_str(int status)
{
    switch (status) {
    case SNAPSHOT_OK:
        return "ok";
    case SNAPSHOT_EINVAL:
        return "invalid argument";
    case SNAPSHOT_ENOMEM:
        return "out of memory";
    case SNAPSHOT_EIO:
        return "I/O error";
    case SNAPSHOT_EFORMAT:
        return "damaged or foreign snapshot";
    case SNAPSHOT_EMISMATCH:
        return "snapshot of another configuration";
    case SNAPSHOT_ENOTFOUND:
        return "no snapshot";
    }
    return "unknown status";
}

bool snapshot_path(const char *dir, uint64_t lsn, char *buf, size_t size)
{
    return snprintf(buf, size, "%s/snapshot-%020" PRIu64 ".vsx", dir, lsn) < (int)size;
}

/* Fsyncs a folder so that renames and unlinks in it are durable. */
static int fsync_dir(const char *dir, char *err)
{
    return dir_fsync(dir, err, SNAPSHOT_ERR_MAX) == 0 ? SNAPSHOT_OK : SNAPSHOT_EIO;
}

/* ---------------------------------------------------------------- CRC streams */

/* The far end of a cookie stream: the file, a running CRC, a byte budget. */
struct crc_stream {
    FILE *f;
    uint32_t crc;
    uint64_t bytes; /* written so far / left to read */
    bool bad;       /* the underlying file failed or ended early */
};

/* Cookie write: forwards to the file, extending the CRC. */
static ssize_t crc_write(void *c, const char *buf, size_t size)
{
    struct crc_stream *s = c;
    if (fwrite(buf, 1, size, s->f) != size) {
        s->bad = true;
        return -1;
    }
    s->crc = crc32c_extend(s->crc, buf, size);
    s->bytes += size;
    return (ssize_t)size;
}

/* Cookie read: at most the section's remaining bytes, extending the CRC. */
static ssize_t crc_read(void *c, char *buf, size_t size)
{
    struct crc_stream *s = c;
    size_t n = size < s->bytes ? size : (size_t)s->bytes;
    size_t k = n ? fread(buf, 1, n, s->f) : 0;
    if (k < n) s->bad = true;
    s->crc = crc32c_extend(s->crc, buf, k);
    s->bytes -= k;
    return (ssize_t)k;
}

/* A section being written: where its length goes and its CRC stream. */
struct wsec {
    FILE *f;
    off_t len_pos;
    struct crc_stream cs;
    FILE *cf;
};

/* Writes a section head with a placeholder length and opens its CRC stream. */
static int wsec_open(struct wsec *s, FILE *f, uint32_t tag)
{
    uint32_t head[2] = {tag, 0};
    uint64_t len = 0;
    memset(s, 0, sizeof *s);
    s->f = f;
    s->cs.f = f;
    if (fwrite(head, sizeof head, 1, f) != 1 || (s->len_pos = ftello(f)) < 0 ||
        fwrite(&len, sizeof len, 1, f) != 1)
        return -1;
    cookie_io_functions_t io = {.write = crc_write};
    if (!(s->cf = fopencookie(&s->cs, "w", io))) return -1;
    setvbuf(s->cf, NULL, _IOFBF, 1 << 20);
    return 0;
}

/* Closes the section: its CRC after the bytes, its length patched in. */
static int wsec_close(struct wsec *s)
{
    int bad = fclose(s->cf) != 0 || s->cs.bad;
    uint64_t len = s->cs.bytes;
    if (bad || fwrite(&s->cs.crc, 4, 1, s->f) != 1 || fseeko(s->f, s->len_pos, SEEK_SET) != 0 ||
        fwrite(&len, sizeof len, 1, s->f) != 1 || fseeko(s->f, 0, SEEK_END) != 0)
        return -1;
    return 0;
}

/* Writer of the PAYL section: one entry per payload. */
static int write_payload(uint64_t id, const uint8_t *data, uint32_t len, void *ctx)
{
    FILE *cf = ctx;
    if (fwrite(&id, 8, 1, cf) != 1 || fwrite(&len, 4, 1, cf) != 1 ||
        (len && fwrite(data, len, 1, cf) != 1))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- writing */

int snapshot_begin(const char *dir, struct snapshot_writer **out, char *err)
{
    *out = NULL;
    struct snapshot_writer *sw = calloc(1, sizeof *sw);
    if (!sw || !(sw->dir = strdup(dir)) || asprintf(&sw->tmp, "%s/" TMP_NAME, dir) < 0) {
        if (sw) {
            free(sw->dir);
            free(sw);
        }
        return fail(err, SNAPSHOT_ENOMEM, "out of memory");
    }
    if (!(sw->f = fopen(sw->tmp, "w+b"))) {
        int rc = fail(err, SNAPSHOT_EIO, "cannot create %s: %s", sw->tmp, strerror(errno));
        free(sw->tmp);
        free(sw->dir);
        free(sw);
        return rc;
    }
    setvbuf(sw->f, NULL, _IOFBF, 1 << 20);
    *out = sw;
    return SNAPSHOT_OK;
}

int snapshot_write_state(struct snapshot_writer *sw, struct snapshot_info *info,
                         struct hnsw_index *idx, struct payload_store *ps, struct attr_store *as,
                         char *err)
{
    struct hnsw_stats hs;
    struct timespec ts;
    char herr[HNSW_ERR_MAX];
    hnsw_info(idx, &hs);
    clock_gettime(CLOCK_REALTIME, &ts);
    info->dim = hs.dim;
    info->metric = hs.metric;
    info->M = hs.M;
    info->ef_construction = hs.ef_construction;
    info->count = hs.count;
    info->deleted = hs.deleted;
    info->created_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

    payload_read_lock(ps);
    attr_read_lock(as);
    info->attributes = attr_count_locked(as);
    info->payloads = payload_count_locked(ps);
    info->payload_bytes = payload_bytes_locked(ps);
    struct disk_header h = {
        .dim = info->dim,
        .metric = (uint32_t)info->metric,
        .M = info->M,
        .ef_construction = info->ef_construction,
        .lsn = info->lsn,
        .epoch = info->epoch,
        .count = info->count,
        .deleted = info->deleted,
        .payloads = info->payloads,
        .payload_bytes = info->payload_bytes,
        .created_ms = info->created_ms,
        .shard = info->shard,
    };
    memcpy(h.collection, info->collection, sizeof h.collection);
    h.collection[sizeof h.collection - 1] = '\0';
    uint32_t version = SNAP_VERSION, hlen = sizeof h, crc = crc32c(&h, sizeof h);
    FILE *f = sw->f;
    struct wsec s;
    int rc = SNAPSHOT_OK;
    if (fwrite(snap_magic, sizeof snap_magic, 1, f) != 1 || fwrite(&version, 4, 1, f) != 1 ||
        fwrite(&hlen, 4, 1, f) != 1 || fwrite(&h, sizeof h, 1, f) != 1 ||
        fwrite(&crc, 4, 1, f) != 1)
        goto io;
    if (wsec_open(&s, f, SEC_INDX) != 0) goto io;
    if (hnsw_write(idx, s.cf, herr) != HNSW_OK) {
        fclose(s.cf);
        rc = fail(err, SNAPSHOT_EIO, "writing the index into %s: %s", sw->tmp, herr);
        goto out;
    }
    if (wsec_close(&s) != 0 || wsec_open(&s, f, SEC_PAYL) != 0) goto io;
    if (fwrite(&info->payloads, 8, 1, s.cf) != 1 ||
        payload_foreach_locked(ps, write_payload, s.cf) != 0) {
        fclose(s.cf);
        goto io;
    }
    if (wsec_close(&s) != 0 || wsec_open(&s, f, SEC_ATTR) != 0) goto io;
    if (fwrite(&info->attributes, 8, 1, s.cf) != 1 ||
        attr_foreach_locked(as, write_payload, s.cf) != 0) {
        fclose(s.cf);
        goto io;
    }
    if (wsec_close(&s) != 0 || wsec_open(&s, f, SEC_END) != 0 || wsec_close(&s) != 0) goto io;
    sw->info = *info;
    goto out;
io:
    rc = fail(err, SNAPSHOT_EIO, "writing %s: %s", sw->tmp, strerror(errno ? errno : EIO));
out:
    attr_read_unlock(as);
    payload_read_unlock(ps);
    return rc;
}

int snapshot_commit(struct snapshot_writer *sw, uint64_t *file_bytes, char *err)
{
    char path[4096];
    int rc = SNAPSHOT_OK;
    if (!snapshot_path(sw->dir, sw->info.lsn, path, sizeof path)) {
        rc = fail(err, SNAPSHOT_EINVAL, "path under %s is too long", sw->dir);
        goto fail;
    }
    if (fflush(sw->f) != 0 || ferror(sw->f) || fsync(fileno(sw->f)) != 0) {
        rc = fail(err, SNAPSHOT_EIO, "flushing %s: %s", sw->tmp, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (file_bytes) *file_bytes = fstat(fileno(sw->f), &st) == 0 ? (uint64_t)st.st_size : 0;
    int closed = fclose(sw->f);
    sw->f = NULL;
    if (closed != 0) {
        rc = fail(err, SNAPSHOT_EIO, "closing %s: %s", sw->tmp, strerror(errno));
        goto fail;
    }
    if (rename(sw->tmp, path) != 0) {
        rc = fail(err, SNAPSHOT_EIO, "rename %s -> %s: %s", sw->tmp, path, strerror(errno));
        goto fail;
    }
    rc = fsync_dir(sw->dir, err);
    free(sw->tmp);
    free(sw->dir);
    free(sw);
    return rc;
fail:
    snapshot_abort(sw);
    return rc;
}

void snapshot_abort(struct snapshot_writer *sw)
{
    if (!sw) return;
    if (sw->f) fclose(sw->f);
    unlink(sw->tmp);
    free(sw->tmp);
    free(sw->dir);
    free(sw);
}

/* ---------------------------------------------------------------- reading */

/* A section being read: its bounded CRC stream. */
struct rsec {
    FILE *f;
    struct crc_stream cs;
    FILE *cf;
    const char *name;
};

/* Reads a section head, checks tag and length against the file, opens its stream. */
static int rsec_open(struct rsec *s, FILE *f, uint64_t file_size, uint32_t tag, const char *name,
                     char *err)
{
    uint32_t head[2];
    uint64_t len;
    memset(s, 0, sizeof *s);
    s->f = f;
    s->name = name;
    s->cs.f = f;
    if (fread(head, sizeof head, 1, f) != 1 || fread(&len, 8, 1, f) != 1)
        return fail(err, SNAPSHOT_EFORMAT, "file is truncated before section %s", name);
    if (head[0] != tag || head[1] != 0)
        return fail(err, SNAPSHOT_EFORMAT, "expected section %s, found tag 0x%08x", name, head[0]);
    off_t pos = ftello(f);
    if (pos < 0 || len > file_size || (uint64_t)pos + len + 4 > file_size)
        return fail(err, SNAPSHOT_EFORMAT,
                    "section %s claims %" PRIu64 " bytes, more than the file holds", name, len);
    s->cs.bytes = len;
    cookie_io_functions_t io = {.read = crc_read};
    if (!(s->cf = fopencookie(&s->cs, "r", io))) return fail(err, SNAPSHOT_ENOMEM, "out of memory");
    setvbuf(s->cf, NULL, _IOFBF, 1 << 20);
    return SNAPSHOT_OK;
}

/* Checks that the section was consumed exactly and its CRC matches; closes it. */
static int rsec_close(struct rsec *s, char *err)
{
    int extra = fgetc(s->cf) != EOF;
    uint64_t left = s->cs.bytes;
    bool bad = s->cs.bad;
    fclose(s->cf);
    s->cf = NULL;
    uint32_t crc;
    if (bad) return fail(err, SNAPSHOT_EFORMAT, "section %s is truncated", s->name);
    if (extra || left) return fail(err, SNAPSHOT_EFORMAT, "section %s has trailing bytes", s->name);
    if (fread(&crc, 4, 1, s->f) != 1)
        return fail(err, SNAPSHOT_EFORMAT, "file is truncated in the CRC of section %s", s->name);
    if (crc != s->cs.crc)
        return fail(err, SNAPSHOT_EFORMAT,
                    "section %s CRC mismatch (stored 0x%08x, computed 0x%08x)", s->name, crc,
                    s->cs.crc);
    return SNAPSHOT_OK;
}

/* Reads the PAYL body into a new store. */
static int read_payloads(struct rsec *s, const struct disk_header *h, struct payload_store *ps,
                         char *err)
{
    uint64_t n, total = 0;
    uint8_t *buf = malloc(PAYLOAD_MAX_BYTES);
    int rc = SNAPSHOT_OK;
    if (!buf) return fail(err, SNAPSHOT_ENOMEM, "out of memory");
    if (fread(&n, 8, 1, s->cf) != 1) {
        rc = fail(err, SNAPSHOT_EFORMAT, "section PAYL is truncated");
        goto out;
    }
    if (n != h->payloads) {
        rc = fail(err, SNAPSHOT_EFORMAT,
                  "section PAYL holds %" PRIu64 " payloads, header says %" PRIu64, n, h->payloads);
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id;
        uint32_t len;
        if (fread(&id, 8, 1, s->cf) != 1 || fread(&len, 4, 1, s->cf) != 1) {
            rc = fail(err, SNAPSHOT_EFORMAT, "section PAYL is truncated at payload %" PRIu64, i);
            goto out;
        }
        if (len == 0 || len > PAYLOAD_MAX_BYTES) {
            rc = fail(err, SNAPSHOT_EFORMAT, "payload %" PRIu64 " (id %" PRIu64 ") has length %u",
                      i, id, len);
            goto out;
        }
        if (fread(buf, len, 1, s->cf) != 1) {
            rc = fail(err, SNAPSHOT_EFORMAT, "section PAYL is truncated at payload %" PRIu64, i);
            goto out;
        }
        if (payload_put(ps, id, buf, len) != 0) {
            rc = fail(err, SNAPSHOT_ENOMEM, "out of memory loading payloads");
            goto out;
        }
        total += len;
    }
    if (payload_count(ps) != n || total != h->payload_bytes)
        rc = fail(err, SNAPSHOT_EFORMAT, "section PAYL repeats ids or disagrees with the header");
out:
    free(buf);
    return rc;
}

/* Reads the ATTR body (format 2) into a new store; *count gets the entries. */
static int read_attributes(struct rsec *s, struct attr_store *as, uint64_t *count, char *err)
{
    uint64_t n;
    uint8_t *buf = malloc(ATTR_BLOB_MAX);
    int rc = SNAPSHOT_OK;
    if (!buf) return fail(err, SNAPSHOT_ENOMEM, "out of memory");
    if (fread(&n, 8, 1, s->cf) != 1) {
        rc = fail(err, SNAPSHOT_EFORMAT, "section ATTR is truncated");
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id;
        uint32_t len;
        if (fread(&id, 8, 1, s->cf) != 1 || fread(&len, 4, 1, s->cf) != 1) {
            rc = fail(err, SNAPSHOT_EFORMAT, "section ATTR is truncated at entry %" PRIu64, i);
            goto out;
        }
        if (len < 2 || len > ATTR_BLOB_MAX) {
            rc = fail(err, SNAPSHOT_EFORMAT,
                      "attributes %" PRIu64 " (id %" PRIu64 ") have length %u", i, id, len);
            goto out;
        }
        if (fread(buf, len, 1, s->cf) != 1) {
            rc = fail(err, SNAPSHOT_EFORMAT, "section ATTR is truncated at entry %" PRIu64, i);
            goto out;
        }
        if (!attrs_blob_check(buf, len) || buf[0] == 0) {
            rc = fail(err, SNAPSHOT_EFORMAT, "attributes of id %" PRIu64 " are malformed", id);
            goto out;
        }
        if (attr_put(as, id, buf, len) != 0) {
            rc = fail(err, SNAPSHOT_ENOMEM, "out of memory loading attributes");
            goto out;
        }
    }
    if (attr_count(as) != n) rc = fail(err, SNAPSHOT_EFORMAT, "section ATTR repeats ids");
    *count = n;
out:
    free(buf);
    return rc;
}

/* Checks the header against the expectation. */
static int check_expect(const struct disk_header *h, const struct snapshot_expect *e, char *err)
{
    if (!e) return SNAPSHOT_OK;
    if (e->collection && strncmp(h->collection, e->collection, sizeof h->collection) != 0)
        return fail(err, SNAPSHOT_EMISMATCH, "snapshot belongs to collection '%s', not '%s'",
                    h->collection, e->collection);
    if (e->collection && h->shard != e->shard)
        return fail(err, SNAPSHOT_EMISMATCH, "snapshot belongs to shard %u, not %u", h->shard,
                    e->shard);
    if (h->dim != e->dim || h->metric != (uint32_t)e->metric || h->M != e->M ||
        h->ef_construction != e->ef_construction)
        return fail(err, SNAPSHOT_EMISMATCH,
                    "snapshot has dim %u metric %u M %u ef_construction %u; the collection has "
                    "dim %u metric %u M %u ef_construction %u",
                    h->dim, h->metric, h->M, h->ef_construction, e->dim, (unsigned)e->metric, e->M,
                    e->ef_construction);
    return SNAPSHOT_OK;
}

int snapshot_load(const char *path, const struct snapshot_expect *expect,
                  struct snapshot_info *info, struct hnsw_index **idx, struct payload_store **ps,
                  struct attr_store **as, char *err)
{
    *idx = NULL;
    *ps = NULL;
    *as = NULL;
    struct attr_store *at = NULL;
    uint64_t nattrs = 0;
    char herr[HNSW_ERR_MAX], msg[SNAPSHOT_ERR_MAX];
    struct hnsw_index *ix = NULL;
    struct payload_store *pl = NULL;
    struct rsec s = {0};
    struct disk_header h;
    struct stat st;
    char magic[8];
    uint32_t version, hlen, crc;
    int rc;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, SNAPSHOT_EIO, "cannot open %s: %s", path, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    if (fstat(fileno(f), &st) != 0) {
        rc = fail(msg, SNAPSHOT_EIO, "stat: %s", strerror(errno));
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (fread(magic, 8, 1, f) != 1 || memcmp(magic, snap_magic, 8) != 0) {
        rc = fail(msg, SNAPSHOT_EFORMAT, "not a vecshard snapshot (bad magic)");
        goto fail;
    }
    if (fread(&version, 4, 1, f) != 1 || fread(&hlen, 4, 1, f) != 1) {
        rc = fail(msg, SNAPSHOT_EFORMAT, "file is truncated in the header");
        goto fail;
    }
    if (version < SNAP_VERSION_MIN || version > SNAP_VERSION) {
        rc = fail(msg, SNAPSHOT_EFORMAT,
                  "snapshot format version %u is not supported (this build reads %d..%d)",
                  version, SNAP_VERSION_MIN, SNAP_VERSION);
        goto fail;
    }
    if (hlen != sizeof h) {
        rc = fail(msg, SNAPSHOT_EFORMAT, "header length %u, expected %zu", hlen, sizeof h);
        goto fail;
    }
    if (fread(&h, sizeof h, 1, f) != 1 || fread(&crc, 4, 1, f) != 1) {
        rc = fail(msg, SNAPSHOT_EFORMAT, "file is truncated in the header");
        goto fail;
    }
    if (crc32c(&h, sizeof h) != crc) {
        rc = fail(msg, SNAPSHOT_EFORMAT, "header CRC mismatch");
        goto fail;
    }
    h.collection[sizeof h.collection - 1] = '\0';
    if ((rc = check_expect(&h, expect, msg))) goto fail;

    if ((rc = rsec_open(&s, f, size, SEC_INDX, "INDX", msg))) goto fail;
    if ((rc = hnsw_read(s.cf, &ix, herr)) != HNSW_OK) {
        rc = fail(msg, rc == HNSW_ENOMEM ? SNAPSHOT_ENOMEM : SNAPSHOT_EFORMAT, "index section: %s",
                  herr);
        goto fail;
    }
    if ((rc = rsec_close(&s, msg))) goto fail;
    struct hnsw_stats hs;
    hnsw_info(ix, &hs);
    if (hs.dim != h.dim || hs.metric != (enum hnsw_metric)h.metric || hs.M != h.M ||
        hs.ef_construction != h.ef_construction || hs.count != h.count || hs.deleted != h.deleted) {
        rc = fail(msg, SNAPSHOT_EFORMAT,
                  "index disagrees with the snapshot header (count %" PRIu64 " vs %" PRIu64
                  ", deleted %" PRIu64 " vs %" PRIu64 ")",
                  hs.count, h.count, hs.deleted, h.deleted);
        goto fail;
    }
    if (payload_store_create(&pl) != 0) {
        rc = fail(msg, SNAPSHOT_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = rsec_open(&s, f, size, SEC_PAYL, "PAYL", msg)) ||
        (rc = read_payloads(&s, &h, pl, msg)) || (rc = rsec_close(&s, msg)))
        goto fail;
    if (attr_store_create(&at) != 0) {
        rc = fail(msg, SNAPSHOT_ENOMEM, "out of memory");
        goto fail;
    }
    if (version >= 2 &&
        ((rc = rsec_open(&s, f, size, SEC_ATTR, "ATTR", msg)) ||
         (rc = read_attributes(&s, at, &nattrs, msg)) || (rc = rsec_close(&s, msg))))
        goto fail;
    if ((rc = rsec_open(&s, f, size, SEC_END, "END_", msg)) || (rc = rsec_close(&s, msg)))
        goto fail;
    if ((uint64_t)ftello(f) != size) {
        rc = fail(msg, SNAPSHOT_EFORMAT, "trailing bytes after the END_ section");
        goto fail;
    }
    fclose(f);
    memset(info, 0, sizeof *info);
    info->dim = h.dim;
    info->metric = (enum hnsw_metric)h.metric;
    info->M = h.M;
    info->ef_construction = h.ef_construction;
    info->lsn = h.lsn;
    info->epoch = h.epoch;
    info->count = h.count;
    info->deleted = h.deleted;
    info->payloads = h.payloads;
    info->payload_bytes = h.payload_bytes;
    info->attributes = nattrs;
    info->version = version;
    info->created_ms = h.created_ms;
    info->shard = h.shard;
    memcpy(info->collection, h.collection, sizeof info->collection);
    info->file_bytes = size;
    *idx = ix;
    *ps = pl;
    *as = at;
    return SNAPSHOT_OK;
fail:
    if (s.cf) fclose(s.cf);
    fclose(f);
    hnsw_free(ix);
    payload_store_free(pl);
    attr_store_free(at);
    return fail(err, rc, "%s: %s", path, msg);
}

/* ---------------------------------------------------------------- choosing and pruning */

int snapshot_list(const char *dir, uint64_t **lsns, uint32_t *n, char *err)
{
    if (dir_list_lsns(dir, "snapshot-", ".vsx", true, lsns, n, err, SNAPSHOT_ERR_MAX) == 0)
        return SNAPSHOT_OK;
    return errno == ENOMEM ? SNAPSHOT_ENOMEM : SNAPSHOT_EIO;
}

int snapshot_load_newest(const char *dir, const struct snapshot_expect *expect,
                         struct snapshot_info *info, struct hnsw_index **idx,
                         struct payload_store **ps, struct attr_store **as,
                         struct snapshot_recovery *rec, char *err)
{
    *idx = NULL;
    *ps = NULL;
    *as = NULL;
    memset(rec, 0, sizeof *rec);
    char path[4096], aside[4200];
    if (snprintf(path, sizeof path, "%s/" TMP_NAME, dir) < (int)sizeof path && unlink(path) == 0)
        rec->temps_removed++;
    uint64_t *lsns;
    uint32_t n;
    int rc = snapshot_list(dir, &lsns, &n, err);
    if (rc) return rc;
    rc = SNAPSHOT_ENOTFOUND;
    for (uint32_t i = 0; i < n; i++) {
        char msg[SNAPSHOT_ERR_MAX];
        snapshot_path(dir, lsns[i], path, sizeof path);
        rc = snapshot_load(path, expect, info, idx, ps, as, msg);
        if (rc == SNAPSHOT_OK) {
            rec->loaded = true;
            break;
        }
        if (rc != SNAPSHOT_EFORMAT) {
            fail(err, rc, "%s", msg);
            goto out;
        }
        if (rec->nrejected < sizeof rec->rejected / sizeof rec->rejected[0]) {
            struct snapshot_rejected *r = &rec->rejected[rec->nrejected];
            r->lsn = lsns[i];
            snprintf(r->reason, sizeof r->reason, "%s", msg);
        }
        rec->nrejected++;
        /* Move it aside so it is never the "newest" again (kept for inspection). */
        snprintf(aside, sizeof aside, "%s.corrupt", path);
        if (rename(path, aside) != 0) {
            rc = fail(err, SNAPSHOT_EIO, "rename %s -> %s: %s", path, aside, strerror(errno));
            goto out;
        }
        rc = SNAPSHOT_ENOTFOUND;
    }
    if (rc == SNAPSHOT_ENOTFOUND)
        fail(err, rc, "no valid snapshot in %s (%u damaged)", dir, rec->nrejected);
    if (rec->nrejected || rec->temps_removed) {
        int r = fsync_dir(dir, NULL);
        if (r && rc == SNAPSHOT_OK) {
            hnsw_free(*idx);
            payload_store_free(*ps);
            attr_store_free(*as);
            *idx = NULL;
            *ps = NULL;
            *as = NULL;
            rc = fail(err, r, "fsync %s failed", dir);
        }
    }
out:
    free(lsns);
    return rc;
}

int snapshot_prune(const char *dir, uint32_t keep, uint32_t *deleted, char *err)
{
    uint64_t *lsns;
    uint32_t n, k = 0;
    char path[4096];
    int rc = snapshot_list(dir, &lsns, &n, err);
    if (rc) return rc;
    for (uint32_t i = keep; i < n; i++) {
        snapshot_path(dir, lsns[i], path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = fail(err, SNAPSHOT_EIO, "unlink %s: %s", path, strerror(errno));
            break;
        }
        k++;
    }
    free(lsns);
    if (k) {
        int r = fsync_dir(dir, rc ? NULL : err);
        if (!rc) rc = r;
    }
    if (deleted) *deleted = k;
    return rc;
}
