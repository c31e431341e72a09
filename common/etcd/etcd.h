/*
 * etcd.h — vecshard's client for etcd v3, spoken through etcd's JSON gateway
 * (POST /v3/... over HTTP/1.1, libcurl + cJSON).
 *
 * Why the gateway and not gRPC: the gateway needs no generated etcd protos,
 * works with every etcd 3.4+ and is easy to inspect with curl. Its quirks
 * (base64 keys and values, int64 as strings, zero values omitted) are hidden
 * here; callers see plain bytes and int64_t.
 *
 * Shape of the API:
 *   - one etcd_client per process, shared by all threads; it holds the
 *     endpoint list (failover on connection errors) and a small pool of curl
 *     handles;
 *   - unary calls (put/get/range/delete/txn/lease/election) return an
 *     etcd_status and fill caller-provided result structs;
 *   - background threads for what streams: etcd_lease_keeper (keep-alive
 *     every TTL/3), etcd_watch (prefix watch that resumes and re-lists on
 *     compaction) and etcd_observe (election leader changes).
 *
 * Errors: every call returns ETCD_OK (0) or an error status, and, when `err`
 * is not NULL, writes a one-line message into it. Nothing here aborts or
 * exits.
 *
 * Memory: result structs (etcd_kv, etcd_kvs, etcd_txn_result,
 * etcd_leader) are owned by the caller and filled by the library; their
 * contents are released with the matching *_clear / *_free function, which
 * also resets them to empty so a second call is harmless. On error a result
 * struct is left empty (safe to clear). Keys and values are byte strings with
 * an explicit length and, for convenience, a NUL after the last byte.
 */
#ifndef VECSHARD_ETCD_H
#define VECSHARD_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ status */

typedef enum etcd_status {
    ETCD_OK = 0,
    ETCD_EUNAVAILABLE, /* no endpoint reachable, or the request timed out */
    ETCD_ENOTFOUND,    /* key (or election leader) absent */
    ETCD_ELEASE,       /* lease not found or expired */
    ETCD_ECOMPACTED,   /* requested revision has been compacted */
    ETCD_EPROTO,       /* reply not understood, or an unexpected etcd error */
    ETCD_EINVAL,       /* bad argument (ours or rejected by etcd) */
    ETCD_ENOMEM,
    ETCD_ECANCELED, /* a blocking call was cancelled (etcd_cancel_fire) */
} etcd_status;

#define ETCD_ERR_MAX 256

/* Caller-provided message buffer; every call that takes one may pass NULL. */
typedef struct etcd_err {
    char msg[ETCD_ERR_MAX];
} etcd_err;

/* Static name of a status ("ETCD_OK", "ETCD_EUNAVAILABLE", ...). */
const char *etcd_status_str(etcd_status st);

/* ------------------------------------------------------------ client */

typedef struct etcd_client etcd_client;

/*
 * Creates a client for a comma-separated endpoint list
 * ("http://127.0.0.1:2379,http://10.0.0.2:2379"). timeout_ms bounds every
 * unary call (all failover attempts included); <= 0 means 5000 ms. The client
 * is thread-safe. Caller owns *out and frees it with etcd_client_free after
 * every keeper, watch and observe using it has been stopped.
 */
etcd_status etcd_client_new(const char *endpoints, long timeout_ms, etcd_client **out,
                            etcd_err *err);

/* Frees the client and its pooled connections; NULL is a no-op. */
void etcd_client_free(etcd_client *c);

/* TLS to etcd (https:// endpoints): PEM file paths; NULL fields are unset. */
typedef struct etcd_tls {
    const char *ca;   /* CA bundle that verifies etcd's certificate (NULL: system roots) */
    const char *cert; /* client certificate (etcd --client-cert-auth); with key */
    const char *key;  /* its private key */
} etcd_tls;

/*
 * Sets the TLS files every request of c uses (libcurl CURLOPT_CAINFO,
 * CURLOPT_SSLCERT, CURLOPT_SSLKEY); copied. Call once, right after
 * etcd_client_new and before any other use of c. Fails with ETCD_EINVAL when
 * a file cannot be read or cert and key are not both set or both unset.
 */
etcd_status etcd_client_set_tls(etcd_client *c, const etcd_tls *tls, etcd_err *err);

/* What the client's own requests saw of etcd, as ages in milliseconds
 * (-1 = never). For metrics and probes: reading it takes no lock and makes
 * no request. */
struct etcd_client_health {
    int64_t ok_age_ms;   /* since the last request an endpoint answered (any HTTP status) */
    int64_t fail_age_ms; /* since the last one that reached no endpoint or timed out */
};

/* Fills *h. Thread-safe. etcd counts as reachable when the last outcome was an answer
 * (ok_age_ms >= 0 and fail_age_ms < 0 or > ok_age_ms). */
void etcd_client_health(etcd_client *c, struct etcd_client_health *h);

/*
 * Normalises a user-given endpoint list for etcd_client_new: entries are
 * trimmed of white space, empty ones dropped, and http:// is added to those
 * without a scheme ("10.0.0.1:2379, https://e:2379" ->
 * "http://10.0.0.1:2379,https://e:2379"). Returns a malloc'ed string the
 * caller frees ("" if no endpoint is left), or NULL when out of memory.
 */
char *etcd_endpoints_normalise(const char *list);

/* ------------------------------------------------------------ data */

/* One key-value pair. key/value are malloc'ed, NUL-terminated copies. */
typedef struct etcd_kv {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} etcd_kv;

/* A list of pairs plus the store revision the reply was taken at. */
typedef struct etcd_kvs {
    etcd_kv *kvs;
    size_t n;
    int64_t revision; /* header.revision */
    int64_t count;    /* total matching keys (may exceed n when limited) */
    bool more;        /* true when a limit cut the list */
} etcd_kvs;

/* Frees the contents of kv and zeroes it; NULL is a no-op. */
void etcd_kv_clear(etcd_kv *kv);

/* Frees the contents of kvs and zeroes it; NULL is a no-op. */
void etcd_kvs_free(etcd_kvs *kvs);

/* ------------------------------------------------------------ kv */

/*
 * Writes key=value. lease 0 = none. When prev is not NULL the previous pair
 * is requested and stored there (prev->key == NULL when there was none;
 * caller clears it). *revision (optional) gets the revision of the write.
 */
etcd_status etcd_put(etcd_client *c, const char *key, const void *value, size_t value_len,
                     int64_t lease, etcd_kv *prev, int64_t *revision, etcd_err *err);

/* Reads one key into *out (caller clears it); ETCD_ENOTFOUND if absent. */
etcd_status etcd_get(etcd_client *c, const char *key, etcd_kv *out, etcd_err *err);

/*
 * Reads every key starting with prefix ("" = whole keyspace), in key order,
 * at most limit pairs (0 = all). Caller frees *out with etcd_kvs_free.
 */
etcd_status etcd_range(etcd_client *c, const char *prefix, int64_t limit, etcd_kvs *out,
                       etcd_err *err);

/* Deletes key (or, with prefix, every key under it); *deleted optional. */
etcd_status etcd_delete(etcd_client *c, const char *key, bool prefix, int64_t *deleted,
                        etcd_err *err);

/* Compacts history up to revision; physical waits until it is on disk. */
etcd_status etcd_compact(etcd_client *c, int64_t revision, bool physical, etcd_err *err);

/* ------------------------------------------------------------ txn */

typedef enum etcd_cmp_target {
    ETCD_CMP_CREATE, /* create_revision (0 = key absent) */
    ETCD_CMP_MOD,    /* mod_revision */
    ETCD_CMP_VERSION,
    ETCD_CMP_VALUE,
} etcd_cmp_target;

typedef enum etcd_cmp_result {
    ETCD_CMP_EQUAL,
    ETCD_CMP_NOT_EQUAL,
    ETCD_CMP_GREATER,
    ETCD_CMP_LESS,
} etcd_cmp_result;

/* One compare: `target(key) result operand`. Borrowed pointers. */
typedef struct etcd_cmp {
    const char *key;
    etcd_cmp_target target;
    etcd_cmp_result result;
    int64_t number;    /* operand for CREATE / MOD / VERSION */
    const void *value; /* operand for VALUE */
    size_t value_len;
} etcd_cmp;

typedef enum etcd_op_type {
    ETCD_OP_PUT,
    ETCD_OP_DELETE,
    ETCD_OP_RANGE,
} etcd_op_type;

/* One operation inside a txn. Borrowed pointers. */
typedef struct etcd_op {
    etcd_op_type type;
    const char *key;
    bool prefix;       /* DELETE / RANGE: key is a prefix */
    const void *value; /* PUT */
    size_t value_len;  /* PUT */
    int64_t lease;     /* PUT, 0 = none */
    int64_t limit;     /* RANGE, 0 = all */
    bool prev_kv;      /* PUT / DELETE: return previous pairs in kvs */
} etcd_op;

/* The reply to one etcd_op. */
typedef struct etcd_op_result {
    etcd_op_type type;
    int64_t revision; /* header.revision of the sub-response */
    etcd_kvs kvs;     /* RANGE: pairs; PUT/DELETE with prev_kv: previous pairs */
    int64_t deleted;  /* DELETE */
} etcd_op_result;

typedef struct etcd_txn_result {
    bool succeeded;
    int64_t revision;
    etcd_op_result *results; /* one per op of the branch that ran */
    size_t n;
} etcd_txn_result;

/*
 * Atomically: if every compare holds, run `success`, else run `failure`.
 * Caller frees *out with etcd_txn_result_free (out may be NULL).
 */
etcd_status etcd_txn(etcd_client *c, const etcd_cmp *cmps, size_t n_cmps, const etcd_op *success,
                     size_t n_success, const etcd_op *failure, size_t n_failure,
                     etcd_txn_result *out, etcd_err *err);

/* Frees the contents of r and zeroes it; NULL is a no-op. */
void etcd_txn_result_free(etcd_txn_result *r);

/* ------------------------------------------------------------ lease */

/* Grants a lease of ttl seconds; *id gets its ID, *granted_ttl (opt.) its TTL. */
etcd_status etcd_lease_grant(etcd_client *c, int64_t ttl, int64_t *id, int64_t *granted_ttl,
                             etcd_err *err);

/* One keep-alive; *ttl (optional) gets the renewed TTL. ETCD_ELEASE = gone. */
etcd_status etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ttl, etcd_err *err);

/* Revokes the lease, deleting its keys. ETCD_ELEASE if it does not exist. */
etcd_status etcd_lease_revoke(etcd_client *c, int64_t id, etcd_err *err);

/* Remaining and granted TTL of a lease (both optional). ETCD_ELEASE = gone. */
etcd_status etcd_lease_ttl(etcd_client *c, int64_t id, int64_t *ttl, int64_t *granted_ttl,
                           etcd_err *err);

typedef struct etcd_lease_keeper etcd_lease_keeper;

/*
 * Called once, from the keeper thread, when the lease is lost: why is
 * ETCD_ELEASE (etcd says it is gone) or ETCD_EUNAVAILABLE (no renewal
 * succeeded for a whole TTL, so it must be presumed expired). The keeper
 * thread then ends; the caller still calls etcd_lease_keeper_stop.
 */
typedef void (*etcd_lease_lost_fn)(void *arg, int64_t lease, etcd_status why);

/*
 * Starts a thread sending a keep-alive every ttl/3 seconds (retrying every
 * 500 ms after failures). Each keep-alive is bounded by the client timeout,
 * so keep that well below the TTL or the loss is reported late. Caller owns *out and must call
 * etcd_lease_keeper_stop.
 */
etcd_status etcd_lease_keeper_start(etcd_client *c, int64_t lease, int64_t ttl,
                                    etcd_lease_lost_fn on_lost, void *arg, etcd_lease_keeper **out,
                                    etcd_err *err);

/* Stops the keeper (does not revoke the lease), joins and frees it. */
void etcd_lease_keeper_stop(etcd_lease_keeper *k);

/* Milliseconds since the keeper's last successful keep-alive (since its
 * start before the first one). Thread-safe while the keeper is not stopped. */
int64_t etcd_lease_keeper_ok_age_ms(etcd_lease_keeper *k);

/* ------------------------------------------------------------ cancel */

/* A flag that makes a blocking call (etcd_campaign) return ETCD_ECANCELED. */
typedef struct etcd_cancel etcd_cancel;

/* Allocates an unfired token (NULL on ENOMEM). Caller frees it. */
etcd_cancel *etcd_cancel_new(void);

/* Fires the token; safe from any thread; the call returns within ~100 ms. */
void etcd_cancel_fire(etcd_cancel *t);

/* Frees the token once no call uses it; NULL is a no-op. */
void etcd_cancel_free(etcd_cancel *t);

/* ------------------------------------------------------------ watch */

typedef enum etcd_event_type {
    ETCD_EVENT_PUT,
    ETCD_EVENT_DELETE,
} etcd_event_type;

/* One change. For DELETE, kv holds the key and the deleting mod_revision. */
typedef struct etcd_event {
    etcd_event_type type;
    etcd_kv kv;
    etcd_kv prev_kv; /* prev_kv.key == NULL when not requested or absent */
} etcd_event;

/*
 * Events of one etcd revision batch, in order; `revision` is the header
 * revision of the message. Memory is the library's, valid during the call.
 */
typedef void (*etcd_watch_events_fn)(void *arg, const etcd_event *events, size_t n,
                                     int64_t revision);

/*
 * Compaction recovery: the watch could not resume because history was
 * compacted, so it re-listed the prefix itself. snapshot is the complete
 * current state (the caller replaces its cache with it); events resume at
 * snapshot->revision + 1. Also called when start_revision is already
 * compacted. Memory is the library's, valid during the call.
 */
typedef void (*etcd_watch_relist_fn)(void *arg, const etcd_kvs *snapshot);

/*
 * Optional: the stream broke (why = ETCD_EUNAVAILABLE / ETCD_EPROTO / ...)
 * and will be re-established, resuming from the last revision seen + 1.
 */
typedef void (*etcd_watch_error_fn)(void *arg, etcd_status why, const char *msg);

typedef struct etcd_watch_opts {
    const char *prefix;     /* watch every key under it ("" = all keys) */
    int64_t start_revision; /* 0 = from now */
    bool prev_kv;
    bool progress_notify; /* ask etcd for periodic empty messages */
    /*
     * Dead-stream detection: a stream that delivers no byte for this long is
     * dropped and re-established. Set it above the server's progress-notify
     * interval when progress_notify is on. 0 = never.
     */
    long idle_timeout_ms;
    etcd_watch_events_fn on_events; /* required */
    etcd_watch_relist_fn on_relist; /* required */
    etcd_watch_error_fn on_error;   /* optional */
    void *arg;
} etcd_watch_opts;

typedef struct etcd_watch etcd_watch;

/*
 * Starts a thread watching opts->prefix; callbacks run on that thread, one at
 * a time. The strings in opts are copied. Caller owns *out and must call
 * etcd_watch_stop. Returns once the thread is started (not yet connected).
 */
etcd_status etcd_watch_start(etcd_client *c, const etcd_watch_opts *opts, etcd_watch **out,
                             etcd_err *err);

/* Drops the current stream; the thread reconnects and resumes (for tests
 * and operators who know an endpoint went bad). */
void etcd_watch_reconnect(etcd_watch *w);

/* Revision the next event is expected at (0 = not yet known). */
int64_t etcd_watch_next_revision(etcd_watch *w);

/*
 * True while a stream is established: etcd answered "created" and the
 * stream has not ended, failed or been idle longer than idle_timeout_ms
 * since. *since_ms (optional) is when that last changed (CLOCK_MONOTONIC
 * milliseconds; the watch's start if it never changed). Any thread.
 */
bool etcd_watch_live(etcd_watch *w, int64_t *since_ms);

/*
 * Stops the thread (returns within ~100 ms, even mid-stream), joins, frees.
 * Must not be called from a callback of the same watch. NULL is a no-op.
 */
void etcd_watch_stop(etcd_watch *w);

/* ------------------------------------------------------------ election */

/* A held leadership; pass it back to etcd_resign. */
typedef struct etcd_leader {
    char *name; /* election name */
    size_t name_len;
    char *key; /* "<name>/<lease hex>" */
    size_t key_len;
    int64_t rev;
    int64_t lease;
} etcd_leader;

/* Frees the contents of l and zeroes it; NULL is a no-op. */
void etcd_leader_clear(etcd_leader *l);

/*
 * Campaigns in election `name` with `value`, its key bound to `lease`. Blocks
 * until elected (no timeout: a follower waits as long as the leader lives)
 * or until cancel (optional) fires -> ETCD_ECANCELED, in which case etcd
 * withdraws the candidacy. Caller clears *out.
 */
etcd_status etcd_campaign(etcd_client *c, const char *name, const void *value, size_t value_len,
                          int64_t lease, etcd_cancel *cancel, etcd_leader *out, etcd_err *err);

/* Gives up leadership held as *l (deletes the leader key). */
etcd_status etcd_resign(etcd_client *c, const etcd_leader *l, etcd_err *err);

/* Current leader's pair (value = its campaign value); ETCD_ENOTFOUND if none. */
etcd_status etcd_election_leader(etcd_client *c, const char *name, etcd_kv *out, etcd_err *err);

/* A new leader (kv of its key). Memory is the library's, valid during the call. */
typedef void (*etcd_observe_fn)(void *arg, const etcd_kv *leader);

typedef struct etcd_observe etcd_observe;

/*
 * Starts a thread streaming leader changes of `name` to on_leader (the current
 * leader first). Reconnects on errors; a leader already delivered (same key
 * and mod_revision) is not delivered twice. on_error is optional. Caller owns
 * *out and must call etcd_observe_stop.
 */
etcd_status etcd_observe_start(etcd_client *c, const char *name, long idle_timeout_ms,
                               etcd_observe_fn on_leader, etcd_watch_error_fn on_error, void *arg,
                               etcd_observe **out, etcd_err *err);

/* Stops the observer (promptly), joins, frees; NULL is a no-op. */
void etcd_observe_stop(etcd_observe *o);

/* ------------------------------------------------------------ codec */

/* Standard base64 with padding; *out is malloc'ed, NUL-terminated. */
etcd_status etcd_base64_encode(const void *src, size_t len, char **out, size_t *out_len);

/* Decodes standard padded base64; *out malloc'ed with a NUL after the data. */
etcd_status etcd_base64_decode(const char *src, size_t len, char **out, size_t *out_len);

/* Parses a decimal int64 ("-12"); false on junk, empty input or overflow. */
bool etcd_parse_int64(const char *s, int64_t *out);

/*
 * The range_end that selects every key starting with prefix[0..len): the
 * prefix with its last non-0xff byte incremented and what follows dropped.
 * An empty or all-0xff prefix gives "\0" (len 1): the whole keyspace.
 * *out is malloc'ed and NUL-terminated.
 */
etcd_status etcd_prefix_end(const char *prefix, size_t len, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif
