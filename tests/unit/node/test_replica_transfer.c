/*
 * test_replica_transfer.c — what a full copy reads from a replica
 * (replica_transfer.c): the digest is a function of the live content only
 * (write order, deletes and re-upserts, snapshot + reopen do not change it;
 * one float or one payload byte does), and a pin holds the snapshot file and
 * the records after it while snapshots prune and the WAL moves on.
 */
#include "tests/unit/node/node_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 16

/* Opens a replica of "docs"/0 in dir; asserts success. */
static struct replica *open_at(const char *dir)
{
    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "docs";
    c.shard = 0;
    c.hnsw.dim = DIM;
    c.hnsw.M = 8;
    c.hnsw.ef_construction = 32;
    c.wal_segment_bytes = 16 << 10;
    return tn_open(&c);
}

/* Upserts ids lo..hi-1 (step; descending when step < 0) at version, deleting dels; asserts OK. */
static void put(struct replica *r, long lo, long hi, long step, uint64_t version,
                const uint64_t *dels, size_t nd)
{
    uint64_t ids[512];
    size_t n = 0;
    for (long id = step > 0 ? lo : hi - 1; step > 0 ? id < hi : id >= lo; id += step)
        ids[n++] = (uint64_t)id;
    struct tn_batch *t = tn_batch_new(DIM, ids, n, version, dels, nd);
    uint64_t lsn;
    char err[REPLICA_ERR_MAX];
    int rc = replica_write(r, 1, &t->b, &lsn, err);
    if (rc) fprintf(stderr, "replica_write: %s\n", err);
    CU_ASSERT_FATAL(rc == REPLICA_OK);
    tn_batch_free(t);
}

/* The digest of r; asserts success and the point count. */
static void digest(struct replica *r, uint8_t d[REPLICA_DIGEST_BYTES], uint64_t want_points)
{
    char err[REPLICA_ERR_MAX];
    uint64_t points = 0;
    CU_ASSERT_FATAL(replica_digest(r, d, &points, err) == REPLICA_OK);
    CU_ASSERT_EQUAL(points, want_points);
}

/* Same content written in different orders, with deletes, re-upserts and a reopen. */
static void test_digest_content_only(void)
{
    char *da = tn_tmpdir(), *db = tn_tmpdir(), *dc = tn_tmpdir();
    struct replica *a = open_at(da), *b = open_at(db), *c = open_at(dc);
    uint8_t ea[REPLICA_DIGEST_BYTES], eb[REPLICA_DIGEST_BYTES], ec[REPLICA_DIGEST_BYTES];
    digest(a, ea, 0);
    digest(b, eb, 0);
    CU_ASSERT_EQUAL(memcmp(ea, eb, sizeof ea), 0); /* empty == empty */

    /* a: 0..299 at v1, deletes 0..49, 100..149 again at v2. */
    uint64_t dels[50];
    for (int i = 0; i < 50; i++)
        dels[i] = (uint64_t)i;
    put(a, 0, 300, 1, 1, NULL, 0);
    put(a, 100, 150, 1, 2, dels, 50);
    /* b: descending, 0..49 never written but deleted, 100..149 first at v7, then v2. */
    put(b, 150, 300, -1, 1, dels, 50);
    put(b, 100, 150, -1, 7, NULL, 0);
    put(b, 50, 100, 1, 1, NULL, 0);
    put(b, 100, 150, 1, 2, NULL, 0);
    digest(a, ea, 250);
    digest(b, eb, 250);
    CU_ASSERT_EQUAL(memcmp(ea, eb, sizeof ea), 0);

    /* After a snapshot and a reopen (graph rebuilt from the snapshot): the same. */
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_FATAL(replica_snapshot(a, NULL, err) == REPLICA_OK);
    put(a, 290, 300, 1, 1, NULL, 0); /* rewrites the same vectors: no change */
    replica_close(a, NULL);
    a = open_at(da);
    digest(a, ea, 250);
    CU_ASSERT_EQUAL(memcmp(ea, eb, sizeof ea), 0);

    /* c: b's content with one float changed by 2^-10 ... */
    put(c, 50, 300, 1, 1, NULL, 0);
    put(c, 100, 150, 1, 2, NULL, 0);
    uint64_t id = 200;
    struct tn_batch *t = tn_batch_new(DIM, &id, 1, 1, NULL, 0);
    t->vecs[3] += 1.0f / 1024;
    uint64_t lsn;
    CU_ASSERT_FATAL(replica_write(c, 1, &t->b, &lsn, err) == REPLICA_OK);
    digest(c, ec, 250);
    CU_ASSERT_NOT_EQUAL(memcmp(ea, ec, sizeof ea), 0);
    /* ... then restored: equal again; then one payload byte changed: different. */
    t->vecs[3] -= 1.0f / 1024;
    CU_ASSERT_FATAL(replica_write(c, 1, &t->b, &lsn, err) == REPLICA_OK);
    digest(c, ec, 250);
    CU_ASSERT_EQUAL(memcmp(ea, ec, sizeof ea), 0);
    CU_ASSERT_FATAL(t->pts[0].payload.len > 0);
    t->pay[t->pts[0].payload.len - 1] ^= 1;
    CU_ASSERT_FATAL(replica_write(c, 1, &t->b, &lsn, err) == REPLICA_OK);
    digest(c, ec, 250);
    CU_ASSERT_NOT_EQUAL(memcmp(ea, ec, sizeof ea), 0);
    /* Restored, equal again; a deleted point changes it. */
    put(c, 200, 201, 1, 1, NULL, 0);
    digest(c, ec, 250);
    CU_ASSERT_EQUAL(memcmp(ea, ec, sizeof ea), 0);
    put(c, 0, 0, 1, 1, &id, 1);
    digest(c, ec, 249);
    CU_ASSERT_NOT_EQUAL(memcmp(ea, ec, sizeof ea), 0);
    tn_batch_free(t);

    replica_close(a, NULL);
    replica_close(b, NULL);
    replica_close(c, NULL);
    tn_rmdir(da);
    tn_rmdir(db);
    tn_rmdir(dc);
    free(da);
    free(db);
    free(dc);
}

/* Counts the records of a pin's iterator up to its last_lsn; asserts they are consecutive. */
static uint64_t pin_records(struct replica_pin *p)
{
    uint64_t n = 0;
    char err[WAL_ERR_MAX];
    for (;;) {
        struct wal_record wr;
        bool has = false;
        CU_ASSERT_FATAL(wal_iter_next(p->records, &wr, &has, err) == WAL_OK);
        if (!has || wr.lsn > p->last_lsn) break;
        CU_ASSERT_EQUAL(wr.lsn, p->snap_lsn + 1 + n);
        CU_ASSERT_EQUAL(wr.epoch, 1);
        n++;
    }
    return n;
}

/* A pin survives later snapshots (pruning) and writes; an unsnapshotted replica is snapshotted. */
static void test_pin(void)
{
    char *dir = tn_tmpdir();
    struct replica *r = open_at(dir);
    char err[REPLICA_ERR_MAX];
    struct replica_pin p;
    CU_ASSERT_FATAL(replica_pin(r, &p, err) == REPLICA_OK);
    CU_ASSERT_EQUAL(p.snap_fd, -1);
    CU_ASSERT_EQUAL(p.last_lsn, 0);
    CU_ASSERT_EQUAL(pin_records(&p), 0);
    replica_pin_release(&p);

    for (int i = 0; i < 5; i++)
        put(r, i * 100, i * 100 + 100, 1, 1, NULL, 0);
    CU_ASSERT_FATAL(replica_pin(r, &p, err) == REPLICA_OK); /* no snapshot yet: takes one */
    CU_ASSERT_EQUAL(p.snap_lsn, 5);
    CU_ASSERT_EQUAL(p.last_lsn, 5);
    CU_ASSERT(p.snap_fd >= 0);
    CU_ASSERT_EQUAL(pin_records(&p), 0);
    replica_pin_release(&p);
    replica_pin_release(&p); /* twice is fine */

    for (int i = 5; i < 9; i++)
        put(r, i * 100, i * 100 + 100, 1, 1, NULL, 0);
    CU_ASSERT_FATAL(replica_pin(r, &p, err) == REPLICA_OK);
    CU_ASSERT_EQUAL(p.snap_lsn, 5);
    CU_ASSERT_EQUAL(p.last_lsn, 9);
    uint64_t size = p.snap_bytes;
    CU_ASSERT(size > 0);
    /* Three more snapshots prune snapshot-5 and the WAL segments before the newest kept ones. */
    for (int i = 9; i < 12; i++) {
        put(r, i * 100, i * 100 + 100, 1, 1, NULL, 0);
        CU_ASSERT_FATAL(replica_snapshot(r, NULL, err) == REPLICA_OK);
    }
    char path[4096];
    CU_ASSERT_FATAL(snapshot_path(dir, 5, path, sizeof path));
    CU_ASSERT_EQUAL(access(path, F_OK), -1);
    uint8_t *buf = malloc(size);
    CU_ASSERT_FATAL(buf != NULL);
    CU_ASSERT_EQUAL(pread(p.snap_fd, buf, size, 0), (ssize_t)size);
    free(buf);
    CU_ASSERT_EQUAL(pin_records(&p), 4); /* lsn 6..9, none of the later ones */
    replica_pin_release(&p);

    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

void register_replica_transfer_tests(void)
{
    CU_pSuite s = CU_add_suite("replica_transfer", NULL, NULL);
    CU_add_test(s,
                "digest: equal content in any write order, with deletes, re-upserts, after "
                "snapshot + reopen; one float or payload byte changes it",
                test_digest_content_only);
    CU_add_test(s, "pin: holds the snapshot and the records after it through pruning", test_pin);
}
