/*
 * rpc_internal.h — helpers shared by the files of common/rpc; not part of the
 * public API.
 */
#ifndef VS_RPC_INTERNAL_H
#define VS_RPC_INTERNAL_H

#include "common/rpc/rpc.h"

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

/* gpr deadline for an rpc deadline in ms (0 = infinite future). */
gpr_timespec rpc_deadline_ts(int64_t deadline_ms);

/* rpc deadline in ms for a gpr deadline of any clock (0 = infinite). */
int64_t rpc_deadline_from_ts(gpr_timespec ts);

/* Where rpc_bb_decode found a NUL inside a string field. */
struct rpc_nul {
    bool found;
    char path[128]; /* "config.name" */
    size_t at;      /* offset of the NUL in the string */
};

/* rpc_bb_to_pb that, when nul is not NULL, also refuses (NULL, nul->found)
 * a message with a NUL inside a string field. */
ProtobufCMessage *rpc_bb_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                                struct rpc_nul *nul);

/* Fills st from a finished call's code, details and trailing metadata (any
 * of which may be NULL). */
void rpc_status_fill(struct rpc_status *st, grpc_status_code code, const grpc_slice *details,
                     const grpc_metadata_array *trailers);

/* Sets st to a locally generated status. */
void rpc_status_set(struct rpc_status *st, grpc_status_code code, const char *details);

/* One client unary call: the single six-op batch of grpc-core-notes §3 and what it
 * fills in. Used by rpc_unary (client.c) and the fan-out (fanout.c). */
struct client_call {
    grpc_call *call;
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send, *recv;
    grpc_status_code code;
    grpc_slice details;
    const char *error_string;
    grpc_metadata *md;
    size_t n_md;
    bool in_flight; /* the batch started; exactly one completion will come */
};

/* Starts call c of `method` on cq with `tag`. Whatever it returns,
 * client_call_end must follow (after the completion when it returned OK). */
grpc_call_error client_call_start(struct client_call *c, struct rpc_channel *ch,
                                  grpc_completion_queue *cq, const char *method,
                                  const ProtobufCMessage *req, const struct rpc_opts *o, void *tag);

/* Decodes the reply into *resp (when OK and resp/d are set), fills st and
 * releases everything c holds. */
void client_call_end(struct client_call *c, const ProtobufCMessageDescriptor *d,
                     ProtobufCMessage **resp, struct rpc_status *st);

/* --- server.c: in-process calls (rpc_client_set_local; fanout.c) ---
 *
 * A call to a channel bound to a server of this process skips gRPC: the
 * handler runs on the calling thread over a context like a received call's
 * (metadata, deadline, request bytes, peer "local"; rpc_call_* work as
 * usual), and its reply, message and trailers come back as a client call's
 * would. Counted live, so the server's shutdown waits for it; refused once
 * the server is stopping. */

/* A ready context for unary `method` of s, or NULL with st filled
 * (UNIMPLEMENTED, UNAVAILABLE while stopping). Run or drop it, once. */
struct rpc_call *server_local_prepare(struct rpc_server *s, const char *method,
                                      const ProtobufCMessage *req, const struct rpc_opts *o,
                                      gpr_timespec deadline, struct rpc_status *st);

/* Runs the handler (DEADLINE_EXCEEDED without running it when the deadline
 * has passed), decodes an OK reply into *resp with d, fills st, frees c.
 * Returns st->code. */
grpc_status_code server_local_run(struct rpc_call *c, const ProtobufCMessageDescriptor *d,
                                  ProtobufCMessage **resp, struct rpc_status *st);

/* Frees a prepared context without running it. */
void server_local_drop(struct rpc_call *c);

/* --- client.c --- */

/* The server calls to ch run in (rpc_client_set_local), or NULL. */
struct rpc_server *client_channel_local(const struct rpc_channel *ch);

/* The deadline a unary call on ch with o gets (o's, else the client's default). */
gpr_timespec client_unary_deadline(const struct rpc_channel *ch, const struct rpc_opts *o);

/* --- tls.c: TLS files of one server or client (rpc.h "TLS") --- */

struct tls_state;

/* Copies the paths of c, reads and checks the files. NULL with err when the
 * combination is wrong (rpc.h), a file is missing or not PEM, or the key
 * does not match the certificate. */
struct tls_state *tls_state_new(const struct rpc_tls *c, bool server, char *err, size_t errlen);

/* Re-reads the files; on failure the old contents stay (-1, err). 0 when t
 * is NULL (plaintext). */
int tls_state_reload(struct tls_state *t, char *err, size_t errlen);

/* Bumped by every successful load (first one: 1). */
unsigned long tls_state_generation(struct tls_state *t);

/* Client: the name to check instead of the address's host, or NULL. */
const char *tls_state_server_name(const struct tls_state *t);

/* Server credentials that fetch t's current contents before each handshake
 * (t must outlive the server). NULL on failure. */
grpc_server_credentials *tls_server_credentials(struct tls_state *t);

/* Channel credentials from t's current contents. NULL on failure. */
grpc_channel_credentials *tls_channel_credentials(struct tls_state *t);

void tls_state_free(struct tls_state *t);

#endif
