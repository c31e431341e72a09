/*
 * etcd_kv.c — the key-value calls: put, get, range, delete, compact and txn.
 *
 * A txn's operations are the same Put/DeleteRange/Range requests the plain
 * calls send, so one builder (op_to_json) and one reply reader
 * (op_result_from_json) serve both: etcd_put is a txn-less PutRequest, and a
 * txn's request_put carries an identical object.
 */
#include "common/etcd/etcd_internal.h"

#include <stdlib.h>
#include <string.h>

/* Builds the Put/DeleteRange/Range request object of op; NULL on ENOMEM. */
static cJSON *op_to_json(const etcd_op *op)
{
    cJSON *o = cJSON_CreateObject();

    if (!o) return NULL;
    switch (op->type) {
    case ETCD_OP_PUT:
        if (!etcd_json_add_key(o, op->key, false) ||
            !etcd_json_add_b64(o, "value", op->value ? op->value : "", op->value_len))
            goto fail;
        if (op->lease && !etcd_json_add_i64(o, "lease", op->lease)) goto fail;
        if (op->prev_kv && !cJSON_AddTrueToObject(o, "prev_kv")) goto fail;
        break;
    case ETCD_OP_DELETE:
        if (!etcd_json_add_key(o, op->key, op->prefix)) goto fail;
        if (op->prev_kv && !cJSON_AddTrueToObject(o, "prev_kv")) goto fail;
        break;
    case ETCD_OP_RANGE:
        if (!etcd_json_add_key(o, op->key, op->prefix)) goto fail;
        if (op->limit && !etcd_json_add_i64(o, "limit", op->limit)) goto fail;
        break;
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* Checks an op's arguments. */
static etcd_status op_check(const etcd_op *op, etcd_err *err)
{
    if (!op->key) return etcd_fail(err, ETCD_EINVAL, "op key is NULL");
    if (op->type > ETCD_OP_RANGE) return etcd_fail(err, ETCD_EINVAL, "bad op type %d", op->type);
    if (op->type == ETCD_OP_PUT && !op->key[0])
        return etcd_fail(err, ETCD_EINVAL, "put needs a non-empty key");
    if (op->type == ETCD_OP_PUT && !op->value && op->value_len)
        return etcd_fail(err, ETCD_EINVAL, "put value is NULL");
    if (op->limit < 0) return etcd_fail(err, ETCD_EINVAL, "negative limit");
    return ETCD_OK;
}

/* Reads the reply to one op (a PutResponse etc.) into *r. */
static etcd_status op_result_from_json(etcd_op_type type, const cJSON *j, etcd_op_result *r,
                                       etcd_err *err)
{
    const cJSON *prev;
    etcd_status st = ETCD_OK;

    memset(r, 0, sizeof *r);
    r->type = type;
    r->revision = etcd_json_header_rev(j);
    switch (type) {
    case ETCD_OP_RANGE:
        st = etcd_kvs_from_json(j, "kvs", &r->kvs, err);
        break;
    case ETCD_OP_DELETE:
        if (!etcd_json_i64(j, "deleted", &r->deleted))
            return etcd_fail(err, ETCD_EPROTO, "bad 'deleted' in reply");
        st = etcd_kvs_from_json(j, "prev_kvs", &r->kvs, err);
        break;
    case ETCD_OP_PUT:
        prev = cJSON_GetObjectItemCaseSensitive(j, "prev_kv");
        if (!prev) break;
        r->kvs.kvs = calloc(1, sizeof *r->kvs.kvs);
        if (!r->kvs.kvs) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
        st = etcd_kv_from_json(prev, &r->kvs.kvs[0], err);
        if (st) {
            free(r->kvs.kvs);
            r->kvs.kvs = NULL;
            break;
        }
        r->kvs.n = 1;
        break;
    }
    r->kvs.revision = r->revision;
    return st;
}

/* Sends one op as a plain (non-txn) request and reads its reply. */
static etcd_status op_call(etcd_client *c, const etcd_op *op, etcd_op_result *r, etcd_err *err)
{
    static const char *paths[] = {"/v3/kv/put", "/v3/kv/deleterange", "/v3/kv/range"};
    cJSON *body = NULL, *reply = NULL;
    etcd_status st;

    memset(r, 0, sizeof *r);
    st = op_check(op, err);
    if (st) return st;
    body = op_to_json(op);
    if (!body) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    st = etcd_call(c, paths[op->type], body, &reply, err);
    if (st) goto fail;
    st = op_result_from_json(op->type, reply, r, err);
fail:
    cJSON_Delete(body);
    cJSON_Delete(reply);
    return st;
}

/* Writes key=value; see etcd.h. */
etcd_status etcd_put(etcd_client *c, const char *key, const void *value, size_t value_len,
                     int64_t lease, etcd_kv *prev, int64_t *revision, etcd_err *err)
{
    etcd_op op = {.type = ETCD_OP_PUT,
                  .key = key,
                  .value = value,
                  .value_len = value_len,
                  .lease = lease,
                  .prev_kv = prev != NULL};
    etcd_op_result r;
    etcd_status st;

    if (prev) memset(prev, 0, sizeof *prev);
    st = op_call(c, &op, &r, err);
    if (st) return st;
    if (revision) *revision = r.revision;
    if (prev && r.kvs.n) {
        *prev = r.kvs.kvs[0];
        memset(&r.kvs.kvs[0], 0, sizeof r.kvs.kvs[0]);
    }
    etcd_kvs_free(&r.kvs);
    return ETCD_OK;
}

/* Reads one key; see etcd.h. */
etcd_status etcd_get(etcd_client *c, const char *key, etcd_kv *out, etcd_err *err)
{
    etcd_op op = {.type = ETCD_OP_RANGE, .key = key};
    etcd_op_result r;
    etcd_status st;

    memset(out, 0, sizeof *out);
    if (key && !key[0]) return etcd_fail(err, ETCD_EINVAL, "get needs a non-empty key");
    st = op_call(c, &op, &r, err);
    if (st) return st;
    if (r.kvs.n == 0) {
        etcd_kvs_free(&r.kvs);
        return etcd_fail(err, ETCD_ENOTFOUND, "key '%.100s' not found", key);
    }
    *out = r.kvs.kvs[0];
    memset(&r.kvs.kvs[0], 0, sizeof r.kvs.kvs[0]);
    etcd_kvs_free(&r.kvs);
    return ETCD_OK;
}

/* Reads a prefix; see etcd.h. */
etcd_status etcd_range(etcd_client *c, const char *prefix, int64_t limit, etcd_kvs *out,
                       etcd_err *err)
{
    etcd_op op = {.type = ETCD_OP_RANGE, .key = prefix, .prefix = true, .limit = limit};
    etcd_op_result r;
    etcd_status st;

    memset(out, 0, sizeof *out);
    st = op_call(c, &op, &r, err);
    if (st) return st;
    *out = r.kvs;
    return ETCD_OK;
}

/* Deletes a key or prefix; see etcd.h. */
etcd_status etcd_delete(etcd_client *c, const char *key, bool prefix, int64_t *deleted,
                        etcd_err *err)
{
    etcd_op op = {.type = ETCD_OP_DELETE, .key = key, .prefix = prefix};
    etcd_op_result r;
    etcd_status st;

    if (key && !key[0] && !prefix)
        return etcd_fail(err, ETCD_EINVAL, "delete needs a non-empty key");
    st = op_call(c, &op, &r, err);
    if (st) return st;
    if (deleted) *deleted = r.deleted;
    etcd_kvs_free(&r.kvs);
    return ETCD_OK;
}

/* Compacts history; see etcd.h. */
etcd_status etcd_compact(etcd_client *c, int64_t revision, bool physical, etcd_err *err)
{
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    etcd_status st;

    if (!body || !etcd_json_add_i64(body, "revision", revision) ||
        (physical && !cJSON_AddTrueToObject(body, "physical"))) {
        st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
        goto fail;
    }
    st = etcd_call(c, "/v3/kv/compaction", body, &reply, err);
fail:
    cJSON_Delete(body);
    cJSON_Delete(reply);
    return st;
}

/* Builds one Compare object; NULL on ENOMEM. */
static cJSON *cmp_to_json(const etcd_cmp *k)
{
    static const char *targets[] = {"CREATE", "MOD", "VERSION", "VALUE"};
    static const char *fields[] = {"create_revision", "mod_revision", "version", "value"};
    static const char *results[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
    cJSON *o = cJSON_CreateObject();

    if (!o || !etcd_json_add_key(o, k->key, false) ||
        !cJSON_AddStringToObject(o, "target", targets[k->target]) ||
        !cJSON_AddStringToObject(o, "result", results[k->result]))
        goto fail;
    if (k->target == ETCD_CMP_VALUE) {
        if (!etcd_json_add_b64(o, fields[k->target], k->value ? k->value : "", k->value_len))
            goto fail;
    } else if (!etcd_json_add_i64(o, fields[k->target], k->number)) {
        goto fail;
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* Adds a txn branch (RequestOp list) named name; ETCD_OK or an error. */
static etcd_status add_branch(cJSON *body, const char *name, const etcd_op *ops, size_t n,
                              etcd_err *err)
{
    static const char *wrap[] = {"request_put", "request_delete_range", "request_range"};
    cJSON *arr;

    if (n == 0) return ETCD_OK;
    if (!ops) return etcd_fail(err, ETCD_EINVAL, "%s ops are NULL", name);
    arr = cJSON_AddArrayToObject(body, name);
    if (!arr) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        etcd_status st = op_check(&ops[i], err);
        cJSON *req, *op;
        if (st) return st;
        op = op_to_json(&ops[i]);
        req = cJSON_CreateObject();
        if (!op || !req) {
            cJSON_Delete(op);
            cJSON_Delete(req);
            return etcd_fail(err, ETCD_ENOMEM, "out of memory");
        }
        cJSON_AddItemToObject(req, wrap[ops[i].type], op);
        cJSON_AddItemToArray(arr, req);
    }
    return ETCD_OK;
}

/* Reads the responses[] of a txn reply, matching the branch that ran. */
static etcd_status txn_results(const cJSON *reply, const etcd_op *ops, size_t n,
                               etcd_txn_result *out, etcd_err *err)
{
    static const char *wrap[] = {"response_put", "response_delete_range", "response_range"};
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(reply, "responses");
    size_t i = 0;
    const cJSON *it;

    if (cJSON_GetArraySize(arr) != (int)n)
        return etcd_fail(err, ETCD_EPROTO, "txn: %d responses for %zu ops", cJSON_GetArraySize(arr),
                         n);
    if (n == 0) return ETCD_OK;
    out->results = calloc(n, sizeof *out->results);
    if (!out->results) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(it, wrap[ops[i].type]);
        etcd_status st;
        if (!r)
            return etcd_fail(err, ETCD_EPROTO, "txn: response %zu lacks %s", i, wrap[ops[i].type]);
        st = op_result_from_json(ops[i].type, r, &out->results[i], err);
        if (st) return st;
        out->n = ++i;
    }
    return ETCD_OK;
}

/* Runs a txn; see etcd.h. */
etcd_status etcd_txn(etcd_client *c, const etcd_cmp *cmps, size_t n_cmps, const etcd_op *success,
                     size_t n_success, const etcd_op *failure, size_t n_failure,
                     etcd_txn_result *out, etcd_err *err)
{
    etcd_txn_result tmp = {0};
    cJSON *body = cJSON_CreateObject(), *reply = NULL, *arr;
    etcd_status st;

    if (out) memset(out, 0, sizeof *out);
    if (!body) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    if (n_cmps) {
        if (!cmps) {
            st = etcd_fail(err, ETCD_EINVAL, "compares are NULL");
            goto fail;
        }
        arr = cJSON_AddArrayToObject(body, "compare");
        if (!arr) {
            st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n_cmps; i++) {
            cJSON *o;
            if (!cmps[i].key || cmps[i].target > ETCD_CMP_VALUE || cmps[i].result > ETCD_CMP_LESS) {
                st = etcd_fail(err, ETCD_EINVAL, "compare %zu: bad key, target or result", i);
                goto fail;
            }
            o = cmp_to_json(&cmps[i]);
            if (!o) {
                st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
                goto fail;
            }
            cJSON_AddItemToArray(arr, o);
        }
    }
    st = add_branch(body, "success", success, n_success, err);
    if (st) goto fail;
    st = add_branch(body, "failure", failure, n_failure, err);
    if (st) goto fail;
    st = etcd_call(c, "/v3/kv/txn", body, &reply, err);
    if (st) goto fail;
    tmp.succeeded = etcd_json_bool(reply, "succeeded");
    tmp.revision = etcd_json_header_rev(reply);
    st = tmp.succeeded ? txn_results(reply, success, n_success, &tmp, err)
                       : txn_results(reply, failure, n_failure, &tmp, err);
    if (st) goto fail;
    if (out) {
        *out = tmp;
        memset(&tmp, 0, sizeof tmp);
    }
fail:
    etcd_txn_result_free(&tmp);
    cJSON_Delete(body);
    cJSON_Delete(reply);
    return st;
}

/* Frees every sub-result and zeroes r. */
void etcd_txn_result_free(etcd_txn_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++)
        etcd_kvs_free(&r->results[i].kvs);
    free(r->results);
    memset(r, 0, sizeof *r);
}
