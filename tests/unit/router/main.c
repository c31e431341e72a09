/*
 * main.c — CUnit runner for the router's planners (build/test_router).
 */
#include <CUnit/Basic.h>

#include "tests/unit/router/router_test.h"

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    register_placement_tests();
    register_failover_tests();
    register_rebalance_tests();
    register_auth_tests();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failed == 0 ? 0 : 1;
}
