/*
 * etcd_server.h — test support: a throw-away single-member etcd on loopback.
 *
 * Starts /usr/bin/etcd (or $ETCD_BIN) on two free ephemeral ports with a
 * fresh mkdtemp data dir and a 1 s watch progress-notify interval, and waits
 * until /health answers. Every started server is registered so that it is
 * killed (by pid, then reaped) and its directory removed at exit, on a fatal
 * signal, and if this process dies outright (PR_SET_PDEATHSIG). Nothing here
 * depends on the etcd client under test, so the helper can move to a shared
 * test-support folder as is.
 */
#ifndef VECSHARD_TEST_ETCD_SERVER_H
#define VECSHARD_TEST_ETCD_SERVER_H

#include <stddef.h>
#include <sys/types.h>

struct etcd_server {
    pid_t pid; /* 0 when not running */
    int client_port;
    int peer_port;
    char root[256]; /* temp dir: data/ and etcd.log */
    char url[64];   /* "http://127.0.0.1:<client_port>" */
};

/* Starts a fresh server (new ports, new dir); 0 or -1 with msg filled. */
int etcd_server_start(struct etcd_server *s, char *msg, size_t msg_len);

/* Stops the server (SIGTERM, SIGKILL after 5 s) and reaps it; keeps its dir. */
void etcd_server_stop(struct etcd_server *s);

/* Starts a stopped server again on the same ports and data dir; 0 or -1. */
int etcd_server_restart(struct etcd_server *s, char *msg, size_t msg_len);

/* Stops the server if running and removes its directory. */
void etcd_server_destroy(struct etcd_server *s);

#endif
