/*
 * test_distance.c — every kernel family this CPU runs agrees with a
 * double-precision reference to a relative error of 1e-5, for every
 * dimension 1..130 and for 768, 1536 and 2048.
 */
#include "common/hnsw/distance.h"
#include "tests/unit/hnsw/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Compares one family against the reference at dimension n. */
static void check_dim(const struct hnsw_kernel *k, const float *a, const float *b, size_t n)
{
    double l2 = 0, dot = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        l2 += d * d;
        dot += (double)a[i] * b[i];
        mag += fabs((double)a[i] * b[i]);
    }
    double el2 = fabs(k->l2sq(a, b, n) - l2) / (l2 > 0 ? l2 : 1);
    /* A dot product's error is relative to the magnitude of its terms. */
    double edot = fabs(k->dot(a, b, n) - dot) / (mag > 0 ? mag : 1);
    double eip = fabs(k->ipdist(a, b, n) - (1.0 - dot)) / (mag > 1 ? mag : 1);
    if (el2 > 1e-5 || edot > 1e-5 || eip > 1e-5)
        fprintf(stderr, "\n%s dim %zu: l2 err %g dot err %g ip err %g\n", k->name, n, el2, edot,
                eip);
    CU_ASSERT(el2 <= 1e-5);
    CU_ASSERT(edot <= 1e-5);
    CU_ASSERT(eip <= 1e-5);
}

static void test_kernels_match_reference(void)
{
    const struct hnsw_kernel *const *ks;
    size_t nk = hnsw_kernels_supported(&ks);
    CU_ASSERT_FATAL(nk >= 1);
    CU_ASSERT_STRING_EQUAL(ks[nk - 1]->name, "scalar");
    size_t big[] = {768, 1536, 2048};
    /* Unaligned starts (+1) exercise the unaligned loads and masked tails. */
    float *a = malloc(2049 * sizeof *a), *b = malloc(2049 * sizeof *b);
    uint64_t s = 7;
    for (int i = 0; i < 2049; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (float)((s >> 40) / 16777216.0 * 2 - 1);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        b[i] = (float)((s >> 40) / 16777216.0 * 2 - 1);
    }
    for (size_t k = 0; k < nk; k++) {
        for (size_t n = 1; n <= 130; n++)
            check_dim(ks[k], a + 1, b, n);
        for (size_t i = 0; i < 3; i++)
            check_dim(ks[k], a, b + 1, big[i]);
    }
    free(a);
    free(b);
}

static void test_active_kernel_is_supported(void)
{
    const struct hnsw_kernel *const *ks;
    size_t nk = hnsw_kernels_supported(&ks);
    bool found = false;
    for (size_t k = 0; k < nk; k++)
        found |= ks[k] == hnsw_kernel_active();
    CU_ASSERT(found);
    CU_ASSERT_STRING_EQUAL(hnsw_kernel_name(), hnsw_kernel_active()->name);
}

void register_distance_tests(void)
{
    CU_pSuite s = CU_add_suite("distance", NULL, NULL);
    CU_add_test(s, "kernels match the reference for dims 1..130, 768, 1536, 2048",
                test_kernels_match_reference);
    CU_add_test(s, "the active kernel is a supported one", test_active_kernel_is_supported);
}
