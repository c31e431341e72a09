/*
 * hnsw_seed OUT — writes a small valid index file (hnsw_save: 40 points of
 * 4 dims, 3 of them deleted) for the fuzz_hnsw_load seed corpus
 * (scripts/fuzz_corpus.py). Not a fuzz target.
 */
#include <stdio.h>

#include "common/hnsw/hnsw.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hnsw_seed OUT\n");
        return 2;
    }
    struct hnsw_params p;
    hnsw_params_init(&p);
    p.dim = 4;
    p.M = 4;
    struct hnsw_index *idx;
    char err[HNSW_ERR_MAX];
    if (hnsw_create(&p, &idx, err) != HNSW_OK) goto fail;
    for (unsigned i = 1; i <= 40; i++) {
        float v[4] = {(float)i, (float)(i % 7), (float)(i % 3), 1.0f / (float)i};
        if (hnsw_insert(idx, i, v, err) != HNSW_OK) goto fail;
    }
    for (unsigned i = 5; i <= 15; i += 5) hnsw_delete(idx, i);
    if (hnsw_save(idx, argv[1], err) != HNSW_OK) goto fail;
    hnsw_free(idx);
    return 0;
fail:
    fprintf(stderr, "hnsw_seed: %s\n", err);
    return 1;
}
