/*
 * etcd_election.c — leader election over etcd's v3election service
 * (POST /v3/election/...): campaign, resign, current leader and observe.
 *
 * etcd does the work: a candidate's key "<name>/<lease hex>" is created
 * under its lease, and the lowest create_revision leads. campaign is one POST
 * whose reply only arrives once this candidate leads, so it runs with no
 * timeout; it can be cancelled, and closing the connection makes the gateway
 * withdraw the candidacy (the key is deleted), so a cancelled campaign leaves
 * nothing behind. If the lease expires the key goes and leadership with it:
 * the holder must keep the lease alive (etcd_lease_keeper).
 *
 * observe is a stream like watch (one {"result":{"kv":...}} per leader) but
 * has no revision to resume from: after a reconnect etcd sends the current
 * leader again, and the thread suppresses it when it is the one it delivered
 * last (same key and mod_revision).
 */
#include "common/etcd/etcd_internal.h"

#include <stdlib.h>
#include <string.h>

#define OBSERVE_BACKOFF_MIN_MS 100
#define OBSERVE_BACKOFF_MAX_MS 2000

/* Allocates an unfired cancel token. */
etcd_cancel *etcd_cancel_new(void)
{
    etcd_cancel *t = malloc(sizeof *t);

    if (t) atomic_init(&t->fired, false);
    return t;
}

/* Fires the token. */
void etcd_cancel_fire(etcd_cancel *t)
{
    atomic_store(&t->fired, true);
}

/* Frees the token. */
void etcd_cancel_free(etcd_cancel *t)
{
    free(t);
}

/* xfer stop hook for a campaign: its token fired. */
static bool cancel_fired(void *arg)
{
    etcd_cancel *t = arg;

    return t && atomic_load(&t->fired);
}

/* Frees l's strings and zeroes it. */
void etcd_leader_clear(etcd_leader *l)
{
    if (!l) return;
    free(l->name);
    free(l->key);
    memset(l, 0, sizeof *l);
}

/* Reads a LeaderKey object into *l. */
static etcd_status leader_from_json(const cJSON *j, etcd_leader *l, etcd_err *err)
{
    etcd_status st;

    memset(l, 0, sizeof *l);
    if (!cJSON_IsObject(j)) return etcd_fail(err, ETCD_EPROTO, "campaign: reply without leader");
    st = etcd_json_b64(j, "name", &l->name, &l->name_len, err);
    if (st) goto fail;
    st = etcd_json_b64(j, "key", &l->key, &l->key_len, err);
    if (st) goto fail;
    if (!etcd_json_i64(j, "rev", &l->rev) || !etcd_json_i64(j, "lease", &l->lease)) {
        st = etcd_fail(err, ETCD_EPROTO, "campaign: bad rev/lease");
        goto fail;
    }
    return ETCD_OK;
fail:
    etcd_leader_clear(l);
    return st;
}

/* Campaigns; see etcd.h. */
etcd_status etcd_campaign(etcd_client *c, const char *name, const void *value, size_t value_len,
                          int64_t lease, etcd_cancel *cancel, etcd_leader *out, etcd_err *err)
{
    struct etcd_xfer x = {
        .path = "/v3/election/campaign", .should_stop = cancel_fired, .arg = cancel};
    struct etcd_buf buf = {0};
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    char *text = NULL;
    long http;
    etcd_status st;

    memset(out, 0, sizeof *out);
    if (!name || !*name || lease == 0 || (!value && value_len)) {
        st = etcd_fail(err, ETCD_EINVAL, "campaign needs a name, a lease and a value");
        goto fail;
    }
    if (!body || !etcd_json_add_b64(body, "name", name, strlen(name)) ||
        !etcd_json_add_i64(body, "lease", lease) ||
        !etcd_json_add_b64(body, "value", value ? value : "", value_len) ||
        !(text = cJSON_PrintUnformatted(body))) {
        st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
        goto fail;
    }
    x.body = text;
    st = etcd_xfer_run(c, &x, &http, &buf, err);
    if (st) goto fail;
    reply = buf.len ? cJSON_ParseWithLength(buf.data, buf.len) : NULL;
    if (!reply) {
        st = etcd_fail(err, ETCD_EPROTO, "campaign: HTTP %ld, reply is not JSON", http);
        goto fail;
    }
    if (http != 200) {
        st = etcd_error_status(http, reply, "campaign", err);
        goto fail;
    }
    st = leader_from_json(cJSON_GetObjectItemCaseSensitive(reply, "leader"), out, err);
fail:
    cJSON_Delete(reply);
    cJSON_Delete(body);
    free(text);
    etcd_buf_free(&buf);
    return st;
}

/* Resigns; see etcd.h. */
etcd_status etcd_resign(etcd_client *c, const etcd_leader *l, etcd_err *err)
{
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    cJSON *lk = cJSON_AddObjectToObject(body, "leader");
    etcd_status st;

    if (!l || !l->name || !l->key) {
        st = etcd_fail(err, ETCD_EINVAL, "resign needs a leader from etcd_campaign");
        goto fail;
    }
    if (!lk || !etcd_json_add_b64(lk, "name", l->name, l->name_len) ||
        !etcd_json_add_b64(lk, "key", l->key, l->key_len) ||
        !etcd_json_add_i64(lk, "rev", l->rev) || !etcd_json_add_i64(lk, "lease", l->lease)) {
        st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
        goto fail;
    }
    st = etcd_call(c, "/v3/election/resign", body, &reply, err);
fail:
    cJSON_Delete(body);
    cJSON_Delete(reply);
    return st;
}

/* Current leader; see etcd.h. */
etcd_status etcd_election_leader(etcd_client *c, const char *name, etcd_kv *out, etcd_err *err)
{
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    etcd_err local = {{0}};
    etcd_status st;

    memset(out, 0, sizeof *out);
    if (!name || !*name) {
        st = etcd_fail(err, ETCD_EINVAL, "leader needs an election name");
        goto fail;
    }
    if (!body || !etcd_json_add_b64(body, "name", name, strlen(name))) {
        st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
        goto fail;
    }
    st = etcd_call(c, "/v3/election/leader", body, &reply, &local);
    /* etcd reports "election: no leader" as UNKNOWN (code 2) with HTTP 500. */
    if (st == ETCD_EPROTO && strstr(local.msg, "no leader")) st = ETCD_ENOTFOUND;
    if (st) {
        if (err) *err = local;
        goto fail;
    }
    st = etcd_kv_from_json(cJSON_GetObjectItemCaseSensitive(reply, "kv"), out, err);
fail:
    cJSON_Delete(body);
    cJSON_Delete(reply);
    return st;
}

/* ------------------------------------------------------------ observe */

struct etcd_observe {
    etcd_client *c; /* borrowed */
    char *body;     /* the request, built once */
    long idle_timeout_ms;
    etcd_observe_fn on_leader;
    etcd_watch_error_fn on_error;
    void *arg;
    pthread_t thread;
    atomic_bool stop;
    /* observe thread only */
    char *last_key; /* last leader delivered */
    int64_t last_mod;
    etcd_status stream_st;
    etcd_err stream_err;
};

/* Handles one line of the observe stream; nonzero ends the stream. */
static int observe_line(void *arg, const char *line, size_t len)
{
    struct etcd_observe *o = arg;
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    etcd_kv kv;
    int stop = 1;

    if (!res) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        o->stream_st = e ? etcd_error_status(200, e, "observe", &o->stream_err)
                         : etcd_fail(&o->stream_err, ETCD_EPROTO, "observe: bad line");
        goto done;
    }
    o->stream_st =
        etcd_kv_from_json(cJSON_GetObjectItemCaseSensitive(res, "kv"), &kv, &o->stream_err);
    if (o->stream_st) goto done;
    stop = 0;
    if (!o->last_key || strcmp(o->last_key, kv.key) || o->last_mod != kv.mod_revision) {
        o->on_leader(o->arg, &kv);
        free(o->last_key);
        o->last_key = kv.key;
        o->last_mod = kv.mod_revision;
        kv.key = NULL;
    }
    etcd_kv_clear(&kv);
done:
    cJSON_Delete(j);
    return stop;
}

/* xfer stop hook for the observer. */
static bool observe_should_stop(void *arg)
{
    struct etcd_observe *o = arg;

    return atomic_load(&o->stop);
}

/* Observe thread: stream leaders, reconnect with backoff, until stopped. */
static void *observe_main(void *arg)
{
    struct etcd_observe *o = arg;
    int64_t backoff = OBSERVE_BACKOFF_MIN_MS;

    while (!atomic_load(&o->stop)) {
        struct etcd_xfer x = {.path = "/v3/election/observe",
                              .body = o->body,
                              .idle_timeout_ms = o->idle_timeout_ms,
                              .on_line = observe_line,
                              .should_stop = observe_should_stop,
                              .arg = o};
        struct etcd_buf buf = {0};
        etcd_err err = {{0}};
        int64_t delivered = o->last_mod;
        long http;
        etcd_status st;

        o->stream_st = ETCD_OK;
        st = etcd_xfer_run(o->c, &x, &http, &buf, &err);
        if (st == ETCD_OK && http != 200)
            st = etcd_fail(&err, ETCD_EPROTO, "observe: HTTP %ld: %.100s", http,
                           buf.data ? buf.data : "");
        else if (st == ETCD_OK && o->stream_st)
            st = etcd_fail(&err, o->stream_st, "%s", o->stream_err.msg);
        else if (st == ETCD_OK)
            st = etcd_fail(&err, ETCD_EUNAVAILABLE, "observe: stream ended");
        etcd_buf_free(&buf);
        if (atomic_load(&o->stop)) break;
        if (o->on_error) o->on_error(o->arg, st, err.msg);
        if (o->last_mod != delivered) backoff = OBSERVE_BACKOFF_MIN_MS;
        if (etcd_sleep_unless(&o->stop, backoff)) break;
        backoff = backoff * 2 > OBSERVE_BACKOFF_MAX_MS ? OBSERVE_BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* Starts an observer; see etcd.h. */
etcd_status etcd_observe_start(etcd_client *c, const char *name, long idle_timeout_ms,
                               etcd_observe_fn on_leader, etcd_watch_error_fn on_error, void *arg,
                               etcd_observe **out, etcd_err *err)
{
    struct etcd_observe *o = NULL;
    cJSON *body = NULL;
    etcd_status st;
    int rc;

    *out = NULL;
    if (!c || !name || !*name || !on_leader || idle_timeout_ms < 0)
        return etcd_fail(err, ETCD_EINVAL, "observe needs a client, a name and on_leader");
    o = calloc(1, sizeof *o);
    body = cJSON_CreateObject();
    if (!o || !body || !etcd_json_add_b64(body, "name", name, strlen(name)) ||
        !(o->body = cJSON_PrintUnformatted(body))) {
        st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
        goto fail;
    }
    o->c = c;
    o->idle_timeout_ms = idle_timeout_ms;
    o->on_leader = on_leader;
    o->on_error = on_error;
    o->arg = arg;
    atomic_init(&o->stop, false);
    rc = pthread_create(&o->thread, NULL, observe_main, o);
    if (rc) {
        st = etcd_fail(err, ETCD_ENOMEM, "pthread_create: %s", strerror(rc));
        goto fail;
    }
    cJSON_Delete(body);
    *out = o;
    return ETCD_OK;
fail:
    cJSON_Delete(body);
    if (o) free(o->body);
    free(o);
    return st;
}

/* Stops, joins, frees. */
void etcd_observe_stop(etcd_observe *o)
{
    if (!o) return;
    atomic_store(&o->stop, true);
    pthread_join(o->thread, NULL);
    free(o->body);
    free(o->last_key);
    free(o);
}
