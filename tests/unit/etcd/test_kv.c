/*
 * test_kv.c — put, get, range, delete and txn against the real etcd, with
 * exact revisions, versions and values.
 */
#include "etcd_tests.h"

#include <stdio.h>
#include <string.h>

/* put then get: value, revisions, version; prev_kv on overwrite. */
static void test_put_get(void)
{
    etcd_err err = {{0}};
    etcd_kv kv, prev;
    int64_t r1 = 0, r2 = 0;

    ASSERT_OK(etcd_put(g_client, "/t/kv/a", "one", 3, 0, NULL, &r1, &err), err);
    CU_ASSERT(r1 > 0);
    ASSERT_OK(etcd_get(g_client, "/t/kv/a", &kv, &err), err);
    CU_ASSERT_STRING_EQUAL(kv.key, "/t/kv/a");
    CU_ASSERT_EQUAL(kv.key_len, 7);
    CU_ASSERT_STRING_EQUAL(kv.value, "one");
    CU_ASSERT_EQUAL(kv.value_len, 3);
    CU_ASSERT_EQUAL(kv.create_revision, r1);
    CU_ASSERT_EQUAL(kv.mod_revision, r1);
    CU_ASSERT_EQUAL(kv.version, 1);
    CU_ASSERT_EQUAL(kv.lease, 0);
    etcd_kv_clear(&kv);

    ASSERT_OK(etcd_put(g_client, "/t/kv/a", "two", 3, 0, &prev, &r2, &err), err);
    CU_ASSERT_EQUAL(r2, r1 + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(prev.key);
    CU_ASSERT_STRING_EQUAL(prev.value, "one");
    CU_ASSERT_EQUAL(prev.mod_revision, r1);
    etcd_kv_clear(&prev);
    ASSERT_OK(etcd_get(g_client, "/t/kv/a", &kv, &err), err);
    CU_ASSERT_STRING_EQUAL(kv.value, "two");
    CU_ASSERT_EQUAL(kv.create_revision, r1);
    CU_ASSERT_EQUAL(kv.mod_revision, r2);
    CU_ASSERT_EQUAL(kv.version, 2);
    etcd_kv_clear(&kv);

    /* prev_kv asked on a new key: no previous pair. */
    ASSERT_OK(etcd_put(g_client, "/t/kv/fresh", "x", 1, 0, &prev, NULL, &err), err);
    CU_ASSERT_PTR_NULL(prev.key);
    CU_ASSERT_EQUAL(etcd_get(g_client, "/t/kv/missing", &kv, &err), ETCD_ENOTFOUND);
    CU_ASSERT_PTR_NULL(kv.key);
    CU_ASSERT_EQUAL(etcd_get(g_client, "", &kv, NULL), ETCD_EINVAL);
}

/* Binary values (NUL bytes, 0xff) and an empty value survive. */
static void test_binary_value(void)
{
    const char bin[] = {'a', 0, (char)0xff, 'b', 0};
    etcd_err err = {{0}};
    etcd_kv kv;

    ASSERT_OK(etcd_put(g_client, "/t/kv/bin", bin, sizeof bin, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_get(g_client, "/t/kv/bin", &kv, &err), err);
    CU_ASSERT_EQUAL(kv.value_len, sizeof bin);
    CU_ASSERT(memcmp(kv.value, bin, sizeof bin) == 0);
    etcd_kv_clear(&kv);
    ASSERT_OK(etcd_put(g_client, "/t/kv/empty", NULL, 0, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_get(g_client, "/t/kv/empty", &kv, &err), err);
    CU_ASSERT_EQUAL(kv.value_len, 0);
    CU_ASSERT_STRING_EQUAL(kv.value, "");
    etcd_kv_clear(&kv);
}

/* Prefix range: only the prefix, in key order, limit and more. */
static void test_range(void)
{
    etcd_err err = {{0}};
    etcd_kvs r;
    int64_t rev = 0;

    ASSERT_OK(etcd_put(g_client, "/t/range/b", "2", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/range/a", "1", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/range/c", "3", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/range0", "out", 3, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/rangf", "out", 3, 0, NULL, &rev, &err), err);

    ASSERT_OK(etcd_range(g_client, "/t/range/", 0, &r, &err), err);
    CU_ASSERT_EQUAL_FATAL(r.n, 3);
    CU_ASSERT_STRING_EQUAL(r.kvs[0].key, "/t/range/a");
    CU_ASSERT_STRING_EQUAL(r.kvs[1].key, "/t/range/b");
    CU_ASSERT_STRING_EQUAL(r.kvs[2].key, "/t/range/c");
    CU_ASSERT_STRING_EQUAL(r.kvs[2].value, "3");
    CU_ASSERT_EQUAL(r.count, 3);
    CU_ASSERT_FALSE(r.more);
    CU_ASSERT_EQUAL(r.revision, rev);
    etcd_kvs_free(&r);
    CU_ASSERT_EQUAL(r.n, 0);

    ASSERT_OK(etcd_range(g_client, "/t/range/", 2, &r, &err), err);
    CU_ASSERT_EQUAL(r.n, 2);
    CU_ASSERT_EQUAL(r.count, 3);
    CU_ASSERT_TRUE(r.more);
    etcd_kvs_free(&r);

    ASSERT_OK(etcd_range(g_client, "/t/nothing-here/", 0, &r, &err), err);
    CU_ASSERT_EQUAL(r.n, 0);
    CU_ASSERT_EQUAL(r.count, 0);
    CU_ASSERT_PTR_NULL(r.kvs);
    CU_ASSERT_EQUAL(r.revision, rev);
    etcd_kvs_free(&r);
}

/* Delete one key, then a prefix; counts are exact. */
static void test_delete(void)
{
    etcd_err err = {{0}};
    etcd_kv kv;
    int64_t n = -1;

    ASSERT_OK(etcd_put(g_client, "/t/del/a", "1", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/del/b", "1", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/del/c", "1", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_delete(g_client, "/t/del/a", false, &n, &err), err);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(etcd_get(g_client, "/t/del/a", &kv, NULL), ETCD_ENOTFOUND);
    ASSERT_OK(etcd_delete(g_client, "/t/del/", true, &n, &err), err);
    CU_ASSERT_EQUAL(n, 2);
    ASSERT_OK(etcd_delete(g_client, "/t/del/", true, &n, &err), err);
    CU_ASSERT_EQUAL(n, 0);
}

/* Create-if-absent: the first txn creates, the second sees the winner. */
static void test_txn_create(void)
{
    etcd_cmp absent = {.key = "/t/txn/c", .target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL};
    etcd_op put1 = {.type = ETCD_OP_PUT, .key = "/t/txn/c", .value = "first", .value_len = 5};
    etcd_op put2 = {.type = ETCD_OP_PUT, .key = "/t/txn/c", .value = "second", .value_len = 6};
    etcd_op get = {.type = ETCD_OP_RANGE, .key = "/t/txn/c"};
    etcd_err err = {{0}};
    etcd_txn_result r;

    ASSERT_OK(etcd_txn(g_client, &absent, 1, &put1, 1, &get, 1, &r, &err), err);
    CU_ASSERT_TRUE(r.succeeded);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_EQUAL(r.results[0].type, ETCD_OP_PUT);
    CU_ASSERT_EQUAL(r.results[0].revision, r.revision);
    etcd_txn_result_free(&r);

    ASSERT_OK(etcd_txn(g_client, &absent, 1, &put2, 1, &get, 1, &r, &err), err);
    CU_ASSERT_FALSE(r.succeeded);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_EQUAL(r.results[0].type, ETCD_OP_RANGE);
    CU_ASSERT_EQUAL_FATAL(r.results[0].kvs.n, 1);
    CU_ASSERT_STRING_EQUAL(r.results[0].kvs.kvs[0].value, "first");
    CU_ASSERT_EQUAL(r.results[0].kvs.kvs[0].version, 1);
    etcd_txn_result_free(&r);
    CU_ASSERT_EQUAL(r.n, 0);
}

/* CAS on mod_revision: succeeds once, then the same compare fails. */
static void test_txn_cas(void)
{
    etcd_err err = {{0}};
    etcd_kv kv;
    etcd_txn_result r;
    int64_t rev = 0;
    etcd_cmp cas = {.key = "/t/txn/shard", .target = ETCD_CMP_MOD, .result = ETCD_CMP_EQUAL};
    etcd_op upd = {.type = ETCD_OP_PUT,
                   .key = "/t/txn/shard",
                   .value = "{\"epoch\":2}",
                   .value_len = 11,
                   .prev_kv = true};

    ASSERT_OK(etcd_put(g_client, "/t/txn/shard", "{\"epoch\":1}", 11, 0, NULL, &rev, &err), err);
    cas.number = rev;
    ASSERT_OK(etcd_txn(g_client, &cas, 1, &upd, 1, NULL, 0, &r, &err), err);
    CU_ASSERT_TRUE(r.succeeded);
    CU_ASSERT_EQUAL(r.revision, rev + 1);
    CU_ASSERT_EQUAL_FATAL(r.results[0].kvs.n, 1); /* prev_kv of the put */
    CU_ASSERT_STRING_EQUAL(r.results[0].kvs.kvs[0].value, "{\"epoch\":1}");
    etcd_txn_result_free(&r);

    ASSERT_OK(etcd_txn(g_client, &cas, 1, &upd, 1, NULL, 0, &r, &err), err);
    CU_ASSERT_FALSE(r.succeeded);
    CU_ASSERT_EQUAL(r.n, 0);
    CU_ASSERT_EQUAL(r.revision, rev + 1); /* nothing written */
    etcd_txn_result_free(&r);
    ASSERT_OK(etcd_get(g_client, "/t/txn/shard", &kv, &err), err);
    CU_ASSERT_EQUAL(kv.mod_revision, rev + 1);
    CU_ASSERT_EQUAL(kv.version, 2);
    etcd_kv_clear(&kv);
}

/* VALUE, VERSION GREATER/LESS and NOT_EQUAL compares; delete in a txn. */
static void test_txn_compares(void)
{
    etcd_err err = {{0}};
    etcd_txn_result r;
    etcd_kv kv;
    etcd_cmp cmps[3] = {
        {.key = "/t/txn/v",
         .target = ETCD_CMP_VALUE,
         .result = ETCD_CMP_EQUAL,
         .value = "b",
         .value_len = 1},
        {.key = "/t/txn/v", .target = ETCD_CMP_VERSION, .result = ETCD_CMP_GREATER, .number = 1},
        {.key = "/t/txn/v", .target = ETCD_CMP_VERSION, .result = ETCD_CMP_LESS, .number = 3},
    };
    etcd_cmp ne = {.key = "/t/txn/v",
                   .target = ETCD_CMP_VALUE,
                   .result = ETCD_CMP_NOT_EQUAL,
                   .value = "b",
                   .value_len = 1};
    etcd_op del = {.type = ETCD_OP_DELETE, .key = "/t/txn/v", .prev_kv = true};

    ASSERT_OK(etcd_put(g_client, "/t/txn/v", "a", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_put(g_client, "/t/txn/v", "b", 1, 0, NULL, NULL, &err), err);
    ASSERT_OK(etcd_txn(g_client, &ne, 1, &del, 1, NULL, 0, &r, &err), err);
    CU_ASSERT_FALSE(r.succeeded);
    etcd_txn_result_free(&r);
    ASSERT_OK(etcd_txn(g_client, cmps, 3, &del, 1, NULL, 0, &r, &err), err);
    CU_ASSERT_TRUE(r.succeeded);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_EQUAL(r.results[0].type, ETCD_OP_DELETE);
    CU_ASSERT_EQUAL(r.results[0].deleted, 1);
    CU_ASSERT_EQUAL_FATAL(r.results[0].kvs.n, 1);
    CU_ASSERT_STRING_EQUAL(r.results[0].kvs.kvs[0].value, "b");
    etcd_txn_result_free(&r);
    CU_ASSERT_EQUAL(etcd_get(g_client, "/t/txn/v", &kv, NULL), ETCD_ENOTFOUND);
    /* Bad arguments are refused before anything is sent. */
    CU_ASSERT_EQUAL(etcd_txn(g_client, NULL, 1, NULL, 0, NULL, 0, NULL, NULL), ETCD_EINVAL);
}

/* Registers the kv suite. */
void etcd_tests_kv(void)
{
    CU_pSuite s = CU_add_suite("etcd_kv", NULL, NULL);

    CU_add_test(s, "put/get with revisions and prev_kv", test_put_get);
    CU_add_test(s, "binary and empty values", test_binary_value);
    CU_add_test(s, "range over a prefix, limit", test_range);
    CU_add_test(s, "delete key and prefix", test_delete);
    CU_add_test(s, "txn create-if-absent", test_txn_create);
    CU_add_test(s, "txn CAS on mod_revision", test_txn_cas);
    CU_add_test(s, "txn value/version compares, delete", test_txn_compares);
}
