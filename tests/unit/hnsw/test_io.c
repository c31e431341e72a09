/*
 * test_io.c — the file format: save then load gives identical search
 * results; truncated, bit-flipped, wrong-magic and missing files are
 * refused with a message, never a crash.
 */
#include "tests/unit/hnsw/test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define N   3000
#define DIM 32

static char dir[] = "/tmp/vs-hnsw-io-XXXXXX";
static char path[256], bad[256];

/* Builds an index with some deletes and a repair, so every section is non-trivial. */
static struct hnsw_index *build(float **xout)
{
    float *x = ts_clustered(N + 50, DIM, 20, 5);
    uint64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++)
        ids[i] = 10 * i + 3;
    struct hnsw_index *idx = ts_index(DIM, HNSW_METRIC_COSINE, 12, 100);
    CU_ASSERT_EQUAL_FATAL(hnsw_insert_batch(idx, ids, x, N, 2, NULL), HNSW_OK);
    for (size_t i = 0; i < 200; i++)
        hnsw_delete(idx, ids[i]);
    CU_ASSERT_EQUAL(hnsw_repair(idx, 1, NULL), HNSW_OK);
    for (size_t i = 200; i < 300; i++)
        hnsw_delete(idx, ids[i]); /* some deleted, some free slots in the file */
    free(ids);
    *xout = x;
    return idx;
}

static void test_round_trip(void)
{
    float *x;
    struct hnsw_index *a = build(&x), *b = NULL;
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(hnsw_save(a, path, err), HNSW_OK);
    CU_ASSERT_EQUAL(access(path, F_OK), 0);
    CU_ASSERT_NOT_EQUAL(access(bad, F_OK), 0);
    int rc = hnsw_load(path, &b, err);
    if (rc) fprintf(stderr, "load: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, HNSW_OK);
    struct hnsw_stats sa, sb;
    hnsw_info(a, &sa);
    hnsw_info(b, &sb);
    CU_ASSERT_EQUAL(sa.count, sb.count);
    CU_ASSERT_EQUAL(sa.deleted, sb.deleted);
    CU_ASSERT_EQUAL(sa.free_slots, sb.free_slots);
    CU_ASSERT_EQUAL(sa.max_level, sb.max_level);
    CU_ASSERT_EQUAL(sb.metric, HNSW_METRIC_COSINE);
    struct hnsw_result ra[10], rb[10];
    uint32_t na, nb;
    for (int q = 0; q < 50; q++) {
        const float *v = x + (size_t)(N + q) * DIM;
        hnsw_search(a, v, 10, 40, NULL, NULL, ra, &na, NULL);
        hnsw_search(b, v, 10, 40, NULL, NULL, rb, &nb, NULL);
        CU_ASSERT_EQUAL(na, nb);
        for (uint32_t i = 0; i < na && i < nb; i++) {
            CU_ASSERT_EQUAL(ra[i].id, rb[i].id);
            CU_ASSERT_EQUAL(ra[i].dist, rb[i].dist);
        }
    }
    ts_assert_check(b);
    /* The loaded index keeps working: inserts reuse its free slots. */
    CU_ASSERT_EQUAL(hnsw_insert(b, 999999, x, NULL), HNSW_OK);
    ts_assert_check(b);
    hnsw_free(a);
    hnsw_free(b);
    free(x);
}

/* Copies the saved file to `bad`, letting fn damage the bytes; returns load's status. */
static int load_damaged(void (*fn)(unsigned char *, long *, long), long arg, char *err)
{
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *buf = malloc(len);
    CU_ASSERT_EQUAL_FATAL(fread(buf, 1, len, f), (size_t)len);
    fclose(f);
    fn(buf, &len, arg);
    f = fopen(bad, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
    struct hnsw_index *idx = NULL;
    err[0] = 0;
    int rc = hnsw_load(bad, &idx, err);
    CU_ASSERT_PTR_NULL(idx);
    hnsw_free(idx);
    return rc;
}

static void truncate_at(unsigned char *b, long *len, long at)
{
    (void)b;
    *len = at < *len ? at : *len - 1;
}

static void flip_bit(unsigned char *b, long *len, long at)
{
    b[at % *len] ^= 0x10;
}

static void wrong_magic(unsigned char *b, long *len, long at)
{
    (void)len;
    (void)at;
    memcpy(b, "GGUF\0\0\0\0", 8);
}

static void test_truncated(void)
{
    float *x;
    struct hnsw_index *a = build(&x);
    CU_ASSERT_EQUAL_FATAL(hnsw_save(a, path, NULL), HNSW_OK);
    char err[HNSW_ERR_MAX];
    long cuts[] = {0, 4, 8, 15, 40, 100, 1000, 50000, 200000, 400000, 1L << 40};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CU_ASSERT_EQUAL(load_damaged(truncate_at, cuts[i], err), HNSW_EFORMAT);
        CU_ASSERT(strlen(err) > 0);
    }
    hnsw_free(a);
    free(x);
}

static void test_bit_flips(void)
{
    float *x;
    struct hnsw_index *a = build(&x);
    CU_ASSERT_EQUAL_FATAL(hnsw_save(a, path, NULL), HNSW_OK);
    char err[HNSW_ERR_MAX];
    /* Every region: magic, header, each section's payload, lengths and CRCs. */
    for (long at = 3; at < 500000; at = at * 3 + 1) {
        CU_ASSERT_EQUAL(load_damaged(flip_bit, at, err), HNSW_EFORMAT);
        CU_ASSERT(strlen(err) > 0);
    }
    CU_ASSERT_EQUAL(load_damaged(flip_bit, 100000, err), HNSW_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "CRC"));
    hnsw_free(a);
    free(x);
}

static void test_wrong_magic_and_missing(void)
{
    float *x;
    struct hnsw_index *a = build(&x), *b = NULL;
    CU_ASSERT_EQUAL_FATAL(hnsw_save(a, path, NULL), HNSW_OK);
    char err[HNSW_ERR_MAX];
    CU_ASSERT_EQUAL(load_damaged(wrong_magic, 0, err), HNSW_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "magic"));
    CU_ASSERT_EQUAL(hnsw_load("/nonexistent/dir/x.idx", &b, err), HNSW_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/dir/x.idx"));
    CU_ASSERT_PTR_NULL(b);
    hnsw_free(a);
    free(x);
}

static int io_setup(void)
{
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/index.vsx", dir);
    snprintf(bad, sizeof bad, "%s/damaged.vsx", dir);
    return 0;
}

static int io_teardown(void)
{
    unlink(path);
    unlink(bad);
    return rmdir(dir) != 0;
}

void register_io_tests(void)
{
    CU_pSuite s = CU_add_suite("io", io_setup, io_teardown);
    CU_add_test(s, "save then load gives identical results", test_round_trip);
    CU_add_test(s, "truncated files are refused", test_truncated);
    CU_add_test(s, "bit-flipped files are refused", test_bit_flips);
    CU_add_test(s, "wrong magic and missing files are refused", test_wrong_magic_and_missing);
}
