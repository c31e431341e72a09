/*
 * hnsw_io.c — the index file format: save, load and their stream forms.
 *
 * Layout (little-endian; the build refuses big-endian hosts):
 *
 *   "VSHNSW\r\n"            8-byte magic (the CR LF catches text-mode mangling)
 *   u32 version             HNSW_FILE_VERSION; newer files are refused
 *   u32 header_len          sizeof(struct disk_header)
 *   struct disk_header      parameters (with the quantization), slot count, entry point,
 *                           counters
 *   u32 crc32c(header)
 *   sections, in this order, each [u32 tag][u32 0][u64 len][payload][u32 crc32c(payload)]:
 *     VECT  nslots * dim floats            (stored form: normalised under cosine)
 *     IDS_  nslots * u64
 *     META  nslots * (u8 level, u8 flags)
 *     LNK0  per slot: u32 count, count * u32 links
 *     LNKU  per slot with level > 0 that is not free, per layer 1..level:
 *           u32 count, count * u32 links
 *     END_  empty
 *
 * Loading streams each section straight into the new index while its CRC
 * is computed, so it needs no second copy of the data; a CRC mismatch, a
 * length that disagrees with the header or overruns the file, and any link
 * that breaks a graph invariant reject the file with a message. hnsw_save
 * writes path.tmp, fsyncs it, renames it over path and fsyncs the folder.
 */
#include "common/hnsw/hnsw_internal.h"
#include "common/util/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the index file format is little-endian; add byte swapping for this host"
#endif

#define HNSW_FILE_VERSION 1
static const char file_magic[8] = {'V', 'S', 'H', 'N', 'S', 'W', '\r', '\n'};

enum {
    SEC_VECT = 0x54434556, /* "VECT" */
    SEC_IDS = 0x5f534449,  /* "IDS_" */
    SEC_META = 0x4154454d, /* "META" */
    SEC_LNK0 = 0x304b4e4c, /* "LNK0" */
    SEC_LNKU = 0x554b4e4c, /* "LNKU" */
    SEC_END = 0x5f444e45,  /* "END_" */
};

struct disk_header {
    uint32_t dim, metric, M, ef_construction;
    uint64_t seed;
    uint32_t nslots, entry_slot;
    int32_t max_level;
    uint32_t quant; /* enum hnsw_quant (0 in files older than quantization); codes are re-derived */
    uint64_t live, deleted, free_slots, level_counter;
};

/* ---------------------------------------------------------------- writing */

/* A section being written: running CRC and a sticky error flag. */
struct wsec {
    FILE *f;
    uint32_t crc;
    bool bad;
};

static void w_bytes(struct wsec *w, const void *p, size_t n)
{
    if (w->bad || n == 0) return;
    w->crc = crc32c_extend(w->crc, p, n);
    w->bad = fwrite(p, 1, n, w->f) != n;
}

static void w_u32(struct wsec *w, uint32_t v)
{
    w_bytes(w, &v, sizeof v);
}

/* Writes a section header and starts its CRC. */
static void w_begin(struct wsec *w, uint32_t tag, uint64_t len)
{
    uint32_t hdr[2] = {tag, 0};
    if (!w->bad)
        w->bad = fwrite(hdr, sizeof hdr, 1, w->f) != 1 || fwrite(&len, sizeof len, 1, w->f) != 1;
    w->crc = 0;
}

/* Writes the section's CRC. */
static void w_end(struct wsec *w)
{
    if (!w->bad) w->bad = fwrite(&w->crc, sizeof w->crc, 1, w->f) != 1;
}

/* Bytes of the LNK0 (layer 0) or LNKU (upper) section. */
static uint64_t links_len(struct hnsw_index *idx, uint32_t nslots, bool upper)
{
    uint64_t len = 0;
    for (uint32_t s = 0; s < nslots; s++) {
        int level = hnsw_level(idx, s);
        if (!upper) {
            uint32_t cnt;
            hnsw_links(idx, s, 0, &cnt);
            len += 4 + 4ull * cnt;
            continue;
        }
        if (hnsw_flags(idx, s) & HNSW_FLAG_FREE) continue;
        for (int l = 1; l <= level; l++) {
            uint32_t cnt;
            hnsw_links(idx, s, l, &cnt);
            len += 4 + 4ull * cnt;
        }
    }
    return len;
}

/* Writes the link lists of every slot on layer 0 (upper = false) or above. */
static void w_links(struct hnsw_index *idx, struct wsec *w, uint32_t nslots, bool upper)
{
    for (uint32_t s = 0; s < nslots; s++) {
        int from = upper ? 1 : 0, to = upper ? hnsw_level(idx, s) : 0;
        if (upper && (hnsw_flags(idx, s) & HNSW_FLAG_FREE)) continue;
        for (int l = from; l <= to; l++) {
            uint32_t cnt, *links = hnsw_links(idx, s, l, &cnt);
            w_u32(w, cnt);
            w_bytes(w, links, 4ull * cnt);
        }
    }
}

int hnsw_write(struct hnsw_index *idx, FILE *f, char *err)
{
    pthread_rwlock_wrlock(&idx->mutation_lock);
    /* A snapshot re-trains SQ8 on the data as it is now (a no-op when the range is unchanged). */
    if (atomic_load(&idx->sq) || hnsw_sq8_due(idx, 0)) hnsw_sq8_train(idx, NULL, 0);
    uint32_t nslots = atomic_load(&idx->nslots), ep;
    int top;
    hnsw_entry_get(idx, &ep, &top);
    struct disk_header h = {
        .dim = idx->dim,
        .metric = idx->metric,
        .M = idx->M,
        .ef_construction = idx->efc,
        .seed = idx->seed,
        .nslots = nslots,
        .entry_slot = top < 0 ? 0 : ep,
        .max_level = top,
        .quant = idx->quant,
        .live = idx->map.n,
        .deleted = atomic_load(&idx->ndeleted),
        .free_slots = idx->nfree,
        .level_counter = atomic_load(&idx->level_counter),
    };
    struct wsec w = {.f = f};
    uint32_t version = HNSW_FILE_VERSION, hlen = sizeof h;
    w_bytes(&w, file_magic, sizeof file_magic);
    w_u32(&w, version);
    w_u32(&w, hlen);
    w.crc = 0;
    w_bytes(&w, &h, sizeof h);
    w_end(&w);

    w_begin(&w, SEC_VECT, (uint64_t)nslots * idx->dim * sizeof(float));
    for (uint32_t s = 0; s < nslots; s++)
        w_bytes(&w, hnsw_vec(idx, s), idx->dim * sizeof(float));
    w_end(&w);
    w_begin(&w, SEC_IDS, (uint64_t)nslots * sizeof(uint64_t));
    for (uint32_t s = 0; s < nslots; s++)
        w_bytes(&w, hnsw_idp(idx, hnsw_elem(idx, s)), sizeof(uint64_t));
    w_end(&w);
    w_begin(&w, SEC_META, (uint64_t)nslots * 2);
    for (uint32_t s = 0; s < nslots; s++) {
        uint8_t m[2] = {(uint8_t)hnsw_level(idx, s), (uint8_t)hnsw_flags(idx, s)};
        w_bytes(&w, m, 2);
    }
    w_end(&w);
    w_begin(&w, SEC_LNK0, links_len(idx, nslots, false));
    w_links(idx, &w, nslots, false);
    w_end(&w);
    w_begin(&w, SEC_LNKU, links_len(idx, nslots, true));
    w_links(idx, &w, nslots, true);
    w_end(&w);
    w_begin(&w, SEC_END, 0);
    w_end(&w);
    pthread_rwlock_unlock(&idx->mutation_lock);
    if (w.bad || fflush(f) != 0 || ferror(f))
        return hnsw_fail(err, HNSW_EIO, "writing the index failed: %s", strerror(errno));
    return HNSW_OK;
}

int hnsw_save(struct hnsw_index *idx, const char *path, char *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return hnsw_fail(err, HNSW_EINVAL, "path is too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) return hnsw_fail(err, HNSW_EIO, "cannot create %s: %s", tmp, strerror(errno));
    int rc = hnsw_write(idx, f, err);
    if (rc == HNSW_OK && fsync(fileno(f)) != 0)
        rc = hnsw_fail(err, HNSW_EIO, "fsync %s: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && rc == HNSW_OK)
        rc = hnsw_fail(err, HNSW_EIO, "closing %s: %s", tmp, strerror(errno));
    if (rc == HNSW_OK && rename(tmp, path) != 0)
        rc = hnsw_fail(err, HNSW_EIO, "rename %s -> %s: %s", tmp, path, strerror(errno));
    if (rc != HNSW_OK) {
        unlink(tmp);
        return rc;
    }
    /* Make the rename itself durable. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return HNSW_OK;
}

/* ---------------------------------------------------------------- reading */

/* A section being read: bytes left in it and in the file, running CRC. */
struct rsec {
    FILE *f;
    uint64_t left;      /* payload bytes not yet read */
    uint64_t file_left; /* bytes left in the file (UINT64_MAX: unknown) */
    uint32_t crc;
    const char *name;
    char *err;
};

/* Reads n payload bytes; fails on overrun or a short file. */
static int r_bytes(struct rsec *r, void *p, size_t n)
{
    if (n > r->left)
        return hnsw_fail(r->err, HNSW_EFORMAT, "section %s: record overruns the section length",
                         r->name);
    if (n && fread(p, 1, n, r->f) != n)
        return hnsw_fail(r->err, HNSW_EFORMAT, "section %s: file is truncated", r->name);
    r->left -= n;
    if (r->file_left != UINT64_MAX) r->file_left -= n;
    r->crc = crc32c_extend(r->crc, p, n);
    return HNSW_OK;
}

/* Reads raw bytes outside any section (header fields). */
static int r_raw(struct rsec *r, void *p, size_t n, const char *what)
{
    if (r->file_left != UINT64_MAX && n > r->file_left)
        return hnsw_fail(r->err, HNSW_EFORMAT, "file is truncated in the %s", what);
    if (fread(p, 1, n, r->f) != n)
        return hnsw_fail(r->err, HNSW_EFORMAT, "file is truncated in the %s", what);
    if (r->file_left != UINT64_MAX) r->file_left -= n;
    return HNSW_OK;
}

/* Opens the next section, which must be `tag` of exactly `want` bytes (UINT64_MAX: any). */
static int r_begin(struct rsec *r, uint32_t tag, const char *name, uint64_t want)
{
    uint32_t hdr[2];
    uint64_t len;
    r->name = name;
    int rc = r_raw(r, hdr, sizeof hdr, name);
    if (rc == HNSW_OK) rc = r_raw(r, &len, sizeof len, name);
    if (rc) return rc;
    if (hdr[0] != tag)
        return hnsw_fail(r->err, HNSW_EFORMAT, "expected section %s, found tag %#x", name, hdr[0]);
    if (want != UINT64_MAX && len != want)
        return hnsw_fail(r->err, HNSW_EFORMAT, "section %s is %llu bytes, the header implies %llu",
                         name, (unsigned long long)len, (unsigned long long)want);
    if (r->file_left != UINT64_MAX && len + 4 > r->file_left)
        return hnsw_fail(r->err, HNSW_EFORMAT, "section %s (%llu bytes) overruns the file", name,
                         (unsigned long long)len);
    r->left = len;
    r->crc = 0;
    return HNSW_OK;
}

/* Closes a section: all of it consumed and its CRC matching. */
static int r_end(struct rsec *r)
{
    uint32_t crc;
    if (r->left)
        return hnsw_fail(r->err, HNSW_EFORMAT, "section %s has %llu unexpected bytes", r->name,
                         (unsigned long long)r->left);
    int rc = r_raw(r, &crc, sizeof crc, r->name);
    if (rc) return rc;
    if (crc != r->crc)
        return hnsw_fail(r->err, HNSW_EFORMAT,
                         "section %s: CRC mismatch (stored %08x, computed %08x)", r->name, crc,
                         r->crc);
    return HNSW_OK;
}

/* Reads one link list of slot s on layer l into the index, validating it. */
static int r_list(struct hnsw_index *idx, struct rsec *r, uint32_t s, int l, uint32_t nslots)
{
    uint32_t cnt, *links = hnsw_links(idx, s, l, &cnt);
    int rc = r_bytes(r, &cnt, 4);
    if (rc) return rc;
    if (cnt > hnsw_mmax(idx, l))
        return hnsw_fail(r->err, HNSW_EFORMAT, "slot %u layer %d: %u links exceed Mmax %u", s, l,
                         cnt, hnsw_mmax(idx, l));
    rc = r_bytes(r, links, 4ull * cnt);
    if (rc) return rc;
    for (uint32_t i = 0; i < cnt; i++)
        if (links[i] >= nslots || links[i] == s)
            return hnsw_fail(r->err, HNSW_EFORMAT, "slot %u layer %d: bad link %u", s, l, links[i]);
    hnsw_set_count(idx, s, l, cnt);
    return HNSW_OK;
}

/* Validates the header; fills p. */
static int check_header(const struct disk_header *h, struct hnsw_params *p, char *err)
{
    hnsw_params_init(p);
    p->dim = h->dim;
    p->metric = (enum hnsw_metric)h->metric;
    p->M = h->M;
    p->ef_construction = h->ef_construction;
    p->seed = h->seed;
    p->initial_capacity = h->nslots ? h->nslots : 1;
    p->quant = (enum hnsw_quant)h->quant;
    if (h->dim < 1 || h->dim > HNSW_MAX_DIM || h->metric > HNSW_METRIC_COSINE || h->M < 2 ||
        h->M > HNSW_MAX_M || h->ef_construction < 1 || h->ef_construction > HNSW_MAX_EF ||
        h->quant > HNSW_QUANT_SQ8)
        return hnsw_fail(err, HNSW_EFORMAT,
                         "header has invalid parameters (dim %u, metric %u, M %u)", h->dim,
                         h->metric, h->M);
    if (h->nslots > HNSW_MAX_SLOTS || h->max_level < -1 || h->max_level > HNSW_MAX_LEVEL ||
        (h->max_level >= 0 && h->entry_slot >= h->nslots) ||
        h->live + h->deleted + h->free_slots != h->nslots)
        return hnsw_fail(err, HNSW_EFORMAT, "header counts are inconsistent (%u slots)", h->nslots);
    return HNSW_OK;
}

/* Rebuilds the id map, free list and counters from the slots' flags. */
static int rebuild_maps(struct hnsw_index *idx, uint32_t nslots, char *err)
{
    idx->free_slots = malloc((nslots ? nslots : 1) * sizeof *idx->free_slots);
    if (!idx->free_slots || hnsw_map_reserve(&idx->map, nslots))
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory loading the index");
    idx->free_cap = nslots;
    uint64_t deleted = 0;
    for (uint32_t s = 0; s < nslots; s++) {
        unsigned f = hnsw_flags(idx, s);
        if (f == HNSW_FLAG_FREE) {
            idx->free_slots[idx->nfree++] = s;
            continue;
        }
        if (f == HNSW_FLAG_DELETED) {
            deleted++;
            continue;
        }
        uint32_t old;
        uint64_t id = *hnsw_idp(idx, hnsw_elem(idx, s));
        if (hnsw_map_put(&idx->map, id, s, &old))
            return hnsw_fail(err, HNSW_ENOMEM, "out of memory loading the index");
        if (old != HNSW_NO_SLOT)
            return hnsw_fail(err, HNSW_EFORMAT, "id %llu is live in slots %u and %u",
                             (unsigned long long)id, old, s);
    }
    atomic_store(&idx->ndeleted, deleted);
    return HNSW_OK;
}

/* Reads the slot sections into idx. */
static int read_slots(struct hnsw_index *idx, struct rsec *r, const struct disk_header *h)
{
    uint32_t n = h->nslots;
    int rc = r_begin(r, SEC_VECT, "VECT", (uint64_t)n * idx->dim * sizeof(float));
    for (uint32_t s = 0; rc == HNSW_OK && s < n; s++)
        rc = r_bytes(r, hnsw_vec(idx, s), idx->dim * sizeof(float));
    if (rc || (rc = r_end(r)) || (rc = r_begin(r, SEC_IDS, "IDS_", (uint64_t)n * 8))) return rc;
    for (uint32_t s = 0; rc == HNSW_OK && s < n; s++)
        rc = r_bytes(r, hnsw_idp(idx, hnsw_elem(idx, s)), 8);
    if (rc || (rc = r_end(r)) || (rc = r_begin(r, SEC_META, "META", (uint64_t)n * 2))) return rc;
    for (uint32_t s = 0; rc == HNSW_OK && s < n; s++) {
        uint8_t m[2];
        if ((rc = r_bytes(r, m, 2))) break;
        if (m[1] > HNSW_FLAG_FREE || (int)m[0] > h->max_level)
            return hnsw_fail(r->err, HNSW_EFORMAT, "slot %u: bad level %u or flags %u", s, m[0],
                             m[1]);
        struct hnsw_hdr *hd = hnsw_hdrp(idx, hnsw_elem(idx, s));
        hd->level = m[0];
        hd->flags = m[1];
        if (!(m[1] & HNSW_FLAG_FREE) && hnsw_upper_alloc(idx, s, m[0]))
            return hnsw_fail(r->err, HNSW_ENOMEM, "out of memory loading the index");
        if (m[1] & HNSW_FLAG_FREE) hd->level = 0;
    }
    if (rc || (rc = r_end(r)) || (rc = r_begin(r, SEC_LNK0, "LNK0", UINT64_MAX))) return rc;
    for (uint32_t s = 0; rc == HNSW_OK && s < n; s++)
        rc = r_list(idx, r, s, 0, n);
    if (rc || (rc = r_end(r)) || (rc = r_begin(r, SEC_LNKU, "LNKU", UINT64_MAX))) return rc;
    for (uint32_t s = 0; rc == HNSW_OK && s < n; s++) {
        if (hnsw_flags(idx, s) & HNSW_FLAG_FREE) continue;
        for (int l = 1; rc == HNSW_OK && l <= hnsw_level(idx, s); l++)
            rc = r_list(idx, r, s, l, n);
    }
    if (rc || (rc = r_end(r)) || (rc = r_begin(r, SEC_END, "END_", 0))) return rc;
    return r_end(r);
}

int hnsw_read(FILE *f, struct hnsw_index **out, char *err)
{
    *out = NULL;
    struct rsec r = {.f = f, .file_left = UINT64_MAX, .err = err};
    struct stat st;
    long pos = ftell(f);
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && pos >= 0 && st.st_size >= pos)
        r.file_left = (uint64_t)(st.st_size - pos);

    char magic[8];
    uint32_t version, hlen, crc;
    struct disk_header h;
    int rc = r_raw(&r, magic, sizeof magic, "magic");
    if (rc) return rc;
    if (memcmp(magic, file_magic, sizeof magic) != 0)
        return hnsw_fail(err, HNSW_EFORMAT, "not a vecshard HNSW index (bad magic)");
    if ((rc = r_raw(&r, &version, 4, "header")) || (rc = r_raw(&r, &hlen, 4, "header"))) return rc;
    if (version != HNSW_FILE_VERSION)
        return hnsw_fail(err, HNSW_EFORMAT,
                         "index format version %u is not supported (this build reads %d)", version,
                         HNSW_FILE_VERSION);
    if (hlen != sizeof h)
        return hnsw_fail(err, HNSW_EFORMAT, "header length %u, expected %zu", hlen, sizeof h);
    if ((rc = r_raw(&r, &h, sizeof h, "header")) || (rc = r_raw(&r, &crc, 4, "header"))) return rc;
    if (crc32c(&h, sizeof h) != crc) return hnsw_fail(err, HNSW_EFORMAT, "header CRC mismatch");
    struct hnsw_params p;
    if ((rc = check_header(&h, &p, err))) return rc;
    /* Sections hold at least 9 bytes per slot: a cheap bound before allocating. */
    if (r.file_left != UINT64_MAX && (uint64_t)h.nslots * 9 > r.file_left)
        return hnsw_fail(err, HNSW_EFORMAT, "file is truncated: %u slots cannot fit", h.nslots);

    struct hnsw_index *idx;
    if ((rc = hnsw_create(&p, &idx, err))) return rc == HNSW_EINVAL ? HNSW_EFORMAT : rc;
    pthread_mutex_lock(&idx->map_lock);
    for (uint32_t s = 0; rc == HNSW_OK && s < h.nslots; s++) {
        uint32_t got;
        rc = hnsw_slot_alloc(idx, &got);
    }
    pthread_mutex_unlock(&idx->map_lock);
    if (rc) {
        hnsw_fail(err, rc, "out of memory loading %u slots", h.nslots);
        goto fail;
    }
    if ((rc = read_slots(idx, &r, &h)) || (rc = rebuild_maps(idx, h.nslots, err))) goto fail;
    atomic_store(&idx->level_counter, h.level_counter);
    atomic_store(&idx->entry, h.max_level < 0 ? 0 : hnsw_entry_make(h.entry_slot, h.max_level));
    if (idx->map.n != h.live || idx->nfree != h.free_slots) {
        rc = hnsw_fail(err, HNSW_EFORMAT, "slot flags disagree with the header counts");
        goto fail;
    }
    if ((rc = hnsw_check_structure(idx, err))) {
        rc = HNSW_EFORMAT;
        goto fail;
    }
    if ((rc = hnsw_copy_rebuild(idx, false))) {
        hnsw_fail(err, rc, "out of memory building the copy table");
        goto fail;
    }
    /* SQ8 codes are not stored: they are trained and coded again from the vectors. */
    if (hnsw_sq8_due(idx, 0) && (rc = hnsw_sq8_train(idx, NULL, 0))) {
        hnsw_fail(err, rc, "out of memory coding the vectors");
        goto fail;
    }
    *out = idx;
    return HNSW_OK;
fail:
    hnsw_free(idx);
    return rc;
}

int hnsw_load(const char *path, struct hnsw_index **out, char *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return hnsw_fail(err, HNSW_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = hnsw_read(f, out, err);
    fclose(f);
    return rc;
}
