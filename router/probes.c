/*
 * probes.c — the router's /healthz and /readyz (common/http probes;
 * docs/operations.md, "Probes", is the contract).
 *
 *   /healthz  the process's own gRPC server answers grpc.health.v1 Check
 *             with SERVING, asked over loopback with a 1 s deadline. That
 *             goes through the same listener, pollers and completion queue
 *             as client calls, so a router whose gRPC side is wedged fails
 *             liveness while its HTTP thread still runs. NOT_SERVING (the
 *             router is shutting down) fails it too.
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

#include "proto/grpc_health/v1/health.pb-c.h"
#include "router/router.h"

#define PROBE_DEADLINE_MS 1000

bool router_healthz(void *user, char *why, size_t whylen)
{
    struct router *r = user;
    struct rpc_channel *ch = rpc_client_channel(r->client, r->self_addr);
    if (ch == NULL) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    struct rpc_opts opts = {.deadline_ms = rpc_deadline_in(PROBE_DEADLINE_MS)};
    struct rpc_status st;
    ProtobufCMessage *m = NULL;
    grpc_status_code code =
        rpc_unary(ch, RPC_HEALTH_CHECK, &req.base,
                  &grpc__health__v1__health_check_response__descriptor, &m, &opts, &st);
    bool ok = false;
    if (code != GRPC_STATUS_OK) {
        snprintf(why, whylen, "gRPC Health/Check on %s: %s: %s", r->self_addr,
                 rpc_status_name(code), st.details);
    } else if (((Grpc__Health__V1__HealthCheckResponse *)m)->status !=
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
        snprintf(why, whylen, "gRPC Health/Check on %s: NOT_SERVING (shutting down)", r->self_addr);
    } else {
        ok = true;
    }
    if (m != NULL) protobuf_c_message_free_unpacked(m, NULL);
    return ok;
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
