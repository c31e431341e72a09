/*
 * distance.c — squared L2 and inner-product kernels, one family per
 * instruction set, and the run-time choice between them.
 *
 * The hot loops keep four independent accumulators so the adds do not wait
 * on each other (one accumulator, as in hnswlib, serialises on the FMA
 * latency: measured ~30% slower at dim 128). AVX-512 finishes any dimension
 * with a masked load instead of a scalar tail. Results differ from the
 * scalar family only by float summation order (tests bound the relative
 * error at 1e-5). The SQ8 kernel is an exact integer dot product of bytes,
 * equal in every family.
 */
#include "common/hnsw/distance.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- scalar */

/* Squared L2, portable C. */
static float l2sq_scalar(const float *a, const float *b, size_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
        float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

/* Inner product, portable C. */
static float dot_scalar(const float *a, const float *b, size_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* 1 - dot, portable C. */
static float ipdist_scalar(const float *a, const float *b, size_t n)
{
    return 1.0f - dot_scalar(a, b, n);
}

/*
 * SQ8 kernel (see hnsw_sq8.c): the exact integer dot product of a query's
 * signed 8-bit weights with a point's unsigned 8-bit code. Every family
 * returns the same value (integer sums are exact), so quantized searches
 * do not depend on the CPU.
 */
static int32_t sq8_dot_scalar(const int8_t *k, const uint8_t *c, size_t n)
{
    int32_t s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += (int32_t)k[i] * c[i];
        s1 += (int32_t)k[i + 1] * c[i + 1];
    }
    if (i < n) s0 += (int32_t)k[i] * c[i];
    return s0 + s1;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* ---------------------------------------------------------------- sse2 */

/* Horizontal sum of a 4-lane vector. */
static inline float hsum128(__m128 v)
{
    __m128 sh = _mm_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1));
    __m128 s = _mm_add_ps(v, sh);
    sh = _mm_movehl_ps(sh, s);
    return _mm_cvtss_f32(_mm_add_ss(s, sh));
}

/* Squared L2, SSE2. */
static float l2sq_sse2(const float *a, const float *b, size_t n)
{
    __m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128 d0 = _mm_sub_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i));
        __m128 d1 = _mm_sub_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4));
        s0 = _mm_add_ps(s0, _mm_mul_ps(d0, d0));
        s1 = _mm_add_ps(s1, _mm_mul_ps(d1, d1));
    }
    for (; i + 4 <= n; i += 4) {
        __m128 d = _mm_sub_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i));
        s0 = _mm_add_ps(s0, _mm_mul_ps(d, d));
    }
    float s = hsum128(_mm_add_ps(s0, s1));
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

/* Inner product, SSE2. */
static float dot_sse2(const float *a, const float *b, size_t n)
{
    __m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
        s1 = _mm_add_ps(s1, _mm_mul_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4)));
    }
    for (; i + 4 <= n; i += 4)
        s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
    float s = hsum128(_mm_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* 1 - dot, SSE2. */
static float ipdist_sse2(const float *a, const float *b, size_t n)
{
    return 1.0f - dot_sse2(a, b, n);
}

/* ---------------------------------------------------------------- avx2 + fma */

/* Horizontal sum of an 8-lane vector. */
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v)
{
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

/* Squared L2, AVX2 + FMA. */
__attribute__((target("avx2,fma"))) static float l2sq_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

/* Inner product, AVX2 + FMA. */
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* 1 - dot, AVX2 + FMA. */
__attribute__((target("avx2,fma"))) static float ipdist_avx2(const float *a, const float *b,
                                                             size_t n)
{
    return 1.0f - dot_avx2(a, b, n);
}

/* SQ8 dot product, AVX2: bytes widened to 16 bits, then multiply-add pairs (exact). */
__attribute__((target("avx2"))) static int32_t sq8_dot_avx2(const int8_t *k, const uint8_t *c,
                                                            size_t n)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(c + i)));
        __m256i k0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(k + i)));
        __m256i c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(c + i + 16)));
        __m256i k1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(k + i + 16)));
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(c0, k0));
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(c1, k1));
    }
    __m256i s = _mm256_add_epi32(s0, s1);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    int32_t r = _mm_cvtsi128_si32(h);
    for (; i < n; i++)
        r += (int32_t)k[i] * c[i];
    return r;
}

/* ---------------------------------------------------------------- avx-512 */

/* Squared L2, AVX-512F; the tail is a masked load. */
__attribute__((target("avx512f"))) static float l2sq_avx512(const float *a, const float *b,
                                                            size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2);
        s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        s2 = _mm512_fmadd_ps(d, d, s2);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* Inner product, AVX-512F; the tail is a masked load. */
__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s1);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s2);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* 1 - dot, AVX-512F. */
__attribute__((target("avx512f"))) static float ipdist_avx512(const float *a, const float *b,
                                                              size_t n)
{
    return 1.0f - dot_avx512(a, b, n);
}

/*
 * SQ8 dot product, AVX-512 VNNI: vpdpbusd multiplies 64 unsigned code bytes
 * by 64 signed weights and adds them into 16 sums in one instruction (each
 * sum of 4 products fits 17 bits, so nothing saturates); the tail is a
 * masked load.
 */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static int32_t
sq8_dot_vnni(const int8_t *k, const uint8_t *c, size_t n)
{
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(c + i), _mm512_loadu_si512(k + i));
        s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(c + i + 64),
                                 _mm512_loadu_si512(k + i + 64));
    }
    for (; i + 64 <= n; i += 64)
        s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(c + i), _mm512_loadu_si512(k + i));
    if (i < n) {
        __mmask64 m = ((__mmask64)1 << (n - i)) - 1;
        s1 = _mm512_dpbusd_epi32(s1, _mm512_maskz_loadu_epi8(m, c + i),
                                 _mm512_maskz_loadu_epi8(m, k + i));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

#elif defined(__aarch64__)
#include <arm_neon.h>

/* ---------------------------------------------------------------- neon */

/* Squared L2, NEON. */
static float l2sq_neon(const float *a, const float *b, size_t n)
{
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t d0 = vsubq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        float32x4_t d1 = vsubq_f32(vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        float32x4_t d2 = vsubq_f32(vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        float32x4_t d3 = vsubq_f32(vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
        s0 = vfmaq_f32(s0, d0, d0);
        s1 = vfmaq_f32(s1, d1, d1);
        s2 = vfmaq_f32(s2, d2, d2);
        s3 = vfmaq_f32(s3, d3, d3);
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t d = vsubq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        s0 = vfmaq_f32(s0, d, d);
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

/* Inner product, NEON. */
static float dot_neon(const float *a, const float *b, size_t n)
{
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4)
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* 1 - dot, NEON. */
static float ipdist_neon(const float *a, const float *b, size_t n)
{
    return 1.0f - dot_neon(a, b, n);
}
#endif

/* ---------------------------------------------------------------- dispatch */

static const struct hnsw_kernel k_scalar = {"scalar", l2sq_scalar, dot_scalar, ipdist_scalar,
                                            sq8_dot_scalar};
#if defined(__x86_64__)
static const struct hnsw_kernel k_sse2 = {"sse2", l2sq_sse2, dot_sse2, ipdist_sse2, sq8_dot_scalar};
static const struct hnsw_kernel k_avx2 = {"avx2", l2sq_avx2, dot_avx2, ipdist_avx2, sq8_dot_avx2};
static const struct hnsw_kernel k_avx512 = {"avx512", l2sq_avx512, dot_avx512, ipdist_avx512,
                                            sq8_dot_avx2};
/* AVX-512 with VNNI: avx512's float kernels, and SQ8 at one instruction per 64 bytes. */
static const struct hnsw_kernel k_avx512vnni = {"avx512vnni", l2sq_avx512, dot_avx512,
                                                ipdist_avx512, sq8_dot_vnni};
#elif defined(__aarch64__)
static const struct hnsw_kernel k_neon = {"neon", l2sq_neon, dot_neon, ipdist_neon, sq8_dot_scalar};
#endif

static const struct hnsw_kernel *supported[5];
static size_t nsupported;
static const struct hnsw_kernel *active;
static pthread_once_t kernel_once = PTHREAD_ONCE_INIT;

/* Lists the supported families and picks the active one. */
static void kernel_init(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni"))
        supported[nsupported++] = &k_avx512vnni;
    if (__builtin_cpu_supports("avx512f")) supported[nsupported++] = &k_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        supported[nsupported++] = &k_avx2;
    supported[nsupported++] = &k_sse2;
#elif defined(__aarch64__)
    supported[nsupported++] = &k_neon;
#endif
    supported[nsupported++] = &k_scalar;
    active = supported[0];
    const char *want = getenv("VECSHARD_KERNEL");
    for (size_t i = 0; want && i < nsupported; i++)
        if (strcmp(want, supported[i]->name) == 0) active = supported[i];
}

size_t hnsw_kernels_supported(const struct hnsw_kernel *const **list)
{
    pthread_once(&kernel_once, kernel_init);
    *list = supported;
    return nsupported;
}

const struct hnsw_kernel *hnsw_kernel_active(void)
{
    pthread_once(&kernel_once, kernel_init);
    return active;
}

const char *hnsw_kernel_name(void)
{
    return hnsw_kernel_active()->name;
}
