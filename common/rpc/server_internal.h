/*
 * server_internal.h — what the server files of common/rpc share: the method
 * table, the per-call context, the server, and the hooks between the call
 * loop (server.c) and the health service (health.c). Not part of the public
 * API.
 *
 * Locks: rpc_server.mu protects live, the worker queue and quit;
 * rpc_server.watch_mu protects the Health/Watch list and every watch field
 * of its calls (w_*). watch_mu may be held while taking mu (call_free),
 * never the other way round.
 */
#ifndef VS_RPC_SERVER_INTERNAL_H
#define VS_RPC_SERVER_INTERNAL_H

#include "common/rpc/rpc_internal.h"

#include <pthread.h>
#include <stdatomic.h>

#include <grpc/grpc.h>

#define PREPOST      8 /* requests kept posted per method */
#define MAX_TRAILERS 8
#define RPC_WATCH    0x100u /* internal method flag: grpc.health.v1.Health/Watch (health.c) */

struct method {
    char *path;
    size_t service_len; /* "/svc/Method": length of "svc" */
    char *service;      /* "svc", the metrics label */
    const char *name;   /* "Method" (points into path), the metrics label */
    const ProtobufCMessageDescriptor *desc;
    rpc_unary_fn unary;
    rpc_stream_fn stream;
    void *user;
    unsigned flags;
    rpc_cheap_fn cheap; /* rpc_server_set_cheap: may run on the poller; NULL = never */
    void *handle;       /* from grpc_server_register_method */
};

enum tag_kind { TAG_NEW, TAG_SEND, TAG_FINAL, TAG_WATCH_SEND, TAG_WATCH_CLOSE };

/* Completion-queue tag: which step of which call completed. */
struct tag {
    enum tag_kind kind;
    struct rpc_call *call;
};

struct rpc_stream {
    struct rpc_call *call;
};

struct rpc_call {
    struct rpc_server *srv;
    struct method *m; /* NULL: a call to an unregistered method */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* unregistered calls only */
    struct tag t_new, t_send, t_final, t_wsend, t_wclose;
    struct rpc_stream stream;
    int64_t arrived_ns; /* monotonic, for vecshard_grpc_server_handling_seconds */

    ProtobufCMessage *req; /* decoded early by the poller (a cheap method), or NULL */
    struct rpc_nul nul;    /* where that decode found a NUL */
    bool decoded;          /* req and nul are set */

    grpc_slice req_flat; /* rpc_call_request_bytes, lazily */
    bool have_flat;
    char *peer;              /* gpr_malloc'd, lazily */
    grpc_byte_buffer *reply; /* unary reply */
    grpc_status_code forced; /* non-OK overrides the handler's code */
    char *msg;               /* status message */
    grpc_slice msg_slice;
    bool have_msg_slice;
    grpc_metadata trailers[MAX_TRAILERS];
    int n_trailers;
    bool sent_initial;
    bool limited; /* counted in srv->busy until its handler returns */
    bool broken; /* a stream send failed: the call is dead */
    int cancelled;

    /* send hand-off: mu protects send_done and send_ok */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool send_done, send_ok;

    struct rpc_call *next; /* worker queue link */

    /* Health/Watch only (health.c), protected by srv->watch_mu */
    bool watch;             /* in srv->watchers until w_final */
    int w_fixed;            /* a status that never changes (SERVICE_UNKNOWN), or -1 */
    int w_sent;             /* last status sent, -1 = none yet */
    int w_pending;          /* batches in flight; the context is freed at 0 once w_final */
    bool w_sending;         /* a message batch is in flight */
    bool w_closed;          /* RECV_CLOSE_ON_SERVER completed (client gone or call over) */
    bool w_final;           /* the status batch was started */
    grpc_byte_buffer *w_bb; /* the message in flight */
    struct rpc_call *w_next;
};

struct rpc_server {
    char *addr;
    int n_pollers, n_workers;
    size_t max_msg;
    int grace_ms;

    struct method *methods;
    int n_methods, cap_methods;

    struct tls_state *tls; /* NULL: plaintext (tls.c) */
    grpc_server *srv;
    struct rpc_server *host;            /* rpc_server_config.share_pollers, or NULL */
    grpc_completion_queue *cq;          /* new calls and batch completions (the host's) */
    grpc_completion_queue *shutdown_cq; /* only the shutdown notification */
    pthread_t *threads;                 /* pollers, then workers */
    int pollers_started, workers_started;
    bool started;

    atomic_bool serving;
    atomic_bool stopping;      /* shutdown began: do not re-arm */
    atomic_bool cancelled_all; /* grace period over: do not run queued handlers */

    pthread_mutex_t mu;     /* protects live, queue and quit */
    pthread_cond_t work_cv; /* queue non-empty or quit */
    pthread_cond_t idle_cv; /* live reached 0 */
    long live;
    atomic_int active; /* handlers queued for or running in the worker pool */
    struct rpc_call *qhead, *qtail;
    int max_concurrent;  /* rpc_server_config.max_concurrent; 0 = no limit */
    atomic_long busy;    /* limited calls queued for or running in the pool */
    bool quit;

    pthread_mutex_t watch_mu;  /* protects watchers and the w_* fields of their calls */
    struct rpc_call *watchers; /* open Health/Watch calls */

    struct metrics_family *handled;  /* vecshard_grpc_server_handled_total; NULL: no metrics */
    struct metrics_family *handling; /* vecshard_grpc_server_handling_seconds */
};

/* --- server.c --- */

/* Releases everything a context holds and uncounts it. */
void server_call_free(struct rpc_call *c);

/* Starts one batch sending bb, the initial metadata first if not yet sent
 * (then marks it sent). bb stays the caller's until the batch completes on
 * tag. Used by stream sends and Health/Watch. */
grpc_call_error server_call_start_send(struct rpc_call *c, grpc_byte_buffer *bb, void *tag);

/* Counts a finished call in the server's metrics (no-op without a registry). */
void server_count_call(struct rpc_call *c, grpc_status_code code);

/* True if `name` (len bytes) is a service with a registered method. */
bool server_known_service(const struct rpc_server *s, const char *name, size_t len);

/* --- health.c --- */

/* grpc.health.v1.Health/Check (runs inline on a poller). */
grpc_status_code health_check(struct rpc_call *c, const ProtobufCMessage *req, void *user);

/* A new Health/Watch call (on a poller): answers at once and keeps it open. */
void health_watch_start(struct rpc_call *c);

/* A watch batch completed (TAG_WATCH_SEND, TAG_WATCH_CLOSE, or TAG_FINAL of a watch). */
void health_watch_event(struct rpc_call *c, enum tag_kind kind, bool ok);

/* The serving status changed: every watcher gets the new status. */
void health_watch_notify(struct rpc_server *s);

/* Shutdown began: every watcher gets NOT_SERVING and its stream ends (UNAVAILABLE). */
void health_watch_shutdown(struct rpc_server *s);

#endif
