/*
 * hnsw_tune.c — automatic ef: an ef -> recall@k curve measured on the
 * index's own points, and the choice of the smallest ef that reaches a
 * target recall.
 *
 * The sample queries are stored points, each searched as if it were not in
 * the graph (leave-one-out: hnsw_search_hiding never visits it, so its own
 * links, which are its near neighbours, give it no head start) and scored
 * against the exact top k of the other points. That is what a new query
 * of the data's distribution sees; querying a stored point as it is
 * over-estimates recall badly (measured: 0.92 estimated for 0.68 real at
 * ef 10 on uniform 16-d data). Hiding errs the other way, by 0.01-0.03 of
 * recall (the graph was pruned with the point present, so its neighbours
 * lack some links that a graph built without it would have), so the
 * estimate is conservative. The ladder grows by x1.2 per step; the pick
 * interpolates between the two steps around the target.
 */
#include "common/hnsw/hnsw_internal.h"
#include "common/util/hash.h"

#include <math.h>
#include <stdlib.h>

/* The sample's random stream: splitmix64 outputs of a counter. */
static uint64_t next_rand(uint64_t *s)
{
    return hash_id64((*s)++);
}

/* Copies res[0..n) to out without `self`, keeping at most k; returns how many. */
static uint32_t drop_self(const struct hnsw_result *res, uint32_t n, uint64_t self, uint32_t k,
                          uint64_t *out)
{
    uint32_t m = 0;
    for (uint32_t i = 0; i < n && m < k; i++)
        if (res[i].id != self) out[m++] = res[i].id;
    return m;
}

int hnsw_calibrate(struct hnsw_index *idx, uint32_t k, const float *queries, uint32_t nqueries,
                   uint32_t nsample, uint32_t max_ef, uint64_t seed,
                   struct hnsw_recall_curve *out, char *err)
{
    memset(out, 0, sizeof *out);
    out->k = k;
    if (k < 1 || k >= HNSW_MAX_K)
        return hnsw_fail(err, HNSW_EINVAL, "k must be in 1..%d, got %u", HNSW_MAX_K - 1, k);
    if (max_ef > HNSW_MAX_EF - 1) max_ef = HNSW_MAX_EF - 1;
    if (max_ef < k) max_ef = k;
    /* The ladder: k, then x1.2 (at least +1) while at most max_ef. */
    for (uint32_t e = k; e <= max_ef && out->n < HNSW_CURVE_MAX;) {
        out->ef[out->n++] = e;
        uint32_t next = e + (e + 4) / 5;
        e = next > e ? next : e + 1;
    }
    uint64_t live = hnsw_count(idx);
    out->count = live;
    if (queries && nqueries) nsample = nqueries;
    else if (nsample > live) nsample = (uint32_t)live;
    out->past_queries = queries && nqueries;
    if (nsample == 0) {
        for (uint32_t i = 0; i < out->n; i++)
            out->recall[i] = 1.0;
        return HNSW_OK;
    }
    size_t kk = (size_t)k + 1;
    struct hnsw_result *res = malloc(kk * sizeof *res);
    uint64_t *truth = malloc((size_t)nsample * k * sizeof *truth), *got = malloc(k * sizeof *got);
    uint32_t *ntruth = malloc(nsample * sizeof *ntruth);
    float *q = malloc((size_t)nsample * idx->dim * sizeof *q);
    uint64_t *self = malloc(nsample * sizeof *self);
    uint32_t *slot = malloc(nsample * sizeof *slot);
    uint64_t *hits = calloc(out->n, sizeof *hits);
    int rc = HNSW_OK;
    if (!res || !truth || !got || !ntruth || !q || !self || !slot || !hits) {
        rc = hnsw_fail(err, HNSW_ENOMEM, "out of memory for calibration");
        goto done;
    }
    /* Past queries as they are, or random live slots, each to be hidden from its search. */
    uint64_t rs = seed;
    uint32_t nq = 0, nslots = atomic_load(&idx->nslots);
    uint32_t ep;
    int top;
    hnsw_entry_get(idx, &ep, &top);
    if (out->past_queries) {
        for (; nq < nsample; nq++) {
            slot[nq] = HNSW_NO_SLOT;
            self[nq] = UINT64_MAX;
            hnsw_prepare_vector(idx, queries + (size_t)nq * idx->dim, q + (size_t)nq * idx->dim);
        }
    }
    for (uint64_t tries = 0; nq < nsample && tries < 64ull * nsample + nslots; tries++) {
        uint32_t s = (uint32_t)(next_rand(&rs) % nslots);
        if (hnsw_flags(idx, s) != 0 || s == ep) continue; /* the entry point cannot be hidden */
        slot[nq] = s;
        self[nq] = *hnsw_idp(idx, hnsw_elem(idx, s));
        memcpy(q + (size_t)nq * idx->dim, hnsw_vec(idx, s), idx->dim * sizeof *q);
        nq++;
    }
    out->queries = nq;
    for (uint32_t i = 0; i < nq && rc == HNSW_OK; i++) {
        uint32_t n;
        rc = hnsw_search_exact(idx, q + (size_t)i * idx->dim, (uint32_t)kk, NULL, NULL, res, &n,
                               err);
        ntruth[i] = drop_self(res, n, self[i], k, truth + (size_t)i * k);
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < nq; i++)
        total += ntruth[i];
    for (uint32_t e = 0; e < out->n && rc == HNSW_OK; e++) {
        for (uint32_t i = 0; i < nq && rc == HNSW_OK; i++) {
            uint32_t n;
            rc = hnsw_search_hiding(idx, q + (size_t)i * idx->dim, k, out->ef[e], slot[i], res,
                                    &n, err);
            uint32_t m = drop_self(res, n, self[i], k, got);
            const uint64_t *t = truth + (size_t)i * k;
            for (uint32_t a = 0; a < ntruth[i]; a++)
                for (uint32_t b = 0; b < m; b++)
                    if (got[b] == t[a]) {
                        hits[e]++;
                        break;
                    }
        }
        out->recall[e] = total ? (double)hits[e] / (double)total : 1.0;
        if (out->recall[e] >= 1.0) {
            out->n = e + 1; /* wider searches cannot do better */
            break;
        }
    }
done:
    free(res);
    free(truth);
    free(got);
    free(ntruth);
    free(q);
    free(self);
    free(slot);
    free(hits);
    return rc;
}

int hnsw_target_recall_check(float target, uint32_t ef, char *err)
{
    if (target != 0 && !(target > 0 && target <= 1))
        return hnsw_fail(err, HNSW_EINVAL, "target_recall is %g, must be in (0, 1] (0 = unset)",
                         (double)target);
    if (target > 0 && ef != 0)
        return hnsw_fail(err, HNSW_EINVAL, "set ef or target_recall, not both (ef is %u)", ef);
    return HNSW_OK;
}

uint32_t hnsw_curve_pick(const struct hnsw_recall_curve *c, double target, double *est)
{
    if (c->n == 0) {
        *est = 0;
        return c->k;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->recall[i] < target) continue;
        if (i == 0 || c->recall[i] <= c->recall[i - 1]) {
            *est = c->recall[i];
            return c->ef[i];
        }
        /* Between two ladder steps: the width where the line between them crosses the target. */
        double f = (target - c->recall[i - 1]) / (c->recall[i] - c->recall[i - 1]);
        uint32_t ef = c->ef[i - 1] + (uint32_t)ceil(f * (c->ef[i] - c->ef[i - 1]));
        *est = target;
        return ef > c->ef[i] ? c->ef[i] : ef;
    }
    *est = c->recall[c->n - 1];
    return c->ef[c->n - 1];
}
