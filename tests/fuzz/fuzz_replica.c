/*
 * fuzz_replica — a replica's whole start-up on damaged files
 * (node/storage/replica.c): the input is its WAL's first segment; the
 * replica opens (snapshot search, WAL recovery, replay: every record is
 * decoded as a WriteBatch and goes through the node's write validation
 * before it is applied), answers a search, and closes.
 */
#include <stdint.h>
#include <stdio.h>

#include "node/storage/replica.h"
#include "node/storage/wal.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[160], seg[64], dir[300];
    wal_segment_name(1, seg, sizeof seg);
    snprintf(name, sizeof name, "replica/%s", seg);
    fuzz_clear("replica");
    fuzz_file(name, data, size);
    snprintf(dir, sizeof dir, "%s/replica", fuzz_dir());
    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "fuzz";
    c.shard = 0;
    c.hnsw.dim = 4;
    c.fsync = WAL_FSYNC_NONE;
    c.snapshot_wal_bytes = c.snapshot_wal_records = c.snapshot_age_ms = 0;
    c.build_threads = 1;
    struct replica *r = NULL;
    char err[REPLICA_ERR_MAX];
    if (replica_open(&c, &r, NULL, err) == REPLICA_OK) {
        float q[4] = {0};
        struct replica_query rq = {.vector = q, .len = 4, .k = 3};
        struct replica_results res;
        replica_results_init(&res);
        replica_search(r, &rq, &res, err);
        replica_results_free(&res);
        replica_close(r, err);
    }
    return 0;
}
