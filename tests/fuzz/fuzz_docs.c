/*
 * fuzz_docs — the text and file formats read from outside the process.
 * The first byte picks the decoder:
 *   0  etcd's JSON gateway: a range reply (etcd_kvs_from_json) and a watch
 *      event's kv (etcd_kv_from_json), after cJSON_Parse
 *   1  a node registration document (cluster_node_parse)
 *   2  a collection document (cluster_collection_parse)
 *   3  a shard entry (cluster_shard_parse)
 *   4  a drain document (cluster_drain_parse)
 *   5  a move document (cluster_move_parse)
 *   6  the CLI's .fvecs reader (dataset_read_fvecs)
 *   7  the CLI's .ivecs reader (dataset_read_ivecs)
 *   8  the CLI's .npy reader (dataset_read_npy)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/cluster/cluster.h"
#include "common/etcd/etcd_internal.h"
#include "tests/fuzz/fuzz_common.h"
#include "tools/bench/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned pick = data[0] % 9;
    data++, size--;
    char *s = malloc(size + 1);
    if (s == NULL) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char err[512];
    switch (pick) {
    case 0: {
        cJSON *j = cJSON_ParseWithLength(s, size);
        if (j != NULL) {
            etcd_err e;
            etcd_kvs kvs = {0};
            if (etcd_kvs_from_json(j, "kvs", &kvs, &e) == ETCD_OK) etcd_kvs_free(&kvs);
            etcd_kv kv = {0};
            if (etcd_kv_from_json(cJSON_GetObjectItemCaseSensitive(j, "kv"), &kv, &e) == ETCD_OK)
                etcd_kv_clear(&kv);
            (void)etcd_json_header_rev(j);
            cJSON_Delete(j);
        }
        break;
    }
    case 1: {
        struct cluster_node n;
        if (cluster_node_parse(s, size, &n, err, sizeof err) == 0) {
            free(cluster_node_format(&n));
            cluster_node_clear(&n);
        }
        break;
    }
    case 2: {
        struct cluster_collection c;
        if (cluster_collection_parse(s, size, &c, err, sizeof err) == 0)
            free(cluster_collection_format(&c));
        break;
    }
    case 3: {
        struct cluster_shard sh;
        if (cluster_shard_parse(s, size, &sh, err, sizeof err) == 0) {
            free(cluster_shard_format(&sh));
            cluster_shard_clear(&sh);
        }
        break;
    }
    case 4: {
        struct cluster_drain d;
        if (cluster_drain_parse(s, size, &d, err, sizeof err) == 0) cluster_drain_clear(&d);
        break;
    }
    case 5: {
        struct cluster_move m;
        if (cluster_move_parse(s, size, &m, err, sizeof err) == 0) cluster_move_clear(&m);
        break;
    }
    case 6:
    case 8: {
        struct dataset_matrix m = {0};
        const char *p = fuzz_file(pick == 6 ? "docs/v.fvecs" : "docs/v.npy", data, size);
        if ((pick == 6 ? dataset_read_fvecs(p, &m, err) : dataset_read_npy(p, &m, err)) == 0)
            dataset_matrix_free(&m);
        break;
    }
    case 7: {
        struct dataset_ids ids = {0};
        if (dataset_read_ivecs(fuzz_file("docs/v.ivecs", data, size), &ids, err) == 0)
            dataset_ids_free(&ids);
        break;
    }
    }
    free(s);
    return 0;
}
