/*
 * rpc.h — vecshard's small gRPC framework over the gRPC C core (1.51):
 * a server loop with a handler pool, a shared channel pool, blocking unary
 * and server-streaming client calls, an asynchronous fan-out for the router,
 * and protobuf-c <-> grpc_byte_buffer conversion. Every vecshard process uses
 * it; nothing else in the tree talks to the gRPC core directly.
 *
 * Server threading model. A server has P poller threads (default 1), blocked
 * in grpc_completion_queue_next() on one shared completion queue, and W worker
 * threads that run handlers. Pollers never run application code that can
 * block: they accept calls (re-arming the request first), hand them to the
 * worker queue, and deliver batch completions (which wake a worker blocked in
 * rpc_stream_send, or free a finished call). Handlers therefore may block as
 * long as they like — a router handler fans out to nodes and waits, a node
 * handler streams a snapshot with flow control — without stalling the I/O of
 * other calls. Running handlers on the pollers was rejected: a streaming
 * handler waits for its own send completion, which only a poller can deliver,
 * so P busy streams would deadlock the server. The cost is one hand-off per
 * call (a mutex and a condition variable). Handlers flagged RPC_INLINE (never
 * block, microseconds of work: health checks, UNIMPLEMENTED answers) run on
 * the poller directly so they answer even when every worker is busy. A
 * unary method given a cheap predicate (rpc_server_set_cheap: a node's
 * single-query Search) runs on the poller too when the worker pool is idle
 * and the predicate accepts the request, saving the hand-off and the
 * wake-ups it costs; under load such calls go to the pool like any other.
 * One poller, not more: in the core's epoll engine every thread parked in
 * any completion queue competes for the one epoll role and each event passes
 * it on to another parked thread (a futex wake), so extra parked threads
 * cost CPU on every call (bench-cluster: ~15% of a node's and a router's
 * CPU per single-query call with 1 poller and no spare client poller, next
 * to 2 and one).
 * When all W workers are busy, accepted calls wait in a FIFO queue (not
 * bounded; callers' deadlines bound it in practice). A handler that calls
 * back into its own server (directly or via another process) can exhaust
 * the pool and wait for its deadline: size W above the fan-out depth.
 *
 * Shutdown waits for every running handler to return, so handlers must end
 * by their call's deadline or poll rpc_server_stopping(); stream sends fail
 * once the grace period has cancelled the calls.
 *
 * Client threading model. A struct rpc_client owns a channel pool keyed by
 * "host:port": one grpc_channel (one HTTP/2 connection) per peer, created on
 * first use and shared by every thread until rpc_client_destroy. Each
 * blocking call polls its own completion queue, so any number of threads may
 * call at once. The client also keeps one thread parked on a spare completion
 * queue, because the core only makes I/O progress (e.g. reconnects) while
 * some thread polls (grpc-core-notes §6.6), unless the process has a server
 * whose pollers do that (rpc_client_config.no_spare_poller).
 *
 * Deadlines are absolute milliseconds on the rpc_now_ms() clock (monotonic),
 * so a router passes rpc_call_deadline_ms() of its incoming call straight to
 * its outgoing ones. 0 means "no deadline".
 *
 * Errors. Library calls never abort or exit. Client calls return the gRPC
 * status code and fill a struct rpc_status with the code, the server's
 * message and its trailing metadata. Transport failures show up as
 * UNAVAILABLE (peer down), DEADLINE_EXCEEDED, and sometimes CANCELLED just
 * after a peer restarts; callers should treat those three as retryable.
 */
#ifndef VS_RPC_H
#define VS_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#define RPC_DEFAULT_MAX_MSG (64u << 20) /* docs/design.md §8: max message 64 MiB */
#define RPC_DETAILS_MAX     256         /* status message kept by struct rpc_status */
#define RPC_TRAILERS_MAX    512         /* bytes of trailing metadata kept by rpc_status */
#define RPC_HEALTH_CHECK    "/grpc.health.v1.Health/Check"
#define RPC_HEALTH_WATCH    "/grpc.health.v1.Health/Watch"
#define RPC_REQUEST_ID_MD   "x-request-id" /* metadata key that carries a request id */

/* ===================================================================== common */

/* Milliseconds on the monotonic clock that all rpc deadlines use. */
int64_t rpc_now_ms(void);

/* Absolute deadline `ms` milliseconds from now. */
static inline int64_t rpc_deadline_in(int64_t ms)
{
    return rpc_now_ms() + ms;
}

/* Canonical upper-case name of a status code ("OK", "DEADLINE_EXCEEDED", ...);
 * "UNKNOWN_CODE" for values outside 0..16. Static storage. */
const char *rpc_status_name(grpc_status_code code);

/* Packs msg into a new byte buffer (one allocation, no copy). The caller owns
 * the buffer (grpc_byte_buffer_destroy). NULL if allocation fails. */
grpc_byte_buffer *rpc_pb_to_bb(const ProtobufCMessage *msg);

/* Unpacks a byte buffer (decompressing if needed) as `desc`. Returns a message
 * the caller frees with protobuf_c_message_free_unpacked(m, NULL), or NULL if
 * the bytes are not a valid `desc`. A NULL buffer decodes as an empty message. */
ProtobufCMessage *rpc_bb_to_pb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc);

/*
 * Looks in the serialized `desc` message buf (len bytes) for a string field,
 * at any depth, whose bytes contain a NUL (protobuf-c's char * would cut it
 * there). Returns 1 and fills path (pathlen bytes, e.g. "config.name" or
 * "replicas[2]") and *at (the NUL's offset in that string); 0 when there is
 * none; -1 when buf is not a well-formed message. The server runs it on every
 * request decoded with a descriptor and answers INVALID_ARGUMENT on 1.
 */
int rpc_pb_find_nul(const uint8_t *buf, size_t len, const ProtobufCMessageDescriptor *desc,
                    char *path, size_t pathlen, size_t *at);

/* One metadata entry (ASCII key in lower case; value ASCII unless the key
 * ends in "-bin"). */
struct rpc_md {
    const char *key;
    const char *value;
};

/* ===================================================================== TLS */

/* Whether a TLS server asks its clients for a certificate. */
enum rpc_tls_client_auth {
    RPC_TLS_CLIENT_NONE = 0, /* no client certificate asked */
    RPC_TLS_CLIENT_OPTIONAL, /* asked; verified against `ca` when sent */
    RPC_TLS_CLIENT_REQUIRE,  /* required and verified against `ca` (mTLS) */
};

/*
 * TLS of a server or a client: PEM file paths, copied at create and re-read
 * by rpc_server_reload_tls / rpc_client_reload_tls. A NULL struct (or one
 * whose cert, key and ca are all NULL) means plaintext.
 *   server: cert + key required; ca verifies client certificates
 *           (client_auth OPTIONAL or REQUIRE need it).
 *   client: ca verifies the server (NULL: the system roots); cert + key
 *           (both or neither) are presented when the server asks (mTLS).
 */
struct rpc_tls {
    const char *cert;        /* certificate chain presented to peers */
    const char *key;         /* its private key */
    const char *ca;          /* CA bundle peers' certificates must chain to */
    enum rpc_tls_client_auth client_auth; /* server only */
    const char *server_name; /* client only: name the server's certificate must
                              * carry instead of the address's host; NULL = the host */
    bool enabled;            /* client only: TLS even when no file is set (the
                              * server is then verified with the system roots) */
};

/* True when t asks for TLS (not NULL and some file is set). */
static inline bool rpc_tls_on(const struct rpc_tls *t)
{
    return t != NULL && (t->enabled || t->cert != NULL || t->key != NULL || t->ca != NULL);
}

/* Reads and checks the files of a server's (server = true) or a client's TLS
 * as create would: 0 when fine or plaintext, else -1 with a message naming
 * the file (missing, not PEM, key not matching its certificate, a server
 * without certificate, client verification without a CA). Lets a process
 * refuse to start with a clear error before it creates anything. */
int rpc_tls_check(const struct rpc_tls *t, bool server, char *err, size_t errlen);

/* ===================================================================== server */

struct metrics; /* common/metrics/metrics.h */
struct rpc_server;
struct rpc_call;   /* one incoming call, as seen by its handler */
struct rpc_stream; /* the sending side of a server-streaming call */

struct rpc_server_config {
    const char *addr;      /* listen address "host:port"; port 0 = ephemeral */
    int pollers;           /* completion-queue threads; 0 = 1 */
    int workers;           /* handler threads; 0 = 8 */
    size_t max_msg_bytes;  /* max request and response size; 0 = RPC_DEFAULT_MAX_MSG */
    int shutdown_grace_ms; /* wait for running calls before cancelling; 0 = 2000 */
    /* Optional registry (common/metrics): every finished call counts in
     * vecshard_grpc_server_handled_total{service,method,code} and its time
     * from arrival to status in vecshard_grpc_server_handling_seconds{service,method}.
     * Borrowed: must outlive rpc_server_shutdown. */
    struct metrics *metrics;
    /* TLS of the listening port (copied); NULL = plaintext. */
    const struct rpc_tls *tls;
    /* Most calls accepted and not finished (queued for or running in the
     * worker pool); one more is answered RESOURCE_EXHAUSTED at once, on the
     * poller, instead of growing the queue. RPC_INLINE methods (health) and
     * RPC_NO_LIMIT ones are neither counted nor refused. 0 = no limit. */
    int max_concurrent;
    /* Another server of this process, started, whose completion queue and
     * poller threads this one uses (it has none of its own): a node's
     * coordinator port shares the ShardNode port's, so one thread polls
     * both (see "One poller" above). It must be shut down after this one.
     * NULL = own pollers. */
    struct rpc_server *share_pollers;
};

/* Unary handler. `req` is the decoded request when the method was registered
 * with a descriptor (owned by the framework, valid until the handler returns),
 * NULL otherwise (use rpc_call_request_bytes). A request with a NUL inside a
 * string field never reaches a handler (INVALID_ARGUMENT naming the field),
 * so strlen() of every string in `req` is its full length on the wire. Returns the status code; on
 * OK the reply set with rpc_call_reply* is sent (an empty message if none). */
typedef grpc_status_code (*rpc_unary_fn)(struct rpc_call *call, const ProtobufCMessage *req,
                                         void *user);

/* Server-streaming handler: sends any number of messages with
 * rpc_stream_send, then returns the final status. */
typedef grpc_status_code (*rpc_stream_fn)(struct rpc_call *call, const ProtobufCMessage *req,
                                          struct rpc_stream *stream, void *user);

/* Handler flag: run on a poller thread, not in the worker pool. Only for
 * handlers that never block and finish in microseconds. */
#define RPC_INLINE 1u

/* Handler flag: never refused by max_concurrent (node-to-node replication
 * and transfer, so a flood of client calls cannot cut a replica off). Such
 * calls still wait in the same worker queue. */
#define RPC_NO_LIMIT 2u

/* Request predicate of rpc_server_set_cheap: true when the handler will
 * answer req in well under a millisecond without blocking. */
typedef bool (*rpc_cheap_fn)(const ProtobufCMessage *req, void *user);

/* Lets unary method `path` (registered with a descriptor) run on the poller
 * that accepted the call when no handler is queued for or running in the
 * worker pool and cheap(req, user) accepts the decoded request; otherwise
 * the call goes to the pool as usual (the request is not decoded twice).
 * Such calls are not counted against max_concurrent. The handler must not
 * block: while it runs, the server delivers no other completion. Before
 * rpc_server_start; 0, or -1 for an unknown or streaming method. */
int rpc_server_set_cheap(struct rpc_server *s, const char *path, rpc_cheap_fn cheap);

/* Creates a server (not yet listening). Returns NULL and writes a message to
 * err (errlen bytes) on failure. Calls grpc_init(). */
struct rpc_server *rpc_server_create(const struct rpc_server_config *cfg, char *err, size_t errlen);

/* Registers a unary method by full path ("/vecshard.v1.ShardNode/Search").
 * req_desc may be NULL for raw bytes. Before rpc_server_start only.
 * The path is copied; `user` is passed to every call. Returns 0 or -1. */
int rpc_server_add_unary(struct rpc_server *s, const char *path,
                         const ProtobufCMessageDescriptor *req_desc, rpc_unary_fn fn, void *user,
                         unsigned flags);

/* Registers a server-streaming method; as rpc_server_add_unary. */
int rpc_server_add_stream(struct rpc_server *s, const char *path,
                          const ProtobufCMessageDescriptor *req_desc, rpc_stream_fn fn, void *user,
                          unsigned flags);

/* Binds, starts the threads and starts serving. grpc.health.v1.Health/Check
 * and Health/Watch are served automatically (common/rpc/health.c; Watch
 * streams run on the completion queue, not in the worker pool, and end with
 * UNAVAILABLE when the server shuts down). SO_REUSEPORT is off, so a port in use fails here. Returns the
 * bound port (> 0), or -1 with a message in err. */
int rpc_server_start(struct rpc_server *s, char *err, size_t errlen);

/* Re-reads the certificate, key and CA files of the server's TLS: new
 * handshakes use them, established connections and in-flight calls are not
 * touched. On failure (missing or bad file, key not matching) the server
 * keeps serving with the old ones and -1 is returned with a message in err.
 * 0 also when the server is plaintext (nothing to do). Thread-safe. */
int rpc_server_reload_tls(struct rpc_server *s, char *err, size_t errlen);

/* Sets what Health/Check reports and Health/Watch streams send: SERVING
 * (true, the initial state) or NOT_SERVING. Thread-safe; e.g. false while
 * draining or loading. */
void rpc_server_set_serving(struct rpc_server *s, bool serving);

/* True once rpc_server_shutdown began; long handlers may poll it to stop. */
bool rpc_server_stopping(const struct rpc_server *s);

/* Graceful stop: refuses new calls, lets running calls finish for the grace
 * period, then cancels the rest, waits for every handler to return, joins
 * all threads and frees everything. Never aborts. Not from a handler.
 * Health/Check reports NOT_SERVING from the start of the shutdown. Ends with
 * grpc_shutdown() (reference counted with other servers and clients); the
 * process's last one can take ~10 s after a stream blocked on writes was
 * cancelled (grpc-core-notes §6.7). Also frees a server that was never started. */
void rpc_server_shutdown(struct rpc_server *s);

/* --- inside a handler (the struct rpc_call belongs to the framework) --- */

/* Full method path of the call. */
const char *rpc_call_method(const struct rpc_call *c);

/* Value of request metadata `key` (lower case) copied NUL-terminated into
 * buf (truncated to buflen-1). Returns its full length, or -1 if absent.
 * Only the first occurrence of a repeated key is seen. */
long rpc_call_metadata(const struct rpc_call *c, const char *key, char *buf, size_t buflen);

/* The client's deadline (rpc_now_ms() clock), or 0 if it set none. */
int64_t rpc_call_deadline_ms(const struct rpc_call *c);

/* The serialized request; valid until the handler returns. */
const uint8_t *rpc_call_request_bytes(struct rpc_call *c, size_t *len);

/* Peer address ("ipv4:127.0.0.1:5555"); valid until the handler returns. */
const char *rpc_call_peer(struct rpc_call *c);

/* The server the call arrived on. */
struct rpc_server *rpc_call_server(const struct rpc_call *c);

/* Sets the unary reply: packs msg now (the caller keeps ownership of msg).
 * Returns 0, or -1 if it exceeds the max message size (the call then fails
 * with RESOURCE_EXHAUSTED whatever the handler returns) or on ENOMEM. */
int rpc_call_reply(struct rpc_call *c, const ProtobufCMessage *msg);

/* Sets the unary reply from already serialized bytes (copied). As above. */
int rpc_call_reply_bytes(struct rpc_call *c, const void *data, size_t len);

/* Sets the status message (printf format) sent with a non-OK code, and
 * returns `code` so handlers can `return rpc_call_error(c, CODE, ...)`. */
grpc_status_code rpc_call_error(struct rpc_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds trailing metadata sent with the status (key and value copied;
 * at most 8 entries). Returns 0 or -1. */
int rpc_call_add_trailer(struct rpc_call *c, const char *key, const char *value);

/* Sends one message of a server stream and waits until the transport took
 * it (flow control: one send outstanding). Returns 0, or -1 if the client
 * cancelled, the deadline passed, the server is shutting down or msg is too
 * large; the handler should then return (its status is not delivered). */
int rpc_stream_send(struct rpc_stream *st, const ProtobufCMessage *msg);

/* ===================================================================== client */

struct rpc_client;
struct rpc_channel;

struct rpc_client_config {
    size_t max_msg_bytes; /* max request and response size; 0 = RPC_DEFAULT_MAX_MSG */
    int keepalive_ms;     /* HTTP/2 keepalive ping period; 0 = 10000, < 0 = off */
    /* TLS of every channel (copied); NULL = plaintext. */
    const struct rpc_tls *tls;
    /* Deadline given to a unary call (rpc_unary, fan-outs) whose rpc_opts set
     * none (0): now + this many ms, so no internal unary call waits forever.
     * Streams keep no deadline unless given one (a transfer may run for
     * hours). 0 = calls may go without one. */
    int64_t default_deadline_ms;
    /* The process runs an rpc_server, whose pollers keep the core's I/O
     * moving: do not park a spare poller thread of the client's own (it
     * would only take part in every hand-off of the epoll role). */
    bool no_spare_poller;
};

/* Per-call options; a NULL pointer means all defaults. */
struct rpc_opts {
    int64_t deadline_ms;     /* absolute (rpc_now_ms clock); 0 = none */
    const struct rpc_md *md; /* request metadata, e.g. {"authorization", "Bearer x"} */
    size_t n_md;
    bool wait_for_ready; /* wait for a connection instead of failing fast */
};

/* Outcome of a client call. */
struct rpc_status {
    grpc_status_code code;
    char details[RPC_DETAILS_MAX];   /* server's message, truncated; "" if none */
    char trailers[RPC_TRAILERS_MAX]; /* "key\0value\0...\0"; use rpc_status_trailer */
};

/* Value of trailing metadata `key` in st, or NULL (points into st). */
const char *rpc_status_trailer(const struct rpc_status *st, const char *key);

/* Creates a client (channel pool + background poller). cfg may be NULL.
 * Calls grpc_init(). NULL on failure. */
struct rpc_client *rpc_client_create(const struct rpc_client_config *cfg);

/* Re-reads the client's TLS files; channels created from now on (and, as
 * the core allows, reconnects) present the new certificate. On failure the
 * old ones stay and -1 is returned with a message in err. 0 when plaintext.
 * Thread-safe. */
int rpc_client_reload_tls(struct rpc_client *cl, char *err, size_t errlen);

/* Closes every channel and frees the client. All calls, streams and fan-outs
 * made through it must have finished. */
void rpc_client_destroy(struct rpc_client *cl);

/* The shared channel to "host:port", created on first use. Owned by the
 * client, valid until rpc_client_destroy. Thread-safe. NULL on ENOMEM. */
struct rpc_channel *rpc_client_channel(struct rpc_client *cl, const char *addr);

/* Address the channel was created for. */
const char *rpc_channel_addr(const struct rpc_channel *ch);

/* Binds addr to srv, a server of this process that serves it: from now on
 * the unary calls of a fan-out (rpc_fanout_start) on addr's channel run
 * srv's handler on the waiting thread instead of going through gRPC and
 * loopback (a node's coordinator port calling its own shards). Blocking
 * calls and streams still use the channel. srv must outlive every fan-out
 * of cl, or be unbound first (srv NULL). 0, or -1 on ENOMEM. */
int rpc_client_set_local(struct rpc_client *cl, const char *addr, struct rpc_server *srv);

/* Blocking unary call. On OK, *resp (when resp is not NULL) receives the
 * decoded reply, which the caller frees with
 * protobuf_c_message_free_unpacked(*resp, NULL); otherwise *resp is NULL.
 * st may be NULL. Returns st->code. */
grpc_status_code rpc_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                           const struct rpc_opts *opts, struct rpc_status *st);

/* Liveness self-check (health_probe.c): grpc.health.v1.Health/Check of the
 * server at addr (e.g. the process's own port on loopback) within timeout_ms.
 * True when it answered at all (SERVING or NOT_SERVING); otherwise false with
 * the status in why (one line). */
bool rpc_health_probe(struct rpc_client *cl, const char *addr, int64_t timeout_ms, char *why,
                      size_t whylen);

/* --- server-streaming client: an iterator over the replies --- */

struct rpc_client_stream;

/* Starts a server-streaming call. Returns NULL only on ENOMEM (st filled);
 * connection errors surface from rpc_client_stream_next. */
struct rpc_client_stream *rpc_client_stream_open(struct rpc_channel *ch, const char *method,
                                                 const ProtobufCMessage *req,
                                                 const ProtobufCMessageDescriptor *resp_desc,
                                                 const struct rpc_opts *opts);

/* Waits for the next message. Returns 1 and sets *msg (caller frees with
 * protobuf_c_message_free_unpacked), or 0 at the end of the stream (the
 * final status is then available from rpc_client_stream_close). */
int rpc_client_stream_next(struct rpc_client_stream *s, ProtobufCMessage **msg);

/* Cancels the stream from any thread (e.g. to stop a thread blocked in
 * rpc_client_stream_next, which then returns 0); rpc_client_stream_close
 * is still the owner's to call, and reports CANCELLED. */
void rpc_client_stream_cancel(struct rpc_client_stream *s);

/* Ends the stream, cancelling it if the server has not finished, fills st
 * (may be NULL) with the final status, frees s, and returns the code.
 * Cancelling early gives CANCELLED. */
grpc_status_code rpc_client_stream_close(struct rpc_client_stream *s, struct rpc_status *st);

/* --- fan-out: many concurrent unary calls, one waiting thread --- */

struct rpc_fanout;

/* An empty fan-out. NULL on ENOMEM. Use from one thread. */
struct rpc_fanout *rpc_fanout_create(void);

/* Starts a unary call now and returns its index (0, 1, ... in start order),
 * or -1 on ENOMEM. A call that cannot even start still gets an index and
 * completes at once with its error. The request is serialized before
 * return, so req may be freed at once. */
int rpc_fanout_start(struct rpc_fanout *fo, struct rpc_channel *ch, const char *method,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                     const struct rpc_opts *opts);

/* Waits until some call finishes and returns its index; -1 when no call is
 * outstanding; -2 when wait_until_ms (0 = forever) passed first. Lets the
 * router react to each reply (e.g. retry a failed replica elsewhere). */
int rpc_fanout_next(struct rpc_fanout *fo, int64_t wait_until_ms);

/* rpc_fanout_next waiting at most timeout_us microseconds (finer than the
 * millisecond deadlines: the router's hedging timer). */
int rpc_fanout_next_us(struct rpc_fanout *fo, int64_t timeout_us);

/* Waits until every call finished, or until deadline_ms (0 = forever), when
 * the calls still running are cancelled and finish as DEADLINE_EXCEEDED.
 * Returns how many finished with OK. */
int rpc_fanout_wait(struct rpc_fanout *fo, int64_t deadline_ms);

/* Number of calls started so far. */
int rpc_fanout_count(const struct rpc_fanout *fo);

/* Cancels call i if it still runs: it then finishes promptly as CANCELLED
 * (rpc_fanout_next returns it like any other). */
void rpc_fanout_cancel(struct rpc_fanout *fo, int i);

/* Status of call i; code is GRPC_STATUS__DO_NOT_USE while it runs. */
const struct rpc_status *rpc_fanout_status(const struct rpc_fanout *fo, int i);

/* Reply of finished call i (NULL unless OK). Still owned by the fan-out. */
const ProtobufCMessage *rpc_fanout_response(const struct rpc_fanout *fo, int i);

/* Takes ownership of call i's reply (free with
 * protobuf_c_message_free_unpacked); the fan-out forgets it. */
ProtobufCMessage *rpc_fanout_take(struct rpc_fanout *fo, int i);

/* Cancels calls still running, waits for them, frees every reply not taken
 * and the fan-out. */
void rpc_fanout_destroy(struct rpc_fanout *fo);

#endif
