/*
 * shard_call.h — the router's one per-shard call-with-retry loop, under
 * Upsert / Delete (write.c), Get (get.c) and Search (search.c).
 *
 * A request names the shards it needs (shard_call_want); shard_call_run
 * sends every one of them at once on one rpc_fanout and reacts to each reply
 * as it lands, until every shard is answered or failed, or the deadline
 * passes. Who a shard's call goes to and how a failure is retried is the
 * policy:
 *
 *   - primary (writes): the shard's primary in the current routing view,
 *     with the epoch the router knows. FAILED_PRECONDITION carrying a
 *     `vs-epoch` trailer (stale epoch / not primary) refreshes the shard
 *     entry (the watch, else a read of etcd) and resends at once; other
 *     retryable codes except DEADLINE_EXCEEDED resend after 50, 100, 200 ms.
 *   - in-sync (reads): an in-sync replica on a registered node that this
 *     request has not tried for the shard (router_pick_replica), re-sent at
 *     once to the next one after a failure; with `batch`, the shards picked
 *     for one node travel in ONE call (Search).
 *
 * With `hedge` (Search), a shard whose in-sync call has not answered after
 * router_hedge_after_us is also sent, alone, to another in-sync replica;
 * the first answer is kept, a call whose shards are all answered is
 * cancelled, and a failure waits for the other call before counting.
 *
 * Bounded by max_tries per shard and the node deadline. A node's answer of
 * INVALID_ARGUMENT or RESOURCE_EXHAUSTED can fail the whole request at once
 * (abort_on_bad_request): retrying a request the node refuses is pointless.
 *
 * The caller builds each call's request (ops.send) and checks a reply's
 * per-shard part (ops.answered); replies stay owned by the fan-out until
 * shard_call_free, so the caller's reply can borrow from them. Use from one
 * thread.
 */
#ifndef VS_ROUTER_SHARD_CALL_H
#define VS_ROUTER_SHARD_CALL_H

#include "router/router.h"

#define SHARD_CALL_MAX_TRIES 16 /* upper bound of policy.max_tries */

/* Where a shard stands in the request. */
enum shard_call_state {
    SHARD_CALL_UNUSED = 0, /* not part of the request */
    SHARD_CALL_PENDING,    /* wanted, not sent yet */
    SHARD_CALL_RUNNING,
    SHARD_CALL_WAITING, /* to be resent at retry_at */
    SHARD_CALL_DONE,
    SHARD_CALL_FAILED,
};

/* One shard of the request. */
struct shard_call_unit {
    enum shard_call_state state;
    int tries;
    int64_t retry_at;
    const char *tried[SHARD_CALL_MAX_TRIES]; /* in-sync policy: node ids from the request view */
    struct cluster_shard fresh;              /* primary policy: entry read from etcd, if newer */
    char node[129];                          /* target of the last try; "" before any */
    char addr[256];                          /* its address; "" when no call was made */
    grpc_status_code code;                   /* of the last failure */
    char msg[RPC_DETAILS_MAX + 160];         /* the last failure */
    int inflight;                            /* calls carrying it that have not finished */
    int64_t hedge_at;                        /* hedge policy: clock_mono_us to ask again; 0 none */
    int hedge_call;                          /* index of its hedge call; -1 none */
};

/* How a request's calls are made. */
struct shard_call_policy {
    const char *method;        /* NODE_SVC "Write", for logs */
    bool primary;              /* true: the primary (writes); false: any in-sync replica */
    bool batch;                /* in-sync only: one call per node for all its shards */
    bool abort_on_bad_request; /* INVALID_ARGUMENT / RESOURCE_EXHAUSTED fail the request */
    int max_tries;             /* per shard, first try included; 1..SHARD_CALL_MAX_TRIES */
    /* in-sync only: which failed call codes try another replica; NULL = all */
    bool (*retry_code)(grpc_status_code code);
    bool hedge; /* in-sync only: hedged calls (see above; --hedge-max-ms) */
};

/* The caller's side of each call. */
struct shard_call_ops {
    /* Starts the call for shards[0..n) on ch with fan-out index
     * rpc_fanout_count(fo) (epoch: the shard entry's, for writes). Returns
     * rpc_fanout_start's result. */
    int (*send)(void *arg, struct rpc_fanout *fo, struct rpc_channel *ch, const uint32_t *shards,
                size_t n, uint64_t epoch, const struct rpc_opts *opts);
    /* After an OK reply: true when shards[i] of the call was answered; else
     * fills why (tried again like a failed call). NULL = always answered. */
    bool (*answered)(void *arg, const ProtobufCMessage *resp, size_t i, uint32_t shard,
                     const char *node, char *why, size_t whylen);
};

/* A request in flight. Fields other than `unit` and `abort_*` are private. */
struct shard_call {
    struct router *r;
    const struct rt_view *v; /* the request's view (in-sync policy picks from it) */
    const struct rt_collection *coll;
    struct shard_call_policy pol;
    struct shard_call_ops ops;
    void *arg;
    int64_t deadline;
    struct shard_call_unit *unit; /* [coll->shards] */
    int *extra;                   /* batch: shards this request sent per node (v->nodes index) */
    struct rpc_fanout *fo;
    struct sc_call *calls; /* by fan-out index */
    int n_calls, cap_calls;
    uint32_t *retry; /* scratch list of shards to resend at once */
    size_t n_retry;
    /* Set when shard_call_run returns an abort code: the node's answer. */
    grpc_status_code abort_code;
    uint32_t abort_shard;
    char abort_node[129], abort_addr[256], abort_details[RPC_DETAILS_MAX];
};

/* Sets up a request on coll (borrowed from v, which outlives sc). 0, or -1 on
 * ENOMEM (shard_call_free still needed). */
int shard_call_init(struct shard_call *sc, struct router *r, const struct rt_view *v,
                    const struct rt_collection *coll, const struct shard_call_policy *pol,
                    const struct shard_call_ops *ops, void *arg, int64_t deadline);

/* Makes shard part of the request. */
void shard_call_want(struct shard_call *sc, uint32_t shard);

/*
 * Runs every wanted shard to DONE or FAILED (unit[s].code / msg say why).
 * Returns GRPC_STATUS_OK, or the code of a node's answer that aborts the
 * request (abort_* set; shards still running are abandoned). Once per
 * request: at the end its node calls, retries and failed shards are counted
 * in the router's metrics (vecshard_router_shard_*_total). Every node call
 * carries the request's x-request-id (router_node_opts).
 */
grpc_status_code shard_call_run(struct shard_call *sc);

/*
 * After shard_call_run of a read over every shard: *ok gets the shards that
 * answered and missing[0..*n_missing) the others (ascending). UNAVAILABLE
 * ("<what> covered 2 of 3 shards, min_coverage 1 needs 3: missing shard 1
 * (why)") when fewer than min_coverage (0 = 1.0) of them answered, else OK.
 */
grpc_status_code shard_call_coverage(struct shard_call *sc, struct rpc_call *c, const char *what,
                                     float min_coverage, uint32_t *missing, uint32_t *n_missing,
                                     uint32_t *ok);

/* Cancels what still runs and frees everything, replies included. */
void shard_call_free(struct shard_call *sc);

#endif
