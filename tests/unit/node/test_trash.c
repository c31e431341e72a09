/*
 * test_trash.c — <data-dir>/trash.d/: a move keeps the folder's files under
 * a name that parses back to (collection, shard, created_at, wiped); two
 * moves never share a name; a missing source is not an error; restore puts
 * the folder back; purge deletes it; names that are not entries are ignored.
 */
#include "tests/unit/node/node_test.h"

#include "node/storage/trash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Creates <dir>/<name> holding one file of `len` bytes. */
static void make_replica_dir(const char *path, size_t len)
{
    CU_ASSERT_FATAL(mkdir(path, 0755) == 0);
    char file[1024];
    snprintf(file, sizeof file, "%s/wal-00000000000000000001.log", path);
    FILE *f = fopen(file, "wb");
    CU_ASSERT_FATAL(f != NULL);
    for (size_t i = 0; i < len; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
}

/* Move, list, restore, purge. */
static void test_move_list_restore_purge(void)
{
    char *data = tn_tmpdir();
    char coll[512], src[512], path[1024], err[TRASH_ERR_MAX], name[256], name2[256];
    snprintf(coll, sizeof coll, "%s/docs", data);
    snprintf(src, sizeof src, "%s/docs/3", data);
    CU_ASSERT_FATAL(mkdir(coll, 0755) == 0);
    make_replica_dir(src, 1000);

    CU_ASSERT_EQUAL_FATAL(trash_move(data, src, "docs", 3, 1733100000123, false, name, err), 0);
    CU_ASSERT_EQUAL(tn_file_size(src), -1);
    snprintf(path, sizeof path, "%s/" TRASH_DIR "/%s/wal-00000000000000000001.log", data, name);
    CU_ASSERT_EQUAL(tn_file_size(path), 1000);
    CU_ASSERT_PTR_NOT_NULL(strstr(name, ".docs.3.1733100000123"));

    /* A second replica of the same shard (another incarnation), wiped. */
    make_replica_dir(src, 10);
    CU_ASSERT_EQUAL_FATAL(trash_move(data, src, "docs", 3, 1733100000999, true, name2, err), 0);
    CU_ASSERT_STRING_NOT_EQUAL(name, name2);
    /* Missing source: nothing to do. */
    CU_ASSERT_EQUAL(trash_move(data, src, "docs", 3, 1, false, NULL, err), 0);
    /* Junk in the trash is ignored. */
    snprintf(path, sizeof path, "%s/" TRASH_DIR "/not-an-entry", data);
    CU_ASSERT_FATAL(mkdir(path, 0755) == 0);

    struct trash_entry *t = NULL;
    long n = trash_list(data, &t, err);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    int plain = strcmp(t[0].name, name) == 0 ? 0 : 1, wiped = 1 - plain;
    CU_ASSERT_STRING_EQUAL(t[plain].name, name);
    CU_ASSERT_STRING_EQUAL(t[plain].collection, "docs");
    CU_ASSERT_EQUAL(t[plain].shard, 3);
    CU_ASSERT_EQUAL(t[plain].created_at, 1733100000123);
    CU_ASSERT_FALSE(t[plain].wiped);
    CU_ASSERT_TRUE(t[plain].trashed_at > 1700000000000);
    CU_ASSERT_EQUAL(t[wiped].created_at, 1733100000999);
    CU_ASSERT_TRUE(t[wiped].wiped);
    free(t);

    CU_ASSERT_EQUAL_FATAL(trash_restore(data, name, src, err), 0);
    snprintf(path, sizeof path, "%s/wal-00000000000000000001.log", src);
    CU_ASSERT_EQUAL(tn_file_size(path), 1000);
    /* The destination must be free. */
    CU_ASSERT_EQUAL(trash_restore(data, name2, src, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "rename"));

    CU_ASSERT_EQUAL(trash_purge(data, name2, err), 0);
    CU_ASSERT_EQUAL(trash_purge(data, "../docs", err), -1);
    n = trash_list(data, &t, err);
    CU_ASSERT_EQUAL(n, 0);
    free(t);
    tn_rmdir(data);
    free(data);
}

void register_trash_tests(void)
{
    CU_pSuite s = CU_add_suite("trash", NULL, NULL);
    CU_add_test(s, "move, list, restore, purge", test_move_list_restore_purge);
}
