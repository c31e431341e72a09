/*
 * fuzz_snapshot — the snapshot loader (node/storage/snapshot.c): the input
 * is one snapshot file; snapshot_load validates and loads it (header,
 * index, payload store); what loads is searched once and freed.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/hnsw/hnsw.h"
#include "node/storage/payload.h"
#include "node/storage/snapshot.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("snap/snapshot", data, size);
    struct snapshot_info info;
    struct hnsw_index *idx = NULL;
    struct payload_store *ps = NULL;
    char err[512];
    if (snapshot_load(path, NULL, &info, &idx, &ps, err) == 0) {
        if (info.dim > 0 && info.dim <= 4096) {
            float *q = calloc(info.dim, sizeof *q);
            struct hnsw_result res[4];
            uint32_t n = 0;
            if (q != NULL) hnsw_search(idx, q, 4, 16, NULL, NULL, res, &n, err);
            free(q);
        }
        hnsw_free(idx);
        payload_store_free(ps);
    }
    return 0;
}
