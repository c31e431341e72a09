/*
 * test_util.c — CUnit runner for common/util (build/test_util): CRC-32C
 * against its published check value and across split buffers, for both the
 * table and (where present) the SSE4.2 implementation in use; the routing
 * hash (hash.h) against fixed values that docs/router.md publishes; the
 * flag tables of flags.h (sizes, ranges, field widths, default < env < argv).
 */
#include "common/util/crc32c.h"
#include "common/util/flags.h"
#include "common/util/hash.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

static void test_check_value(void)
{
    /* The CRC-32C check value of "123456789" (RFC 3720, iSCSI). */
    CU_ASSERT_EQUAL(crc32c("123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(crc32c("", 0), 0);
    unsigned char zeros[32] = {0};
    CU_ASSERT_EQUAL(crc32c(zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
}

static void test_extend_equals_whole(void)
{
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++)
        buf[i] = (unsigned char)(i * 31 + 7);
    uint32_t whole = crc32c(buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut += 37)
        CU_ASSERT_EQUAL(crc32c_extend(crc32c(buf, cut), buf + cut, sizeof buf - cut), whole);
    /* Unaligned starts take the byte-wise head path. */
    CU_ASSERT_EQUAL(crc32c_extend(crc32c(buf, 3), buf + 3, 997), whole);
    buf[500] ^= 1;
    CU_ASSERT_NOT_EQUAL(crc32c(buf, sizeof buf), whole);
}

/* The values docs/router.md publishes: a client computing the hash itself
 * must get exactly these, so they may never change. */
static void test_hash_known_values(void)
{
    static const struct {
        uint64_t id, hash;
        uint32_t mod3, mod4, mod7;
    } known[] = {
        {0, 0xe220a8397b1dcdafull, 1, 3, 2},          {1, 0x910a2dec89025cc1ull, 2, 1, 2},
        {2, 0x975835de1c9756ceull, 1, 2, 4},          {42, 0xbdd732262feb6e95ull, 1, 1, 5},
        {12345, 0x22118258a9d111a0ull, 2, 0, 5},      {1ull << 63, 0x481ec0a212a9f3dbull, 1, 3, 6},
        {UINT64_MAX, 0xe4d971771b652c20ull, 2, 0, 0},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        CU_ASSERT_EQUAL(hash_id64(known[i].id), known[i].hash);
        CU_ASSERT_EQUAL(hash_shard(known[i].id, 3), known[i].mod3);
        CU_ASSERT_EQUAL(hash_shard(known[i].id, 4), known[i].mod4);
        CU_ASSERT_EQUAL(hash_shard(known[i].id, 7), known[i].mod7);
        CU_ASSERT_EQUAL(hash_shard(known[i].id, 1), 0);
    }
}

/* Sequential ids (the common case) spread evenly over the shards. */
static void test_hash_spreads_sequential_ids(void)
{
    enum { S = 8, N = 80000 };
    unsigned count[S] = {0};
    for (uint64_t id = 0; id < N; id++)
        count[hash_shard(id, S)]++;
    for (int s = 0; s < S; s++) {
        CU_ASSERT(count[s] > N / S * 95 / 100);
        CU_ASSERT(count[s] < N / S * 105 / 100);
    }
}

/* Sizes take k/m/g with optional "iB"/"B"; anything else is refused. */
static void test_flags_sizes(void)
{
    uint64_t v = 0;
    CU_ASSERT(flags_parse_u64("65536", true, &v) && v == 65536);
    CU_ASSERT(flags_parse_u64("64KiB", true, &v) && v == 64u << 10);
    CU_ASSERT(flags_parse_u64("64m", true, &v) && v == 64u << 20);
    CU_ASSERT(flags_parse_u64("1GB", true, &v) && v == 1u << 30);
    CU_ASSERT(!flags_parse_u64("64KiB", false, &v));
    CU_ASSERT(!flags_parse_u64("64x", true, &v));
    CU_ASSERT(!flags_parse_u64("-1", true, &v));
    CU_ASSERT(!flags_parse_u64("", true, &v));
    CU_ASSERT(!flags_parse_u64("99999999999999999999", false, &v));
}

struct test_cfg {
    char *name;
    int count;
    long wide;
    uint32_t narrow;
    uint64_t bytes;
    int level;
};

/* "low" = 0, "high" = 1. */
static int parse_level(const char *s)
{
    return strcmp(s, "low") == 0 ? 0 : strcmp(s, "high") == 0 ? 1 : -1;
}

#define TF(field) FLAGS_FIELD(struct test_cfg, field)
static const struct flags_spec test_flags[] = {
    {"name", FLAGS_STR, "a", 0, 0, TF(name), "a name"},
    {"count", FLAGS_INT, "3", 1, 10, TF(count), "a count"},
    {"wide", FLAGS_INT, "7", 0, 100000, TF(wide), "a long"},
    {"narrow", FLAGS_INT, "9", 0, 100, TF(narrow), "a uint32_t"},
    {"bytes", FLAGS_SIZE, "1KiB", 1, UINT64_MAX, TF(bytes), "a size"},
    {"level", FLAGS_ENUM, "low", 0, 0, TF(level), "low or high", parse_level, "one of low, high"},
};
static const struct flags_prog test_prog = {"test", "1", "", test_flags, 6};

/* Defaults, then VECSHARD_* variables, then argv; each into its field's width. */
static void test_flags_precedence(void)
{
    struct test_cfg c;
    memset(&c, 0, sizeof c);
    setenv("VECSHARD_COUNT", "5", 1);
    setenv("VECSHARD_WIDE", "60000", 1);
    char *argv[] = {"test", "--count=6", "--bytes", "2MiB", "--level", "high", NULL};
    CU_ASSERT_EQUAL(flags_parse(&test_prog, 6, argv, &c), FLAGS_OK);
    CU_ASSERT_STRING_EQUAL(c.name, "a");
    CU_ASSERT_EQUAL(c.count, 6);
    CU_ASSERT_EQUAL(c.wide, 60000);
    CU_ASSERT_EQUAL(c.narrow, 9);
    CU_ASSERT_EQUAL(c.bytes, 2u << 20);
    CU_ASSERT_EQUAL(c.level, 1);
    CU_ASSERT(flags_apply(&test_prog, "name", &c, "b", "test"));
    CU_ASSERT_STRING_EQUAL(c.name, "b");
    unsetenv("VECSHARD_COUNT");
    unsetenv("VECSHARD_WIDE");
    free(c.name);
}

/* A bad value, an unknown flag or a missing value is EXIT_BAD, wherever it came from. */
static void test_flags_rejects(void)
{
    char *bad[][3] = {
        {"test", "--count", "11"}, {"test", "--count", "x"}, {"test", "--level", "mid"},
        {"test", "--name", ""},    {"test", "--nope", "1"},  {"test", "stray", "1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct test_cfg c;
        memset(&c, 0, sizeof c);
        CU_ASSERT_EQUAL(flags_parse(&test_prog, 3, bad[i], &c), FLAGS_EXIT_BAD);
        free(c.name);
    }
    struct test_cfg c;
    memset(&c, 0, sizeof c);
    char *missing[] = {"test", "--count", NULL};
    CU_ASSERT_EQUAL(flags_parse(&test_prog, 2, missing, &c), FLAGS_EXIT_BAD);
    free(c.name);
    memset(&c, 0, sizeof c);
    setenv("VECSHARD_BYTES", "0", 1);
    char *none[] = {"test", NULL};
    CU_ASSERT_EQUAL(flags_parse(&test_prog, 1, none, &c), FLAGS_EXIT_BAD);
    unsetenv("VECSHARD_BYTES");
    free(c.name);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("crc32c", NULL, NULL);
    CU_add_test(s, "published check values", test_check_value);
    CU_add_test(s, "extend over pieces equals the whole", test_extend_equals_whole);
    CU_pSuite h = CU_add_suite("hash", NULL, NULL);
    CU_add_test(h, "published routing hash values", test_hash_known_values);
    CU_add_test(h, "sequential ids spread evenly", test_hash_spreads_sequential_ids);
    CU_pSuite f = CU_add_suite("flags", NULL, NULL);
    CU_add_test(f, "sizes and integers", test_flags_sizes);
    CU_add_test(f, "default, environment, command line", test_flags_precedence);
    CU_add_test(f, "bad values exit 2", test_flags_rejects);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
