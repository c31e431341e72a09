/*
 * test_replica.c — a shard replica end to end: writes survive close and
 * reopen exactly (WAL replay, snapshot + replay, fallback to the previous
 * snapshot), acknowledged writes survive kill -9, backups apply strictly in
 * LSN order, bad input is refused naming the field and writes nothing.
 */
#include "tests/unit/node/node_test.h"
#include "common/util/crc32c.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIM  24
#define NIDS 2000

/* The expected content: version[id] (0 = absent); vectors and payloads follow from it. */
struct model {
    uint64_t version[NIDS];
    uint64_t lsn;
};

/* The test collection's config in dir: docs/2, DIM floats, M 8, efC 64, one build thread (replay
 * then rebuilds the very same graph, so searches compare exactly). */
static void test_config(struct replica_config *c, const char *dir)
{
    replica_config_init(c);
    c->dir = dir;
    c->collection = "docs";
    c->shard = 2;
    c->hnsw.dim = DIM;
    c->hnsw.M = 8;
    c->hnsw.ef_construction = 64;
    c->build_threads = 1;
}

/* Opens c; asserts success. */
static struct replica *open_config(const struct replica_config *c, struct replica_recovery *rec)
{
    struct replica *r = NULL;
    char err[REPLICA_ERR_MAX];
    int rc = replica_open(c, &r, rec, err);
    if (rc) fprintf(stderr, "replica_open: %s\n", err);
    CU_ASSERT_FATAL(rc == REPLICA_OK);
    return r;
}

/* Opens dir with small segments; asserts success. */
static struct replica *open_replica(const char *dir, enum wal_fsync fsync, uint64_t snap_bytes,
                                    struct replica_recovery *rec)
{
    struct replica_config c;
    test_config(&c, dir);
    c.fsync = fsync;
    c.wal_segment_bytes = 64 << 10;
    c.snapshot_wal_bytes = snap_bytes;
    return open_config(&c, rec);
}

/* Writes one batch (upserts ids[0..n) at a new version, deletes dels) and updates the model. */
static void write_batch(struct replica *r, struct model *m, const uint64_t *ids, size_t n,
                        const uint64_t *dels, size_t nd)
{
    uint64_t version = m->lsn + 1;
    struct tn_batch *t = tn_batch_new(DIM, ids, n, version, dels, nd);
    uint64_t lsn = 0;
    char err[REPLICA_ERR_MAX];
    int rc = replica_write(r, 5, &t->b, &lsn, err);
    if (rc) fprintf(stderr, "replica_write: %s\n", err);
    CU_ASSERT_FATAL(rc == REPLICA_OK);
    CU_ASSERT_EQUAL_FATAL(lsn, m->lsn + 1);
    m->lsn = lsn;
    for (size_t i = 0; i < n; i++)
        m->version[ids[i]] = version;
    for (size_t i = 0; i < nd; i++)
        m->version[dels[i]] = 0;
    tn_batch_free(t);
}

/* Writes rounds of 100-point batches over [from, to), with deletes and re-upserts mixed in. */
static void write_range(struct replica *r, struct model *m, uint64_t from, uint64_t to)
{
    uint64_t ids[100], dels[20];
    for (uint64_t base = from; base < to; base += 100) {
        size_t n = 0, nd = 0;
        for (uint64_t id = base; id < base + 100 && id < to; id++)
            ids[n++] = id;
        /* Delete some earlier ids and replace others (upsert of an existing id). */
        if (base >= 200)
            for (uint64_t k = 0; k < 20; k++)
                dels[nd++] = (base * 7 + k * 13) % base;
        write_batch(r, m, ids, n, dels, nd);
        if (base >= 300) {
            uint64_t again[10];
            for (uint64_t k = 0; k < 10; k++)
                again[k] = (base * 3 + k * 29) % base;
            write_batch(r, m, again, 10, NULL, 0);
        }
    }
}

/* Checks every id against the model: vector and payload equal, absent ids missing. */
static void check_model(struct replica *r, const struct model *m)
{
    struct replica_results res;
    replica_results_init(&res);
    uint64_t ids[NIDS];
    for (uint64_t i = 0; i < NIDS; i++)
        ids[i] = i;
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(replica_get(r, ids, NIDS, true, true, false, &res, err), REPLICA_OK);
    uint64_t live = 0;
    for (uint64_t i = 0; i < NIDS; i++)
        live += m->version[i] != 0;
    CU_ASSERT_EQUAL(res.n, live);
    CU_ASSERT_EQUAL(res.n + res.nmissing, NIDS);
    int bad = 0;
    float v[DIM];
    uint8_t pay[400];
    for (uint32_t i = 0; i < res.n; i++) {
        const struct replica_point *p = &res.points[i];
        uint64_t ver = p->id < NIDS ? m->version[p->id] : 0;
        if (!ver) {
            bad++;
            continue;
        }
        tn_vector(p->id, ver, DIM, v);
        uint32_t len = tn_payload(p->id, ver, pay);
        if (!p->vector || memcmp(p->vector, v, sizeof v) != 0 || p->payload_len != len ||
            (len && memcmp(p->payload, pay, len) != 0) || (!len && p->payload))
            bad++;
    }
    for (uint32_t i = 0; i < res.nmissing; i++)
        if (m->version[res.missing[i]] != 0) bad++;
    CU_ASSERT_EQUAL(bad, 0);
    struct replica_stat st;
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.lsn, m->lsn);
    CU_ASSERT_EQUAL(st.count, live);
    CU_ASSERT_EQUAL(st.epoch, 5);
    replica_results_free(&res);
}

/* Runs 20 searches into out (20 x 10 ids), with payloads. */
static void search_ids(struct replica *r, uint64_t *out)
{
    struct replica_results res;
    replica_results_init(&res);
    float q[DIM];
    memset(out, 0xff, 200 * sizeof *out);
    for (int i = 0; i < 20; i++) {
        tn_vector(900000 + i, 1, DIM, q);
        struct replica_query rq = {
            .vector = q, .len = DIM, .k = 10, .ef = 80, .with_payload = true};
        CU_ASSERT_EQUAL_FATAL(replica_search(r, &rq, &res, NULL), REPLICA_OK);
        CU_ASSERT_EQUAL(res.n, 10);
        for (uint32_t j = 0; j < res.n; j++)
            out[i * 10 + j] = res.points[j].id;
    }
    replica_results_free(&res);
}

static void test_reopen_wal(void)
{
    char *dir = tn_tmpdir();
    static struct model m;
    memset(&m, 0, sizeof m);
    struct replica_recovery rec;
    struct replica *r = open_replica(dir, WAL_FSYNC_BATCH, 0, &rec);
    CU_ASSERT_EQUAL(rec.lsn, 0);
    CU_ASSERT_EQUAL(rec.replayed, 0);
    write_range(r, &m, 0, NIDS);
    check_model(r, &m);
    uint64_t before[200], after[200];
    search_ids(r, before);
    /* No deleted id is ever returned. */
    int dead = 0;
    for (int i = 0; i < 200; i++)
        dead += m.version[before[i]] == 0;
    CU_ASSERT_EQUAL(dead, 0);
    CU_ASSERT_EQUAL(replica_close(r, NULL), REPLICA_OK);

    r = open_replica(dir, WAL_FSYNC_BATCH, 0, &rec);
    CU_ASSERT_FALSE(rec.wal.truncated);
    CU_ASSERT_EQUAL(rec.snapshot_lsn, 0);
    CU_ASSERT_EQUAL(rec.replayed, m.lsn);
    CU_ASSERT_EQUAL(rec.lsn, m.lsn);
    check_model(r, &m);
    /* Replay rebuilds the same graph (single-threaded batches are reproducible). */
    search_ids(r, after);
    CU_ASSERT(memcmp(before, after, sizeof before) == 0);
    replica_close(r, NULL);
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_EQUAL(replica_remove_files(dir, err), REPLICA_OK);
    CU_ASSERT_EQUAL(access(dir, F_OK), -1);
    free(dir);
}

static void test_reopen_snapshot(void)
{
    char *dir = tn_tmpdir();
    static struct model m;
    memset(&m, 0, sizeof m);
    struct replica_recovery rec;
    char err[REPLICA_ERR_MAX];
    struct replica *r = open_replica(dir, WAL_FSYNC_NONE, 0, &rec);
    write_range(r, &m, 0, 1000);
    bool taken;
    CU_ASSERT_EQUAL(replica_snapshot(r, &taken, err), REPLICA_OK);
    CU_ASSERT_TRUE(taken);
    uint64_t snap1 = m.lsn;
    CU_ASSERT_EQUAL(replica_snapshot(r, &taken, err), REPLICA_OK);
    CU_ASSERT_FALSE(taken); /* nothing new */
    write_range(r, &m, 1000, 1500);
    CU_ASSERT_EQUAL(replica_snapshot(r, &taken, err), REPLICA_OK);
    uint64_t snap2 = m.lsn;
    write_range(r, &m, 1500, NIDS);
    CU_ASSERT_EQUAL(replica_snapshot(r, &taken, err), REPLICA_OK);
    uint64_t snap3 = m.lsn;
    uint64_t ids[3] = {1, 2, 3};
    write_batch(r, &m, ids, 3, NULL, 0);
    write_batch(r, &m, NULL, 0, ids + 1, 1);
    struct replica_stat st;
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.snapshot_lsn, snap3);
    CU_ASSERT_EQUAL(st.snapshots_taken, 3);
    CU_ASSERT(st.disk_bytes > st.wal_bytes);
    /* Two snapshots kept; the WAL still reaches back to the older one. */
    CU_ASSERT_EQUAL(tn_count_files(dir, "snapshot-", ".vsx"), 2);
    char path[512];
    /* The status's snapshot bytes (kept in memory, no disk access) are the two kept files. */
    long kept = 0;
    snapshot_path(dir, snap2, path, sizeof path);
    kept += tn_file_size(path);
    snapshot_path(dir, snap3, path, sizeof path);
    kept += tn_file_size(path);
    CU_ASSERT_EQUAL(st.disk_bytes - st.wal_bytes, (uint64_t)kept);
    CU_ASSERT(st.snapshot_unix_ms > ((int64_t)time(NULL) - 60) * 1000);
    CU_ASSERT(st.snapshot_unix_ms <= ((int64_t)time(NULL) + 1) * 1000);
    snapshot_path(dir, snap1, path, sizeof path);
    CU_ASSERT_EQUAL(access(path, F_OK), -1);
    replica_close(r, NULL);

    r = open_replica(dir, WAL_FSYNC_NONE, 0, &rec);
    CU_ASSERT_EQUAL(rec.snapshot_lsn, snap3);
    CU_ASSERT_EQUAL(rec.replayed, 2);
    CU_ASSERT_EQUAL(rec.lsn, m.lsn);
    check_model(r, &m);
    struct replica_stat again;
    replica_status(r, &again); /* the same figures after a reopen */
    CU_ASSERT_EQUAL(again.disk_bytes, st.disk_bytes);
    CU_ASSERT_EQUAL(again.snapshot_unix_ms, st.snapshot_unix_ms);
    replica_close(r, NULL);

    /* Damage the newest snapshot: the replica falls back to the older one and replays more. */
    snapshot_path(dir, snap3, path, sizeof path);
    tn_flip(path, tn_file_size(path) / 3, 0x20);
    r = open_replica(dir, WAL_FSYNC_NONE, 0, &rec);
    CU_ASSERT_EQUAL(rec.snapshot.nrejected, 1);
    CU_ASSERT_EQUAL(rec.snapshot.rejected[0].lsn, snap3);
    CU_ASSERT_EQUAL(rec.snapshot_lsn, snap2);
    CU_ASSERT_EQUAL(rec.replayed, m.lsn - snap2);
    check_model(r, &m);
    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

/* Waits (up to 10 s) until the snapshot thread has taken `want` snapshots and caught up. */
static void wait_snapshots(struct replica *r, uint64_t want, struct replica_stat *st)
{
    for (int i = 0; i < 1000; i++) {
        replica_status(r, st);
        if (st->snapshots_taken >= want && st->wal_bytes_since_snapshot < (100 << 10)) return;
        usleep(10000);
    }
}

/* CRC-32C and size of a file's bytes (crc 0, size -1 if it cannot be read). */
static uint32_t file_crc(const char *path, long *size)
{
    *size = -1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t buf[65536];
    uint32_t crc = 0;
    size_t n;
    *size = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        crc = crc32c_extend(crc, buf, n);
        *size += (long)n;
    }
    fclose(f);
    return crc;
}

static void test_mid_wal_damage(void)
{
    char *dir = tn_tmpdir();
    static struct model m;
    memset(&m, 0, sizeof m);
    struct replica_recovery rec;
    struct replica *r = open_replica(dir, WAL_FSYNC_NONE, 0, &rec);
    write_range(r, &m, 0, 1000);
    replica_close(r, NULL);
    CU_ASSERT_FATAL(tn_count_files(dir, "wal-", ".log") >= 4);
    /* A byte in the middle of the first segment: thousands of acknowledged records follow. */
    char name[32], path[512];
    wal_segment_name(1, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    long size;
    file_crc(path, &size);
    tn_flip(path, size / 2, 0x04);
    uint32_t crc_before = file_crc(path, &size);
    int files_before = tn_count_files(dir, "wal-", ".log");

    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "docs";
    c.shard = 2;
    c.hnsw.dim = DIM;
    c.hnsw.M = 8;
    c.hnsw.ef_construction = 64;
    c.wal_segment_bytes = 64 << 10;
    c.build_threads = 1;
    char err[REPLICA_ERR_MAX];
    for (int round = 0; round < 2; round++) {
        r = NULL;
        CU_ASSERT_EQUAL(replica_open(&c, &r, &rec, err), REPLICA_ECORRUPT);
        CU_ASSERT_PTR_NULL(r);
        CU_ASSERT_TRUE(rec.wal.corrupt);
        CU_ASSERT_FALSE(rec.wal.truncated);
        CU_ASSERT_STRING_EQUAL(rec.wal.segment, name);
        CU_ASSERT(rec.wal.offset > WAL_SEGMENT_HEADER && rec.wal.offset <= (uint64_t)size / 2);
        CU_ASSERT_EQUAL(rec.wal.later_last_lsn, m.lsn);
        char want[160];
        snprintf(want, sizeof want, "opening the WAL of docs/2: wal %s offset %llu: damaged record",
                 name, (unsigned long long)rec.wal.offset);
        CU_ASSERT_EQUAL(strncmp(err, want, strlen(want)), 0);
        snprintf(want, sizeof want,
                 "followed by valid records up to lsn %llu; refusing to "
                 "truncate acknowledged writes",
                 (unsigned long long)m.lsn);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
        CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_ECORRUPT), 15);
    }
    long size_after;
    CU_ASSERT_EQUAL(file_crc(path, &size_after), crc_before);
    CU_ASSERT_EQUAL(size_after, size);
    CU_ASSERT_EQUAL(tn_count_files(dir, "wal-", ".log"), files_before);
    tn_rmdir(dir);
    free(dir);

    /* The same damage under a snapshot that holds every record: nothing is lost, it opens. */
    dir = tn_tmpdir();
    memset(&m, 0, sizeof m);
    r = open_replica(dir, WAL_FSYNC_NONE, 0, &rec);
    write_range(r, &m, 0, 1000);
    bool taken;
    CU_ASSERT_EQUAL(replica_snapshot(r, &taken, err), REPLICA_OK);
    CU_ASSERT_TRUE(taken);
    replica_close(r, NULL);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    file_crc(path, &size);
    tn_flip(path, size / 2, 0x04);
    r = open_replica(dir, WAL_FSYNC_NONE, 0, &rec);
    CU_ASSERT_FALSE(rec.wal.corrupt);
    CU_ASSERT_TRUE(rec.wal.truncated);
    CU_ASSERT_TRUE(rec.wal_reset);
    CU_ASSERT_EQUAL(rec.snapshot_lsn, m.lsn);
    CU_ASSERT_EQUAL(rec.replayed, 0);
    check_model(r, &m);
    uint64_t more[2] = {1500, 1501};
    write_batch(r, &m, more, 2, NULL, 0);
    replica_close(r, NULL);
    r = open_replica(dir, WAL_FSYNC_NONE, 0, &rec);
    CU_ASSERT_EQUAL(rec.replayed, 1);
    check_model(r, &m);
    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_background_snapshots(void)
{
    char *dir = tn_tmpdir();
    static struct model m;
    memset(&m, 0, sizeof m);
    struct replica_recovery rec;
    struct replica *r = open_replica(dir, WAL_FSYNC_NONE, 100 << 10, &rec);
    struct replica_stat st;
    /*
     * Two halves, each well over the 100 KiB threshold, waiting for the
     * thread after each: writing everything at once let one slow snapshot
     * cover almost all of it, leaving too little WAL for a second one.
     */
    write_range(r, &m, 0, NIDS / 2);
    wait_snapshots(r, 1, &st);
    CU_ASSERT(st.snapshots_taken >= 1);
    write_range(r, &m, NIDS / 2, NIDS);
    wait_snapshots(r, 2, &st);
    CU_ASSERT(st.snapshots_taken >= 2);
    CU_ASSERT(st.snapshot_lsn > 0);
    CU_ASSERT_STRING_EQUAL(st.last_error, "");
    check_model(r, &m);
    replica_close(r, NULL);
    /*
     * Counted once the thread has stopped: a snapshot that was renamed into
     * place a moment ago is pruned right after, so a live count can be 3.
     */
    CU_ASSERT(tn_count_files(dir, "snapshot-", ".vsx") <= 2);
    r = open_replica(dir, WAL_FSYNC_NONE, 100 << 10, &rec);
    CU_ASSERT(rec.snapshot_lsn > 0);
    check_model(r, &m);
    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

/* Opens dir with only the given record and age triggers (bytes off); asserts success. */
static struct replica *open_triggers(const char *dir, uint64_t records, uint64_t age_ms,
                                     struct replica_recovery *rec)
{
    struct replica_config c;
    test_config(&c, dir);
    c.fsync = WAL_FSYNC_NONE;
    c.snapshot_wal_records = records;
    c.snapshot_age_ms = age_ms;
    return open_config(&c, rec);
}

/* Polls (up to 10 s) until the newest snapshot is at lsn; returns its status. */
static void wait_snapshot_lsn(struct replica *r, uint64_t lsn, struct replica_stat *st)
{
    for (int i = 0; i < 1000; i++) {
        replica_status(r, st);
        if (st->snapshot_lsn >= lsn) return;
        usleep(10000);
    }
}

/* Milliseconds on CLOCK_MONOTONIC. */
static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void test_snapshot_triggers(void)
{
    char *dir = tn_tmpdir();
    static struct model m;
    memset(&m, 0, sizeof m);
    struct replica_recovery rec;
    struct replica_stat st;
    /* Record count: 10 one-point batches (a few KiB, far below any byte threshold). */
    struct replica *r = open_triggers(dir, 10, 0, &rec);
    for (uint64_t id = 0; id < 10; id++)
        write_batch(r, &m, &id, 1, NULL, 0);
    wait_snapshot_lsn(r, 10, &st);
    CU_ASSERT_EQUAL(st.snapshot_lsn, 10);
    CU_ASSERT_EQUAL(st.snapshots_taken, 1);
    CU_ASSERT_EQUAL(st.wal_records_since_snapshot, 0);
    for (uint64_t id = 10; id < 19; id++)
        write_batch(r, &m, &id, 1, NULL, 0);
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.wal_records_since_snapshot, 9);
    CU_ASSERT_EQUAL(st.snapshot_lsn, 10); /* 9 < 10: not due */
    replica_close(r, NULL);

    /* Age: 9 records left unsnapshotted are replayed; 300 ms after the open they are snapshotted.
     */
    double t0 = mono_ms();
    r = open_triggers(dir, 0, 300, &rec);
    CU_ASSERT_EQUAL(rec.replayed, 9);
    wait_snapshot_lsn(r, 19, &st);
    double waited = mono_ms() - t0;
    CU_ASSERT_EQUAL(st.snapshot_lsn, 19);
    CU_ASSERT_EQUAL(st.snapshots_taken, 1);
    CU_ASSERT(waited >= 300);
    /* One more write: snapshotted once it is 300 ms old, not before. */
    uint64_t id = 19;
    t0 = mono_ms();
    write_batch(r, &m, &id, 1, NULL, 0);
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.snapshot_lsn, 19);
    CU_ASSERT_EQUAL(st.wal_records_since_snapshot, 1);
    wait_snapshot_lsn(r, 20, &st);
    CU_ASSERT_EQUAL(st.snapshot_lsn, 20);
    CU_ASSERT_EQUAL(st.snapshots_taken, 2);
    CU_ASSERT(mono_ms() - t0 >= 300);
    check_model(r, &m);
    replica_close(r, NULL);
    r = open_triggers(dir, 0, 0, &rec);
    CU_ASSERT_EQUAL(rec.snapshot_lsn, 20);
    CU_ASSERT_EQUAL(rec.replayed, 0);
    check_model(r, &m);
    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_crash(void)
{
    char *dir = tn_tmpdir();
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        /* Child: write until killed, reporting each acknowledged LSN. */
        close(fds[0]);
        struct replica_recovery rec;
        struct replica_config c;
        replica_config_init(&c);
        c.dir = dir;
        c.collection = "docs";
        c.shard = 2;
        c.hnsw.dim = DIM;
        c.hnsw.M = 8;
        c.hnsw.ef_construction = 64;
        c.fsync = WAL_FSYNC_ALWAYS;
        c.wal_segment_bytes = 64 << 10;
        c.snapshot_wal_bytes = 200 << 10;
        struct replica *r;
        if (replica_open(&c, &r, &rec, NULL)) _exit(2);
        for (uint64_t l = 1;; l++) {
            uint64_t ids[10];
            for (int k = 0; k < 10; k++)
                ids[k] = (l * 10 + k) % NIDS;
            struct tn_batch *t = tn_batch_new(DIM, ids, 10, l, NULL, 0);
            uint64_t lsn;
            if (replica_write(r, 5, &t->b, &lsn, NULL) || lsn != l) _exit(3);
            tn_batch_free(t);
            if (write(fds[1], &lsn, sizeof lsn) != sizeof lsn) _exit(4);
        }
    }
    close(fds[1]);
    uint64_t acked = 0, l;
    while (acked < 150 && read(fds[0], &l, sizeof l) == sizeof l)
        acked = l;
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    /* Drain what the child acknowledged before it died. */
    while (read(fds[0], &l, sizeof l) == sizeof l)
        acked = l;
    close(fds[0]);
    CU_ASSERT_TRUE(WIFSIGNALED(status));
    CU_ASSERT_FATAL(acked >= 150);

    struct replica_recovery rec;
    struct replica *r = open_replica(dir, WAL_FSYNC_ALWAYS, 0, &rec);
    CU_ASSERT(rec.lsn >= acked);
    /* Every acknowledged write is there, with the latest version of each id at rec.lsn. */
    static struct model m;
    memset(&m, 0, sizeof m);
    for (uint64_t v = 1; v <= rec.lsn; v++)
        for (int k = 0; k < 10; k++)
            m.version[(v * 10 + k) % NIDS] = v;
    m.lsn = rec.lsn;
    check_model(r, &m);
    replica_close(r, NULL);
    tn_rmdir(dir);
    free(dir);
}

static void test_apply_order(void)
{
    char *dir = tn_tmpdir();
    struct replica_recovery rec;
    struct replica *r = open_replica(dir, WAL_FSYNC_ALWAYS, 0, &rec);
    char err[REPLICA_ERR_MAX];
    uint64_t have = 99, ids[3] = {10, 11, 12};
    struct tn_batch *b1 = tn_batch_new(DIM, ids, 1, 1, NULL, 0);
    struct tn_batch *b2 = tn_batch_new(DIM, ids + 1, 1, 2, NULL, 0);
    struct tn_batch *b3 = tn_batch_new(DIM, ids + 2, 1, 3, ids, 1);
    /* A fresh backup answers a gap for anything but lsn 1. */
    CU_ASSERT_EQUAL(replica_apply(r, 2, 9, &b2->b, &have, err), REPLICA_ELSN_GAP);
    CU_ASSERT_EQUAL(have, 0);
    CU_ASSERT_STRING_EQUAL(err, "lsn 2 does not follow the applied lsn 0; resend from 1");
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_ELSN_GAP), 0);
    CU_ASSERT_EQUAL(replica_apply(r, 1, 9, &b1->b, &have, err), REPLICA_OK);
    CU_ASSERT_EQUAL(have, 1);
    /* A duplicate is acknowledged without effect. */
    CU_ASSERT_EQUAL(replica_apply(r, 1, 9, &b3->b, &have, err), REPLICA_OK);
    CU_ASSERT_EQUAL(have, 1);
    struct replica_stat st;
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.count, 1);
    CU_ASSERT_EQUAL(st.lsn, 1);
    CU_ASSERT_EQUAL(replica_apply(r, 3, 9, &b3->b, &have, err), REPLICA_ELSN_GAP);
    CU_ASSERT_EQUAL(have, 1);
    CU_ASSERT_EQUAL(replica_apply(r, 2, 9, &b2->b, &have, err), REPLICA_OK);
    CU_ASSERT_EQUAL(replica_apply(r, 3, 10, &b3->b, &have, err), REPLICA_OK);
    CU_ASSERT_EQUAL(have, 3);
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.count, 2); /* 10 deleted by lsn 3 */
    CU_ASSERT_EQUAL(st.epoch, 10);
    replica_close(r, NULL);
    r = open_replica(dir, WAL_FSYNC_ALWAYS, 0, &rec);
    CU_ASSERT_EQUAL(rec.lsn, 3);
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.count, 2);
    CU_ASSERT_EQUAL(st.epoch, 10);
    CU_ASSERT_EQUAL(replica_apply(r, 3, 10, &b3->b, &have, err), REPLICA_OK);
    CU_ASSERT_EQUAL(have, 3);
    replica_close(r, NULL);
    tn_batch_free(b1);
    tn_batch_free(b2);
    tn_batch_free(b3);
    tn_rmdir(dir);
    free(dir);
}

static void test_validation(void)
{
    char *dir = tn_tmpdir();
    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "docs";
    c.hnsw.dim = 128;
    c.max_batch = 10;
    struct replica *r;
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(replica_open(&c, &r, NULL, err), REPLICA_OK);
    uint64_t ids[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, lsn = 0;
    struct tn_batch *t = tn_batch_new(128, ids, 5, 1, NULL, 0);

    t->pts[3].n_vector = 127;
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_EDIM);
    CU_ASSERT_STRING_EQUAL(err, "batch.upserts[3].vector has 127 floats, collection dim is 128");
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EDIM), 3);
    t->pts[3].n_vector = 128;

    t->pts[1].vector[5] = 0.0f / 0.0f;
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_EVALUE);
    CU_ASSERT_STRING_EQUAL(err, "batch.upserts[1].vector[5] is NaN");
    t->pts[1].vector[5] = 1.0f / 0.0f;
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_EVALUE);
    CU_ASSERT_STRING_EQUAL(err, "batch.upserts[1].vector[5] is infinite");
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EVALUE), 3);
    t->pts[1].vector[5] = 0.5f;

    static uint8_t big[PAYLOAD_MAX_BYTES + 1];
    t->pts[0].payload.data = big;
    t->pts[0].payload.len = sizeof big;
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_EPAYLOAD_SIZE);
    CU_ASSERT_STRING_EQUAL(err, "batch.upserts[0].payload has 65537 bytes, the limit is 65536");
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EPAYLOAD_SIZE), 8);
    t->pts[0].payload.len = PAYLOAD_MAX_BYTES; /* exactly the limit is fine */
    tn_batch_free(tn_batch_new(128, ids, 0, 1, NULL, 0));

    struct tn_batch *t11 = tn_batch_new(128, ids, 6, 1, ids, 5);
    CU_ASSERT_EQUAL(replica_write(r, 1, &t11->b, &lsn, err), REPLICA_EBATCH_SIZE);
    CU_ASSERT_STRING_EQUAL(err, "batch has 6 upserts and 5 deletes, the limit is 10 in total");
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EBATCH_SIZE), 8);
    CU_ASSERT_EQUAL(replica_write(r, 1, NULL, &lsn, err), REPLICA_EINVAL);
    CU_ASSERT_STRING_EQUAL(err, "batch is missing");

    /* Nothing reached the WAL or the index. */
    struct replica_stat st;
    replica_status(r, &st);
    CU_ASSERT_EQUAL(st.lsn, 0);
    CU_ASSERT_EQUAL(st.count, 0);
    CU_ASSERT_EQUAL(st.wal_bytes, 0);
    CU_ASSERT_EQUAL(replica_write(r, 1, &t->b, &lsn, err), REPLICA_OK);
    CU_ASSERT_EQUAL(lsn, 1);

    /* Searches and gets name their fields too. */
    struct replica_results res;
    replica_results_init(&res);
    float q[128] = {0};
    struct replica_query rq = {.vector = q, .len = 3, .k = 10, .field = "queries[2].vector"};
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_EDIM);
    CU_ASSERT_STRING_EQUAL(err, "queries[2].vector has 3 floats, collection dim is 128");
    rq.len = 128;
    rq.k = 0;
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_EINVAL);
    CU_ASSERT_STRING_EQUAL(err, "k must be in 1..10000, got 0");
    rq.k = 3;
    q[7] = 0.0f / 0.0f;
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_EVALUE);
    CU_ASSERT_STRING_EQUAL(err, "queries[2].vector[7] is NaN");
    q[7] = 0;
    CU_ASSERT_EQUAL(replica_search(r, &rq, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL(res.n, 3);
    CU_ASSERT_PTR_NULL(res.points[0].payload);
    CU_ASSERT_EQUAL(replica_get(r, ids, 11, true, false, false, &res, err), REPLICA_EBATCH_SIZE);
    uint64_t dup[4] = {4, 77, 0, 4};
    CU_ASSERT_EQUAL(replica_get(r, dup, 4, true, false, false, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL(res.n, 2);
    CU_ASSERT_EQUAL(res.points[0].id, 4);
    CU_ASSERT_EQUAL(res.points[1].id, 0);
    CU_ASSERT_EQUAL(res.points[1].payload_len, PAYLOAD_MAX_BYTES);
    CU_ASSERT_PTR_NULL(res.points[0].vector);
    CU_ASSERT_EQUAL(res.nmissing, 1);
    CU_ASSERT_EQUAL(res.missing[0], 77);
    replica_results_free(&res);
    CU_ASSERT_EQUAL(replica_snapshot(r, NULL, err), REPLICA_OK);
    replica_close(r, NULL);

    /* Reopening with another dim is refused, not silently accepted. */
    c.hnsw.dim = 64;
    CU_ASSERT_EQUAL(replica_open(&c, &r, NULL, err), REPLICA_EMISMATCH);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dim 128"));
    CU_ASSERT_EQUAL(replica_code_grpc(REPLICA_EMISMATCH), 9);
    tn_batch_free(t);
    tn_batch_free(t11);
    tn_rmdir(dir);
    free(dir);
}

void register_replica_tests(void)
{
    CU_pSuite s = CU_add_suite("replica", NULL, NULL);
    CU_add_test(s, "2,000 points, deletes, upserts: close and reopen from the WAL",
                test_reopen_wal);
    CU_add_test(s, "snapshots + WAL replay, fallback to the older snapshot", test_reopen_snapshot);
    CU_add_test(s,
                "WAL damaged in the middle: open refuses (ECORRUPT), files untouched; "
                "opens when a snapshot holds it all",
                test_mid_wal_damage);
    CU_add_test(s, "background snapshot thread", test_background_snapshots);
    CU_add_test(s, "snapshot triggers: WAL record count and age of the oldest write",
                test_snapshot_triggers);
    CU_add_test(s, "kill -9 while writing: every acknowledged write survives", test_crash);
    CU_add_test(s, "backup apply: duplicates and gaps", test_apply_order);
    CU_add_test(s, "validation errors name the field and write nothing", test_validation);
}
