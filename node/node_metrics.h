/*
 * node_metrics.h — what vecshard-node shows on its observability endpoint
 * (common/http, flag --http): the node's Prometheus metrics (node_metrics.c)
 * and its /healthz and /readyz probes (node_probes.c). The exact meaning of
 * every metric and probe is in docs/operations.md ("Metrics", "Probes").
 *
 * The metrics are collectors that read the state where it lives at every
 * scrape: the registry (node_shards), each replica's in-memory counters
 * (replica_status: no disk access), the primary's replication groups
 * (repl_peers, repl_stats), the transfers (transfers_stats) and etcd
 * (node_meta_status). None of them waits on a disk or the network, and every
 * family writes its HELP and TYPE lines even when it has no sample. A few
 * counters that exist nowhere else (points written, queries searched) are
 * registry families that the handlers update (struct node_service).
 *
 * Ownership and threading: collectors and probes run on the HTTP server's
 * threads with `svc` as their user pointer; svc and the registry must
 * outlive the HTTP server (main stops it first).
 */
#ifndef VS_NODE_METRICS_H
#define VS_NODE_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct metrics;
struct node_service;

/* Creates the node's families and collectors on m (before the HTTP server
 * starts) and points svc's counters at them. 0, or -1 on ENOMEM. */
int node_metrics_register(struct metrics *m, struct node_service *svc);

/* /healthz: the node's own gRPC server answers Health/Check on
 * svc->self_addr within 1 s (http_probe_fn; user = struct node_service). */
bool node_probe_healthz(void *user, char *why, size_t whylen);

/* /readyz: every hosted replica is READY or RECOVERING (a transfer into it
 * runs) and the node is registered in etcd with a live lease, its shard map
 * reconciled; otherwise false naming the first replica that is not, or the
 * registration (http_probe_fn; user = struct node_service). */
bool node_probe_readyz(void *user, char *why, size_t whylen);

#endif
