/*
 * test_snapshot.c — snapshot files: a round trip gives identical search
 * results and payloads; damaged files (flipped bytes anywhere, truncation,
 * foreign magic) are refused with a message, and loading the newest falls
 * back to the previous snapshot, moving the damaged one aside.
 */
#include "tests/unit/node/node_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 16

/* An index of n points (ids 0..n-1, version 1) with payloads, 10% deleted. */
/* The attribute store of the last load (these tests write none). */
static struct attr_store *tas;

static void build(uint32_t n, struct hnsw_index **idx, struct payload_store **ps)
{
    struct hnsw_params p;
    hnsw_params_init(&p);
    p.dim = DIM;
    p.M = 8;
    p.ef_construction = 64;
    CU_ASSERT_FATAL(hnsw_create(&p, idx, NULL) == HNSW_OK);
    CU_ASSERT_FATAL(payload_store_create(ps) == 0);
    float *v = malloc((size_t)n * DIM * sizeof *v);
    uint64_t *ids = malloc(n * sizeof *ids);
    uint8_t buf[400];
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = i;
        tn_vector(i, 1, DIM, v + (size_t)i * DIM);
        payload_put(*ps, i, buf, tn_payload(i, 1, buf));
    }
    CU_ASSERT_FATAL(hnsw_insert_batch(*idx, ids, v, n, 1, NULL) == HNSW_OK);
    for (uint32_t i = 0; i < n; i += 10) {
        hnsw_delete(*idx, i);
        payload_remove(*ps, i);
    }
    free(v);
    free(ids);
}

/* Writes a snapshot of (idx, ps) at lsn into dir. */
static void save(const char *dir, uint64_t lsn, struct hnsw_index *idx, struct payload_store *ps)
{
    struct snapshot_writer *sw;
    char err[SNAPSHOT_ERR_MAX];
    struct snapshot_info info = {.lsn = lsn, .epoch = 7, .shard = 3};
    snprintf(info.collection, sizeof info.collection, "docs");
    CU_ASSERT_FATAL(snapshot_begin(dir, &sw, err) == SNAPSHOT_OK);
    struct attr_store *as;
    CU_ASSERT_FATAL(attr_store_create(&as) == 0);
    int rc = snapshot_write_state(sw, &info, idx, ps, as, err);
    attr_store_free(as);
    if (rc)
        fprintf(stderr, "snapshot_write_state: %s\n", err);
    CU_ASSERT_FATAL(rc == SNAPSHOT_OK);
    uint64_t bytes = 0;
    CU_ASSERT_FATAL(snapshot_commit(sw, &bytes, err) == SNAPSHOT_OK);
    CU_ASSERT(bytes > 0);
}

static const struct snapshot_expect expect = {
    .collection = "docs", .shard = 3, .dim = DIM, .metric = HNSW_METRIC_L2, .M = 8,
    .ef_construction = 64};

static void test_round_trip(void)
{
    char *dir = tn_tmpdir();
    struct hnsw_index *a, *b;
    struct payload_store *pa, *pb;
    build(3000, &a, &pa);
    save(dir, 42, a, pa);
    char path[512], err[SNAPSHOT_ERR_MAX];
    snapshot_path(dir, 42, path, sizeof path);
    CU_ASSERT_STRING_EQUAL(strrchr(path, '/') + 1, "snapshot-00000000000000000042.vsx");
    CU_ASSERT_EQUAL(tn_count_files(dir, "snapshot", ".tmp"), 0);
    struct snapshot_info info;
    int rc = snapshot_load(path, &expect, &info, &b, &pb, &tas, err);
    if (rc)
        fprintf(stderr, "snapshot_load: %s\n", err);
    CU_ASSERT_FATAL(rc == SNAPSHOT_OK);
    CU_ASSERT_EQUAL(info.lsn, 42);
    CU_ASSERT_EQUAL(info.epoch, 7);
    CU_ASSERT_EQUAL(info.shard, 3);
    CU_ASSERT_STRING_EQUAL(info.collection, "docs");
    CU_ASSERT_EQUAL(info.count, 2700);
    CU_ASSERT_EQUAL(info.deleted, 300);
    CU_ASSERT_EQUAL(info.payloads, payload_count(pa));
    CU_ASSERT_EQUAL(info.file_bytes, (uint64_t)tn_file_size(path));
    CU_ASSERT_EQUAL(hnsw_count(b), 2700);
    CU_ASSERT_EQUAL(hnsw_check(b, err), HNSW_OK);
    /* Identical search results. */
    struct hnsw_result ra[10], rb[10];
    uint32_t na, nb;
    float q[DIM];
    for (int i = 0; i < 50; i++) {
        tn_vector(100000 + i, 1, DIM, q);
        hnsw_search(a, q, 10, 50, NULL, NULL, ra, &na, NULL);
        hnsw_search(b, q, 10, 50, NULL, NULL, rb, &nb, NULL);
        CU_ASSERT_EQUAL_FATAL(na, nb);
        for (uint32_t j = 0; j < na; j++) {
            CU_ASSERT_EQUAL(ra[j].id, rb[j].id);
            CU_ASSERT_EQUAL(ra[j].dist, rb[j].dist);
        }
    }
    /* Identical payloads for every id. */
    payload_read_lock(pa);
    payload_read_lock(pb);
    int bad = 0;
    for (uint64_t id = 0; id < 3000; id++) {
        uint32_t la, lb;
        const uint8_t *x = payload_peek(pa, id, &la), *y = payload_peek(pb, id, &lb);
        if (la != lb || (la && memcmp(x, y, la) != 0))
            bad++;
    }
    payload_read_unlock(pb);
    payload_read_unlock(pa);
    CU_ASSERT_EQUAL(bad, 0);
    hnsw_free(b);
    payload_store_free(pb);
    attr_store_free(tas);
    tas = NULL;
    /* A snapshot of another collection or dim is refused as a mismatch, not as damage. */
    struct snapshot_expect other = expect;
    other.dim = 32;
    CU_ASSERT_EQUAL(snapshot_load(path, &other, &info, &b, &pb, &tas, err), SNAPSHOT_EMISMATCH);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dim 16"));
    other = expect;
    other.collection = "images";
    CU_ASSERT_EQUAL(snapshot_load(path, &other, &info, &b, &pb, &tas, err), SNAPSHOT_EMISMATCH);
    CU_ASSERT_PTR_NULL(b);
    hnsw_free(a);
    payload_store_free(pa);
    tn_rmdir(dir);
    free(dir);
}

static void test_damage_refused(void)
{
    char *dir = tn_tmpdir();
    struct hnsw_index *a, *b;
    struct payload_store *pa, *pb;
    build(500, &a, &pa);
    save(dir, 5, a, pa);
    char path[512], copy[600], err[SNAPSHOT_ERR_MAX];
    snapshot_path(dir, 5, path, sizeof path);
    snprintf(copy, sizeof copy, "%s/copy.vsx", dir);
    long size = tn_file_size(path);
    FILE *f = fopen(path, "rb");
    unsigned char *orig = malloc(size);
    CU_ASSERT_FATAL(f && fread(orig, 1, size, f) == (size_t)size);
    fclose(f);
    struct snapshot_info info;
    /* A flipped byte anywhere (97 positions spread over the file, ends included) is refused. */
    int accepted = 0;
    for (int k = 0; k <= 96; k++) {
        long off = k == 96 ? size - 1 : (long)((double)k * size / 96);
        orig[off] ^= 0x10;
        f = fopen(copy, "wb");
        fwrite(orig, 1, size, f);
        fclose(f);
        orig[off] ^= 0x10;
        err[0] = 0;
        int rc = snapshot_load(copy, &expect, &info, &b, &pb, &tas, err);
        if (rc == SNAPSHOT_OK) {
            accepted++;
            fprintf(stderr, "flip at %ld accepted\n", off);
            hnsw_free(b);
            payload_store_free(pb);
            attr_store_free(tas);
            tas = NULL;
        } else {
            CU_ASSERT(rc == SNAPSHOT_EFORMAT || rc == SNAPSHOT_EMISMATCH);
            CU_ASSERT(strlen(err) > 0);
            CU_ASSERT_PTR_NULL(b);
        }
    }
    CU_ASSERT_EQUAL(accepted, 0);
    /* Truncated anywhere. */
    for (int k = 0; k < 8; k++) {
        f = fopen(copy, "wb");
        fwrite(orig, 1, size * k / 8, f);
        fclose(f);
        CU_ASSERT_EQUAL(snapshot_load(copy, &expect, &info, &b, &pb, &tas, err), SNAPSHOT_EFORMAT);
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "copy.vsx"));
    /* A flip in the payload section names it (the last 48 bytes are ATTR and END_). */
    orig[size - 60] ^= 1;
    f = fopen(copy, "wb");
    fwrite(orig, 1, size, f);
    fclose(f);
    CU_ASSERT_EQUAL(snapshot_load(copy, &expect, &info, &b, &pb, &tas, err), SNAPSHOT_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "PAYL"));
    /* Wrong magic. */
    f = fopen(copy, "wb");
    fputs("not a snapshot at all, just text", f);
    fclose(f);
    CU_ASSERT_EQUAL(snapshot_load(copy, &expect, &info, &b, &pb, &tas, err), SNAPSHOT_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad magic"));
    free(orig);
    hnsw_free(a);
    payload_store_free(pa);
    tn_rmdir(dir);
    free(dir);
}

static void test_fallback(void)
{
    char *dir = tn_tmpdir();
    struct hnsw_index *a, *b, *c;
    struct payload_store *pa, *pb, *pc;
    build(400, &a, &pa);
    save(dir, 10, a, pa);
    build(800, &b, &pb);
    save(dir, 20, b, pb);
    build(900, &c, &pc);
    save(dir, 30, c, pc);
    uint32_t deleted;
    char err[SNAPSHOT_ERR_MAX], path[512], aside[600];
    CU_ASSERT_EQUAL(snapshot_prune(dir, SNAPSHOT_KEEP, &deleted, err), SNAPSHOT_OK);
    CU_ASSERT_EQUAL(deleted, 1);
    CU_ASSERT_EQUAL(tn_count_files(dir, "snapshot-", ".vsx"), 2);
    snapshot_path(dir, 10, path, sizeof path);
    CU_ASSERT_EQUAL(access(path, F_OK), -1);

    /* Damage the newest: the previous one is loaded and the damaged one moved aside. */
    snapshot_path(dir, 30, path, sizeof path);
    tn_flip(path, tn_file_size(path) / 2, 0x08);
    struct snapshot_info info;
    struct snapshot_recovery rec;
    struct hnsw_index *x;
    struct payload_store *px;
    int rc = snapshot_load_newest(dir, &expect, &info, &x, &px, &tas, &rec, err);
    CU_ASSERT_EQUAL_FATAL(rc, SNAPSHOT_OK);
    CU_ASSERT_TRUE(rec.loaded);
    CU_ASSERT_EQUAL(info.lsn, 20);
    CU_ASSERT_EQUAL(hnsw_count(x), hnsw_count(b));
    CU_ASSERT_EQUAL(rec.nrejected, 1);
    CU_ASSERT_EQUAL(rec.rejected[0].lsn, 30);
    CU_ASSERT(strlen(rec.rejected[0].reason) > 0);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    CU_ASSERT_EQUAL(access(aside, F_OK), 0);
    CU_ASSERT_EQUAL(access(path, F_OK), -1);
    hnsw_free(x);
    payload_store_free(px);
    attr_store_free(tas);
    tas = NULL;

    /* Damage the remaining one too: nothing valid is left, said with a message. */
    snapshot_path(dir, 20, path, sizeof path);
    tn_flip(path, 100, 0x01);
    rc = snapshot_load_newest(dir, &expect, &info, &x, &px, &tas, &rec, err);
    CU_ASSERT_EQUAL(rc, SNAPSHOT_ENOTFOUND);
    CU_ASSERT_FALSE(rec.loaded);
    CU_ASSERT_EQUAL(rec.nrejected, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no valid snapshot"));
    CU_ASSERT_PTR_NULL(x);
    CU_ASSERT_EQUAL(tn_count_files(dir, "snapshot-", ".vsx"), 0);
    CU_ASSERT_EQUAL(tn_count_files(dir, "snapshot-", ".corrupt"), 2);

    /* A leftover temp file is removed. */
    snprintf(path, sizeof path, "%s/snapshot.tmp", dir);
    FILE *f = fopen(path, "wb");
    fputs("partial", f);
    fclose(f);
    rc = snapshot_load_newest(dir, &expect, &info, &x, &px, &tas, &rec, err);
    CU_ASSERT_EQUAL(rc, SNAPSHOT_ENOTFOUND);
    CU_ASSERT_EQUAL(rec.temps_removed, 1);
    CU_ASSERT_EQUAL(access(path, F_OK), -1);
    hnsw_free(a);
    hnsw_free(b);
    hnsw_free(c);
    payload_store_free(pa);
    payload_store_free(pb);
    attr_store_free(tas);
    tas = NULL;
    payload_store_free(pc);
    tn_rmdir(dir);
    free(dir);
}

static void test_payload_store(void)
{
    struct payload_store *ps;
    CU_ASSERT_FATAL(payload_store_create(&ps) == 0);
    uint8_t buf[PAYLOAD_MAX_BYTES + 1];
    memset(buf, 0xab, sizeof buf);
    CU_ASSERT_EQUAL(payload_put(ps, 1, buf, PAYLOAD_MAX_BYTES + 1), -1);
    /* Many overwrites of big payloads: compaction keeps memory bounded and data intact. */
    for (int round = 0; round < 40; round++)
        for (uint64_t id = 0; id < 20; id++) {
            buf[0] = (uint8_t)round;
            buf[1] = (uint8_t)id;
            CU_ASSERT_EQUAL_FATAL(payload_put(ps, id, buf, 60000), 0);
        }
    for (uint64_t id = 0; id < 20000; id++)
        payload_put(ps, 1000 + id, &id, sizeof id);
    for (uint64_t id = 0; id < 20000; id += 2)
        payload_remove(ps, 1000 + id);
    CU_ASSERT_EQUAL(payload_count(ps), 20 + 10000);
    CU_ASSERT_EQUAL(payload_bytes(ps), 20 * 60000 + 10000 * 8);
    CU_ASSERT(payload_memory(ps) < 32u << 20);
    payload_read_lock(ps);
    uint32_t len;
    const uint8_t *p;
    for (uint64_t id = 0; id < 20; id++) {
        p = payload_peek(ps, id, &len);
        CU_ASSERT_EQUAL(len, 60000);
        CU_ASSERT(p && p[0] == 39 && p[1] == id && p[59999] == 0xab);
    }
    int bad = 0;
    for (uint64_t id = 0; id < 20000; id++) {
        p = payload_peek(ps, 1000 + id, &len);
        if (id % 2 == 0 ? p != NULL : (len != 8 || memcmp(p, &id, 8) != 0))
            bad++;
    }
    payload_read_unlock(ps);
    CU_ASSERT_EQUAL(bad, 0);
    payload_store_free(ps);
}

void register_snapshot_tests(void)
{
    CU_pSuite s = CU_add_suite("snapshot", NULL, NULL);
    CU_add_test(s, "round trip: same search results and payloads", test_round_trip);
    CU_add_test(s, "damaged files are refused with a message", test_damage_refused);
    CU_add_test(s, "newest damaged: fall back to the previous, prune", test_fallback);
    CU_add_test(s, "payload store: overwrites, removes, compaction", test_payload_store);
}
