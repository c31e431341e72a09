/*
 * dataset.c — vector files, the synthetic generator, exact ground truth and
 * recall for the benchmarks (API and ownership in dataset.h).
 *
 * Files are read straight into one caller-owned block (the row count comes
 * from the file size), so a 100 MB set costs 100 MB, not 200. Writes go to
 * path.tmp and are renamed, so an interrupted `--write` never leaves a
 * half-written cache that the Makefile would take for a finished one.
 *
 * Ground truth is brute force over every (query, base row) pair, so it has to
 * be quick enough for 200k x 1000 in seconds: queries are split across
 * threads, the base is walked in blocks that stay in L2 cache while every
 * query of the thread is compared against them, and each query keeps a
 * bounded max-heap of its k best. The distance loops use 16-float vectors
 * (compiler vector extensions; plain float loops are reductions the compiler
 * will not reorder without -ffast-math); on x86-64 they are compiled for
 * AVX-512, AVX2 and baseline and the variant is picked at run time.
 */
#define _GNU_SOURCE
#include "tools/bench/dataset.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DATASET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DATASET_CLONES
#endif

/* Writes a formatted message into err when err is not NULL; returns status. */
static int fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, DATASET_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* Parses "l2", "ip" or "cosine"; returns -1 if none. */
int dataset_metric_parse(const char *s)
{
    if (!s) return -1;
    if (strcmp(s, "l2") == 0) return DATASET_METRIC_L2;
    if (strcmp(s, "ip") == 0) return DATASET_METRIC_IP;
    if (strcmp(s, "cosine") == 0) return DATASET_METRIC_COSINE;
    return -1;
}

/* The metric's name. */
const char *dataset_metric_name(enum dataset_metric m)
{
    switch (m) {
    case DATASET_METRIC_L2:
        return "l2";
    case DATASET_METRIC_IP:
        return "ip";
    case DATASET_METRIC_COSINE:
        return "cosine";
    }
    return "?";
}

/* Releases m's rows and zeroes it. */
void dataset_matrix_free(struct dataset_matrix *m)
{
    if (!m) return;
    free(m->data);
    memset(m, 0, sizeof(*m));
}

/* Releases ids' rows and zeroes it. */
void dataset_ids_free(struct dataset_ids *ids)
{
    if (!ids) return;
    free(ids->data);
    memset(ids, 0, sizeof(*ids));
}

/* ------------------------------------------------------------ .fvecs / .ivecs */

/*
 * Reads a file of rows "[int32 d][d values of 4 bytes]" into one block of
 * n*d values (what says "fvecs" or "ivecs" in messages). Every row must
 * have the same d.
 */
static int read_vecs(const char *path, const char *what, void **data, size_t *n_out,
                     uint32_t *dim_out, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, DATASET_EIO, "%s: %s", path, strerror(errno));
    int st = DATASET_OK;
    char *buf = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = fail(err, DATASET_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    int32_t d;
    if (sb.st_size < 4 || fread(&d, 4, 1, f) != 1) {
        st = fail(err, DATASET_EFORMAT, "%s: empty or truncated %s file", path, what);
        goto fail;
    }
    if (d <= 0 || d > (1 << 24)) {
        st = fail(err, DATASET_EFORMAT, "%s: first row has dimension %d, not a %s file", path,
                  (int)d, what);
        goto fail;
    }
    size_t row_bytes = 4 + 4 * (size_t)d;
    if ((size_t)sb.st_size % row_bytes != 0) {
        st = fail(err, DATASET_EFORMAT,
                  "%s: size %lld is not a whole number of %zu-byte rows (dimension %d); "
                  "truncated or not a %s file",
                  path, (long long)sb.st_size, row_bytes, (int)d, what);
        goto fail;
    }
    size_t n = (size_t)sb.st_size / row_bytes;
    buf = malloc(n * (size_t)d * 4);
    if (!buf) {
        st = fail(err, DATASET_ENOMEM, "%s: cannot allocate %zu rows of %d", path, n, (int)d);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t di = d;
        if (i > 0 && fread(&di, 4, 1, f) != 1) goto short_read;
        if (di != d) {
            st = fail(err, DATASET_EFORMAT, "%s: row %zu has dimension %d, row 0 has %d", path, i,
                      (int)di, (int)d);
            goto fail;
        }
        if (fread(buf + i * (size_t)d * 4, 4, (size_t)d, f) != (size_t)d) goto short_read;
    }
    fclose(f);
    *data = buf;
    *n_out = n;
    *dim_out = (uint32_t)d;
    return DATASET_OK;
short_read:
    st = fail(err, ferror(f) ? DATASET_EIO : DATASET_EFORMAT, "%s: short read (%s)", path,
              ferror(f) ? strerror(errno) : "truncated");
fail:
    free(buf);
    fclose(f);
    return st;
}

/* Reads an .fvecs file. */
int dataset_read_fvecs(const char *path, struct dataset_matrix *out, char *err)
{
    void *data;
    memset(out, 0, sizeof(*out));
    int st = read_vecs(path, "fvecs", &data, &out->n, &out->dim, err);
    if (st == DATASET_OK) out->data = data;
    return st;
}

/* Reads an .ivecs file. */
int dataset_read_ivecs(const char *path, struct dataset_ids *out, char *err)
{
    void *data;
    memset(out, 0, sizeof(*out));
    int st = read_vecs(path, "ivecs", &data, &out->n, &out->k, err);
    if (st == DATASET_OK) out->data = data;
    return st;
}

/* Writes n rows of d 4-byte values with their int32 dimension, via path.tmp. */
static int write_vecs(const char *path, const void *data, size_t n, uint32_t d, char *err)
{
    if (d == 0 || d > INT32_MAX) return fail(err, DATASET_EINVAL, "%s: dimension %u", path, d);
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return fail(err, DATASET_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return fail(err, DATASET_EIO, "%s: %s", tmp, strerror(errno));
    int32_t d32 = (int32_t)d;
    const char *p = data;
    for (size_t i = 0; i < n; i++) {
        if (fwrite(&d32, 4, 1, f) != 1 || fwrite(p + i * (size_t)d * 4, 4, d, f) != d) {
            int e = errno;
            fclose(f);
            unlink(tmp);
            return fail(err, DATASET_EIO, "%s: %s", tmp, strerror(e));
        }
    }
    if (fclose(f) != 0) {
        int e = errno;
        unlink(tmp);
        return fail(err, DATASET_EIO, "%s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail(err, DATASET_EIO, "rename %s -> %s: %s", tmp, path, strerror(e));
    }
    return DATASET_OK;
}

/* Writes m as .fvecs. */
int dataset_write_fvecs(const char *path, const struct dataset_matrix *m, char *err)
{
    return write_vecs(path, m->data, m->n, m->dim, err);
}

/* Writes ids as .ivecs. */
int dataset_write_ivecs(const char *path, const struct dataset_ids *ids, char *err)
{
    return write_vecs(path, ids->data, ids->n, ids->k, err);
}

/* ------------------------------------------------------------ .npy */

/* Points just past `'key':` (either quote style) in a .npy header, or NULL. */
static const char *npy_value(const char *hdr, const char *key)
{
    char pat[32];
    for (int q = 0; q < 2; q++) {
        snprintf(pat, sizeof(pat), q ? "\"%s\"" : "'%s'", key);
        const char *p = strstr(hdr, pat);
        if (!p) continue;
        p += strlen(pat);
        while (*p == ' ')
            p++;
        if (*p != ':') return NULL;
        p++;
        while (*p == ' ')
            p++;
        return p;
    }
    return NULL;
}

/* Reads a 2-d little-endian float32 C-order .npy file. */
int dataset_read_npy(const char *path, struct dataset_matrix *out, char *err)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, DATASET_EIO, "%s: %s", path, strerror(errno));
    int st = DATASET_OK;
    char *hdr = NULL;
    float *data = NULL;
    unsigned char pre[10];
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = fail(err, DATASET_EFORMAT, "%s: not a .npy file (bad magic)", path);
        goto fail;
    }
    size_t hlen, pre_len;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, f) != 2) goto truncated;
        hlen = pre[8] | (size_t)pre[9] << 8;
        pre_len = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char l[4];
        if (fread(l, 1, 4, f) != 4) goto truncated;
        hlen = l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
        pre_len = 12;
    } else {
        st =
            fail(err, DATASET_EFORMAT, "%s: .npy format version %d is not supported", path, pre[6]);
        goto fail;
    }
    if (hlen == 0 || hlen > (1u << 20)) {
        st = fail(err, DATASET_EFORMAT, "%s: .npy header length %zu is implausible", path, hlen);
        goto fail;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) {
        st = fail(err, DATASET_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (fread(hdr, 1, hlen, f) != hlen) goto truncated;
    hdr[hlen] = 0;

    const char *v = npy_value(hdr, "descr");
    if (!v || (*v != '\'' && *v != '"')) {
        st = fail(err, DATASET_EFORMAT, "%s: .npy header has no 'descr'", path);
        goto fail;
    }
    char descr[16] = {0};
    size_t dl = strcspn(v + 1, "'\"");
    if (dl >= sizeof(descr)) dl = sizeof(descr) - 1;
    memcpy(descr, v + 1, dl);
    if (strcmp(descr, "<f4") != 0) {
        st = fail(err, DATASET_EFORMAT,
                  "%s: dtype is '%s', need little-endian float32 '<f4' "
                  "(convert with a.astype('<f4'))",
                  path, descr);
        goto fail;
    }
    v = npy_value(hdr, "fortran_order");
    if (!v || strncmp(v, "False", 5) != 0) {
        st = fail(err, DATASET_EFORMAT,
                  "%s: array is in Fortran order (or the header says nothing); need C order "
                  "(np.ascontiguousarray)",
                  path);
        goto fail;
    }
    v = npy_value(hdr, "shape");
    if (!v || *v != '(') {
        st = fail(err, DATASET_EFORMAT, "%s: .npy header has no 'shape'", path);
        goto fail;
    }
    unsigned long long dims[3];
    int nd = 0;
    const char *p = v + 1;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(p, &end, 10);
        if (end == p || errno) {
            st = fail(err, DATASET_EFORMAT, "%s: cannot parse the .npy shape", path);
            goto fail;
        }
        if (nd < 3) dims[nd] = x;
        nd++;
        p = end;
    }
    if (nd != 2) {
        st =
            fail(err, DATASET_EFORMAT, "%s: array has %d dimensions, need 2 (rows, dim)", path, nd);
        goto fail;
    }
    if (dims[1] == 0 || dims[1] > (1u << 24) || dims[0] > (1ull << 40)) {
        st = fail(err, DATASET_EFORMAT, "%s: shape (%llu, %llu) is not usable", path, dims[0],
                  dims[1]);
        goto fail;
    }
    size_t n = (size_t)dims[0], d = (size_t)dims[1];
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || (size_t)sb.st_size < pre_len + hlen + n * d * 4) {
        st = fail(err, DATASET_EFORMAT, "%s: file holds fewer than %zu x %zu floats", path, n, d);
        goto fail;
    }
    data = malloc(n * d * 4 + 1);
    if (!data) {
        st = fail(err, DATASET_ENOMEM, "%s: cannot allocate %zu x %zu floats", path, n, d);
        goto fail;
    }
    if (fread(data, 4, n * d, f) != n * d) goto truncated;
    free(hdr);
    fclose(f);
    out->data = data;
    out->n = n;
    out->dim = (uint32_t)d;
    return DATASET_OK;
truncated:
    st = fail(err, DATASET_EFORMAT, "%s: truncated .npy file", path);
fail:
    free(hdr);
    free(data);
    fclose(f);
    return st;
}

/* Reads vectors by extension. */
int dataset_read_vectors(const char *path, struct dataset_matrix *out, char *err)
{
    size_t l = strlen(path);
    if (l >= 4 && strcmp(path + l - 4, ".npy") == 0) return dataset_read_npy(path, out, err);
    return dataset_read_fvecs(path, out, err);
}

/* ------------------------------------------------------------ synthetic data */

/* xoshiro256** state, seeded through splitmix64. */
struct rng {
    uint64_t s[4];
    bool have_spare;
    double spare;
};

/* One splitmix64 step (seeds the generator). */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Seeds stream `stream` of seed: distinct streams are independent. */
static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    r->have_spare = false;
}

/* Rotates x left by k bits. */
static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Next 64 random bits (xoshiro256**). */
static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal deviate (Marsaglia's polar method, second value cached). */
static double rng_gauss(struct rng *r)
{
    if (r->have_spare) {
        r->have_spare = false;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * rng_uniform(r) - 1.0;
        v = 2.0 * rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = sqrt(-2.0 * log(s) / s);
    r->spare = v * m;
    r->have_spare = true;
    return u * m;
}

/*
 * Noise spread relative to the centre spacing. Centres uniform in [0,1)^d are
 * sqrt(d/6) apart on average; a point lies sigma*sqrt(d) from its own centre.
 * At sigma = 0.3 (scaled 0.75..1.25 per cluster) a point is ~0.73 of the
 * centre spacing from its centre, so clouds of neighbouring clusters
 * interpenetrate and near neighbours of points at a cluster's rim come from
 * several clusters, while points well inside a cluster still have their
 * neighbours there: structured like real embeddings, not separable.
 */
#define SYNTH_SIGMA 0.3

/* Generation state shared by the base and the query stream. */
struct synth_model {
    uint32_t dim, clusters;
    float *centres; /* clusters x dim */
    double *cum;    /* cumulative cluster weights, cum[clusters-1] = total */
    double *sigma;  /* per-cluster noise spread */
};

/* Fills rows [0, n) of out with points of the model drawn from r. */
static void synth_fill(const struct synth_model *m, struct rng *r, float *out, size_t n)
{
    double total = m->cum[m->clusters - 1];
    for (size_t i = 0; i < n; i++) {
        double u = rng_uniform(r) * total;
        uint32_t lo = 0, hi = m->clusters - 1;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (m->cum[mid] > u)
                hi = mid;
            else
                lo = mid + 1;
        }
        const float *c = m->centres + (size_t)lo * m->dim;
        float *row = out + i * m->dim;
        for (uint32_t j = 0; j < m->dim; j++)
            row[j] = (float)(c[j] + m->sigma[lo] * rng_gauss(r));
    }
}

/* Generates base and query points (see dataset.h). */
int dataset_synthetic(size_t n_base, size_t n_query, uint32_t dim, uint32_t clusters, uint64_t seed,
                      struct dataset_matrix *base, struct dataset_matrix *query, char *err)
{
    memset(base, 0, sizeof(*base));
    memset(query, 0, sizeof(*query));
    if (n_base == 0) return fail(err, DATASET_EINVAL, "synthetic: N must be at least 1");
    if (dim == 0 || dim > 65536)
        return fail(err, DATASET_EINVAL, "synthetic: DIM %u not in 1..65536", dim);
    if (clusters == 0 || clusters > n_base)
        return fail(err, DATASET_EINVAL, "synthetic: CLUSTERS %u not in 1..N", clusters);
    if (n_base > SIZE_MAX / 4 / dim || n_query > SIZE_MAX / 4 / dim)
        return fail(err, DATASET_EINVAL, "synthetic: N x DIM too large");

    struct synth_model m = {dim, clusters, NULL, NULL, NULL};
    m.centres = malloc((size_t)clusters * dim * sizeof(float));
    m.cum = malloc(clusters * sizeof(double));
    m.sigma = malloc(clusters * sizeof(double));
    base->data = malloc(n_base * dim * sizeof(float));
    query->data = malloc((n_query ? n_query : 1) * dim * sizeof(float));
    if (!m.centres || !m.cum || !m.sigma || !base->data || !query->data) {
        free(m.centres);
        free(m.cum);
        free(m.sigma);
        dataset_matrix_free(base);
        dataset_matrix_free(query);
        return fail(err, DATASET_ENOMEM, "synthetic: cannot allocate %zu + %zu x %u floats", n_base,
                    n_query, dim);
    }

    struct rng r;
    rng_seed(&r, seed, 0);
    double total = 0;
    for (uint32_t c = 0; c < clusters; c++) {
        for (uint32_t j = 0; j < dim; j++)
            m.centres[(size_t)c * dim + j] = (float)rng_uniform(&r);
        /* Uneven sizes (weights 0.25..1.75) and spreads, as real clusters have. */
        total += 0.25 + 1.5 * rng_uniform(&r);
        m.cum[c] = total;
        m.sigma[c] = SYNTH_SIGMA * (0.75 + 0.5 * rng_uniform(&r));
    }
    rng_seed(&r, seed, 1);
    synth_fill(&m, &r, base->data, n_base);
    rng_seed(&r, seed, 2);
    synth_fill(&m, &r, query->data, n_query);

    free(m.centres);
    free(m.cum);
    free(m.sigma);
    base->n = n_base;
    base->dim = dim;
    query->n = n_query;
    query->dim = dim;
    return DATASET_OK;
}

/* Scales every row of m to unit length. */
void dataset_normalize(struct dataset_matrix *m)
{
    for (size_t i = 0; i < m->n; i++) {
        float *row = m->data + i * m->dim;
        double s = 0;
        for (uint32_t j = 0; j < m->dim; j++)
            s += (double)row[j] * row[j];
        if (s == 0) continue;
        float inv = (float)(1.0 / sqrt(s));
        for (uint32_t j = 0; j < m->dim; j++)
            row[j] *= inv;
    }
}

/* ------------------------------------------------------------ ground truth */

/*
 * 16-float vectors in GCC/clang vector syntax: one AVX-512 register, two AVX2
 * or four SSE2 registers, whichever the clone is compiled for. Written out
 * because plain float loops are reductions the compiler may not reorder.
 */
typedef float gt_v16 __attribute__((vector_size(64)));

/*
 * Unaligned load of 16 floats into v, and the sum of v's lanes. Macros, not
 * functions: a 64-byte vector crossing a call boundary in the baseline build
 * changes the ABI (-Wpsabi).
 */
#define GT_LOAD(v, p) memcpy(&(v), (p), sizeof(gt_v16))
#define GT_HSUM(s, v)                                                                              \
    do {                                                                                           \
        float lanes_[16];                                                                          \
        memcpy(lanes_, &(v), sizeof(lanes_));                                                      \
        for (int l_ = 0; l_ < 16; l_++)                                                            \
            (s) += lanes_[l_];                                                                     \
    } while (0)

/* Squared L2 distance (two accumulators to hide the add latency). */
static inline __attribute__((always_inline)) float gt_l2(const float *a, const float *b,
                                                         uint32_t dim)
{
    gt_v16 acc0 = {0}, acc1 = {0}, x0, y0, x1, y1;
    uint32_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        GT_LOAD(x0, a + j);
        GT_LOAD(y0, b + j);
        GT_LOAD(x1, a + j + 16);
        GT_LOAD(y1, b + j + 16);
        x0 -= y0;
        x1 -= y1;
        acc0 += x0 * x0;
        acc1 += x1 * x1;
    }
    if (j + 16 <= dim) {
        GT_LOAD(x0, a + j);
        GT_LOAD(y0, b + j);
        x0 -= y0;
        acc0 += x0 * x0;
        j += 16;
    }
    acc0 += acc1;
    float s = 0;
    GT_HSUM(s, acc0);
    for (; j < dim; j++)
        s += (a[j] - b[j]) * (a[j] - b[j]);
    return s;
}

/* Dot product (two accumulators). */
static inline __attribute__((always_inline)) float gt_dot(const float *a, const float *b,
                                                          uint32_t dim)
{
    gt_v16 acc0 = {0}, acc1 = {0}, x0, y0, x1, y1;
    uint32_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        GT_LOAD(x0, a + j);
        GT_LOAD(y0, b + j);
        GT_LOAD(x1, a + j + 16);
        GT_LOAD(y1, b + j + 16);
        acc0 += x0 * y0;
        acc1 += x1 * y1;
    }
    if (j + 16 <= dim) {
        GT_LOAD(x0, a + j);
        GT_LOAD(y0, b + j);
        acc0 += x0 * y0;
        j += 16;
    }
    acc0 += acc1;
    float s = 0;
    GT_HSUM(s, acc0);
    for (; j < dim; j++)
        s += a[j] * b[j];
    return s;
}

/* Distances from q to nrows consecutive rows: squared L2, or 1 - dot. */
DATASET_CLONES
static void gt_block_distances(const float *q, const float *rows, size_t nrows, uint32_t dim,
                               bool l2, float *out)
{
    if (l2)
        for (size_t r = 0; r < nrows; r++)
            out[r] = gt_l2(q, rows + r * dim, dim);
    else
        for (size_t r = 0; r < nrows; r++)
            out[r] = 1.0f - gt_dot(q, rows + r * dim, dim);
}

/* Work shared by the ground-truth threads; each owns queries [q0, q1). */
struct gt_job {
    const float *base, *query;
    size_t n_base;
    uint32_t dim, k;
    bool l2;
    float *heap_dist; /* n_query x k, a max-heap per query */
    int32_t *heap_id; /* n_query x k */
    uint32_t *heap_len;
    size_t q0, q1;
    float *scratch; /* GT_BLOCK floats owned by this thread */
};

/* Base rows per block: sized so a block stays in L2 cache (~256 KiB). */
static size_t gt_block_rows(uint32_t dim)
{
    size_t r = (256u * 1024u) / (4u * (size_t)dim);
    return r < 16 ? 16 : r;
}

/* True if (da, ia) is farther than (db, ib): larger distance, ties by larger row. */
static inline bool gt_after(float da, int32_t ia, float db, int32_t ib)
{
    return da > db || (da == db && ia > ib);
}

/* Offers (d, id) to a max-heap of at most k entries. */
static void gt_heap_offer(float *hd, int32_t *hi, uint32_t *len, uint32_t k, float d, int32_t id)
{
    uint32_t i;
    if (*len < k) {
        i = (*len)++;
        while (i > 0) {
            uint32_t p = (i - 1) / 2;
            if (!gt_after(d, id, hd[p], hi[p])) break;
            hd[i] = hd[p];
            hi[i] = hi[p];
            i = p;
        }
        hd[i] = d;
        hi[i] = id;
        return;
    }
    if (!gt_after(hd[0], hi[0], d, id)) return;
    i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && gt_after(hd[c + 1], hi[c + 1], hd[c], hi[c])) c++;
        if (!gt_after(hd[c], hi[c], d, id)) break;
        hd[i] = hd[c];
        hi[i] = hi[c];
        i = c;
    }
    hd[i] = d;
    hi[i] = id;
}

/* Thread body: every base block against every query of the job's range. */
static void *gt_worker(void *arg)
{
    struct gt_job *j = arg;
    size_t block = gt_block_rows(j->dim);
    for (size_t b0 = 0; b0 < j->n_base; b0 += block) {
        size_t nb = j->n_base - b0 < block ? j->n_base - b0 : block;
        const float *rows = j->base + b0 * j->dim;
        for (size_t q = j->q0; q < j->q1; q++) {
            float *hd = j->heap_dist + q * j->k;
            int32_t *hi = j->heap_id + q * j->k;
            uint32_t *len = &j->heap_len[q];
            gt_block_distances(j->query + q * j->dim, rows, nb, j->dim, j->l2, j->scratch);
            for (size_t r = 0; r < nb; r++)
                if (*len < j->k || j->scratch[r] <= hd[0])
                    gt_heap_offer(hd, hi, len, j->k, j->scratch[r], (int32_t)(b0 + r));
        }
    }
    return NULL;
}

/* Sorts one query's heap closest first (heap-sort in place). */
static void gt_heap_sort(float *hd, int32_t *hi, uint32_t len)
{
    while (len > 1) {
        float d = hd[len - 1];
        int32_t id = hi[len - 1];
        hd[len - 1] = hd[0];
        hi[len - 1] = hi[0];
        len--;
        uint32_t i = 0;
        for (;;) {
            uint32_t c = 2 * i + 1;
            if (c >= len) break;
            if (c + 1 < len && gt_after(hd[c + 1], hi[c + 1], hd[c], hi[c])) c++;
            if (!gt_after(hd[c], hi[c], d, id)) break;
            hd[i] = hd[c];
            hi[i] = hi[c];
            i = c;
        }
        hd[i] = d;
        hi[i] = id;
    }
}

/* Copies m, normalising the copy's rows. */
static int normalized_copy(const struct dataset_matrix *m, struct dataset_matrix *out, char *err)
{
    out->data = malloc(m->n * m->dim * sizeof(float) + 1);
    if (!out->data) return fail(err, DATASET_ENOMEM, "ground truth: out of memory");
    memcpy(out->data, m->data, m->n * m->dim * sizeof(float));
    out->n = m->n;
    out->dim = m->dim;
    dataset_normalize(out);
    return DATASET_OK;
}

/* Exact top-k by brute force (see dataset.h). */
int dataset_ground_truth(const struct dataset_matrix *base, const struct dataset_matrix *query,
                         enum dataset_metric metric, uint32_t k, int threads,
                         struct dataset_ids *out, char *err)
{
    memset(out, 0, sizeof(*out));
    if (base->dim != query->dim)
        return fail(err, DATASET_EINVAL, "ground truth: base dim %u != query dim %u", base->dim,
                    query->dim);
    if (k == 0 || k > base->n)
        return fail(err, DATASET_EINVAL, "ground truth: k %u not in 1..%zu (base rows)", k,
                    base->n);
    if (base->n > INT32_MAX)
        return fail(err, DATASET_EINVAL, "ground truth: %zu base rows exceed int32 ids", base->n);
    if (threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c > 0 ? (int)c : 1;
    }
    if ((size_t)threads > query->n) threads = query->n ? (int)query->n : 1;

    int st = DATASET_OK;
    struct dataset_matrix nb = {0}, nq = {0};
    float *heap_dist = malloc(query->n * k * sizeof(float) + 1);
    int32_t *heap_id = malloc(query->n * k * sizeof(int32_t) + 1);
    uint32_t *heap_len = calloc(query->n + 1, sizeof(uint32_t));
    struct gt_job *jobs = calloc((size_t)threads, sizeof(*jobs));
    pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
    bool *started = calloc((size_t)threads, sizeof(*started));
    float *scratch = malloc((size_t)threads * gt_block_rows(base->dim) * sizeof(float));
    if (!heap_dist || !heap_id || !heap_len || !jobs || !tids || !started || !scratch) {
        st = fail(err, DATASET_ENOMEM, "ground truth: out of memory");
        goto done;
    }
    const float *bdata = base->data, *qdata = query->data;
    if (metric == DATASET_METRIC_COSINE) {
        if ((st = normalized_copy(base, &nb, err)) != DATASET_OK) goto done;
        if ((st = normalized_copy(query, &nq, err)) != DATASET_OK) goto done;
        bdata = nb.data;
        qdata = nq.data;
    }
    for (int t = 0; t < threads; t++) {
        struct gt_job *j = &jobs[t];
        j->base = bdata;
        j->query = qdata;
        j->n_base = base->n;
        j->dim = base->dim;
        j->k = k;
        j->l2 = metric == DATASET_METRIC_L2;
        j->heap_dist = heap_dist;
        j->heap_id = heap_id;
        j->heap_len = heap_len;
        j->q0 = query->n * (size_t)t / (size_t)threads;
        j->q1 = query->n * (size_t)(t + 1) / (size_t)threads;
        j->scratch = scratch + (size_t)t * gt_block_rows(base->dim);
    }
    /* Job 0 runs here; a thread that cannot be started runs here too. */
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tids[t], NULL, gt_worker, &jobs[t]) == 0;
    gt_worker(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            gt_worker(&jobs[t]);
    }
    for (size_t q = 0; q < query->n; q++)
        gt_heap_sort(heap_dist + q * k, heap_id + q * k, heap_len[q]);
    out->data = heap_id;
    heap_id = NULL;
    out->n = query->n;
    out->k = k;
done:
    dataset_matrix_free(&nb);
    dataset_matrix_free(&nq);
    free(heap_dist);
    free(heap_id);
    free(heap_len);
    free(jobs);
    free(tids);
    free(started);
    free(scratch);
    return st;
}

/* Recall@k of one query's results against its ground-truth row. */
double dataset_recall(const int32_t *gt_row, uint32_t k, const uint64_t *result_ids, uint32_t n)
{
    if (k == 0) return 1.0;
    uint32_t hit = 0;
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < n; j++)
            if (gt_row[i] >= 0 && result_ids[j] == (uint64_t)gt_row[i]) {
                hit++;
                break;
            }
    return (double)hit / k;
}
