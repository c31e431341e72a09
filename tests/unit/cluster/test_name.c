/*
 * test_name.c — the collection name rule on explicit lengths, so a NUL
 * inside a name fails instead of reading as the prefix before it, and the
 * messages that name the field.
 */
#include "common/cluster/name.h"
#include "tests/unit/cluster/cluster_tests.h"

#include <CUnit/Basic.h>
#include <string.h>

/* Valid names, boundaries of the length and of the alphabet. */
static void test_name_rule(void)
{
    char max[CLUSTER_NAME_MAX + 2];
    memset(max, 'a', sizeof max);
    CU_ASSERT_TRUE(cluster_name_ok("docs_v2-A9", 10));
    CU_ASSERT_TRUE(cluster_name_ok(max, CLUSTER_NAME_MAX));
    CU_ASSERT_FALSE(cluster_name_ok(max, CLUSTER_NAME_MAX + 1));
    CU_ASSERT_FALSE(cluster_name_ok("", 0));
    CU_ASSERT_FALSE(cluster_name_ok(NULL, 3));
    const char *bad[] = {"a/b", "a.b", "..", "a b", "é", "a\\b", "a:b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_FALSE(cluster_name_ok(bad[i], strlen(bad[i])));
    /* The length decides, not the first NUL: "nul\0x" is not "nul". */
    CU_ASSERT_TRUE(cluster_name_ok("nul\0x", 3));
    CU_ASSERT_FALSE(cluster_name_ok("nul\0x", 5));
    CU_ASSERT_FALSE(cluster_name_ok("nul\0", 4));
}

/* The error message starts with the field and says what is wrong. */
static void test_name_messages(void)
{
    char err[160];
    CU_ASSERT_EQUAL(cluster_name_check("collection", "ok", 2, err, sizeof err), 0);
    CU_ASSERT_EQUAL(cluster_name_check("collection", "", 0, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "collection is empty");
    CU_ASSERT_EQUAL(cluster_name_check("config.name", "nul\0../../evil", 14, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "config.name: contains a NUL byte at offset 3");
    CU_ASSERT_EQUAL(cluster_name_check("name", "a/b", 3, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "name \"a/b\" is not a valid name ([A-Za-z0-9_-]{1,64})");
}

/* Registers the name-rule tests. */
void cluster_tests_name(void)
{
    CU_pSuite s = CU_add_suite("name", NULL, NULL);
    CU_add_test(s, "name rule on explicit lengths", test_name_rule);
    CU_add_test(s, "messages name the field", test_name_messages);
}
