/*
 * fuzz_hnsw_load — the engine's file loader (common/hnsw/hnsw_io.c,
 * hnsw_read: what hnsw_load runs on an index file). An index that loads
 * must pass hnsw_check and answer a search.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/hnsw/hnsw.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    FILE *f = fmemopen((void *)data, size, "rb");
    if (f == NULL) return 0;
    struct hnsw_index *idx = NULL;
    char err[HNSW_ERR_MAX];
    if (hnsw_read(f, &idx, err) == HNSW_OK) {
        if (hnsw_check(idx, err) != HNSW_OK) abort(); /* loaded but broken */
        fuzz_search_once(idx);
        hnsw_free(idx);
    }
    fclose(f);
    return 0;
}
