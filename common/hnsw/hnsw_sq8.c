/*
 * hnsw_sq8.c — SQ8 scalar quantization: training, encoding and the query's
 * code form.
 *
 * Each dimension i gets an offset min[i] and a step scale[i] = (max[i] -
 * min[i]) / 255 from the stored vectors, and a vector is stored a second
 * time as one byte per dimension, round((x[i] - min[i]) / scale[i]),
 * clamped to 0..255 (values outside the trained range saturate). The graph
 * is then walked on codes, 4x fewer bytes per distance than floats, and
 * hnsw_search re-ranks the candidates it keeps with the float vectors.
 *
 * Distances. The query stays in floats and is turned into one signed byte
 * per dimension of weights, so a distance is one exact integer dot product
 * of bytes (distance.c; AVX-512 VNNI does 64 dimensions per instruction)
 * plus two floats. With a[i] = q[i] - min[i] and w[i] = a[i] scale[i]
 * (l2) or q[i] scale[i] (ip, cosine), quantized as w[i] ~ t k[i]:
 *   l2      sum (a[i] - scale[i] c[i])^2 = sum a^2 + |scale c|^2 - 2 t sum k c
 *   ip/cos  1 - sum q[i] x[i]           = 1 - sum q min - t sum k c
 * |scale c|^2 is stored after the code. The weights carry a relative error
 * of at most 1/254 of the largest; the search re-ranks its candidates on
 * floats, so only the traversal sees either error.
 *
 * When: an index trains once HNSW_SQ8_TRAIN_MIN slots are in use (until
 * then it searches floats), again whenever its slots have doubled since,
 * at every hnsw_write (a snapshot) when the data's range has moved, and on
 * load. Training takes the mutation lock exclusively, so no insert writes a
 * code meanwhile; searches keep running and one that overlaps a re-training
 * may compare its query with a mix of old and new codes, which can cost it
 * recall but never a wrong distance in its results (those are re-ranked on
 * floats).
 */
#include "common/hnsw/hnsw_internal.h"

#include <math.h>
#include <stdlib.h>

/* Codes x under sq into code (dim bytes, then the norm at norm_off). */
static void encode(const struct hnsw_index *idx, const struct hnsw_sq8 *sq, const float *x,
                   uint8_t *code)
{
    double norm = 0;
    for (uint32_t i = 0; i < idx->dim; i++) {
        float t = sq->scale[i] > 0 ? (x[i] - sq->min[i]) / sq->scale[i] : 0.0f;
        code[i] = t <= 0 ? 0 : t >= 255 ? 255 : (uint8_t)lrintf(t);
        double v = (double)sq->scale[i] * code[i];
        norm += v * v;
    }
    float n = (float)norm;
    memcpy(code + idx->norm_off, &n, sizeof n);
}

void hnsw_sq8_encode_slot(struct hnsw_index *idx, uint32_t s)
{
    struct hnsw_sq8 *sq = atomic_load_explicit(&idx->sq, memory_order_acquire);
    if (sq) encode(idx, sq, hnsw_vec(idx, s), hnsw_code(idx, s));
}

bool hnsw_sq8_code_ok(struct hnsw_index *idx, uint32_t s, uint8_t *buf)
{
    struct hnsw_sq8 *sq = atomic_load_explicit(&idx->sq, memory_order_acquire);
    if (!sq) return true;
    encode(idx, sq, hnsw_vec(idx, s), buf);
    return memcmp(buf, hnsw_code(idx, s), idx->norm_off + sizeof(float)) == 0;
}

void hnsw_query_prepare(const struct hnsw_index *idx, const float *q, int8_t *buf,
                        struct hnsw_query *out)
{
    memset(out, 0, sizeof *out);
    out->v = q;
    if (!buf) return;
    const struct hnsw_sq8 *sq =
        atomic_load_explicit(&((struct hnsw_index *)idx)->sq, memory_order_acquire);
    if (!sq) return;
    bool l2 = idx->metric == HNSW_METRIC_L2;
    double c = 0;
    float wmax = 0;
    for (uint32_t i = 0; i < idx->dim; i++) {
        float a = q[i] - sq->min[i];
        float w = (l2 ? a : q[i]) * sq->scale[i];
        if (fabsf(w) > wmax) wmax = fabsf(w);
        c += l2 ? (double)a * a : (double)q[i] * sq->min[i];
    }
    float t = wmax > 0 ? wmax / 127.0f : 1.0f;
    for (uint32_t i = 0; i < idx->dim; i++) {
        float w = ((l2 ? q[i] - sq->min[i] : q[i]) * sq->scale[i]) / t;
        long r = lrintf(w);
        buf[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    out->sq = sq;
    out->k = buf;
    out->t = t;
    out->c0 = l2 ? (float)c : (float)(1.0 - c);
}

bool hnsw_sq8_due(struct hnsw_index *idx, size_t more)
{
    if (idx->quant != HNSW_QUANT_SQ8) return false;
    uint64_t used = atomic_load_explicit(&idx->nslots, memory_order_acquire);
    used = used - __atomic_load_n(&idx->nfree, __ATOMIC_RELAXED) + more;
    struct hnsw_sq8 *sq = atomic_load_explicit(&idx->sq, memory_order_acquire);
    if (!sq) return used >= HNSW_SQ8_TRAIN_MIN;
    return used >= 2 * sq->trained_on;
}

/* Widens [lo, hi] per dimension to include x. */
static void extend(uint32_t dim, const float *x, float *lo, float *hi)
{
    for (uint32_t i = 0; i < dim; i++) {
        if (x[i] < lo[i]) lo[i] = x[i];
        if (x[i] > hi[i]) hi[i] = x[i];
    }
}

int hnsw_sq8_train(struct hnsw_index *idx, const float *extra, size_t n)
{
    if (idx->quant != HNSW_QUANT_SQ8) return HNSW_OK;
    uint32_t dim = idx->dim, nslots = atomic_load(&idx->nslots);
    struct hnsw_sq8 *old = atomic_load(&idx->sq);
    struct hnsw_sq8 *sq = calloc(1, sizeof *sq);
    float *tmp = malloc(dim * sizeof *tmp);
    if (sq) {
        sq->min = malloc(dim * sizeof(float));
        sq->scale = malloc(dim * sizeof(float));
    }
    if (!sq || !tmp || !sq->min || !sq->scale) {
        if (sq) {
            free(sq->min);
            free(sq->scale);
        }
        free(sq);
        free(tmp);
        return HNSW_ENOMEM;
    }
    float *hi = sq->scale; /* max, until turned into the step below */
    for (uint32_t i = 0; i < dim; i++) {
        sq->min[i] = INFINITY;
        hi[i] = -INFINITY;
    }
    uint64_t used = 0;
    for (uint32_t s = 0; s < nslots; s++) {
        if (hnsw_flags(idx, s) & HNSW_FLAG_FREE) continue;
        extend(dim, hnsw_vec(idx, s), sq->min, hi);
        used++;
    }
    for (size_t r = 0; r < n; r++) {
        hnsw_prepare_vector(idx, extra + r * dim, tmp);
        extend(dim, tmp, sq->min, hi);
        used++;
    }
    free(tmp);
    for (uint32_t i = 0; i < dim; i++) {
        if (sq->min[i] > hi[i]) sq->min[i] = hi[i] = 0; /* no data */
        hi[i] = (hi[i] - sq->min[i]) / 255.0f;
    }
    sq->trained_on = used;
    if (old && memcmp(old->min, sq->min, dim * sizeof(float)) == 0 &&
        memcmp(old->scale, sq->scale, dim * sizeof(float)) == 0) {
        /* The same range: the codes are already right. */
        old->trained_on = used;
        free(sq->min);
        free(sq->scale);
        free(sq);
        return HNSW_OK;
    }
    for (uint32_t s = 0; s < nslots; s++)
        if (!(hnsw_flags(idx, s) & HNSW_FLAG_FREE)) encode(idx, sq, hnsw_vec(idx, s), hnsw_code(idx, s));
    sq->prev = old;
    atomic_store_explicit(&idx->sq, sq, memory_order_release);
    return HNSW_OK;
}

void hnsw_sq8_train_if_due(struct hnsw_index *idx, const float *extra, size_t n)
{
    if (!hnsw_sq8_due(idx, n)) return;
    pthread_rwlock_wrlock(&idx->mutation_lock);
    if (hnsw_sq8_due(idx, n)) hnsw_sq8_train(idx, extra, n); /* ENOMEM: keep the old codes */
    pthread_rwlock_unlock(&idx->mutation_lock);
}

void hnsw_sq8_free(struct hnsw_index *idx)
{
    struct hnsw_sq8 *sq = atomic_load(&idx->sq);
    while (sq) {
        struct hnsw_sq8 *prev = sq->prev;
        free(sq->min);
        free(sq->scale);
        free(sq);
        sq = prev;
    }
    atomic_store(&idx->sq, NULL);
}
