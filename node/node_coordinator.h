/*
 * node_coordinator.h — a node's coordinator port (--coordinator-listen): the
 * public vecshard.v1.VecShard service served by this process, as
 * Elasticsearch's nodes coordinate, so a client that talks to a node saves
 * the router hop and a one-node deployment is one process plus etcd.
 *
 * It is the router library (router/router.h) over its own context: its own
 * routing table watch, node client and rpc server, with the controller off
 * (routers run it). Calls from it to this node's own advertised address run
 * the ShardNode handlers in-process (rpc_client_set_local), the others go to
 * their nodes over gRPC as a router's do. The router's metric families are
 * added to the node's registry.
 *
 * Threading: start and stop from main's thread only; the port's handlers
 * run on its own worker pool. Stop it before the node's server shuts down.
 */
#ifndef VS_NODE_COORDINATOR_H
#define VS_NODE_COORDINATOR_H

#include <stddef.h>

struct node_config;
struct rpc_server;
struct metrics;
struct node_coordinator;

/* Starts the port of cfg->coordinator_listen (NULL: *out = NULL, 0).
 * node_srv serves node_addr, the address this node registers. 0, or -1 with
 * a message in err. */
int node_coordinator_start(const struct node_config *cfg, struct rpc_server *node_srv,
                           const char *node_addr, struct metrics *m, struct node_coordinator **out,
                           char *err, size_t errlen);

/* SIGHUP: re-reads the port's TLS files and API keys (errors are logged; the
 * old ones stay). NULL is ignored. */
void node_coordinator_reload(struct node_coordinator *nc);

/* Stops accepting calls, lets running ones finish, frees nc. NULL is ignored. */
void node_coordinator_stop(struct node_coordinator *nc);

#endif
