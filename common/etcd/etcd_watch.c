/*
 * etcd_watch.c — a prefix watch that never silently loses an event.
 *
 * One thread per watch POSTs /v3/watch and reads the endless reply, one JSON
 * object per line: "created", then event batches, progress notifications
 * (header only) and possibly "canceled". The thread keeps next_rev, the
 * revision of the next event it expects:
 *   - after an event batch: last event's mod_revision + 1;
 *   - a progress notification does NOT move it: etcd 3.4.23 can send one
 *     whose header revision is ahead of events still queued for this
 *     watcher (fixed upstream in 3.4.25), and moving next_rev past them
 *     would drop those events; notifications only prove the stream alive;
 *   - on "created" of a watch started "from now": header.revision + 1.
 * When the stream ends, errors, goes idle longer than idle_timeout_ms (dead
 * TCP peer) or is dropped by etcd_watch_reconnect, the thread waits a short
 * backoff (100 ms doubling to 2 s) and watches again from next_rev, on the
 * first endpoint that answers. Events below next_rev are dropped, so a batch
 * is never delivered twice.
 *
 * Compaction: if next_rev has been compacted, etcd answers "canceled" with
 * compact_revision. We chose to re-list inside the watch rather than leave it
 * to the caller: the thread ranges the whole prefix, hands the snapshot to
 * on_relist (the caller replaces its cache), and watches again from
 * snapshot.revision + 1. Callers thus get one code path for "start from
 * scratch", and the range/watch hand-off has no gap.
 *
 * Liveness (etcd_watch_live): a stream is "up" from its "created" line
 * until it ends, errors or goes idle; up_changed_ms is when that last
 * flipped. A watch that is up has heard from etcd within idle_timeout_ms,
 * so a reader (the router's /readyz) can tell a current cache from one
 * frozen by an outage without asking etcd itself.
 *
 * Concurrency: callbacks run on the watch thread only. stop and reconnect
 * are atomics written by other threads; next_rev, up and up_changed_ms are
 * atomics so that etcd_watch_next_revision and etcd_watch_live can read
 * them; everything else belongs to the thread.
 */
#include "common/etcd/etcd_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct etcd_watch {
    etcd_client *c; /* borrowed */
    etcd_watch_opts o;
    char *prefix; /* owned copy; o.prefix points here */
    pthread_t thread;
    atomic_bool stop;
    atomic_bool reconnect;
    _Atomic int64_t next_rev;
    atomic_bool up;                /* a stream is established (see the top) */
    _Atomic int64_t up_changed_ms; /* etcd_now_ms() when `up` last flipped */
    /* per-stream state, watch thread only */
    bool need_relist;
    bool created;
    etcd_status stream_st;
    etcd_err stream_err;
};

/* Sleeps ms in 20 ms slices; true once *stop is set. */
bool etcd_sleep_unless(const atomic_bool *stop, int64_t ms)
{
    int64_t end = etcd_now_ms() + ms;

    while (!atomic_load(stop)) {
        int64_t left = end - etcd_now_ms();
        struct timespec ts = {0, 20 * 1000000};
        if (left <= 0) return false;
        if (left < 20) ts.tv_nsec = left * 1000000;
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Parses one event object into *ev (left empty on error). */
static etcd_status event_from_json(const cJSON *j, etcd_event *ev, etcd_err *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *prev = cJSON_GetObjectItemCaseSensitive(j, "prev_kv");
    etcd_status st;

    memset(ev, 0, sizeof *ev);
    /* PUT is the zero value, so it is omitted. */
    ev->type = cJSON_IsString(type) && !strcmp(type->valuestring, "DELETE") ? ETCD_EVENT_DELETE
                                                                            : ETCD_EVENT_PUT;
    st = etcd_kv_from_json(cJSON_GetObjectItemCaseSensitive(j, "kv"), &ev->kv, err);
    if (st) return st;
    if (prev) {
        st = etcd_kv_from_json(prev, &ev->prev_kv, err);
        if (st) etcd_kv_clear(&ev->kv);
    }
    return st;
}

/* Frees n parsed events and the array. */
static void events_free(etcd_event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        etcd_kv_clear(&evs[i].kv);
        etcd_kv_clear(&evs[i].prev_kv);
    }
    free(evs);
}

/* Delivers an events message, skipping anything below next_rev. */
static etcd_status deliver_events(struct etcd_watch *w, const cJSON *arr, int64_t header_rev)
{
    int total = cJSON_GetArraySize(arr);
    int64_t next = atomic_load(&w->next_rev);
    etcd_event *evs = calloc((size_t)total, sizeof *evs);
    size_t n = 0, first = 0;
    const cJSON *it;
    etcd_status st = ETCD_OK;

    if (!evs) return etcd_fail(&w->stream_err, ETCD_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, arr)
    {
        st = event_from_json(it, &evs[n], &w->stream_err);
        if (st) goto fail;
        n++;
    }
    while (first < n && next && evs[first].kv.mod_revision < next)
        first++;
    if (first < n) {
        w->o.on_events(w->o.arg, evs + first, n - first, header_rev);
        atomic_store(&w->next_rev, evs[n - 1].kv.mod_revision + 1);
    }
fail:
    events_free(evs, n);
    return st;
}

/* Sets the stream's liveness, stamping the time of a change. */
static void set_up(struct etcd_watch *w, bool up)
{
    if (atomic_exchange(&w->up, up) != up) atomic_store(&w->up_changed_ms, etcd_now_ms());
}

/* Handles one line of the watch stream; nonzero ends the stream. */
static int watch_line(void *arg, const char *line, size_t len)
{
    struct etcd_watch *w = arg;
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    const cJSON *events;
    int64_t hrev, compact;
    int stop = 1;

    if (!j) {
        w->stream_st = etcd_fail(&w->stream_err, ETCD_EPROTO, "watch: bad JSON line");
        goto done;
    }
    if (!res) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        w->stream_st = e ? etcd_error_status(200, e, "watch", &w->stream_err)
                         : etcd_fail(&w->stream_err, ETCD_EPROTO, "watch: line without result");
        goto done;
    }
    hrev = etcd_json_header_rev(res);
    if (etcd_json_bool(res, "created")) {
        w->created = true;
        set_up(w, true);
        if (atomic_load(&w->next_rev) == 0) atomic_store(&w->next_rev, hrev + 1);
        stop = 0;
        goto done;
    }
    if (etcd_json_bool(res, "canceled")) {
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(res, "cancel_reason");
        if (etcd_json_i64(res, "compact_revision", &compact) && compact > 0) {
            w->need_relist = true;
            w->stream_st = etcd_fail(&w->stream_err, ETCD_ECOMPACTED,
                                     "watch: revision %lld compacted (compact_revision %lld)",
                                     (long long)atomic_load(&w->next_rev), (long long)compact);
        } else {
            w->stream_st = etcd_fail(&w->stream_err, ETCD_EPROTO, "watch canceled by etcd: %s",
                                     cJSON_IsString(why) ? why->valuestring : "no reason");
        }
        goto done;
    }
    events = cJSON_GetObjectItemCaseSensitive(res, "events");
    if (cJSON_GetArraySize(events) > 0) {
        w->stream_st = deliver_events(w, events, hrev);
        stop = w->stream_st != ETCD_OK;
        goto done;
    }
    /* Progress notification: the stream is alive; next_rev stays (see the top). */
    stop = 0;
done:
    cJSON_Delete(j);
    return stop;
}

/* xfer stop hook: the watch is stopping or asked to reconnect. */
static bool watch_should_stop(void *arg)
{
    struct etcd_watch *w = arg;

    return atomic_load(&w->stop) || atomic_load(&w->reconnect);
}

/* Builds the create_request body for the current next_rev; NULL on ENOMEM. */
static char *watch_body(struct etcd_watch *w)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *req = cJSON_AddObjectToObject(body, "create_request");
    int64_t next = atomic_load(&w->next_rev);
    char *text = NULL;

    if (!req || !etcd_json_add_key(req, w->prefix, true)) goto done;
    if (next && !etcd_json_add_i64(req, "start_revision", next)) goto done;
    if (w->o.prev_kv && !cJSON_AddTrueToObject(req, "prev_kv")) goto done;
    if (w->o.progress_notify && !cJSON_AddTrueToObject(req, "progress_notify")) goto done;
    text = cJSON_PrintUnformatted(body);
done:
    cJSON_Delete(body);
    return text;
}

/* Re-lists the prefix and hands the snapshot to on_relist. */
static etcd_status relist(struct etcd_watch *w, etcd_err *err)
{
    etcd_kvs snap;
    etcd_status st = etcd_range(w->c, w->prefix, 0, &snap, err);

    if (st) return st;
    w->o.on_relist(w->o.arg, &snap);
    atomic_store(&w->next_rev, snap.revision + 1);
    etcd_kvs_free(&snap);
    return ETCD_OK;
}

/* Reports a broken stream to the optional error callback. */
static void report(struct etcd_watch *w, etcd_status st, const char *msg)
{
    if (w->o.on_error && !atomic_load(&w->stop)) w->o.on_error(w->o.arg, st, msg);
}

/* Watch thread: stream, resume, re-list, until stopped. */
static void *watch_main(void *arg)
{
    struct etcd_watch *w = arg;
    int64_t backoff = BACKOFF_MIN_MS;

    while (!atomic_load(&w->stop)) {
        struct etcd_xfer x = {.path = "/v3/watch",
                              .idle_timeout_ms = w->o.idle_timeout_ms,
                              .on_line = watch_line,
                              .should_stop = watch_should_stop,
                              .arg = w};
        struct etcd_buf buf = {0};
        etcd_err err = {{0}};
        etcd_status st;
        long http;
        char *body;

        if (w->need_relist) {
            st = relist(w, &err);
            if (st == ETCD_OK) {
                w->need_relist = false;
                continue;
            }
            report(w, st, err.msg);
            goto backoff;
        }
        body = watch_body(w);
        if (!body) {
            report(w, ETCD_ENOMEM, "out of memory");
            goto backoff;
        }
        x.body = body;
        w->created = false;
        w->stream_st = ETCD_OK;
        w->stream_err.msg[0] = '\0';
        st = etcd_xfer_run(w->c, &x, &http, &buf, &err);
        set_up(w, false);
        free(body);
        if (w->created) backoff = BACKOFF_MIN_MS;
        if (st == ETCD_ECANCELED) {
            etcd_buf_free(&buf);
            if (atomic_exchange(&w->reconnect, false)) report(w, ETCD_ECANCELED, "reconnect");
            continue; /* stop is checked by the loop */
        }
        if (st == ETCD_OK && http != 200) {
            cJSON *e = buf.len ? cJSON_ParseWithLength(buf.data, buf.len) : NULL;
            st = e ? etcd_error_status(http, e, "watch", &err)
                   : etcd_fail(&err, ETCD_EPROTO, "watch: HTTP %ld", http);
            cJSON_Delete(e);
        } else if (st == ETCD_OK) {
            st = w->stream_st ? w->stream_st : ETCD_EUNAVAILABLE;
            if (w->stream_st)
                memcpy(&err, &w->stream_err, sizeof err);
            else
                etcd_fail(&err, st, "watch: stream ended");
        }
        etcd_buf_free(&buf);
        if (st == ETCD_ECOMPACTED && w->need_relist) {
            report(w, st, err.msg);
            continue; /* re-list at once */
        }
        report(w, st, err.msg);
    backoff:
        if (etcd_sleep_unless(&w->stop, backoff)) break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* Starts a watch; see etcd.h. */
etcd_status etcd_watch_start(etcd_client *c, const etcd_watch_opts *opts, etcd_watch **out,
                             etcd_err *err)
{
    struct etcd_watch *w;
    int rc;

    *out = NULL;
    if (!c || !opts || !opts->prefix || !opts->on_events || !opts->on_relist ||
        opts->start_revision < 0 || opts->idle_timeout_ms < 0)
        return etcd_fail(err, ETCD_EINVAL,
                         "watch needs a client, a prefix, on_events and on_relist");
    w = calloc(1, sizeof *w);
    if (!w) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    w->c = c;
    w->o = *opts;
    w->prefix = strdup(opts->prefix);
    if (!w->prefix) {
        free(w);
        return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    }
    w->o.prefix = w->prefix;
    atomic_init(&w->stop, false);
    atomic_init(&w->reconnect, false);
    atomic_init(&w->next_rev, opts->start_revision);
    atomic_init(&w->up, false);
    atomic_init(&w->up_changed_ms, etcd_now_ms());
    rc = pthread_create(&w->thread, NULL, watch_main, w);
    if (rc) {
        free(w->prefix);
        free(w);
        return etcd_fail(err, ETCD_ENOMEM, "pthread_create: %s", strerror(rc));
    }
    *out = w;
    return ETCD_OK;
}

/* Asks the thread to drop its stream and resume. */
void etcd_watch_reconnect(etcd_watch *w)
{
    atomic_store(&w->reconnect, true);
}

/* Next expected revision. */
int64_t etcd_watch_next_revision(etcd_watch *w)
{
    return atomic_load(&w->next_rev);
}

/* Whether a stream is up, and since when. */
bool etcd_watch_live(etcd_watch *w, int64_t *since_ms)
{
    bool up = atomic_load(&w->up);
    if (since_ms != NULL) *since_ms = atomic_load(&w->up_changed_ms);
    return up;
}

/* Stops, joins, frees. */
void etcd_watch_stop(etcd_watch *w)
{
    if (!w) return;
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    free(w->prefix);
    free(w);
}
