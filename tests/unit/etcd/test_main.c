/*
 * test_main.c — the CUnit runner of build/test_etcd: starts one throw-away
 * etcd for every suite, runs them, and always tears the server down.
 */
#include "etcd_tests.h"

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct etcd_server g_etcd;
etcd_client *g_client;

/* CLOCK_MONOTONIC in ms. */
long long test_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms. */
void test_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Binds a loopback socket on port 0; returns fd, *port its port. */
static int bound_socket(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port that refuses connections. */
int test_dead_port(void)
{
    int port = 0, fd = bound_socket(&port);

    if (fd >= 0) close(fd);
    return port;
}

/* A listener that never accepts: connects succeed, replies never come. */
int test_black_hole(int *port)
{
    int fd = bound_socket(port);

    if (fd >= 0 && listen(fd, 16)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Starts etcd, runs every suite, cleans up; exit 1 on any failure. */
int main(void)
{
    char msg[512];
    etcd_err err = {{0}};
    unsigned fails;

    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    etcd_tests_codec();
    etcd_tests_client();
    etcd_tests_kv();
    etcd_tests_lease();
    etcd_tests_election();
    etcd_tests_watch(); /* last: it restarts the server */
    if (etcd_server_start(&g_etcd, msg, sizeof msg)) {
        fprintf(stderr, "test_etcd: cannot start etcd: %s\n", msg);
        etcd_server_destroy(&g_etcd);
        CU_cleanup_registry();
        return 1;
    }
    if (etcd_client_new(g_etcd.url, 3000, &g_client, &err)) {
        fprintf(stderr, "test_etcd: client: %s\n", err.msg);
        etcd_server_destroy(&g_etcd);
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    etcd_client_free(g_client);
    etcd_server_destroy(&g_etcd);
    CU_cleanup_registry();
    return fails ? 1 : 0;
}
