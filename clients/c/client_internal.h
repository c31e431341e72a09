/*
 * client_internal.h — what the files of libvecshard share and users never
 * see: the client struct, the one call wrapper over common/rpc, and the
 * conversions from protobuf-c replies to the public result types.
 *
 * Results that hold strings or arrays of the reply keep the unpacked reply
 * alive and point into it (no copy); each public result struct is the first
 * member of a private one that also holds the reply, so its free function
 * finds the reply by a cast.
 */
#ifndef VECSHARD_CLIENT_INTERNAL_H
#define VECSHARD_CLIENT_INTERNAL_H

#include "clients/c/vecshard.h"
#include "common/rpc/rpc.h"
#include "proto/vecshard/v1/vecshard.pb-c.h"

#define VSC_METHOD(name) "/vecshard.v1.VecShard/" name

/* The handle behind struct vecshard_client. */
struct vecshard_client {
    struct rpc_client *rpc; /* channel pool + poller thread */
    struct rpc_channel *ch; /* the router's channel, owned by rpc */
    int64_t timeout_ms;     /* per-call deadline */
    bool wait_for_ready;    /* rpc_opts.wait_for_ready of every call */
    char *address;          /* "host:port" (owned) */
    char *auth;             /* "Bearer <key>" (owned), NULL = no key */
    struct rpc_md md;       /* {"authorization", auth} when auth is set */
};

/* Sets err to code and a printf message; returns code. err may be NULL. */
enum vecshard_code vsc_fail(struct vecshard_error *err, enum vecshard_code code, const char *fmt,
                            ...) __attribute__((format(printf, 3, 4)));

/* One unary call to the router with the client's deadline. On VECSHARD_OK
 * *resp is the reply (caller frees with protobuf_c_message_free_unpacked)
 * and err says OK; otherwise *resp is NULL and err holds the status. */
enum vecshard_code vsc_call(struct vecshard_client *c, const char *method,
                            const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                            ProtobufCMessage **resp, struct vecshard_error *err);

/* Copies a protobuf collection config (NULL gives zeros) into out. */
void vsc_config(struct vecshard_collection_config *out, const Vecshard__V1__CollectionConfig *in);

/* A new array of n shard entries pointing into in[] (caller frees the array
 * only; strings stay in the reply). NULL on ENOMEM, or for n == 0. */
struct vecshard_shard_info *vsc_shards(Vecshard__V1__ShardInfo *const *in, size_t n);

#endif
