/*
 * router_test.h — the suite registration hooks of build/test_router (the
 * router's pure planners, tests/unit/router/).
 */
#ifndef VS_TEST_ROUTER_H
#define VS_TEST_ROUTER_H

/* Adds the placement planner suite (test_placement.c). */
void register_placement_tests(void);
/* Adds the failover planner suite (test_failover.c). */
void register_failover_tests(void);
/* Adds the rebalance planner suite (test_rebalance.c). */
void register_rebalance_tests(void);

/* Adds the API key suite (test_auth.c). */
void register_auth_tests(void);

#endif
