/*
 * health_probe.c — the liveness self-check of a vecshard process: its
 * /healthz (common/http) asks its own gRPC server grpc.health.v1.Health/Check
 * over loopback with a short deadline. An answer of either kind (SERVING or
 * NOT_SERVING, e.g. while replicas load) proves the server's pollers and
 * transport still run; no answer in time means the process is wedged.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "common/rpc/rpc.h"
#include "proto/grpc_health/v1/health.pb-c.h"

/* Health/Check of addr within timeout_ms; see rpc.h. */
bool rpc_health_probe(struct rpc_client *cl, const char *addr, int64_t timeout_ms, char *why,
                      size_t whylen)
{
    struct rpc_channel *ch = rpc_client_channel(cl, addr);
    if (ch == NULL) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    struct rpc_opts opts = {.deadline_ms = rpc_deadline_in(timeout_ms)};
    struct rpc_status st;
    ProtobufCMessage *resp = NULL;
    grpc_status_code code =
        rpc_unary(ch, RPC_HEALTH_CHECK, &req.base,
                  &grpc__health__v1__health_check_response__descriptor, &resp, &opts, &st);
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    if (code == GRPC_STATUS_OK) return true;
    snprintf(why, whylen, "gRPC Health/Check of %s: %s %s", addr, rpc_status_name(code),
             st.details);
    return false;
}
