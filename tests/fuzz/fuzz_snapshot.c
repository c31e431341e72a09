/*
 * fuzz_snapshot — the snapshot loader (node/storage/snapshot.c): the input
 * is one snapshot file; snapshot_load validates and loads it (header,
 * index, payload store); what loads is searched once and freed.
 */
#include <stdint.h>

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
    struct attr_store *as = NULL;
    char err[512];
    if (snapshot_load(path, NULL, &info, &idx, &ps, &as, err) == 0) {
        fuzz_search_once(idx);
        hnsw_free(idx);
        payload_store_free(ps);
        attr_store_free(as);
    }
    return 0;
}
