/*
 * node_probes.c — /healthz and /readyz of vecshard-node (node_metrics.h;
 * the rules are written out in docs/operations.md "Probes").
 *
 * Liveness asks the process's own gRPC server, so a node whose pollers or
 * workers are wedged fails it, while a node that is merely busy loading
 * replicas (Health/Check answers NOT_SERVING) passes: restarting it would
 * only start the load again. Readiness is about routing: a node is ready
 * when it is registered in etcd and every replica it hosts can serve or is
 * being refilled by a transfer that a primary (or a rebalance move) asked
 * for; a replica still loading or DAMAGED makes it unready.
 */
#define _GNU_SOURCE
#include "node/node_metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "node/node_service.h"

#define HEALTHZ_TIMEOUT_MS 1000

/* /healthz: Health/Check on the node's own port answers within 1 s. */
bool node_probe_healthz(void *user, char *why, size_t whylen)
{
    struct node_service *svc = user;
    if (svc->self_addr[0] == '\0') {
        snprintf(why, whylen, "the gRPC server is not listening yet");
        return false;
    }
    return rpc_health_probe(svc->rpc, svc->self_addr, HEALTHZ_TIMEOUT_MS, why, whylen);
}

/* /readyz: every replica READY or RECOVERING, then registered in etcd. */
bool node_probe_readyz(void *user, char *why, size_t whylen)
{
    struct node_service *svc = user;
    struct node_shard_view *v = NULL;
    long n = node_shards_list(svc->reg, NULL, NULL, 0, &v);
    if (n < 0) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    bool ok = true;
    for (long i = 0; i < n && ok; i++) {
        if (v[i].state == NODE_STATE_READY || v[i].state == NODE_STATE_RECOVERING) continue;
        ok = false;
        if (v[i].state == NODE_STATE_DAMAGED)
            snprintf(why, whylen, "replica %s/%u is DAMAGED: %s", v[i].coll.name, v[i].shard,
                     v[i].reason);
        else
            snprintf(why, whylen, "replica %s/%u is %s", v[i].coll.name, v[i].shard,
                     v[i].state == NODE_STATE_LOADING ? "LOADING" : "FENCED");
    }
    free(v);
    if (!ok) return false;
    struct node_meta *meta = atomic_load(&svc->meta);
    if (meta == NULL) {
        snprintf(why, whylen, "not registered in etcd: registration has not started");
        return false;
    }
    struct node_meta_status ms;
    node_meta_status(meta, &ms);
    if (!ms.registered) {
        snprintf(why, whylen, "not registered in etcd (%s)",
                 !ms.etcd_reachable ? "etcd unreachable"
                 : ms.lease_live    ? "reading the shard map"
                                    : "no live lease");
        return false;
    }
    return true;
}
