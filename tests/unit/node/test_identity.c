/*
 * test_identity.c — the data dir's owner record: encode/decode round trip,
 * atomic write and read back, and refusal of a flipped bit anywhere, a
 * truncated file, trailing bytes and another format version.
 */
#include "tests/unit/node/node_test.h"

#include "node/storage/identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The identity the tests use. */
static struct node_identity sample(void)
{
    struct node_identity id = {.version = IDENTITY_VERSION, .created_at = 1733100000123};
    snprintf(id.node_id, sizeof id.node_id, "node-a.1");
    snprintf(id.cluster, sizeof id.cluster, "/vecshard/test");
    return id;
}

/* Encode then decode gives the same fields; the text is what docs/storage.md shows. */
static void test_round_trip(void)
{
    struct node_identity id = sample(), back;
    char buf[IDENTITY_TEXT_MAX], err[IDENTITY_ERR_MAX];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(identity_encode(&id, buf, sizeof buf, &len, err), IDENTITY_OK);
    const char *head = "vecshard-node-identity 1\nnode_id: node-a.1\ncluster: /vecshard/test\n"
                       "created_at: 1733100000123\ncrc32c: ";
    CU_ASSERT_EQUAL(strncmp(buf, head, strlen(head)), 0);
    CU_ASSERT_EQUAL(len, strlen(head) + 9);
    CU_ASSERT_EQUAL_FATAL(identity_decode(buf, len, "mem", &back, err), IDENTITY_OK);
    CU_ASSERT_STRING_EQUAL(back.node_id, "node-a.1");
    CU_ASSERT_STRING_EQUAL(back.cluster, "/vecshard/test");
    CU_ASSERT_EQUAL(back.created_at, 1733100000123);
    CU_ASSERT_EQUAL(back.version, IDENTITY_VERSION);

    struct node_identity bad = sample();
    snprintf(bad.node_id, sizeof bad.node_id, "a\nb");
    CU_ASSERT_EQUAL(identity_encode(&bad, buf, sizeof buf, &len, err), IDENTITY_EINVAL);
    bad = sample();
    bad.cluster[0] = '\0';
    CU_ASSERT_EQUAL(identity_encode(&bad, buf, sizeof buf, &len, err), IDENTITY_EINVAL);
}

/* Every single-bit flip of every byte is refused as ECORRUPT. */
static void test_bit_flip_refused(void)
{
    struct node_identity id = sample(), back;
    char buf[IDENTITY_TEXT_MAX], err[IDENTITY_ERR_MAX];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(identity_encode(&id, buf, sizeof buf, &len, err), IDENTITY_OK);
    int accepted = 0;
    for (size_t i = 0; i < len; i++)
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (char)(1 << b);
            if (identity_decode(buf, len, "mem", &back, err) != IDENTITY_ECORRUPT) accepted++;
            buf[i] ^= (char)(1 << b);
        }
    CU_ASSERT_EQUAL(accepted, 0);
}

/* Every truncation, trailing bytes and another version are refused. */
static void test_truncated_refused(void)
{
    struct node_identity id = sample(), back;
    char buf[IDENTITY_TEXT_MAX + 8], err[IDENTITY_ERR_MAX];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(identity_encode(&id, buf, sizeof buf, &len, err), IDENTITY_OK);
    int accepted = 0;
    for (size_t n = 0; n < len; n++)
        if (identity_decode(buf, n, "mem", &back, err) != IDENTITY_ECORRUPT) accepted++;
    CU_ASSERT_EQUAL(accepted, 0);
    memcpy(buf + len, "x\n", 2);
    CU_ASSERT_EQUAL(identity_decode(buf, len + 2, "mem", &back, err), IDENTITY_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unexpected bytes"));
    id.version = 2;
    CU_ASSERT_EQUAL_FATAL(identity_encode(&id, buf, sizeof buf, &len, err), IDENTITY_OK);
    CU_ASSERT_EQUAL(identity_decode(buf, len, "mem", &back, err), IDENTITY_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "format version"));
}

/* Write then read through the file; a missing file is ENOENT, a damaged one ECORRUPT. */
static void test_file(void)
{
    char *dir = tn_tmpdir();
    struct node_identity id = sample(), back;
    char err[IDENTITY_ERR_MAX], path[512];
    CU_ASSERT_EQUAL(identity_read(dir, &back, err), IDENTITY_ENOENT);
    CU_ASSERT_EQUAL_FATAL(identity_write(dir, &id, err), IDENTITY_OK);
    CU_ASSERT_EQUAL(tn_count_files(dir, IDENTITY_FILE, ".tmp"), 0);
    CU_ASSERT_EQUAL_FATAL(identity_read(dir, &back, err), IDENTITY_OK);
    CU_ASSERT_STRING_EQUAL(back.node_id, id.node_id);
    CU_ASSERT_EQUAL(back.created_at, id.created_at);
    snprintf(path, sizeof path, "%s/%s", dir, IDENTITY_FILE);
    tn_flip(path, 30, 0x01);
    CU_ASSERT_EQUAL(identity_read(dir, &back, err), IDENTITY_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    tn_rmdir(dir);
    free(dir);
}

void register_identity_tests(void)
{
    CU_pSuite s = CU_add_suite("identity", NULL, NULL);
    CU_add_test(s, "round trip", test_round_trip);
    CU_add_test(s, "bit flip refused", test_bit_flip_refused);
    CU_add_test(s, "truncated refused", test_truncated_refused);
    CU_add_test(s, "file write/read", test_file);
}
