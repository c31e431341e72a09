/*
 * cluster.h — test support for libvecshard: a real local cluster of one
 * etcd (tests/unit/etcd/etcd_server.h), 1..3 vecshard-node processes and one
 * vecshard-router, all on free loopback ports under one temp dir.
 *
 * The binaries come from $VS_BUILD, else the build dir this runner was
 * compiled for (VS_TEST_BUILD). Every process is started with
 * PR_SET_PDEATHSIG and registered, so it is stopped by pid (SIGTERM, then
 * SIGKILL after 10 s) by tc_stop, at exit, or on a fatal signal.
 */
#ifndef VS_TEST_CLIENTS_C_CLUSTER_H
#define VS_TEST_CLIENTS_C_CLUSTER_H

#include <stddef.h>
#include <sys/types.h>

#include "tests/unit/etcd/etcd_server.h"

#define TC_MAX_NODES 3

/* One child process. */
struct tc_proc {
    pid_t pid; /* 0 when not running */
    char addr[32];
    char log[300];
};

struct tc_cluster {
    struct etcd_server etcd;
    char root[256]; /* temp dir: node data dirs and logs */
    int n_nodes;
    struct tc_proc nodes[TC_MAX_NODES];
    struct tc_proc router;
};

/* Starts etcd, n_nodes nodes and a router, and waits until the router sees
 * every node alive; 0, or -1 with msg filled (everything started is stopped). */
int tc_start(struct tc_cluster *c, int n_nodes, char *msg, size_t len);

/* Stops the router, the nodes and etcd by pid and removes the temp dirs. */
void tc_stop(struct tc_cluster *c);

#endif
