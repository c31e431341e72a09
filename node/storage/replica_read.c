/*
 * replica_read.c — the read side of a replica: search and get, and the
 * caller-owned results object they fill.
 *
 * Reads never take the replica's write lock: the engine serves searches and
 * gets concurrently with inserts and deletes, and the payload store is read
 * under its shared lock. Vectors and payloads are copied into the results
 * object (one buffer, reused across calls) while that shared lock is held,
 * so what a caller gets stays valid however the replica changes later. A
 * search that races a write to the same id may return the new payload with
 * a distance computed on the old vector; a point deleted between the graph
 * search and the copy is dropped when vectors are asked for (its vector is
 * gone), otherwise returned without payload.
 */
#include "node/storage/replica_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void replica_results_init(struct replica_results *res)
{
    memset(res, 0, sizeof *res);
}

void replica_results_free(struct replica_results *res)
{
    free(res->points);
    free(res->missing);
    free(res->bytes);
    free(res->hits);
    memset(res, 0, sizeof *res);
}

/* Grows *p (elements of size sz) to at least n; -1 when out of memory. */
static int grow(void **p, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < n)
        c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/*
 * Copies vectors, payloads and attributes of res->points[0..n) into
 * res->bytes and points at them; drops points whose vector vanished. With
 * the payload store's read lock held when payloads are wanted, and the
 * attribute store's when attributes are. Gets list dropped ids as missing
 * (their res->missing has room for every requested id).
 */
static int fill_points(struct replica *r, struct replica_results *res, bool with_payload,
                       bool with_vector, bool with_attrs, bool is_get)
{
    size_t vbytes = with_vector ? (size_t)res->n * r->dim * sizeof(float) : 0, pbytes = 0;
    for (uint32_t i = 0; (with_payload || with_attrs) && i < res->n; i++) {
        uint32_t len = 0;
        if (with_payload) payload_peek(r->ps, res->points[i].id, &len);
        pbytes += len;
        len = 0;
        if (with_attrs) attr_peek(r->as, res->points[i].id, &len);
        pbytes += len;
    }
    if (grow((void **)&res->bytes, &res->cap_bytes, vbytes + pbytes + 1, 1) != 0)
        return -1;
    float *vec = (float *)res->bytes;
    uint8_t *pay = res->bytes + vbytes;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < res->n; i++) {
        struct replica_point p = res->points[i];
        p.vector = NULL;
        p.payload = NULL;
        p.payload_len = 0;
        p.attrs = NULL;
        p.attrs_len = 0;
        if (with_vector) {
            float *v = vec + (size_t)kept * r->dim;
            if (hnsw_get(r->idx, p.id, v) != HNSW_OK) {
                if (is_get)
                    res->missing[res->nmissing++] = p.id;
                continue;
            }
            p.vector = v;
        }
        uint32_t len;
        const uint8_t *src;
        if (with_payload && (src = payload_peek(r->ps, p.id, &len)) && len) {
            memcpy(pay, src, len);
            p.payload = pay;
            p.payload_len = len;
            pay += len;
        }
        if (with_attrs && (src = attr_peek(r->as, p.id, &len)) && len) {
            memcpy(pay, src, len);
            p.attrs = pay;
            p.attrs_len = len;
            pay += len;
        }
        res->points[kept++] = p;
    }
    res->n = kept;
    return 0;
}

/* Takes the read locks fill_points needs (payloads before attributes). */
static void fill_lock(struct replica *r, bool with_payload, bool with_attrs, bool lock)
{
    if (lock) {
        if (with_payload) payload_read_lock(r->ps);
        if (with_attrs) attr_read_lock(r->as);
    } else {
        if (with_attrs) attr_read_unlock(r->as);
        if (with_payload) payload_read_unlock(r->ps);
    }
}

/* ---------------------------------------------------------------- filters */

/*
 * The plan's cost model, in units of one distance computation
 * (docs/filtering.md "Planning"; constants measured by make bench-filter):
 * an HNSW search of width w visits about PLAN_GRAPH_VISITS * w points; a
 * filtered one needs w matches, so about PLAN_GRAPH_VISITS * ef / s visits
 * for a selectivity s, each costing a distance and a test of its
 * attributes (PLAN_TEST); listing candidates and testing them costs
 * PLAN_TEST per candidate plus a distance per match; the post plan searches
 * unfiltered with max(ef, PLAN_POST_OVERSAMPLE * k) / s candidates, so that
 * about ef of them match (the recall of a filtered search of width ef), and
 * tests them.
 */
#define PLAN_GRAPH_VISITS    16.0
#define PLAN_TEST            1.0
#define PLAN_POST_OVERSAMPLE 3.0

static bool match_cb(uint64_t id, void *ctx)
{
    struct replica *r = ((void **)ctx)[0];
    const struct filter *f = ((void **)ctx)[1];
    uint32_t len;
    const uint8_t *blob = attr_peek(r->as, id, &len);
    return filter_match(f, blob, len);
}

/* With the attribute store's read lock: the matching ids, from the indexes when listable. */
static int matching_locked(struct replica *r, const struct filter *f, bool listable,
                           uint64_t **ids, size_t *n)
{
    if (listable) return attr_matching(r->as, f, ids, n);
    uint64_t *all, na;
    *ids = NULL;
    *n = 0;
    if (hnsw_ids(r->idx, &all, &na) != HNSW_OK) return -1;
    size_t w = 0;
    for (uint64_t i = 0; i < na; i++) {
        uint32_t len;
        const uint8_t *blob = attr_peek(r->as, all[i], &len);
        if (filter_match(f, blob, len)) all[w++] = all[i];
    }
    *ids = all;
    *n = w;
    return 0;
}

/* The exact (or scan) plan: distances to every listed match. */
static int run_exact(struct replica *r, const struct replica_query *q, bool listable,
                     struct hnsw_result *hits, uint32_t *n, struct replica_plan *plan, char *herr)
{
    uint64_t *ids;
    size_t nids;
    if (matching_locked(r, q->filter, listable, &ids, &nids)) {
        snprintf(herr, HNSW_ERR_MAX, "out of memory listing matching points");
        return HNSW_ENOMEM;
    }
    plan->scanned = nids;
    int rc = hnsw_search_subset(r->idx, q->vector, q->k, ids, nids, hits, n, herr);
    free(ids);
    return rc;
}

/*
 * The post plan: an unfiltered search of width efp, then its first k
 * matching hits. Fewer than k is not an answer (more may match): *n = 0
 * and *short_ set, so the caller falls back to a plan that finds k.
 */
static int run_post(struct replica *r, const struct replica_query *q, uint32_t efp,
                    struct replica_results *res, uint32_t *n, bool *short_, char *herr)
{
    *short_ = false;
    if (grow((void **)&res->hits, &res->cap_hits, efp, sizeof *res->hits) != 0) {
        snprintf(herr, HNSW_ERR_MAX, "out of memory for %u candidates", efp);
        return HNSW_ENOMEM;
    }
    uint32_t m = 0;
    int rc = hnsw_search(r->idx, q->vector, efp, efp, NULL, NULL, res->hits, &m, herr);
    if (rc) return rc;
    uint32_t w = 0;
    for (uint32_t i = 0; i < m && w < q->k; i++) {
        uint32_t len;
        const uint8_t *blob = attr_peek(r->as, res->hits[i].id, &len);
        if (filter_match(q->filter, blob, len)) res->hits[w++] = res->hits[i];
    }
    *short_ = w < q->k;
    *n = *short_ ? 0 : w;
    return HNSW_OK;
}

/*
 * The filtered search of q into res->hits / *n, with the attribute store's
 * read lock held: plans from the estimate, then searches.
 */
static int search_filtered(struct replica *r, const struct replica_query *q, uint32_t ef,
                           struct replica_results *res, uint32_t *n, struct replica_plan *plan,
                           char *herr)
{
    const struct filter *f = q->filter;
    uint64_t N = hnsw_count(r->idx);
    struct attr_estimate e;
    attr_estimate(r->as, f, N, &e);
    *plan = (struct replica_plan){.points = N, .estimated = (uint64_t)(e.matches + 0.5)};
    *n = 0;
    double s = (e.matches < 1 ? 1 : e.matches) / (N ? (double)N : 1);
    double graph = PLAN_GRAPH_VISITS * ef / s * (1 + PLAN_TEST);
    if (graph > (double)N * (1 + PLAN_TEST)) graph = (double)N * (1 + PLAN_TEST);
    double exact = e.listable ? (double)e.candidates * PLAN_TEST + e.matches
                              : (double)N * PLAN_TEST + e.matches;
    double efp = ceil(fmax(ef, PLAN_POST_OVERSAMPLE * q->k) / s);
    double post = efp <= HNSW_MAX_K && efp <= (double)N
                      ? PLAN_GRAPH_VISITS * efp + efp * PLAN_TEST
                      : INFINITY;
    const char *fallback = exact <= graph ? (e.listable ? "exact" : "scan") : "graph";
    const char *choice = post < (exact <= graph ? exact : graph) ? "post" : fallback;
    if (e.listable && e.candidates == 0) choice = "none";
    if (q->force_plan) choice = q->force_plan;
    plan->plan = choice;
    if (strcmp(choice, "none") == 0) return HNSW_OK;
    if (strcmp(choice, "post") == 0) {
        if (efp > HNSW_MAX_K) efp = HNSW_MAX_K;
        bool short_;
        plan->ef = (uint32_t)efp;
        int rc = run_post(r, q, (uint32_t)efp, res, n, &short_, herr);
        if (rc || !short_) return rc;
        /* Too few matches among the candidates: the plan that finds k. */
        plan->plan = strcmp(fallback, "graph") == 0   ? "post+graph"
                     : strcmp(fallback, "exact") == 0 ? "post+exact"
                                                      : "post+scan";
        choice = fallback;
    }
    if (strcmp(choice, "graph") == 0) {
        void *ctx[2] = {r, (void *)f};
        plan->ef = ef;
        return hnsw_search(r->idx, q->vector, q->k, ef, match_cb, ctx, res->hits, n, herr);
    }
    return run_exact(r, q, strcmp(choice, "exact") == 0 && e.listable, res->hits, n, plan, herr);
}

int replica_search(struct replica *r, const struct replica_query *q, struct replica_results *res,
                   char *err)
{
    const char *field = q->field ? q->field : "query";
    res->n = 0;
    res->nmissing = 0;
    if (!q->vector || q->len != r->dim)
        return replica_fail(err, REPLICA_EDIM, "%s has %u floats, collection dim is %u", field,
                            q->vector ? q->len : 0, r->dim);
    if (q->k == 0 || q->k > HNSW_MAX_K)
        return replica_fail(err, REPLICA_EINVAL, "k must be in 1..%d, got %u", HNSW_MAX_K, q->k);
    uint32_t ef = q->ef ? q->ef : r->cfg.ef_search;
    res->ef_used = 0;
    res->est_recall = 0;
    char terr[HNSW_ERR_MAX];
    if (hnsw_target_recall_check(q->target_recall, q->ef, terr) != HNSW_OK)
        return replica_fail(err, REPLICA_EINVAL, "%s", terr);
    if (q->target_recall > 0) {
        int rc = replica_auto_ef(r, q->k, q->target_recall, &ef, &res->est_recall, err);
        if (rc) return rc;
        res->ef_used = ef;
    }
    if (ef > HNSW_MAX_EF)
        return replica_fail(err, REPLICA_EINVAL, "ef must be at most %d, got %u", HNSW_MAX_EF, ef);
    if (grow((void **)&res->hits, &res->cap_hits, q->k, sizeof *res->hits) != 0 ||
        grow((void **)&res->points, &res->cap_points, q->k, sizeof *res->points) != 0)
        return replica_fail(err, REPLICA_ENOMEM, "out of memory for %u results", q->k);
    char herr[HNSW_ERR_MAX];
    uint32_t n = 0;
    int rc;
    if (q->filter) {
        struct replica_plan local, *plan = q->plan ? q->plan : &local;
        attr_read_lock(r->as);
        rc = search_filtered(r, q, ef < q->k ? q->k : ef, res, &n, plan, herr);
        attr_read_unlock(r->as);
    } else {
        if (q->plan) *q->plan = (struct replica_plan){0};
        rc = hnsw_search(r->idx, q->vector, q->k, ef, NULL, NULL, res->hits, &n, herr);
        if (rc == HNSW_OK) replica_tune_note_query(r, q->vector);
    }
    if (rc == HNSW_EINVAL) {
        /* The engine's message names the component ("query[3] is NaN"); say which query. */
        const char *tail = strncmp(herr, "query", 5) == 0 ? herr + 5 : herr;
        return replica_fail(err, REPLICA_EVALUE, "%s%s", field, tail);
    }
    if (rc)
        return replica_fail(err, replica_engine_code(rc), "search: %s", herr);
    for (uint32_t i = 0; i < n; i++)
        res->points[i] = (struct replica_point){.id = res->hits[i].id, .dist = res->hits[i].dist};
    res->n = n;
    if (!q->with_payload && !q->with_vector && !q->with_attributes)
        return REPLICA_OK;
    fill_lock(r, q->with_payload, q->with_attributes, true);
    rc = fill_points(r, res, q->with_payload, q->with_vector, q->with_attributes, false);
    fill_lock(r, q->with_payload, q->with_attributes, false);
    if (rc) {
        res->n = 0;
        return replica_fail(err, REPLICA_ENOMEM, "out of memory copying results");
    }
    return REPLICA_OK;
}

/* An id with its position in the request, for finding first occurrences. */
struct pos_id {
    uint64_t id;
    uint32_t pos;
};

/* By id, then by position. */
static int cmp_pos_id(const void *a, const void *b)
{
    const struct pos_id *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int replica_get(struct replica *r, const uint64_t *ids, uint32_t n, bool with_payload,
                bool with_vector, bool with_attrs, struct replica_results *res, char *err)
{
    res->n = 0;
    res->nmissing = 0;
    if (n && !ids)
        return replica_fail(err, REPLICA_EINVAL, "ids is missing");
    if (n > r->cfg.max_batch)
        return replica_fail(err, REPLICA_EBATCH_SIZE, "ids has %u entries, the limit is %u", n,
                            r->cfg.max_batch);
    if (n == 0)
        return REPLICA_OK;
    /* Mark repeats: sort (id, position) pairs; only the first position of each id is kept. */
    struct pos_id *s = malloc((size_t)n * sizeof *s);
    uint8_t *dup = calloc(n, 1);
    int rc = REPLICA_OK;
    if (!s || !dup ||
        grow((void **)&res->points, &res->cap_points, n, sizeof *res->points) != 0 ||
        grow((void **)&res->missing, &res->cap_missing, n, sizeof *res->missing) != 0) {
        rc = replica_fail(err, REPLICA_ENOMEM, "out of memory for %u ids", n);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++)
        s[i] = (struct pos_id){ids[i], i};
    qsort(s, n, sizeof *s, cmp_pos_id);
    for (uint32_t i = 1; i < n; i++)
        if (s[i].id == s[i - 1].id)
            dup[s[i].pos] = 1;
    fill_lock(r, with_payload, with_attrs, true);
    for (uint32_t i = 0; i < n; i++) {
        if (dup[i])
            continue;
        if (hnsw_contains(r->idx, ids[i]))
            res->points[res->n++] = (struct replica_point){.id = ids[i]};
        else
            res->missing[res->nmissing++] = ids[i];
    }
    if ((with_payload || with_vector || with_attrs) &&
        fill_points(r, res, with_payload, with_vector, with_attrs, true) != 0) {
        res->n = 0;
        rc = replica_fail(err, REPLICA_ENOMEM, "out of memory copying points");
    }
    fill_lock(r, with_payload, with_attrs, false);
out:
    free(s);
    free(dup);
    return rc;
}

int replica_matching(struct replica *r, const struct filter *f, uint64_t **ids, size_t *n)
{
    attr_read_lock(r->as);
    struct attr_estimate e;
    attr_estimate(r->as, f, hnsw_count(r->idx), &e);
    int rc = matching_locked(r, f, e.listable, ids, n);
    attr_read_unlock(r->as);
    return rc;
}

int replica_count(struct replica *r, const struct filter *filter, uint64_t *count, char *err)
{
    if (!filter) {
        *count = hnsw_count(r->idx);
        return REPLICA_OK;
    }
    uint64_t *ids;
    size_t n;
    if (replica_matching(r, filter, &ids, &n))
        return replica_fail(err, REPLICA_ENOMEM, "out of memory counting matches");
    free(ids);
    *count = n;
    return REPLICA_OK;
}
