/*
 * client.c — libvecshard's connection and call layer: vecshard_connect and
 * vecshard_close, the status helpers, and vsc_call, the single path by which
 * every library function reaches the router (common/rpc's blocking unary
 * call on one shared channel). There is no second rpc layer: retries,
 * batching and threads are the caller's choice, so each function is exactly
 * one VecShard call.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/c/client_internal.h"

_Static_assert(VECSHARD_ERROR_MAX == RPC_DETAILS_MAX, "the router's message fits err->message");
_Static_assert((int)VECSHARD_UNAUTHENTICATED == (int)GRPC_STATUS_UNAUTHENTICATED,
               "codes are gRPC's");

/* Name of a status code. */
const char *vecshard_code_name(enum vecshard_code code)
{
    return rpc_status_name((grpc_status_code)code);
}

/* Transient: the router or a replica is briefly away. */
bool vecshard_retryable(enum vecshard_code code)
{
    return code == VECSHARD_UNAVAILABLE || code == VECSHARD_DEADLINE_EXCEEDED ||
           code == VECSHARD_CANCELLED || code == VECSHARD_ABORTED;
}

/* Fills err with code and a formatted message. */
enum vecshard_code vsc_fail(struct vecshard_error *err, enum vecshard_code code, const char *fmt,
                            ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Opens a client; see vecshard.h. */
enum vecshard_code vecshard_connect(const char *address, const struct vecshard_options *opts,
                                    struct vecshard_client **out, struct vecshard_error *err)
{
    if (!out) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (opts && opts->timeout_ms < 0)
        return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "options.timeout_ms is %lld, must be >= 0",
                        (long long)opts->timeout_ms);
    if (!address || !*address) address = getenv("VECSHARD_ROUTER");
    if (!address || !*address) address = VECSHARD_DEFAULT_ADDRESS;

    struct vecshard_client *c = calloc(1, sizeof *c);
    if (!c) goto fail;
    c->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : VECSHARD_DEFAULT_TIMEOUT_MS;
    c->wait_for_ready = opts && opts->wait_for_ready;
    c->address = strdup(address);
    const char *key = opts && opts->api_key && *opts->api_key ? opts->api_key : getenv("VECSHARD_API_KEY");
    if (key && *key) {
        if (asprintf(&c->auth, "Bearer %s", key) < 0) {
            c->auth = NULL;
            goto fail;
        }
        c->md = (struct rpc_md){"authorization", c->auth};
    }
    if (opts && (opts->tls_cert != NULL) != (opts->tls_key != NULL)) {
        vecshard_close(c);
        return vsc_fail(err, VECSHARD_INVALID_ARGUMENT,
                        "options.tls_cert and options.tls_key go together (both or neither)");
    }
    struct rpc_tls tls = {0};
    if (opts) {
        tls = (struct rpc_tls){.cert = opts->tls_cert,
                               .key = opts->tls_key,
                               .ca = opts->tls_ca,
                               .server_name = opts->tls_server_name,
                               .enabled = opts->tls};
    }
    bool tls_on = rpc_tls_on(&tls);
    char terr[256];
    if (tls_on && rpc_tls_check(&tls, false, terr, sizeof terr) != 0) {
        vecshard_close(c);
        return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "options.tls: %s", terr);
    }
    struct rpc_client_config cfg = {.max_msg_bytes = opts ? opts->max_msg_bytes : 0,
                                    .tls = tls_on ? &tls : NULL};
    if (c->address) c->rpc = rpc_client_create(&cfg);
    if (c->rpc) c->ch = rpc_client_channel(c->rpc, c->address);
    if (!c->ch) goto fail;
    *out = c;
    return vsc_fail(err, VECSHARD_OK, "%s", "");
fail:
    vecshard_close(c);
    return vsc_fail(err, VECSHARD_RESOURCE_EXHAUSTED, "out of memory");
}

/* The router address. */
const char *vecshard_address(const struct vecshard_client *c)
{
    return c->address;
}

/* Frees the client and its channel pool. */
void vecshard_close(struct vecshard_client *c)
{
    if (!c) return;
    if (c->rpc) rpc_client_destroy(c->rpc);
    free(c->address);
    free(c->auth);
    free(c);
}

/* One unary call with the client's deadline. */
enum vecshard_code vsc_call(struct vecshard_client *c, const char *method,
                            const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                            ProtobufCMessage **resp, struct vecshard_error *err)
{
    struct rpc_status st;
    *resp = NULL;
    if (!c) return vsc_fail(err, VECSHARD_INVALID_ARGUMENT, "client is NULL");
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(c->timeout_ms),
                         .md = c->auth ? &c->md : NULL,
                         .n_md = c->auth ? 1 : 0,
                         .wait_for_ready = c->wait_for_ready};
    grpc_status_code code = rpc_unary(c->ch, method, req, desc, resp, &o, &st);
    return vsc_fail(err, (enum vecshard_code)code, "%s", code == GRPC_STATUS_OK ? "" : st.details);
}

/* Protobuf config -> public config. */
void vsc_config(struct vecshard_collection_config *out, const Vecshard__V1__CollectionConfig *in)
{
    memset(out, 0, sizeof *out);
    if (!in) return;
    snprintf(out->name, sizeof out->name, "%s", in->name ? in->name : "");
    out->dim = in->dim;
    out->metric = (enum vecshard_metric)in->metric;
    out->m = in->m;
    out->ef_construction = in->ef_construction;
    out->ef_search = in->ef_search;
    out->shards = in->shards;
    out->replicas = in->replication_factor;
    out->created_at = in->created_at;
    out->quantization = (enum vecshard_quant)in->quantization;
}

/* Protobuf shard entries -> public ones pointing into the reply; their
 * replica_status arrays live in the same block (one free). */
struct vecshard_shard_info *vsc_shards(Vecshard__V1__ShardInfo *const *in, size_t n)
{
    size_t n_rep = 0;
    for (size_t i = 0; i < n; i++)
        n_rep += in[i]->n_replica_status;
    struct vecshard_shard_info *out =
        n ? calloc(1, n * sizeof *out + n_rep * sizeof(struct vecshard_replica_info)) : NULL;
    struct vecshard_replica_info *rep = out ? (struct vecshard_replica_info *)(out + n) : NULL;
    for (size_t i = 0; out && i < n; i++) {
        const Vecshard__V1__ShardInfo *s = in[i];
        out[i] = (struct vecshard_shard_info){
            .collection = s->collection,
            .shard = s->shard,
            .epoch = s->epoch,
            .primary = s->primary,
            .n_replicas = s->n_replicas,
            .replicas = (const char *const *)s->replicas,
            .n_in_sync = s->n_in_sync,
            .in_sync = (const char *const *)s->in_sync,
            .n_recovering = s->n_recovering,
            .recovering = (const char *const *)s->recovering,
            .lsn = s->lsn,
            .primary_state = s->primary_state,
            .primary_state_reason = s->primary_state_reason,
            .n_replica_status = s->n_replica_status,
            .replica_status = rep,
        };
        for (size_t j = 0; j < s->n_replica_status; j++) {
            const Vecshard__V1__ReplicaInfo *r = s->replica_status[j];
            *rep++ = (struct vecshard_replica_info){
                .node_id = r->node_id,
                .alive = r->alive,
                .role = r->role,
                .state = r->state,
                .in_sync = r->in_sync,
                .lsn = r->lsn,
                .lag = r->lag,
                .recovery = r->recovery,
                .transfer_bytes_done = r->transfer_bytes_done,
                .transfer_bytes_total = r->transfer_bytes_total,
                .reason = r->reason,
                .bytes = r->bytes,
                .points = r->points,
            };
        }
    }
    return out;
}
