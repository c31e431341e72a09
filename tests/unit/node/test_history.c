/*
 * test_history.c — the epoch history of a replica (docs/replication.md §2):
 * epoch_at over written, applied and replayed records, the first LSN after
 * an epoch, the snapshot as the history's base, and replica_apply_packed
 * keeping each record's own epoch and bytes in the backup's WAL.
 */
#include "tests/unit/node/node_test.h"

#include <stdlib.h>
#include <string.h>

#define HDIM 8

/* Opens dir as a small replica; asserts success. */
static struct replica *open_dir(const char *dir)
{
    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "hist";
    c.shard = 0;
    c.hnsw.dim = HDIM;
    c.fsync = WAL_FSYNC_NONE;
    return tn_open(&c);
}

/* Asserts epoch_at(lsn) is known and equals want. */
static void want_epoch(struct replica *r, uint64_t lsn, uint64_t want)
{
    uint64_t e = 99;
    CU_ASSERT_TRUE(replica_epoch_at(r, lsn, &e));
    CU_ASSERT_EQUAL(e, want);
}

/* Epochs of records 1..7: 1 1 1 (written) 3 3 (applied) 4 4 (written). */
static void check_full(struct replica *r)
{
    uint64_t e, s;
    want_epoch(r, 0, 0);
    for (uint64_t l = 1; l <= 3; l++)
        want_epoch(r, l, 1);
    want_epoch(r, 4, 3);
    want_epoch(r, 5, 3);
    want_epoch(r, 6, 4);
    want_epoch(r, 7, 4);
    CU_ASSERT_FALSE(replica_epoch_at(r, 8, &e));
    CU_ASSERT_TRUE(replica_first_lsn_after_epoch(r, 0, &s));
    CU_ASSERT_EQUAL(s, 1);
    CU_ASSERT_TRUE(replica_first_lsn_after_epoch(r, 1, &s));
    CU_ASSERT_EQUAL(s, 4);
    CU_ASSERT_TRUE(replica_first_lsn_after_epoch(r, 2, &s));
    CU_ASSERT_EQUAL(s, 4);
    CU_ASSERT_TRUE(replica_first_lsn_after_epoch(r, 3, &s));
    CU_ASSERT_EQUAL(s, 6);
    CU_ASSERT_TRUE(replica_first_lsn_after_epoch(r, 4, &s));
    CU_ASSERT_EQUAL(s, 8);
}

static void test_history(void)
{
    char *dir = tn_tmpdir();
    struct replica *r = open_dir(dir);
    char err[REPLICA_ERR_MAX];
    uint64_t lsn, have, id;
    for (id = 1; id <= 3; id++) {
        struct tn_batch *t = tn_batch_new(HDIM, &id, 1, 1, NULL, 0);
        CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_OK);
        tn_batch_free(t);
    }
    /* Two records from a primary at epoch 3, applied as packed bytes. */
    for (id = 4; id <= 5; id++) {
        struct tn_batch *t = tn_batch_new(HDIM, &id, 1, 1, NULL, 0);
        size_t len = vecshard__v1__write_batch__get_packed_size(&t->b);
        uint8_t *buf = malloc(len);
        vecshard__v1__write_batch__pack(&t->b, buf);
        CU_ASSERT_EQUAL(replica_apply_packed(r, id, 3, buf, len, &have, err), REPLICA_OK);
        CU_ASSERT_EQUAL(have, id);
        free(buf);
        tn_batch_free(t);
    }
    /* A record that does not decode is refused and changes nothing. */
    uint8_t junk[3] = {0xff, 0xff, 0xff};
    CU_ASSERT_EQUAL(replica_apply_packed(r, 6, 3, junk, sizeof junk, &have, err), REPLICA_EINVAL);
    for (id = 6; id <= 7; id++) {
        struct tn_batch *t = tn_batch_new(HDIM, &id, 1, 1, NULL, 0);
        CU_ASSERT_EQUAL(replica_write(r, 4, &t->b, &lsn, err), REPLICA_OK);
        tn_batch_free(t);
    }
    CU_ASSERT_EQUAL(lsn, 7);
    check_full(r);

    /* The WAL keeps each record's own epoch. */
    struct wal_iter *it = NULL;
    CU_ASSERT_EQUAL_FATAL(replica_wal_iter(r, 1, &it, err), REPLICA_OK);
    static const uint64_t epochs[8] = {0, 1, 1, 1, 3, 3, 4, 4};
    for (uint64_t l = 1; l <= 7; l++) {
        struct wal_record wr;
        bool has = false;
        CU_ASSERT_EQUAL(wal_iter_next(it, &wr, &has, err), WAL_OK);
        CU_ASSERT_TRUE_FATAL(has);
        CU_ASSERT_EQUAL(wr.lsn, l);
        CU_ASSERT_EQUAL(wr.epoch, epochs[l]);
    }
    wal_iter_close(it);

    /* Replayed at open: the same history. */
    replica_close(r, NULL);
    r = open_dir(dir);
    check_full(r);

    /* After a snapshot at 7 (epoch 4), the history starts there. */
    bool taken = false;
    CU_ASSERT_EQUAL(replica_snapshot(r, &taken, err), REPLICA_OK);
    CU_ASSERT_TRUE(taken);
    replica_close(r, NULL);
    r = open_dir(dir);
    uint64_t e, s;
    CU_ASSERT_EQUAL(replica_history_base(r), 7);
    want_epoch(r, 7, 4);
    want_epoch(r, 0, 0);
    CU_ASSERT_FALSE(replica_epoch_at(r, 5, &e));
    CU_ASSERT_FALSE(replica_first_lsn_after_epoch(r, 3, &s));
    CU_ASSERT_TRUE(replica_first_lsn_after_epoch(r, 4, &s));
    CU_ASSERT_EQUAL(s, 8);
    id = 8;
    struct tn_batch *t = tn_batch_new(HDIM, &id, 1, 1, NULL, 0);
    CU_ASSERT_EQUAL(replica_write(r, 5, &t->b, &lsn, err), REPLICA_OK);
    tn_batch_free(t);
    want_epoch(r, 8, 5);
    CU_ASSERT_TRUE(replica_first_lsn_after_epoch(r, 4, &s));
    CU_ASSERT_EQUAL(s, 8);
    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

void register_history_tests(void)
{
    CU_pSuite s = CU_add_suite("history", NULL, NULL);
    CU_add_test(s, "epoch history: written, applied, replayed, snapshot base", test_history);
}
