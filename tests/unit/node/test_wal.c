/*
 * test_wal.c — the write-ahead log: round trip over several segments, a
 * torn tail (cut short, a bad last record, zeros) cut and reported exactly,
 * damage followed by valid records refused with nothing changed on disk
 * (WAL_ECORRUPT naming file and offset), an empty folder,
 * iteration from an LSN, deletion before an LSN, group commit.
 */
#include "tests/unit/node/node_test.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Payload of record lsn: 10..209 bytes derived from lsn. */
static uint32_t rec_payload(uint64_t lsn, uint8_t *buf)
{
    uint32_t len = 10 + (uint32_t)(lsn * 37 % 200);
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(lsn * 13 + i);
    return len;
}

/* Opens dir with the given policy and segment size; asserts success. */
static struct wal *open_wal(const char *dir, enum wal_fsync p, uint64_t seg,
                            struct wal_recovery *rec)
{
    struct wal_options o;
    wal_options_init(&o);
    o.fsync = p;
    o.segment_bytes = seg;
    struct wal *w = NULL;
    char err[WAL_ERR_MAX];
    int rc = wal_open(dir, &o, &w, rec, err);
    if (rc) fprintf(stderr, "wal_open: %s\n", err);
    CU_ASSERT_FATAL(rc == WAL_OK);
    return w;
}

/* Appends records first..last. */
static void fill(struct wal *w, uint64_t first, uint64_t last)
{
    uint8_t buf[256];
    char err[WAL_ERR_MAX];
    for (uint64_t l = first; l <= last; l++) {
        uint32_t len = rec_payload(l, buf);
        int rc = wal_append(w, l, l / 100 + 1, buf, len, err);
        if (rc) fprintf(stderr, "wal_append %llu: %s\n", (unsigned long long)l, err);
        CU_ASSERT_EQUAL_FATAL(rc, WAL_OK);
    }
}

/* Iterates from `from` and checks the records are exactly from..last. */
static void check_records(struct wal *w, uint64_t from, uint64_t last)
{
    struct wal_iter *it;
    char err[WAL_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(wal_iter_open(w, from, &it, err), WAL_OK);
    uint8_t buf[256];
    uint64_t want = from;
    for (;;) {
        struct wal_record r;
        bool has;
        CU_ASSERT_EQUAL_FATAL(wal_iter_next(it, &r, &has, err), WAL_OK);
        if (!has) break;
        CU_ASSERT_EQUAL_FATAL(r.lsn, want);
        CU_ASSERT_EQUAL(r.epoch, want / 100 + 1);
        uint32_t len = rec_payload(want, buf);
        CU_ASSERT_EQUAL_FATAL(r.len, len);
        CU_ASSERT(memcmp(r.data, buf, len) == 0);
        want++;
    }
    CU_ASSERT_EQUAL(want, last + 1);
    wal_iter_close(it);
}

/* Offset of record lsn in its segment (first_lsn), from the known record sizes. */
static long record_offset(uint64_t first_lsn, uint64_t lsn)
{
    uint8_t buf[256];
    long off = WAL_SEGMENT_HEADER;
    for (uint64_t l = first_lsn; l < lsn; l++)
        off += WAL_RECORD_HEADER + rec_payload(l, buf);
    return off;
}

/* First LSN of the segment holding lsn (the largest segment start <= lsn). */
static uint64_t segment_of(const char *dir, uint64_t lsn, char *path, size_t size)
{
    uint64_t best = 0;
    for (uint64_t l = 1; l <= lsn; l++) {
        char name[32], p[512];
        wal_segment_name(l, name, sizeof name);
        snprintf(p, sizeof p, "%s/%s", dir, name);
        if (access(p, F_OK) == 0) best = l;
    }
    char name[32];
    wal_segment_name(best, name, sizeof name);
    snprintf(path, size, "%s/%s", dir, name);
    return best;
}

/* wal_bytes (lock-free) equals wal_stats' sum and the segment files' sizes on disk. */
static void check_bytes(const char *dir, struct wal *w)
{
    struct wal_stats st;
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(wal_bytes(w), st.bytes);
    uint64_t on_disk = 0;
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        char p[1024];
        struct stat sb;
        if (n > 8 && strncmp(e->d_name, "wal-", 4) == 0 && strcmp(e->d_name + n - 4, ".log") == 0 &&
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name) > 0 && stat(p, &sb) == 0)
            on_disk += (uint64_t)sb.st_size;
    }
    closedir(d);
    CU_ASSERT_EQUAL(wal_bytes(w), on_disk);
}

static void test_round_trip(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    CU_ASSERT_EQUAL(rec.records, 0);
    fill(w, 1, 500);
    struct wal_stats st;
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.first_lsn, 1);
    CU_ASSERT_EQUAL(st.last_lsn, 500);
    CU_ASSERT(st.segments >= 10);
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), (int)st.segments);
    check_bytes(dir, w);
    CU_ASSERT_EQUAL(wal_close(w, NULL), WAL_OK);

    w = open_wal(dir, WAL_FSYNC_ALWAYS, 4096, &rec);
    CU_ASSERT_FALSE(rec.truncated);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_NONE);
    CU_ASSERT_EQUAL(rec.first_lsn, 1);
    CU_ASSERT_EQUAL(rec.last_lsn, 500);
    CU_ASSERT_EQUAL(rec.records, 500);
    CU_ASSERT_EQUAL(rec.segments, st.segments);
    CU_ASSERT_STRING_EQUAL(rec.reason, "");
    check_bytes(dir, w); /* after a reopen too */
    check_records(w, 1, 500);
    /* The log continues where it ended, and refuses an LSN that does not follow. */
    char err[WAL_ERR_MAX];
    uint8_t b[4] = {1, 2, 3, 4};
    CU_ASSERT_EQUAL(wal_append(w, 502, 1, b, 4, err), WAL_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not follow"));
    fill(w, 501, 520);
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.durable_lsn, 520);
    CU_ASSERT_EQUAL(st.fsyncs >= 20, 1);
    check_records(w, 1, 520);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_torn_tail(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 300);
    wal_close(w, NULL);
    char path[512];
    uint64_t seg = segment_of(dir, 300, path, sizeof path);
    long size = tn_file_size(path), cut = record_offset(seg, 300) + 11; /* inside record 300 */
    CU_ASSERT_FATAL(size == record_offset(seg, 301));
    CU_ASSERT_FATAL(truncate(path, cut) == 0);
    int nseg = tn_count_files(dir, "wal-", ".log");

    w = open_wal(dir, WAL_FSYNC_ALWAYS, 4096, &rec);
    CU_ASSERT_TRUE(rec.truncated);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_TORN);
    CU_ASSERT_EQUAL(rec.last_lsn, 299);
    CU_ASSERT_EQUAL(rec.records, 299);
    CU_ASSERT_EQUAL(rec.offset, (uint64_t)record_offset(seg, 300));
    CU_ASSERT_EQUAL(rec.bytes_dropped, 11);
    CU_ASSERT_EQUAL(rec.segments_deleted, 0);
    CU_ASSERT_STRING_EQUAL(rec.segment, strrchr(path, '/') + 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(rec.reason, "torn record"));
    CU_ASSERT_PTR_NOT_NULL(strstr(rec.reason, "up to lsn 299"));
    CU_ASSERT_EQUAL(tn_file_size(path), record_offset(seg, 300));
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), nseg);
    check_records(w, 1, 299);
    /* Record 300 can be written again and survives another reopen. */
    fill(w, 300, 310);
    wal_close(w, NULL);
    w = open_wal(dir, WAL_FSYNC_ALWAYS, 4096, &rec);
    CU_ASSERT_FALSE(rec.truncated);
    CU_ASSERT_EQUAL(rec.last_lsn, 310);
    check_records(w, 1, 310);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

/* The whole content of a file (malloc'ed, *len bytes); NULL if it cannot be read. */
static unsigned char *slurp(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len ? (size_t)*len : 1);
    if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* Snapshot of every segment file of dir (names and bytes), to show nothing changed. */
struct dir_image {
    int n;
    char names[64][32];
    unsigned char *bytes[64];
    long len[64];
};

/* Reads every segment of dir (records 1..last) into *im. */
static void image_take(const char *dir, uint64_t last, struct dir_image *im)
{
    memset(im, 0, sizeof *im);
    for (uint64_t l = 1; l <= last && im->n < 64; l++) {
        char name[32], p[512];
        wal_segment_name(l, name, sizeof name);
        snprintf(p, sizeof p, "%s/%s", dir, name);
        if (access(p, F_OK) != 0) continue;
        snprintf(im->names[im->n], sizeof im->names[0], "%s", name);
        im->bytes[im->n] = slurp(p, &im->len[im->n]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(im->bytes[im->n]);
        im->n++;
    }
}

/* Asserts dir holds exactly the files of *im, byte for byte, and frees it. */
static void image_check_free(const char *dir, struct dir_image *im)
{
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), im->n);
    for (int i = 0; i < im->n; i++) {
        char p[512];
        long len = -1;
        snprintf(p, sizeof p, "%s/%s", dir, im->names[i]);
        unsigned char *b = slurp(p, &len);
        CU_ASSERT_PTR_NOT_NULL(b);
        CU_ASSERT_EQUAL(len, im->len[i]);
        CU_ASSERT(b && len == im->len[i] && memcmp(b, im->bytes[i], (size_t)len) == 0);
        free(b);
        free(im->bytes[i]);
    }
}

/* Opens dir expecting WAL_ECORRUPT; returns the message. */
static void open_corrupt(const char *dir, struct wal_recovery *rec, char *err)
{
    struct wal_options o;
    wal_options_init(&o);
    o.segment_bytes = 4096;
    struct wal *w = NULL;
    CU_ASSERT_EQUAL(wal_open(dir, &o, &w, rec, err), WAL_ECORRUPT);
    CU_ASSERT_PTR_NULL(w);
    wal_close(w, NULL);
}

static void test_bad_crc_middle(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 500);
    wal_close(w, NULL);
    char path[512], err[WAL_ERR_MAX];
    uint64_t seg = segment_of(dir, 250, path, sizeof path);
    CU_ASSERT_FATAL(seg > 1 &&
                    seg < 250); /* not the first segment, and 250 is not its first record */
    long off = record_offset(seg, 250);
    tn_flip(path, off + WAL_RECORD_HEADER + 3, 0x40); /* a payload byte of record 250 */
    struct dir_image im;
    image_take(dir, 500, &im);
    CU_ASSERT_FATAL(im.n >= 10);

    /* Records 251..500 are acknowledged: nothing is cut, the open refuses, twice alike. */
    for (int round = 0; round < 2; round++) {
        open_corrupt(dir, &rec, err);
        CU_ASSERT_TRUE(rec.corrupt);
        CU_ASSERT_FALSE(rec.truncated);
        CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_CRC);
        CU_ASSERT_EQUAL(rec.offset, (uint64_t)off);
        CU_ASSERT_STRING_EQUAL(rec.segment, strrchr(path, '/') + 1);
        CU_ASSERT_EQUAL(rec.later_first_lsn, 251);
        CU_ASSERT_EQUAL(rec.later_last_lsn, 500);
        CU_ASSERT_EQUAL(rec.later_records, 250);
        CU_ASSERT_EQUAL(rec.bytes_dropped, 0);
        CU_ASSERT_EQUAL(rec.segments_deleted, 0);
        char want[256];
        snprintf(want, sizeof want,
                 "wal %s offset %ld: damaged record (CRC mismatch) followed by valid records up "
                 "to lsn 500; refusing to truncate acknowledged writes",
                 strrchr(path, '/') + 1, off);
        CU_ASSERT_STRING_EQUAL(err, want);
    }
    image_check_free(dir, &im);

    /* When a snapshot holds every record after the damage (covered_lsn), it is cut instead. */
    struct wal_options o;
    wal_options_init(&o);
    o.segment_bytes = 4096;
    o.covered_lsn = 499;
    CU_ASSERT_EQUAL(wal_open(dir, &o, &w, &rec, err), WAL_ECORRUPT); /* 500 is not covered */
    o.covered_lsn = 500;
    CU_ASSERT_EQUAL_FATAL(wal_open(dir, &o, &w, &rec, err), WAL_OK);
    CU_ASSERT_TRUE(rec.truncated);
    CU_ASSERT_FALSE(rec.corrupt);
    CU_ASSERT_EQUAL(rec.last_lsn, 249);
    CU_ASSERT_EQUAL(tn_file_size(path), off);
    CU_ASSERT_PTR_NOT_NULL(strstr(rec.reason, "(their 250 valid record(s), lsn 251..500, are all "
                                              "at or below the covered lsn 500)"));
    check_records(w, 1, 249);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_bad_length_middle(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 1 << 20, &rec); /* one segment */
    fill(w, 1, 300);
    wal_close(w, NULL);
    char path[512], err[WAL_ERR_MAX];
    CU_ASSERT_FATAL(segment_of(dir, 300, path, sizeof path) == 1);
    long off = record_offset(1, 120);
    tn_flip(path, off + 3, 0x80); /* the top byte of record 120's length */
    struct dir_image im;
    image_take(dir, 300, &im);
    CU_ASSERT_EQUAL(im.n, 1);
    open_corrupt(dir, &rec, err);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_LENGTH);
    CU_ASSERT_EQUAL(rec.offset, (uint64_t)off);
    CU_ASSERT_EQUAL(rec.later_first_lsn, 121);
    CU_ASSERT_EQUAL(rec.later_last_lsn, 300);
    CU_ASSERT_EQUAL(rec.later_records, 180);
    image_check_free(dir, &im);
    tn_rmdir(dir);
    free(dir);
}

static void test_bad_last_record(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 500);
    wal_close(w, NULL);
    char path[512];
    uint64_t seg = segment_of(dir, 500, path, sizeof path);
    long off = record_offset(seg, 500), size = tn_file_size(path);
    tn_flip(path, off + WAL_RECORD_HEADER + 5, 0x01); /* a payload byte of the last record */
    int nseg = tn_count_files(dir, "wal-", ".log");
    w = open_wal(dir, WAL_FSYNC_ALWAYS, 4096, &rec);
    CU_ASSERT_FALSE(rec.corrupt);
    CU_ASSERT_TRUE(rec.truncated);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_CRC);
    CU_ASSERT_EQUAL(rec.last_lsn, 499);
    CU_ASSERT_EQUAL(rec.offset, (uint64_t)off);
    CU_ASSERT_EQUAL(rec.bytes_dropped, (uint64_t)(size - off));
    CU_ASSERT_EQUAL(tn_file_size(path), off);
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), nseg);
    check_records(w, 1, 499);
    fill(w, 500, 510);
    wal_close(w, NULL);
    w = open_wal(dir, WAL_FSYNC_ALWAYS, 4096, &rec);
    CU_ASSERT_FALSE(rec.truncated);
    check_records(w, 1, 510);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_zero_tail(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 1 << 20, &rec);
    fill(w, 1, 200);
    wal_close(w, NULL);
    char path[512];
    CU_ASSERT_FATAL(segment_of(dir, 200, path, sizeof path) == 1);
    long size = tn_file_size(path);
    /* Zeros an interrupted append (or preallocation) can leave: 10,000 bytes past the end. */
    CU_ASSERT_FATAL(truncate(path, size + 10000) == 0);
    w = open_wal(dir, WAL_FSYNC_ALWAYS, 1 << 20, &rec);
    CU_ASSERT_FALSE(rec.corrupt);
    CU_ASSERT_TRUE(rec.truncated);
    CU_ASSERT_EQUAL(rec.offset, (uint64_t)size);
    CU_ASSERT_EQUAL(rec.bytes_dropped, 10000);
    CU_ASSERT_EQUAL(rec.last_lsn, 200);
    CU_ASSERT_EQUAL(tn_file_size(path), size);
    check_records(w, 1, 200);
    wal_close(w, NULL);
    /* Zeros over the last record itself (its pages never written): cut there. */
    long off = record_offset(1, 200);
    CU_ASSERT_FATAL(truncate(path, off) == 0 && truncate(path, size) == 0);
    w = open_wal(dir, WAL_FSYNC_ALWAYS, 1 << 20, &rec);
    CU_ASSERT_TRUE(rec.truncated);
    CU_ASSERT_EQUAL(rec.last_lsn, 199);
    CU_ASSERT_EQUAL(tn_file_size(path), off);
    wal_close(w, NULL);
    /* But zeros followed by a valid record are corruption. */
    w = open_wal(dir, WAL_FSYNC_NONE, 1 << 20, &rec);
    fill(w, 200, 210);
    wal_close(w, NULL);
    long z = record_offset(1, 150);
    for (long i = 0; i < WAL_RECORD_HEADER + 8; i++) {
        FILE *f = fopen(path, "r+b");
        fseek(f, z + i, SEEK_SET);
        fputc(0, f);
        fclose(f);
    }
    char err[WAL_ERR_MAX];
    open_corrupt(dir, &rec, err);
    CU_ASSERT_EQUAL(rec.offset, (uint64_t)z);
    CU_ASSERT_EQUAL(rec.later_first_lsn, 151);
    CU_ASSERT_EQUAL(rec.later_last_lsn, 210);
    tn_rmdir(dir);
    free(dir);
}

static void test_damage_before_next_segment(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 200);
    wal_close(w, NULL);
    /* The last record of the first segment is damaged; segment 2 onwards are valid. */
    char first[512], second[512], err[WAL_ERR_MAX];
    CU_ASSERT_FATAL(segment_of(dir, 1, first, sizeof first) == 1);
    uint64_t seg2 = 0;
    for (uint64_t l = 2; l <= 200 && !seg2; l++)
        if (segment_of(dir, l, second, sizeof second) == l) seg2 = l;
    CU_ASSERT_FATAL(seg2 > 2);
    long off = record_offset(1, seg2 - 1);
    CU_ASSERT_FATAL(tn_file_size(first) == record_offset(1, seg2));
    tn_flip(first, off + WAL_RECORD_HEADER + 1, 0x10);
    struct dir_image im;
    image_take(dir, 200, &im);
    open_corrupt(dir, &rec, err);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_CRC);
    CU_ASSERT_STRING_EQUAL(rec.segment, strrchr(first, '/') + 1);
    CU_ASSERT_EQUAL(rec.offset, (uint64_t)off);
    CU_ASSERT_EQUAL(rec.later_first_lsn, seg2);
    CU_ASSERT_EQUAL(rec.later_last_lsn, 200);
    CU_ASSERT_EQUAL(rec.later_records, 200 - seg2 + 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "wal wal-00000000000000000001.log offset "));
    image_check_free(dir, &im);

    /* A torn first segment cut short (segment 2 missing its start) is corruption too. */
    CU_ASSERT_FATAL(truncate(first, off + 10) == 0);
    image_take(dir, 200, &im);
    open_corrupt(dir, &rec, err);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_TORN);
    CU_ASSERT_EQUAL(rec.later_first_lsn, seg2);
    image_check_free(dir, &im);
    tn_rmdir(dir);
    free(dir);
}

static void test_bad_header_and_gap(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 200);
    wal_close(w, NULL);
    /* A damaged header of a middle segment hides valid records: refused, nothing removed. */
    char path[512], err[WAL_ERR_MAX];
    uint64_t seg = segment_of(dir, 150, path, sizeof path);
    tn_flip(path, 2, 0x01);
    struct dir_image im;
    image_take(dir, 200, &im);
    open_corrupt(dir, &rec, err);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_HEADER);
    CU_ASSERT_EQUAL(rec.offset, 0);
    CU_ASSERT_EQUAL(rec.later_first_lsn, seg);
    CU_ASSERT_EQUAL(rec.later_last_lsn, 200);
    image_check_free(dir, &im);
    tn_flip(path, 2, 0x01);
    /* A damaged header of the last segment, with nothing valid after it: that segment goes. */
    uint64_t last = segment_of(dir, 200, path, sizeof path);
    CU_ASSERT_FATAL(truncate(path, WAL_SEGMENT_HEADER + 10) == 0);
    tn_flip(path, 2, 0x01);
    w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    CU_ASSERT_TRUE(rec.truncated);
    CU_ASSERT_EQUAL(rec.damage, WAL_DAMAGE_HEADER);
    CU_ASSERT_EQUAL(rec.last_lsn, last - 1);
    CU_ASSERT_EQUAL(access(path, F_OK), -1);
    check_records(w, 1, last - 1);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_empty_dir(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_ALWAYS, 0, &rec);
    CU_ASSERT_FALSE(rec.truncated);
    CU_ASSERT_EQUAL(rec.records, 0);
    CU_ASSERT_EQUAL(rec.first_lsn, 0);
    CU_ASSERT_EQUAL(rec.last_lsn, 0);
    CU_ASSERT_EQUAL(rec.segments, 0);
    check_records(w, 1, 0);
    /* An empty log starts wherever the caller says (a replica after a snapshot). */
    fill(w, 7, 9);
    char name[32], path[512];
    wal_segment_name(7, name, sizeof name);
    CU_ASSERT_STRING_EQUAL(name, "wal-00000000000000000007.log");
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CU_ASSERT_EQUAL(access(path, F_OK), 0);
    check_records(w, 7, 9);
    wal_close(w, NULL);
    /* A segment holding only its header (crash before the first record) is removed quietly. */
    CU_ASSERT_FATAL(truncate(path, WAL_SEGMENT_HEADER) == 0);
    w = open_wal(dir, WAL_FSYNC_ALWAYS, 0, &rec);
    CU_ASSERT_FALSE(rec.truncated);
    CU_ASSERT_TRUE(rec.empty_tail_removed);
    CU_ASSERT_EQUAL(rec.records, 0);
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), 0);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_iterate_and_delete(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 500);
    check_records(w, 250, 500);
    check_records(w, 500, 500);
    check_records(w, 501, 500); /* past the end: nothing */

    char path[512], err[WAL_ERR_MAX];
    uint64_t seg250 = segment_of(dir, 250, path, sizeof path);
    int before = tn_count_files(dir, "wal-", ".log");
    uint32_t deleted = 0;
    CU_ASSERT_EQUAL(wal_delete_before(w, 250, &deleted, err), WAL_OK);
    /* Every segment wholly before 250 went; the one holding 250 stayed. */
    struct wal_stats st;
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.first_lsn, seg250);
    check_bytes(dir, w);
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), before - (int)deleted);
    CU_ASSERT_EQUAL(access(path, F_OK), 0);
    CU_ASSERT(deleted >= 5);
    check_records(w, seg250, 500);
    check_records(w, 250, 500);
    struct wal_iter *it;
    CU_ASSERT_EQUAL(wal_iter_open(w, 1, &it, err), WAL_ENOTFOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "were deleted"));
    /* An iterator opened before a deletion keeps reading its files. */
    CU_ASSERT_EQUAL_FATAL(wal_iter_open(w, 300, &it, err), WAL_OK);
    CU_ASSERT_EQUAL(wal_delete_before(w, UINT64_MAX, &deleted, err), WAL_OK);
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), 1); /* the active one stays */
    uint64_t n = 0;
    struct wal_record r;
    bool has;
    while (wal_iter_next(it, &r, &has, err) == WAL_OK && has)
        n++;
    CU_ASSERT_EQUAL(n, 201);
    wal_iter_close(it);
    wal_close(w, NULL);
    w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    CU_ASSERT_FALSE(rec.truncated);
    CU_ASSERT_EQUAL(rec.last_lsn, 500);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

/* Shared state of the group-commit writers. */
struct gc {
    struct wal *w;
    pthread_mutex_t lock;
    uint64_t next;
    int bad;
};

/* One writer: takes LSNs in order under the lock, waits for durability outside it. */
static void *gc_writer(void *arg)
{
    struct gc *g = arg;
    uint8_t buf[256];
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&g->lock);
        uint64_t l = g->next++;
        uint32_t len = rec_payload(l, buf);
        int rc = wal_write(g->w, l, l / 100 + 1, buf, len, NULL);
        pthread_mutex_unlock(&g->lock);
        if (rc || wal_wait_durable(g->w, l, NULL)) g->bad++;
        struct wal_stats st;
        wal_stats(g->w, &st);
        if (st.durable_lsn < l) g->bad++;
    }
    return NULL;
}

static void test_group_commit(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_BATCH, 1 << 20, &rec);
    char err[WAL_ERR_MAX];
    uint8_t buf[256];
    /* Ten records written, one wait: exactly one fsync covers all of them. */
    for (uint64_t l = 1; l <= 10; l++)
        CU_ASSERT_EQUAL(wal_write(w, l, 1, buf, rec_payload(l, buf), err), WAL_OK);
    struct wal_stats st;
    wal_stats(w, &st);
    uint64_t f0 = st.fsyncs;
    CU_ASSERT_EQUAL(st.durable_lsn, 0);
    CU_ASSERT_EQUAL(wal_wait_durable(w, 3, err), WAL_OK);
    CU_ASSERT_EQUAL(wal_wait_durable(w, 10, err), WAL_OK);
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.fsyncs, f0 + 1);
    CU_ASSERT_EQUAL(st.durable_lsn, 10);

    /* Four concurrent writers: every append returns durable; fsyncs never exceed appends. */
    struct gc g = {.w = w, .next = 11};
    pthread_mutex_init(&g.lock, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, gc_writer, &g);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_mutex_destroy(&g.lock);
    CU_ASSERT_EQUAL(g.bad, 0);
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.last_lsn, 410);
    CU_ASSERT_EQUAL(st.durable_lsn, 410);
    CU_ASSERT(st.fsyncs - f0 - 1 <= 400);
    wal_close(w, NULL);
    w = open_wal(dir, WAL_FSYNC_BATCH, 1 << 20, &rec);
    check_records(w, 11, 410);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

/* Truncates a fresh 1..300 log (4 KiB segments) after `after`; checks count, reopen and append. */
static void truncate_case(uint64_t after, uint64_t want_cut, uint64_t want_last)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 300);
    char err[WAL_ERR_MAX];
    uint64_t cut = 99;
    CU_ASSERT_EQUAL_FATAL(wal_truncate_after(w, after, &cut, err), WAL_OK);
    CU_ASSERT_EQUAL(cut, want_cut);
    struct wal_stats st;
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.last_lsn, want_last);
    check_bytes(dir, w);
    if (want_last > 0) check_records(w, 1, want_last);
    /* The next append follows the cut, in the open log and after a reopen. */
    fill(w, want_last + 1, want_last + 5);
    wal_close(w, NULL);
    w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    CU_ASSERT_FALSE(rec.truncated);
    CU_ASSERT_EQUAL(rec.last_lsn, want_last + 5);
    check_records(w, 1, want_last + 5);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_truncate_after(void)
{
    /* Find a segment edge: the first LSN of the second segment. */
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_NONE, 4096, &rec);
    fill(w, 1, 300);
    wal_close(w, NULL);
    uint64_t edge = 0;
    for (uint64_t l = 2; l <= 300; l++) {
        char name[32], p[600];
        wal_segment_name(l, name, sizeof name);
        snprintf(p, sizeof p, "%s/%s", dir, name);
        if (access(p, F_OK) == 0) {
            edge = l;
            break;
        }
    }
    tn_rmdir(dir);
    free(dir);
    CU_ASSERT_FATAL(edge > 2 && edge < 300);

    truncate_case(150, 150, 150);                  /* inside a segment, later segments deleted */
    truncate_case(edge - 1, 301 - edge, edge - 1); /* at a segment edge: that segment goes */
    truncate_case(edge, 300 - edge, edge);         /* its first record stays */
    truncate_case(300, 0, 300);                    /* nothing to cut */
    truncate_case(400, 0, 300);                    /* past the end */
    truncate_case(0, 300, 0);                      /* everything */
    truncate_case(299, 1, 299);                    /* only the last record */
}

/* wal_write_deferred skips the ALWAYS fsync; one wal_sync makes the run durable. */
static void test_write_deferred(void)
{
    char *dir = tn_tmpdir();
    struct wal_recovery rec;
    struct wal *w = open_wal(dir, WAL_FSYNC_ALWAYS, 1 << 20, &rec);
    char err[WAL_ERR_MAX];
    uint8_t buf[256];
    fill(w, 1, 3);
    struct wal_stats st;
    wal_stats(w, &st);
    uint64_t f0 = st.fsyncs;
    CU_ASSERT_EQUAL(st.durable_lsn, 3);
    for (uint64_t l = 4; l <= 9; l++)
        CU_ASSERT_EQUAL(wal_write_deferred(w, l, l / 100 + 1, buf, rec_payload(l, buf), err),
                        WAL_OK);
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.fsyncs, f0);
    CU_ASSERT_EQUAL(st.durable_lsn, 3);
    CU_ASSERT_EQUAL(wal_sync(w, err), WAL_OK);
    wal_stats(w, &st);
    CU_ASSERT_EQUAL(st.fsyncs, f0 + 1);
    CU_ASSERT_EQUAL(st.durable_lsn, 9);
    check_records(w, 1, 9);
    wal_close(w, NULL);
    tn_rmdir(dir);
    free(dir);
}

void register_wal_tests(void)
{
    CU_pSuite s = CU_add_suite("wal", NULL, NULL);
    CU_add_test(s, "round trip over several segments", test_round_trip);
    CU_add_test(s, "torn last record is cut and reported", test_torn_tail);
    CU_add_test(s,
                "flipped byte mid-WAL: refused, file and offset named, nothing cut (unless "
                "covered by a snapshot)",
                test_bad_crc_middle);
    CU_add_test(s, "impossible length mid-WAL: refused", test_bad_length_middle);
    CU_add_test(s, "flipped byte in the last record: cut as a torn tail", test_bad_last_record);
    CU_add_test(s, "zero-filled tail: cut; zeros before valid records: refused", test_zero_tail);
    CU_add_test(s, "damage at the end of segment 1, segment 2 valid: refused",
                test_damage_before_next_segment);
    CU_add_test(s, "bad segment header: middle refused, last one removed", test_bad_header_and_gap);
    CU_add_test(s, "empty folder and header-only segment", test_empty_dir);
    CU_add_test(s, "iterate from an LSN, delete before an LSN", test_iterate_and_delete);
    CU_add_test(s, "group commit shares fsyncs", test_group_commit);
    CU_add_test(s, "deferred writes: one fsync for a run", test_write_deferred);
    CU_add_test(s, "truncate after an LSN: inside, at an edge, nothing, everything",
                test_truncate_after);
}
