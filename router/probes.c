/*
 * probes.c — the router's /healthz and /readyz (common/http probes;
 * docs/operations.md, "Probes", is the contract).
 *
 *   /healthz  the process's own gRPC server answers grpc.health.v1 Check
 *             (rpc_health_probe: SERVING or NOT_SERVING), asked over
 *             loopback with a 1 s deadline. That goes through the same
 *             listener, pollers and completion queue as client calls, so a
 *             router whose gRPC side is wedged fails liveness while its HTTP
 *             thread still runs.
 *   /readyz   the routing table has read a full listing of the cluster map
 *             and the view is not stale: the etcd watch is up, or went down
 *             less than --view-max-age-ms ago (rt_health). Until then the
 *             router would answer NOT_FOUND for every collection, or route
 *             on a map that may have moved on.
 *
 * Both run on the HTTP server's thread and never wait on etcd; healthz waits
 * at most its 1 s deadline.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "router/router.h"

#define PROBE_DEADLINE_MS 1000

bool router_healthz(void *user, char *why, size_t whylen)
{
    struct router *r = user;
    return rpc_health_probe(r->client, r->self_addr, PROBE_DEADLINE_MS, why, whylen);
}

bool router_readyz(void *user, char *why, size_t whylen)
{
    struct router *r = user;
    struct rt_health h;
    rt_health(r->rt, &h);
    if (!h.loaded) {
        snprintf(why, whylen, "no routing table yet: etcd has not been listed (down for %lld ms)",
                 (long long)h.stale_ms);
        return false;
    }
    if (h.stale_ms > r->cfg->view_max_age_ms) {
        snprintf(why, whylen,
                 "routing table stale: the etcd watch has been down for %lld ms "
                 "(--view-max-age-ms %d); serving revision %lld from the cache",
                 (long long)h.stale_ms, r->cfg->view_max_age_ms, (long long)h.revision);
        return false;
    }
    return true;
}

/* The address our own gRPC port answers on over loopback: a wildcard host
 * becomes 127.0.0.1 ([::1] for [::]); a named host is kept. */
void router_self_addr(struct router *r, const char *listen, int port)
{
    const char *colon = strrchr(listen, ':');
    size_t hl = colon != NULL ? (size_t)(colon - listen) : 0;
    const char *host;
    if (hl == 0 || (hl == 7 && strncmp(listen, "0.0.0.0", 7) == 0))
        host = "127.0.0.1";
    else if ((hl == 4 && strncmp(listen, "[::]", 4) == 0) ||
             (hl == 2 && strncmp(listen, "::", 2) == 0))
        host = "[::1]";
    else
        host = NULL;
    if (host != NULL)
        snprintf(r->self_addr, sizeof r->self_addr, "%s:%d", host, port);
    else
        snprintf(r->self_addr, sizeof r->self_addr, "%.*s:%d", (int)hl, listen, port);
}
