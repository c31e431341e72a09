/*
 * main.c — CUnit runner for common/cluster (build/test_cluster): the name
 * rule, the etcd documents' codec and the shard-entry CAS update.
 */
#include <CUnit/Basic.h>

#include "tests/unit/cluster/cluster_tests.h"

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    cluster_tests_name();
    cluster_tests_doc();
    cluster_tests_move_doc();
    cluster_tests_cas();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failed == 0 ? 0 : 1;
}
