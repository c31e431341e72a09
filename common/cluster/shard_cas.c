/*
 * shard_cas.c — the one way a shard entry changes after creation
 * (docs/design.md §3): read, let the caller edit, epoch + 1, write in an etcd
 * transaction that holds only if the key's mod_revision is still the one
 * read, and start over from a fresh read when another writer got there
 * first. Comparing on mod_revision rather than on the epoch also catches a
 * writer that changed the entry without bumping the epoch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/cluster.h"

const char *cluster_status_str(enum cluster_status st)
{
    switch (st) {
    case CLUSTER_OK:
        return "CLUSTER_OK";
    case CLUSTER_GONE:
        return "CLUSTER_GONE";
    case CLUSTER_REFUSED:
        return "CLUSTER_REFUSED";
    case CLUSTER_CONFLICT:
        return "CLUSTER_CONFLICT";
    case CLUSTER_BAD:
        return "CLUSTER_BAD";
    case CLUSTER_ETCD:
        return "CLUSTER_ETCD";
    case CLUSTER_NOMEM:
        return "CLUSTER_NOMEM";
    }
    return "CLUSTER_?";
}

/* One try: read, change, compare-and-put. *won false when the compare failed. */
static enum cluster_status update_once(etcd_client *etcd, const char *key,
                                       cluster_shard_change_fn change, void *arg,
                                       struct cluster_shard *s, bool *won, char *err, size_t errlen)
{
    etcd_kv kv = {0};
    etcd_err eerr;
    enum cluster_status st = CLUSTER_OK;
    char *json = NULL;
    etcd_txn_result tr = {0};
    *won = false;
    etcd_status es = etcd_get(etcd, key, &kv, &eerr);
    if (es == ETCD_ENOTFOUND) {
        snprintf(err, errlen, "shard entry %s does not exist", key);
        return CLUSTER_GONE;
    }
    if (es != ETCD_OK) {
        snprintf(err, errlen, "reading %s: %s: %s", key, etcd_status_str(es), eerr.msg);
        return CLUSTER_ETCD;
    }
    char perr[160];
    if (cluster_shard_parse(kv.value, kv.value_len, s, perr, sizeof perr) != 0) {
        snprintf(err, errlen, "%s: %s", key, perr);
        st = CLUSTER_BAD;
        goto out;
    }
    uint64_t epoch = s->epoch;
    if (change(s, arg, err, errlen) != 0) {
        st = CLUSTER_REFUSED;
        goto out;
    }
    s->epoch = epoch + 1;
    if ((json = cluster_shard_format(s)) == NULL) {
        snprintf(err, errlen, "out of memory");
        st = CLUSTER_NOMEM;
        goto out;
    }
    etcd_cmp cmp = {
        .key = key, .target = ETCD_CMP_MOD, .result = ETCD_CMP_EQUAL, .number = kv.mod_revision};
    etcd_op put = {.type = ETCD_OP_PUT, .key = key, .value = json, .value_len = strlen(json)};
    es = etcd_txn(etcd, &cmp, 1, &put, 1, NULL, 0, &tr, &eerr);
    if (es != ETCD_OK) {
        snprintf(err, errlen, "writing %s: %s: %s", key, etcd_status_str(es), eerr.msg);
        st = CLUSTER_ETCD;
        goto out;
    }
    *won = tr.succeeded;
    if (tr.succeeded) s->mod_revision = tr.revision;
out:
    etcd_txn_result_free(&tr);
    free(json);
    etcd_kv_clear(&kv);
    return st;
}

enum cluster_status cluster_shard_update(etcd_client *etcd, const char *prefix, const char *name,
                                         uint32_t shard, int max_tries,
                                         cluster_shard_change_fn change, void *arg,
                                         struct cluster_shard *out, char *err, size_t errlen)
{
    char *key = cluster_key_shard(prefix, name, shard);
    if (key == NULL) {
        snprintf(err, errlen, "out of memory");
        return CLUSTER_NOMEM;
    }
    if (max_tries <= 0) max_tries = 5;
    enum cluster_status st = CLUSTER_CONFLICT;
    for (int i = 0; i < max_tries; i++) {
        struct cluster_shard s;
        bool won;
        memset(&s, 0, sizeof s);
        st = update_once(etcd, key, change, arg, &s, &won, err, errlen);
        if (st == CLUSTER_OK && won) {
            if (out != NULL)
                *out = s;
            else
                cluster_shard_clear(&s);
            break;
        }
        cluster_shard_clear(&s);
        if (st != CLUSTER_OK) break;
        st = CLUSTER_CONFLICT;
        snprintf(err, errlen, "shard entry %s changed under %d tries in a row", key, i + 1);
    }
    free(key);
    return st;
}
