/*
 * etcd_internal.h — what the files of common/etcd share and callers must not
 * see: the client struct, the HTTP transfer engine (etcd_http.c) and the JSON
 * helpers that hide the gateway's encoding (etcd_codec.c).
 *
 * File map:
 *   etcd_codec.c    base64, int64 strings, prefix range_end, kv <-> JSON
 *   etcd_http.c     client object, curl handle pool, failover, transfers
 *   etcd_kv.c       put / get / range / delete / compact / txn
 *   etcd_lease.c    lease calls and the keep-alive thread
 *   etcd_watch.c    the resuming, re-listing watch thread
 *   etcd_election.c campaign / resign / leader / observe
 */
#ifndef VECSHARD_ETCD_INTERNAL_H
#define VECSHARD_ETCD_INTERNAL_H

#include "common/etcd/etcd.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#define ETCD_POOL_MAX 8

struct etcd_conn;

struct etcd_client {
    char **endpoints; /* "http://host:port", no trailing slash */
    size_t n_endpoints;
    atomic_size_t preferred; /* endpoint that answered last; tried first */
    long timeout_ms;
    long connect_timeout_ms;
    pthread_mutex_t pool_mu; /* protects pool[] and n_pool */
    struct etcd_conn *pool[ETCD_POOL_MAX];
    size_t n_pool;
    _Atomic int64_t last_ok_ms, last_fail_ms; /* etcd_client_health */
    char *tls_ca, *tls_cert, *tls_key; /* etcd_client_set_tls; NULL: unset */
};

struct etcd_cancel {
    atomic_bool fired;
};

/* A growable byte buffer; data is NUL-terminated when not NULL. */
struct etcd_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Appends n bytes; false on ENOMEM. */
bool etcd_buf_append(struct etcd_buf *b, const void *p, size_t n);

/* Frees the buffer's memory and zeroes it. */
void etcd_buf_free(struct etcd_buf *b);

/* A line of a streamed reply; return nonzero to end the stream (status OK). */
typedef int (*etcd_line_fn)(void *arg, const char *line, size_t len);

/* Polled about every 100 ms and per chunk; true ends the transfer (ECANCELED). */
typedef bool (*etcd_stop_fn)(void *arg);

/* One POST, described for etcd_xfer_run. Pointers are borrowed. */
struct etcd_xfer {
    const char *path;         /* "/v3/kv/put" */
    const char *body;         /* JSON text */
    long timeout_ms;          /* whole transfer incl. failover; 0 = none */
    long idle_timeout_ms;     /* no byte for this long ends it; 0 = never */
    etcd_line_fn on_line;     /* NULL: the body is collected into *out */
    etcd_stop_fn should_stop; /* optional */
    void *arg;                /* for on_line and should_stop */
};

/*
 * Runs one POST on the first endpoint that accepts a connection (starting at
 * the preferred one). Returns ETCD_OK when the reply ended (or on_line ended
 * it) with *http set and, without on_line or on an HTTP error, the body in
 * *out (caller frees); ETCD_EUNAVAILABLE when no endpoint could be reached,
 * on timeout or a broken/idle stream; ETCD_ECANCELED when should_stop fired.
 */
etcd_status etcd_xfer_run(etcd_client *c, const struct etcd_xfer *x, long *http,
                          struct etcd_buf *out, etcd_err *err);

/*
 * A unary call: POSTs body (not consumed) to path with the client timeout
 * and returns the parsed 200 reply in *reply (caller cJSON_Deletes it), or
 * the status mapped from etcd's error reply.
 */
etcd_status etcd_call(etcd_client *c, const char *path, const cJSON *body, cJSON **reply,
                      etcd_err *err);

/* Maps an etcd/gateway error object ({"code":5,"message":...}) to a status. */
etcd_status etcd_error_status(long http, const cJSON *error, const char *what, etcd_err *err);

/* Formats a message into err (if not NULL) and returns st. */
etcd_status etcd_fail(etcd_err *err, etcd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sleeps ms in short slices; returns early (true) once *stop is set. */
bool etcd_sleep_unless(const atomic_bool *stop, int64_t ms);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t etcd_now_ms(void);

/* ---- JSON helpers (etcd_codec.c) ---- */

/* Reads an int64 field sent as string or number; absent = 0. false if junk. */
bool etcd_json_i64(const cJSON *obj, const char *name, int64_t *out);

/* Reads a boolean field; absent = false. */
bool etcd_json_bool(const cJSON *obj, const char *name);

/* Adds name: base64(data); false on ENOMEM. */
bool etcd_json_add_b64(cJSON *obj, const char *name, const void *data, size_t len);

/* Adds name: "<v>" (int64 as a string); false on ENOMEM. */
bool etcd_json_add_i64(cJSON *obj, const char *name, int64_t v);

/* Adds "key" (and "range_end" when prefix) for key; false on ENOMEM. */
bool etcd_json_add_key(cJSON *obj, const char *key, bool prefix);

/* Decodes a base64 field into a malloc'ed NUL-terminated copy ("" if absent). */
etcd_status etcd_json_b64(const cJSON *obj, const char *name, char **out, size_t *out_len,
                          etcd_err *err);

/* Fills *out from a KeyValue object; on error *out is left empty. */
etcd_status etcd_kv_from_json(const cJSON *j, etcd_kv *out, etcd_err *err);

/* Fills *out from a RangeResponse-shaped object (header, kvs, count, more). */
etcd_status etcd_kvs_from_json(const cJSON *j, const char *array_name, etcd_kvs *out,
                               etcd_err *err);

/* header.revision of a reply (0 if absent). */
int64_t etcd_json_header_rev(const cJSON *reply);

#endif
