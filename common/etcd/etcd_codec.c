/*
 * etcd_codec.c — the encoding rules of etcd's JSON gateway, in one place.
 *
 * The gateway speaks protobuf-JSON: bytes fields (keys, values, election
 * names) are standard base64 with padding, int64 fields arrive as strings
 * ("revision":"5") and are accepted as strings, and fields holding their zero
 * value (0, false, "", []) are omitted from replies. Every reader here
 * therefore treats "absent" as the zero value, and every writer sends int64
 * as a string so that lease IDs above 2^53 survive.
 *
 * Also here: etcd_kv / etcd_kvs conversion and their free functions.
 */
#include "common/etcd/etcd_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of one base64 digit, or -1. */
static int b64_digit(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Standard base64 with padding; *out is the caller's (free). */
etcd_status etcd_base64_encode(const void *src, size_t len, char **out, size_t *out_len)
{
    const unsigned char *p = src;
    size_t n = (len + 2) / 3 * 4;
    char *s = malloc(n + 1);
    size_t i, o = 0;

    if (!s) return ETCD_ENOMEM;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        s[o++] = b64_alphabet[v >> 18];
        s[o++] = b64_alphabet[(v >> 12) & 63];
        s[o++] = b64_alphabet[(v >> 6) & 63];
        s[o++] = b64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len) v |= (uint32_t)p[i + 1] << 8;
        s[o++] = b64_alphabet[v >> 18];
        s[o++] = b64_alphabet[(v >> 12) & 63];
        s[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        s[o++] = '=';
    }
    s[o] = '\0';
    *out = s;
    if (out_len) *out_len = o;
    return ETCD_OK;
}

/* Decodes padded standard base64; rejects bad length, digits or padding. */
etcd_status etcd_base64_decode(const char *src, size_t len, char **out, size_t *out_len)
{
    size_t pad = 0, n, i, o = 0;
    char *d;

    if (len % 4) return ETCD_EINVAL;
    if (len && src[len - 1] == '=') pad++;
    if (len > 1 && src[len - 2] == '=') pad++;
    n = len / 4 * 3 - pad;
    d = malloc(n + 1);
    if (!d) return ETCD_ENOMEM;
    for (i = 0; i < len; i += 4) {
        int q[4];
        bool last = i + 4 == len;
        for (int k = 0; k < 4; k++) {
            unsigned char ch = (unsigned char)src[i + k];
            if (ch == '=' && last && k >= 4 - (int)pad) {
                q[k] = 0;
                continue;
            }
            q[k] = b64_digit(ch);
            if (q[k] < 0) goto fail;
        }
        uint32_t v =
            (uint32_t)q[0] << 18 | (uint32_t)q[1] << 12 | (uint32_t)q[2] << 6 | (uint32_t)q[3];
        d[o++] = (char)(v >> 16);
        if (o < n) d[o++] = (char)(v >> 8);
        if (o < n) d[o++] = (char)v;
    }
    d[n] = '\0';
    *out = d;
    if (out_len) *out_len = n;
    return ETCD_OK;
fail:
    free(d);
    return ETCD_EINVAL;
}

/* Strict decimal int64: optional '-', digits only, no overflow. */
bool etcd_parse_int64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9'))) return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* range_end for a prefix: increment the last byte below 0xff, cut after it. */
etcd_status etcd_prefix_end(const char *prefix, size_t len, char **out, size_t *out_len)
{
    size_t n = len;
    char *e;

    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
        n--;
    if (n == 0) {
        e = calloc(2, 1); /* "\0": every key */
        if (!e) return ETCD_ENOMEM;
        *out = e;
        *out_len = 1;
        return ETCD_OK;
    }
    e = malloc(n + 1);
    if (!e) return ETCD_ENOMEM;
    memcpy(e, prefix, n);
    e[n - 1] = (char)((unsigned char)e[n - 1] + 1);
    e[n] = '\0';
    *out = e;
    *out_len = n;
    return ETCD_OK;
}

/* Reads an int64 sent as string (usual) or number; absent = 0. */
bool etcd_json_i64(const cJSON *obj, const char *name, int64_t *out)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

    *out = 0;
    if (!f) return true;
    if (cJSON_IsString(f)) return etcd_parse_int64(f->valuestring, out);
    if (cJSON_IsNumber(f)) {
        /* A number outside int64's range (or NaN) is refused: converting it
         * is undefined behaviour (found by tests/fuzz/fuzz_docs). */
        double d = f->valuedouble;
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return false;
        *out = (int64_t)d;
        return true;
    }
    return false;
}

/* Reads a boolean field; absent (= false under zero-value omission) = false. */
bool etcd_json_bool(const cJSON *obj, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, name));
}

/* Adds name: base64(data). */
bool etcd_json_add_b64(cJSON *obj, const char *name, const void *data, size_t len)
{
    char *s;
    bool ok;

    if (etcd_base64_encode(data, len, &s, NULL) != ETCD_OK) return false;
    ok = cJSON_AddStringToObject(obj, name, s) != NULL;
    free(s);
    return ok;
}

/* Adds name: "<v>". */
bool etcd_json_add_i64(cJSON *obj, const char *name, int64_t v)
{
    char s[24];

    snprintf(s, sizeof s, "%" PRId64, v);
    return cJSON_AddStringToObject(obj, name, s) != NULL;
}

/* Adds key and, for a prefix, its range_end. */
bool etcd_json_add_key(cJSON *obj, const char *key, bool prefix)
{
    size_t klen = strlen(key), elen;
    char *end;
    bool ok;

    /* An empty key means "from the first key": etcd wants "\0" for it. */
    if (prefix && klen == 0) {
        if (!etcd_json_add_b64(obj, "key", "", 1)) return false;
    } else if (!etcd_json_add_b64(obj, "key", key, klen)) {
        return false;
    }
    if (!prefix) return true;
    if (etcd_prefix_end(key, klen, &end, &elen) != ETCD_OK) return false;
    ok = etcd_json_add_b64(obj, "range_end", end, elen);
    free(end);
    return ok;
}

/* Decodes a base64 field; absent = "" (omitted because empty). */
etcd_status etcd_json_b64(const cJSON *obj, const char *name, char **out, size_t *out_len,
                          etcd_err *err)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    etcd_status st;

    if (!f) return etcd_base64_decode("", 0, out, out_len);
    if (!cJSON_IsString(f)) return etcd_fail(err, ETCD_EPROTO, "field %s is not a string", name);
    st = etcd_base64_decode(f->valuestring, strlen(f->valuestring), out, out_len);
    if (st == ETCD_EINVAL) return etcd_fail(err, ETCD_EPROTO, "field %s is not base64", name);
    if (st) return etcd_fail(err, st, "out of memory");
    return ETCD_OK;
}

/* Fills *out from a mvccpb.KeyValue object. */
etcd_status etcd_kv_from_json(const cJSON *j, etcd_kv *out, etcd_err *err)
{
    etcd_status st;

    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(j)) return etcd_fail(err, ETCD_EPROTO, "key-value is not an object");
    st = etcd_json_b64(j, "key", &out->key, &out->key_len, err);
    if (st) goto fail;
    st = etcd_json_b64(j, "value", &out->value, &out->value_len, err);
    if (st) goto fail;
    if (!etcd_json_i64(j, "create_revision", &out->create_revision) ||
        !etcd_json_i64(j, "mod_revision", &out->mod_revision) ||
        !etcd_json_i64(j, "version", &out->version) || !etcd_json_i64(j, "lease", &out->lease)) {
        st = etcd_fail(err, ETCD_EPROTO, "bad int64 in key-value");
        goto fail;
    }
    return ETCD_OK;
fail:
    etcd_kv_clear(out);
    return st;
}

/* Fills *out from header + array_name[] + count + more. */
etcd_status etcd_kvs_from_json(const cJSON *j, const char *array_name, etcd_kvs *out, etcd_err *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, array_name);
    const cJSON *it;
    etcd_status st;
    int n;

    memset(out, 0, sizeof *out);
    out->revision = etcd_json_header_rev(j);
    if (!etcd_json_i64(j, "count", &out->count))
        return etcd_fail(err, ETCD_EPROTO, "bad count in reply");
    out->more = etcd_json_bool(j, "more");
    if (!arr) return ETCD_OK;
    if (!cJSON_IsArray(arr)) return etcd_fail(err, ETCD_EPROTO, "%s is not an array", array_name);
    n = cJSON_GetArraySize(arr);
    if (n == 0) return ETCD_OK;
    out->kvs = calloc((size_t)n, sizeof *out->kvs);
    if (!out->kvs) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, arr)
    {
        st = etcd_kv_from_json(it, &out->kvs[out->n], err);
        if (st) goto fail;
        out->n++;
    }
    return ETCD_OK;
fail:
    etcd_kvs_free(out);
    return st;
}

/* header.revision, 0 when absent or malformed. */
int64_t etcd_json_header_rev(const cJSON *reply)
{
    int64_t rev;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(reply, "header");

    if (!h || !etcd_json_i64(h, "revision", &rev)) return 0;
    return rev;
}

/* Frees kv's strings and zeroes it. */
void etcd_kv_clear(etcd_kv *kv)
{
    if (!kv) return;
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof *kv);
}

/* Frees every pair and the array, zeroes kvs. */
void etcd_kvs_free(etcd_kvs *kvs)
{
    if (!kvs) return;
    for (size_t i = 0; i < kvs->n; i++)
        etcd_kv_clear(&kvs->kvs[i]);
    free(kvs->kvs);
    memset(kvs, 0, sizeof *kvs);
}
