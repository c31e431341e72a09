/*
 * etcd_tests.h — what the etcd test files share: the server and client every
 * suite uses (set up once by test_main.c), suite registration, and small
 * helpers (listening sockets for failure tests, a clock).
 */
#ifndef VECSHARD_TEST_ETCD_TESTS_H
#define VECSHARD_TEST_ETCD_TESTS_H

#include "common/etcd/etcd.h"
#include "etcd_server.h"

#include <CUnit/CUnit.h>

extern struct etcd_server g_etcd; /* the shared server; its url stays fixed */
extern etcd_client *g_client;     /* a client of g_etcd, 3 s timeout */

/* Each test file registers its suite. */
void etcd_tests_codec(void);
void etcd_tests_kv(void);
void etcd_tests_lease(void);
void etcd_tests_watch(void);
void etcd_tests_election(void);
void etcd_tests_client(void);

/* Milliseconds of CLOCK_MONOTONIC. */
long long test_now_ms(void);

/* Sleeps ms milliseconds. */
void test_sleep_ms(long ms);

/* A loopback port with nothing listening (connection refused). */
int test_dead_port(void);

/* A listening socket that never accepts; *port gets its port; returns fd. */
int test_black_hole(int *port);

/* Asserts st == ETCD_OK, printing the message otherwise. */
#define ASSERT_OK(st, err)                                                                         \
    do {                                                                                           \
        etcd_status st_ = (st);                                                                    \
        if (st_ != ETCD_OK) fprintf(stderr, "\n  %s: %s\n", etcd_status_str(st_), (err).msg);      \
        CU_ASSERT_EQUAL_FATAL(st_, ETCD_OK);                                                       \
    } while (0)

#endif
