/*
 * points.c — libvecshard's data calls: upsert, delete, get and search.
 *
 * Requests point straight into the caller's arrays (protobuf-c packs the
 * vectors without a copy); the only allocation per call is the array of
 * Point or Query structs. Results keep the unpacked reply and point into it
 * for vectors, payloads and missing ids; a search result adds the fixed
 * n_queries x k hit table so that query i's hits are at hits[i*k].
 */
#include <stdlib.h>
#include <string.h>

#include "common/filter/filter.h"
#include "clients/c/client_internal.h"

/* A get result and its reply. */
struct points_impl {
    struct vecshard_points pub; /* first: the public pointer */
    ProtobufCMessage *reply;
};

/* A search result, its arrays and its reply. */
struct search_impl {
    struct vecshard_search_result pub;
    uint32_t *n_hits;
    struct vecshard_hit *hits;
    ProtobufCMessage *reply;
};

/* INVALID_ARGUMENT unless name is set and, when n > 0, the array is too
 * (dim 0: an array of n ids; else of n vectors of dim floats). */
static enum vecshard_code check_args(const char *name, const void *array, const char *array_name,
                                     size_t n, uint32_t dim, struct vecshard_error *err)
{
    if (!name) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "name is NULL");
    if (n && !array && !dim)
        return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "%s is NULL (n %zu)", array_name, n);
    if (n && dim && !array)
        return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "%s is NULL (n %zu, dim %u)", array_name, n,
                        dim);
    return VECSHARD_OK;
}

/* ===================================================================== upsert, delete */

/* Upsert of n points from the caller's arrays. */
enum vecshard_code vecshard_upsert(struct vecshard_client *c, const char *name, const uint64_t *ids,
                                   const float *vectors, size_t n, uint32_t dim,
                                   const struct vecshard_bytes *payloads, uint32_t *upserted,
                                   struct vecshard_error *err)
{
    if (upserted) *upserted = 0;
    if (check_args(name, ids, "ids", n, 0, err) ||
        check_args(name, vectors, "vectors", n, dim, err))
        return VECSHARD_INVALID_ARGUMENT;
    Vecshard__V1__Point *pts = n ? calloc(n, sizeof *pts) : NULL;
    Vecshard__V1__Point **ptrs = n ? calloc(n, sizeof *ptrs) : NULL;
    if (n && (!pts || !ptrs)) {
        free(pts);
        free(ptrs);
        return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for %zu points", n);
    }
    for (size_t i = 0; i < n; i++) {
        vecshard__v1__point__init(&pts[i]);
        pts[i].id = ids[i];
        pts[i].n_vector = dim;
        pts[i].vector = (float *)vectors + i * dim;
        if (payloads && payloads[i].len) {
            pts[i].payload.data = (uint8_t *)payloads[i].data;
            pts[i].payload.len = payloads[i].len;
        }
        ptrs[i] = &pts[i];
    }
    Vecshard__V1__UpsertRequest req = VECSHARD__V1__UPSERT_REQUEST__INIT;
    req.collection = (char *)name;
    req.points = ptrs;
    req.n_points = n;
    ProtobufCMessage *resp;
    enum vecshard_code code = vsc_call(c, VSC_METHOD("Upsert"), &req.base,
                                       &vecshard__v1__upsert_response__descriptor, &resp, err);
    if (code == VECSHARD_OK && upserted)
        *upserted = ((Vecshard__V1__UpsertResponse *)resp)->upserted;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    free(pts);
    free(ptrs);
    return code;
}

/* Delete of n ids. */
enum vecshard_code vecshard_delete(struct vecshard_client *c, const char *name, const uint64_t *ids,
                                   size_t n, uint32_t *deleted, struct vecshard_error *err)
{
    if (deleted) *deleted = 0;
    if (check_args(name, ids, "ids", n, 0, err)) return VECSHARD_INVALID_ARGUMENT;
    Vecshard__V1__DeleteRequest req = VECSHARD__V1__DELETE_REQUEST__INIT;
    req.collection = (char *)name;
    req.ids = (uint64_t *)ids;
    req.n_ids = n;
    ProtobufCMessage *resp;
    enum vecshard_code code = vsc_call(c, VSC_METHOD("Delete"), &req.base,
                                       &vecshard__v1__delete_response__descriptor, &resp, err);
    if (code == VECSHARD_OK && deleted) *deleted = ((Vecshard__V1__DeleteResponse *)resp)->deleted;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

/* The message of a JSON filter; NULL with INVALID_ARGUMENT in err. */
static Vecshard__V1__Filter *parse_filter(const char *json, struct vecshard_error *err)
{
    char msg[FILTER_ERR_MAX];
    Vecshard__V1__Filter *f = filter_from_json(json, msg, sizeof msg);
    if (!f) vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "%s", msg);
    return f;
}

enum vecshard_code vecshard_count_matching(struct vecshard_client *c, const char *name,
                                           const char *filter,
                                  uint64_t *count, struct vecshard_error *err)
{
    if (count) *count = 0;
    if (!name) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "name is NULL");
    Vecshard__V1__CountRequest req = VECSHARD__V1__COUNT_REQUEST__INIT;
    req.collection = (char *)name;
    if (filter && !(req.filter = parse_filter(filter, err))) return VECSHARD_INVALID_ARGUMENT;
    ProtobufCMessage *resp;
    enum vecshard_code code = vsc_call(c, VSC_METHOD("Count"), &req.base,
                                       &vecshard__v1__count_response__descriptor, &resp, err);
    if (code == VECSHARD_OK && count) *count = ((Vecshard__V1__CountResponse *)resp)->count;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    if (req.filter) vecshard__v1__filter__free_unpacked(req.filter, NULL);
    return code;
}

enum vecshard_code vecshard_delete_matching(struct vecshard_client *c, const char *name,
                                            const char *filter, uint32_t *deleted,
                                            struct vecshard_error *err)
{
    if (deleted) *deleted = 0;
    if (!name || !filter)
        return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "%s is NULL", name ? "filter" : "name");
    Vecshard__V1__DeleteRequest req = VECSHARD__V1__DELETE_REQUEST__INIT;
    req.collection = (char *)name;
    if (!(req.filter = parse_filter(filter, err))) return VECSHARD_INVALID_ARGUMENT;
    ProtobufCMessage *resp;
    enum vecshard_code code = vsc_call(c, VSC_METHOD("Delete"), &req.base,
                                       &vecshard__v1__delete_response__descriptor, &resp, err);
    if (code == VECSHARD_OK && deleted) *deleted = ((Vecshard__V1__DeleteResponse *)resp)->deleted;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    vecshard__v1__filter__free_unpacked(req.filter, NULL);
    return code;
}

/* ===================================================================== get */

/* Get of n ids; points point into the reply. */
enum vecshard_code vecshard_get(struct vecshard_client *c, const char *name, const uint64_t *ids,
                                size_t n, bool with_vector, bool with_payload,
                                struct vecshard_points **out, struct vecshard_error *err)
{
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (check_args(name, ids, "ids", n, 0, err)) return VECSHARD_INVALID_ARGUMENT;
    Vecshard__V1__GetRequest req = VECSHARD__V1__GET_REQUEST__INIT;
    req.collection = (char *)name;
    req.ids = (uint64_t *)ids;
    req.n_ids = n;
    req.with_vector = with_vector;
    req.with_payload = with_payload;
    ProtobufCMessage *resp;
    enum vecshard_code code = vsc_call(c, VSC_METHOD("Get"), &req.base,
                                       &vecshard__v1__get_response__descriptor, &resp, err);
    if (code != VECSHARD_OK) return code;
    const Vecshard__V1__GetResponse *r = (Vecshard__V1__GetResponse *)resp;
    struct points_impl *p = calloc(1, sizeof *p);
    if (p && r->n_points) p->pub.points = calloc(r->n_points, sizeof *p->pub.points);
    if (!p || (r->n_points && !p->pub.points)) {
        free(p);
        protobuf_c_message_free_unpacked(resp, NULL);
        return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for %zu points",
                        r->n_points);
    }
    p->reply = resp;
    p->pub.n_points = r->n_points;
    for (size_t i = 0; i < r->n_points; i++) {
        const Vecshard__V1__Point *pt = r->points[i];
        p->pub.points[i] = (struct vecshard_point){
            .id = pt->id,
            .vector = pt->n_vector ? pt->vector : NULL,
            .dim = pt->n_vector,
            .payload = pt->payload.len ? pt->payload.data : NULL,
            .payload_len = pt->payload.len,
        };
    }
    p->pub.n_missing = r->n_missing_ids;
    p->pub.missing_ids = r->missing_ids;
    *out = &p->pub;
    return VECSHARD_OK;
}

/* Frees a get result and its reply. */
void vecshard_points_free(struct vecshard_points *pts)
{
    if (!pts) return;
    struct points_impl *p = (struct points_impl *)pts;
    free(p->pub.points);
    protobuf_c_message_free_unpacked(p->reply, NULL);
    free(p);
}

/* ===================================================================== search */

/* Builds the hit table of a reply into s; 0 or -1 on ENOMEM. */
static int search_table(struct search_impl *s, const Vecshard__V1__SearchResponse *r, uint32_t k)
{
    size_t nq = r->n_results;
    s->n_hits = nq ? calloc(nq, sizeof *s->n_hits) : NULL;
    s->hits = nq ? calloc(nq * k, sizeof *s->hits) : NULL;
    if (nq && (!s->n_hits || !s->hits)) return -1;
    for (size_t i = 0; i < nq; i++) {
        const Vecshard__V1__QueryResult *qr = r->results[i];
        size_t n = qr->n_hits < k ? qr->n_hits : k;
        for (size_t h = 0; h < n; h++) {
            const Vecshard__V1__ScoredPoint *p = qr->hits[h];
            s->hits[i * k + h] = (struct vecshard_hit){
                .id = p->id,
                .distance = p->distance,
                .payload = p->payload.len ? p->payload.data : NULL,
                .payload_len = p->payload.len,
                .vector = p->n_vector ? p->vector : NULL,
                .dim = p->n_vector,
            };
        }
        s->n_hits[i] = (uint32_t)n;
    }
    s->pub.n_queries = nq;
    s->pub.k = k;
    s->pub.n_hits = s->n_hits;
    s->pub.hits = s->hits;
    const Vecshard__V1__Coverage *cov = r->coverage;
    if (cov)
        s->pub.coverage = (struct vecshard_coverage){
            .shards_total = cov->shards_total,
            .shards_ok = cov->shards_ok,
            .n_missing = cov->n_missing_shards,
            .missing_shards = cov->missing_shards,
            .partial = cov->partial,
        };
    if (r->auto_ef) {
        s->pub.ef_used = r->auto_ef->ef;
        s->pub.estimated_recall = r->auto_ef->estimated_recall;
    }
    return 0;
}

/* Search of nq queries from the caller's array. */
enum vecshard_code vecshard_search(struct vecshard_client *c, const char *name,
                                   const float *queries, size_t nq, uint32_t dim,
                                   const struct vecshard_search_params *params,
                                   struct vecshard_search_result **out, struct vecshard_error *err)
{
    static const struct vecshard_search_params defaults = {0};
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (check_args(name, queries, "queries", nq, dim, err)) return VECSHARD_INVALID_ARGUMENT;
    if (!params) params = &defaults;
    Vecshard__V1__Query *qs = nq ? calloc(nq, sizeof *qs) : NULL;
    Vecshard__V1__Query **ptrs = nq ? calloc(nq, sizeof *ptrs) : NULL;
    struct search_impl *s = calloc(1, sizeof *s);
    enum vecshard_code code;
    if ((nq && (!qs || !ptrs)) || !s) {
        code = vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for %zu queries", nq);
        goto done;
    }
    for (size_t i = 0; i < nq; i++) {
        vecshard__v1__query__init(&qs[i]);
        qs[i].n_vector = dim;
        qs[i].vector = (float *)queries + i * dim;
        ptrs[i] = &qs[i];
    }
    Vecshard__V1__SearchRequest req = VECSHARD__V1__SEARCH_REQUEST__INIT;
    req.collection = (char *)name;
    req.queries = ptrs;
    req.n_queries = nq;
    req.k = params->k ? params->k : 10;
    req.ef = params->ef;
    req.min_coverage = params->min_coverage;
    req.target_recall = params->target_recall;
    req.with_payload = params->with_payload;
    req.with_vector = params->with_vector;
    if (params->filter && !(req.filter = parse_filter(params->filter, err))) {
        code = VECSHARD_INVALID_ARGUMENT;
        goto done;
    }
    code = vsc_call(c, VSC_METHOD("Search"), &req.base, &vecshard__v1__search_response__descriptor,
                    &s->reply, err);
    if (req.filter) vecshard__v1__filter__free_unpacked(req.filter, NULL);
    if (code != VECSHARD_OK) goto done;
    const Vecshard__V1__SearchResponse *r = (Vecshard__V1__SearchResponse *)s->reply;
    if (r->n_results != nq) {
        code = vsc_fail(err, VECSHARD_INTERNAL, "reply has %zu results for %zu queries",
                        r->n_results, nq);
        goto done;
    }
    if (search_table(s, r, req.k)) {
        code = vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory for %zu x %u hits", nq,
                        req.k);
        goto done;
    }
    *out = &s->pub;
    s = NULL;
done:
    vecshard_search_result_free(s ? &s->pub : NULL);
    free(qs);
    free(ptrs);
    return code;
}

/* Frees a search result, its table and its reply. */
void vecshard_search_result_free(struct vecshard_search_result *res)
{
    if (!res) return;
    struct search_impl *s = (struct search_impl *)res;
    free(s->n_hits);
    free(s->hits);
    if (s->reply) protobuf_c_message_free_unpacked(s->reply, NULL);
    free(s);
}
