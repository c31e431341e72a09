/*
 * quickstart.c — the docs/clients.md ("C") quick start as a program: connect
 * ($VECSHARD_ROUTER), create collection "demo", upsert three points, search
 * one query and print its two hits. It includes only vecshard.h and links
 * only libvecshard.so (build/vecshard-c-example); tests/unit/clients_c runs
 * it against a real router to check the shared library.
 */
#include <stdio.h>

#include "vecshard.h"

int main(void)
{
    struct vecshard_client *c;
    struct vecshard_error err;
    if (vecshard_connect(NULL, NULL, &c, &err)) /* $VECSHARD_ROUTER or 127.0.0.1:7300 */
        return 1;
    struct vecshard_collection_params p = {.dim = 2, .metric = VECSHARD_METRIC_L2};
    if (vecshard_create_collection(c, "demo", &p, NULL, &err) &&
        err.code != VECSHARD_ALREADY_EXISTS)
        fprintf(stderr, "create: %s: %s\n", vecshard_code_name(err.code), err.message);

    uint64_t ids[] = {1, 2, 3};
    float vec[] = {0, 0, 1, 0, 0, 2};
    if (vecshard_upsert(c, "demo", ids, vec, 3, 2, NULL, NULL, &err))
        fprintf(stderr, "upsert: %s\n", err.message);

    float q[] = {0.1f, 0};
    struct vecshard_search_params sp = {.k = 2};
    struct vecshard_search_result *r;
    int rc = 1;
    if (vecshard_search(c, "demo", q, 1, 2, &sp, &r, &err) == VECSHARD_OK) {
        for (uint32_t i = 0; i < r->n_hits[0]; i++)
            printf("id %llu distance %g\n", (unsigned long long)r->hits[i].id, r->hits[i].distance);
        vecshard_search_result_free(r);
        rc = 0;
    } else {
        fprintf(stderr, "search: %s: %s\n", vecshard_code_name(err.code), err.message);
    }
    vecshard_close(c);
    return rc;
}
