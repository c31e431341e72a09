/*
 * doc.c — parse and format the node, collection and shard-entry documents
 * (cluster.h), and the metric names.
 *
 * Parsing is strict about types and bounds and names the field in every
 * refusal, because a value in etcd that one process reads differently from
 * another is worse than one both ignore. Formatting emits the fields in the
 * order the processes have always written them (cJSON, unformatted), so the
 * bytes in etcd do not change with this codec.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cluster/cluster.h"
#include "common/hnsw/hnsw.h"

/* A collection's metric is handed to the engine by number. */
_Static_assert(CLUSTER_METRIC_L2 == (int)HNSW_METRIC_L2 &&
                   CLUSTER_METRIC_IP == (int)HNSW_METRIC_IP &&
                   CLUSTER_METRIC_COSINE == (int)HNSW_METRIC_COSINE,
               "cluster and engine metrics are numbered alike");

/* ------------------------------------------------------------ metric */

const char *cluster_metric_name(enum cluster_metric m)
{
    switch (m) {
    case CLUSTER_METRIC_IP:
        return "ip";
    case CLUSTER_METRIC_COSINE:
        return "cosine";
    default:
        return "l2";
    }
}

int cluster_metric_parse(const char *s, enum cluster_metric *out)
{
    if (strncasecmp(s, "METRIC_", 7) == 0) s += 7;
    if (strcasecmp(s, "l2") == 0)
        *out = CLUSTER_METRIC_L2;
    else if (strcasecmp(s, "ip") == 0)
        *out = CLUSTER_METRIC_IP;
    else if (strcasecmp(s, "cosine") == 0)
        *out = CLUSTER_METRIC_COSINE;
    else
        return -1;
    return 0;
}

/* ------------------------------------------------------------ JSON fields */

/* Reads an unsigned integer given as a JSON number or decimal string.
 * *present tells whether the field is there (absent or null: not). */
static bool json_u64(const cJSON *o, const char *name, uint64_t *out, bool *present)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    *present = f != NULL && !cJSON_IsNull(f);
    if (!*present) return true;
    if (cJSON_IsNumber(f)) {
        if (f->valuedouble < 0 || f->valuedouble > 9007199254740992.0 ||
            f->valuedouble != (double)(uint64_t)f->valuedouble)
            return false;
        *out = (uint64_t)f->valuedouble;
        return true;
    }
    if (cJSON_IsString(f)) {
        int64_t v;
        if (!etcd_parse_int64(f->valuestring, &v) || v < 0) return false;
        *out = (uint64_t)v;
        return true;
    }
    return false;
}

/* An optional string field: absent or null gives def. False if not a string. */
static bool json_str(const cJSON *o, const char *name, const char *def, const char **out)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    if (f == NULL || cJSON_IsNull(f)) {
        *out = def;
        return true;
    }
    if (!cJSON_IsString(f)) return false;
    *out = f->valuestring;
    return true;
}

/* Parses the document as a JSON object, or says it is not one. */
static cJSON *parse_object(const char *what, const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (o != NULL && cJSON_IsObject(o)) return o;
    snprintf(err, errlen, "%s is not a JSON object", what);
    cJSON_Delete(o);
    return NULL;
}

/* Prints o unformatted and frees it; NULL if o is NULL or out of memory. */
static char *print_and_free(cJSON *o)
{
    char *s = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* ------------------------------------------------------------ node */

void cluster_node_clear(struct cluster_node *n)
{
    free(n->addr);
    free(n->version);
    free(n->node_id);
    memset(n, 0, sizeof *n);
}

int cluster_node_parse(const char *json, size_t len, struct cluster_node *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *o = parse_object("node registration", json, len, err, errlen);
    if (o == NULL) return -1;
    const char *addr, *version, *node_id;
    uint64_t started = 0, capacity = 0;
    bool present;
    if (!json_str(o, "addr", "", &addr) || addr[0] == '\0') {
        snprintf(err, errlen, "node field \"addr\" must be a non-empty string");
        goto fail;
    }
    if (!json_str(o, "version", "", &version)) {
        snprintf(err, errlen, "node field \"version\" is not a string");
        goto fail;
    }
    if (!json_str(o, "node_id", "", &node_id)) {
        snprintf(err, errlen, "node field \"node_id\" is not a string");
        goto fail;
    }
    if (!json_u64(o, "started_at", &started, &present)) {
        snprintf(err, errlen, "node field \"started_at\" is not a non-negative integer");
        goto fail;
    }
    if (!json_u64(o, "capacity", &capacity, &present)) {
        snprintf(err, errlen, "node field \"capacity\" is not a non-negative integer");
        goto fail;
    }
    out->addr = strdup(addr);
    out->version = strdup(version);
    out->node_id = strdup(node_id);
    out->started_at = (int64_t)started;
    out->capacity = capacity;
    if (out->addr == NULL || out->version == NULL || out->node_id == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    cJSON_Delete(o);
    return 0;
fail:
    cJSON_Delete(o);
    cluster_node_clear(out);
    return -1;
}

char *cluster_node_format(const struct cluster_node *n)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) return NULL;
    cJSON_AddStringToObject(o, "addr", n->addr);
    cJSON_AddNumberToObject(o, "started_at", (double)n->started_at);
    cJSON_AddStringToObject(o, "version", n->version != NULL ? n->version : "");
    cJSON_AddNumberToObject(o, "capacity", (double)n->capacity);
    cJSON_AddStringToObject(o, "node_id", n->node_id != NULL ? n->node_id : "");
    return print_and_free(o);
}

/* ------------------------------------------------------------ collection */

/* An optional bounded integer of a collection: absent or 0 gives def; alt
 * (may be NULL) is read when name is absent. */
static int coll_field(const cJSON *o, const char *name, const char *alt, uint64_t def, uint64_t min,
                      uint64_t max, uint32_t *out, char *err, size_t errlen)
{
    uint64_t v = 0;
    bool present;
    if (!json_u64(o, name, &v, &present)) {
        snprintf(err, errlen, "collection field \"%s\" is not a non-negative integer", name);
        return -1;
    }
    if (!present && alt != NULL && !json_u64(o, alt, &v, &present)) {
        snprintf(err, errlen, "collection field \"%s\" is not a non-negative integer", alt);
        return -1;
    }
    if (!present || v == 0) v = def;
    if (v < min || v > max) {
        snprintf(err, errlen, "collection field \"%s\" = %llu is out of range %llu..%llu", name,
                 (unsigned long long)v, (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* The metric field: a name (cluster_metric_parse) or 0/1/2; absent = l2. */
static int coll_metric(const cJSON *o, enum cluster_metric *out, char *err, size_t errlen)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "metric");
    *out = CLUSTER_METRIC_L2;
    if (f == NULL || cJSON_IsNull(f)) return 0;
    if (cJSON_IsString(f) && cluster_metric_parse(f->valuestring, out) == 0) return 0;
    if (cJSON_IsNumber(f) && f->valuedouble >= 0 && f->valuedouble <= 2 &&
        f->valuedouble == (double)f->valueint) {
        *out = (enum cluster_metric)f->valueint;
        return 0;
    }
    snprintf(err, errlen,
             "collection field \"metric\" must be \"l2\", \"ip\" or \"cosine\" (or 0, 1, 2)");
    return -1;
}

int cluster_collection_parse(const char *json, size_t len, struct cluster_collection *out,
                             char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *o = parse_object("collection config", json, len, err, errlen);
    if (o == NULL) return -1;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (name != NULL && !cJSON_IsNull(name)) {
        if (!cJSON_IsString(name) ||
            !cluster_name_ok(name->valuestring, strlen(name->valuestring))) {
            snprintf(err, errlen, "collection field \"name\" is not [A-Za-z0-9_-]{1,64}");
            goto fail;
        }
        memcpy(out->name, name->valuestring, strlen(name->valuestring) + 1);
    }
    uint64_t v = 0;
    bool present;
    if (!json_u64(o, "dim", &v, &present) || !present || v < 1 || v > HNSW_MAX_DIM) {
        snprintf(err, errlen, "collection field \"dim\" must be an integer 1..%d", HNSW_MAX_DIM);
        goto fail;
    }
    out->dim = (uint32_t)v;
    if (coll_metric(o, &out->metric, err, errlen) != 0 ||
        coll_field(o, "m", "M", 16, 2, HNSW_MAX_M, &out->m, err, errlen) != 0 ||
        coll_field(o, "ef_construction", NULL, 200, 1, HNSW_MAX_EF, &out->ef_construction, err,
                   errlen) != 0 ||
        coll_field(o, "ef_search", NULL, 64, 1, HNSW_MAX_EF, &out->ef_search, err, errlen) != 0 ||
        coll_field(o, "shards", NULL, 1, 1, 1u << 20, &out->shards, err, errlen) != 0 ||
        coll_field(o, "replication_factor", NULL, 1, 1, 1024, &out->replication_factor, err,
                   errlen) != 0)
        goto fail;
    v = 0;
    if (!json_u64(o, "created_at", &v, &present)) {
        snprintf(err, errlen, "collection field \"created_at\" is not a non-negative integer");
        goto fail;
    }
    out->created_at = (int64_t)v;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "quantization");
    if (q != NULL && !cJSON_IsNull(q)) {
        int qv = cJSON_IsString(q) ? hnsw_quant_parse(q->valuestring) : -1;
        if (qv < 0) {
            snprintf(err, errlen, "collection field \"quantization\" must be \"none\" or \"sq8\"");
            goto fail;
        }
        out->quant = (uint32_t)qv;
    }
    cJSON_Delete(o);
    return 0;
fail:
    cJSON_Delete(o);
    memset(out, 0, sizeof *out);
    return -1;
}

char *cluster_collection_format(const struct cluster_collection *c)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) return NULL;
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddStringToObject(o, "metric", cluster_metric_name(c->metric));
    cJSON_AddNumberToObject(o, "m", c->m);
    cJSON_AddNumberToObject(o, "ef_construction", c->ef_construction);
    cJSON_AddNumberToObject(o, "ef_search", c->ef_search);
    cJSON_AddNumberToObject(o, "shards", c->shards);
    cJSON_AddNumberToObject(o, "replication_factor", c->replication_factor);
    cJSON_AddNumberToObject(o, "created_at", (double)c->created_at);
    /* Written only when set, so documents of unquantized collections are as before. */
    if (c->quant != HNSW_QUANT_NONE)
        cJSON_AddStringToObject(o, "quantization", hnsw_quant_name((enum hnsw_quant)c->quant));
    return print_and_free(o);
}

/* ------------------------------------------------------------ id lists */

/* Frees the ids and zeroes the list. */
static void ids_clear(struct cluster_ids *ids)
{
    for (uint32_t i = 0; i < ids->n; i++)
        free(ids->v[i]);
    free(ids->v);
    ids->v = NULL;
    ids->n = 0;
}

bool cluster_ids_has(const struct cluster_ids *ids, const char *id)
{
    for (uint32_t i = 0; i < ids->n; i++)
        if (strcmp(ids->v[i], id) == 0) return true;
    return false;
}

int cluster_ids_add(struct cluster_ids *ids, const char *id)
{
    if (cluster_ids_has(ids, id)) return 0;
    char **v = realloc(ids->v, (ids->n + 1) * sizeof *v);
    if (v == NULL) return -1;
    ids->v = v;
    if ((v[ids->n] = strdup(id)) == NULL) return -1;
    ids->n++;
    return 0;
}

bool cluster_ids_remove(struct cluster_ids *ids, const char *id)
{
    for (uint32_t i = 0; i < ids->n; i++) {
        if (strcmp(ids->v[i], id) != 0) continue;
        free(ids->v[i]);
        memmove(&ids->v[i], &ids->v[i + 1], (ids->n - i - 1) * sizeof *ids->v);
        ids->n--;
        return true;
    }
    return false;
}

int cluster_shard_set_recovering(struct cluster_shard *s)
{
    for (uint32_t i = 0; i < s->recovering.n; i++)
        free(s->recovering.v[i]);
    s->recovering.n = 0;
    for (uint32_t i = 0; i < s->replicas.n; i++)
        if (!cluster_ids_has(&s->in_sync, s->replicas.v[i]) &&
            cluster_ids_add(&s->recovering, s->replicas.v[i]) != 0)
            return -1;
    return 0;
}

/* Reads an optional array of strings (absent or null = empty). 0, -1 bad, -2 ENOMEM. */
static int json_ids(const cJSON *o, const char *name, struct cluster_ids *out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, name);
    if (a == NULL || cJSON_IsNull(a)) return 0;
    if (!cJSON_IsArray(a)) return -1;
    out->v = calloc((size_t)cJSON_GetArraySize(a) + 1, sizeof *out->v);
    if (out->v == NULL) return -2;
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (!cJSON_IsString(it)) return -1;
        if ((out->v[out->n] = strdup(it->valuestring)) == NULL) return -2;
        out->n++;
    }
    return 0;
}

/* Copies a list (dst overwritten). 0 or -1. */
static int ids_copy(struct cluster_ids *dst, const struct cluster_ids *src)
{
    dst->n = 0;
    dst->v = calloc((size_t)src->n + 1, sizeof *dst->v);
    if (dst->v == NULL) return -1;
    for (uint32_t i = 0; i < src->n; i++) {
        if ((dst->v[i] = strdup(src->v[i])) == NULL) return -1;
        dst->n++;
    }
    return 0;
}

/* Adds ids as a JSON array called name. */
static void add_ids(cJSON *o, const char *name, const struct cluster_ids *ids)
{
    cJSON *a = cJSON_AddArrayToObject(o, name);
    for (uint32_t i = 0; a != NULL && i < ids->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(ids->v[i]));
}

/* ------------------------------------------------------------ shard entry */

void cluster_shard_clear(struct cluster_shard *s)
{
    if (s == NULL) return;
    free(s->primary);
    ids_clear(&s->replicas);
    ids_clear(&s->in_sync);
    ids_clear(&s->recovering);
    memset(s, 0, sizeof *s);
}

int cluster_shard_parse(const char *json, size_t len, struct cluster_shard *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *o = parse_object("shard entry", json, len, err, errlen);
    if (o == NULL) return -1;
    bool present;
    const char *primary;
    if (!json_u64(o, "epoch", &out->epoch, &present)) {
        snprintf(err, errlen, "shard field \"epoch\" is not a non-negative integer");
        goto fail;
    }
    if (!json_str(o, "primary", "", &primary)) {
        snprintf(err, errlen, "shard field \"primary\" is not a string");
        goto fail;
    }
    if ((out->primary = strdup(primary)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    static const char *const lists[] = {"replicas", "in_sync", "recovering"};
    struct cluster_ids *dst[] = {&out->replicas, &out->in_sync, &out->recovering};
    for (int i = 0; i < 3; i++) {
        int rc = json_ids(o, lists[i], dst[i]);
        if (rc == -2) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (rc != 0) {
            snprintf(err, errlen, "shard field \"%s\" is not an array of strings", lists[i]);
            goto fail;
        }
    }
    out->present = true;
    cJSON_Delete(o);
    return 0;
fail:
    cJSON_Delete(o);
    cluster_shard_clear(out);
    return -1;
}

int cluster_shard_copy(struct cluster_shard *dst, const struct cluster_shard *src)
{
    memset(dst, 0, sizeof *dst);
    dst->present = src->present;
    dst->epoch = src->epoch;
    dst->mod_revision = src->mod_revision;
    if ((dst->primary = strdup(src->primary != NULL ? src->primary : "")) == NULL ||
        ids_copy(&dst->replicas, &src->replicas) != 0 ||
        ids_copy(&dst->in_sync, &src->in_sync) != 0 ||
        ids_copy(&dst->recovering, &src->recovering) != 0) {
        cluster_shard_clear(dst);
        return -1;
    }
    return 0;
}

char *cluster_shard_format(const struct cluster_shard *s)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) return NULL;
    cJSON_AddNumberToObject(o, "epoch", (double)s->epoch);
    cJSON_AddStringToObject(o, "primary", s->primary != NULL ? s->primary : "");
    add_ids(o, "replicas", &s->replicas);
    add_ids(o, "in_sync", &s->in_sync);
    add_ids(o, "recovering", &s->recovering);
    return print_and_free(o);
}
