/*
 * etcd_http.c — the client object and the one HTTP engine every call uses.
 *
 * A call is a POST of a JSON body. etcd_xfer_run drives it on a curl multi
 * handle, not curl_easy_perform, because the same loop must serve three
 * kinds of call: unary ones (collect the body, bounded by the client
 * timeout), blocking ones (campaign: no timeout, but cancellable from
 * another thread) and endless streams (watch/observe: split into lines,
 * idle detection, prompt stop). The loop waits in curl_multi_poll for at
 * most 100 ms, so a stop request is seen within that time without any
 * cross-thread curl call.
 *
 * Failover: endpoints are tried in order starting at the one that answered
 * last. Only failures that prove the request never reached etcd (no
 * connection, HTTP 503 from the gateway) move on to the next endpoint, so a
 * write is never sent twice. A timeout on an established connection ends the
 * call with ETCD_EUNAVAILABLE.
 *
 * Threads: curl easy handles are not thread-safe, so each call takes a
 * {easy, multi} pair from a small mutex-protected pool (or makes one) and
 * returns it afterwards; keeping pairs alive keeps their TCP connections.
 */
#define _GNU_SOURCE /* memmem */
#include "common/etcd/etcd_internal.h"

#include <ctype.h>
#include <errno.h>
#include <unistd.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ETCD_DEFAULT_TIMEOUT_MS 5000
#define ETCD_CONNECT_TIMEOUT_MS 1000
#define ETCD_POLL_MS            100

/* A curl easy handle with the multi handle that drives it. */
struct etcd_conn {
    CURL *easy;
    CURLM *multi;
    struct curl_slist *headers;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

/* curl_global_init once per process (it is not thread-safe itself). */
static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Formats into err and returns st. */
etcd_status etcd_fail(etcd_err *err, etcd_status st, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* Static status name. */
const char *etcd_status_str(etcd_status st)
{
    switch (st) {
    case ETCD_OK:
        return "ETCD_OK";
    case ETCD_EUNAVAILABLE:
        return "ETCD_EUNAVAILABLE";
    case ETCD_ENOTFOUND:
        return "ETCD_ENOTFOUND";
    case ETCD_ELEASE:
        return "ETCD_ELEASE";
    case ETCD_ECOMPACTED:
        return "ETCD_ECOMPACTED";
    case ETCD_EPROTO:
        return "ETCD_EPROTO";
    case ETCD_EINVAL:
        return "ETCD_EINVAL";
    case ETCD_ENOMEM:
        return "ETCD_ENOMEM";
    case ETCD_ECANCELED:
        return "ETCD_ECANCELED";
    }
    return "ETCD_E?";
}

/* CLOCK_MONOTONIC in ms. */
int64_t etcd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends n bytes, keeping a NUL after the data. */
bool etcd_buf_append(struct etcd_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *d;
        while (cap < b->len + n + 1)
            cap *= 2;
        d = realloc(b->data, cap);
        if (!d) return false;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

/* Frees and zeroes the buffer. */
void etcd_buf_free(struct etcd_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Frees a conn; NULL is a no-op. */
static void conn_free(struct etcd_conn *k)
{
    if (!k) return;
    if (k->multi) curl_multi_cleanup(k->multi);
    if (k->easy) curl_easy_cleanup(k->easy);
    curl_slist_free_all(k->headers);
    free(k);
}

/* Takes a pooled conn or makes one; NULL on ENOMEM. Caller returns it. */
static struct etcd_conn *conn_get(etcd_client *c)
{
    struct etcd_conn *k = NULL;
    struct curl_slist *h;

    pthread_mutex_lock(&c->pool_mu);
    if (c->n_pool) k = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->pool_mu);
    if (k) return k;

    k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->easy = curl_easy_init();
    k->multi = curl_multi_init();
    h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h) k->headers = h;
    /* No "Expect: 100-continue" round trip for larger bodies. */
    if (h) h = curl_slist_append(k->headers, "Expect:");
    if (!k->easy || !k->multi || !h) {
        conn_free(k);
        return NULL;
    }
    return k;
}

/* Returns a conn to the pool (or frees it when the pool is full). */
static void conn_put(etcd_client *c, struct etcd_conn *k)
{
    pthread_mutex_lock(&c->pool_mu);
    if (c->n_pool < ETCD_POOL_MAX) {
        c->pool[c->n_pool++] = k;
        k = NULL;
    }
    pthread_mutex_unlock(&c->pool_mu);
    conn_free(k);
}

/* Splits and trims a comma-separated endpoint list into the client. */
static etcd_status parse_endpoints(etcd_client *c, const char *list, etcd_err *err)
{
    const char *p = list;

    while (*p) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        const char *s = p;
        char **grown;

        p = q ? q + 1 : p + len;
        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '/'))
            len--;
        if (!len) continue;
        if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))
            return etcd_fail(err, ETCD_EINVAL, "endpoint '%.*s' must start with http://",
                             (int)(len > 64 ? 64 : len), s);
        grown = realloc(c->endpoints, (c->n_endpoints + 1) * sizeof *grown);
        if (!grown) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
        c->endpoints = grown;
        c->endpoints[c->n_endpoints] = strndup(s, len);
        if (!c->endpoints[c->n_endpoints]) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
        c->n_endpoints++;
    }
    if (!c->n_endpoints) return etcd_fail(err, ETCD_EINVAL, "no etcd endpoint given");
    return ETCD_OK;
}

/* Trims, drops empty entries and adds http:// where no scheme is given. */
char *etcd_endpoints_normalise(const char *in)
{
    size_t cap = strlen(in) * 2 + 16, p = 0;
    char *out = malloc(cap);
    if (out == NULL) return NULL;
    const char *s = in;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        while (len > 0 && isspace((unsigned char)*s))
            s++, len--;
        while (len > 0 && isspace((unsigned char)s[len - 1]))
            len--;
        if (len > 0) {
            if (p > 0) out[p++] = ',';
            if (memmem(s, len, "://", 3) == NULL) p += (size_t)sprintf(out + p, "http://");
            memcpy(out + p, s, len);
            p += len;
        }
        if (comma == NULL) break;
        s = comma + 1;
    }
    out[p] = '\0';
    return out;
}

/* TLS of every request; see etcd.h. Every endpoint must then be https://. */
etcd_status etcd_client_set_tls(etcd_client *c, const etcd_tls *tls, etcd_err *err)
{
    if (tls == NULL || (tls->ca == NULL && tls->cert == NULL && tls->key == NULL)) return ETCD_OK;
    if ((tls->cert == NULL) != (tls->key == NULL))
        return etcd_fail(err, ETCD_EINVAL, "TLS to etcd: a client certificate needs its key "
                                           "(--etcd-cert and --etcd-key go together)");
    const char *files[3] = {tls->ca, tls->cert, tls->key};
    for (int i = 0; i < 3; i++)
        if (files[i] != NULL && access(files[i], R_OK) != 0)
            return etcd_fail(err, ETCD_EINVAL, "TLS to etcd: cannot read %s: %s", files[i],
                             strerror(errno));
    for (size_t i = 0; i < c->n_endpoints; i++)
        if (strncmp(c->endpoints[i], "https://", 8) != 0)
            return etcd_fail(err, ETCD_EINVAL,
                             "TLS to etcd is set but endpoint %s is not https://", c->endpoints[i]);
    if ((tls->ca && !(c->tls_ca = strdup(tls->ca))) ||
        (tls->cert && !(c->tls_cert = strdup(tls->cert))) ||
        (tls->key && !(c->tls_key = strdup(tls->key))))
        return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    return ETCD_OK;
}

/* Creates a client; see etcd.h. */
etcd_status etcd_client_new(const char *endpoints, long timeout_ms, etcd_client **out,
                            etcd_err *err)
{
    etcd_client *c;
    etcd_status st;

    *out = NULL;
    if (!endpoints) return etcd_fail(err, ETCD_EINVAL, "endpoints is NULL");
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return etcd_fail(err, ETCD_ENOMEM, "curl_global_init: %s",
                         curl_easy_strerror(curl_init_rc));
    c = calloc(1, sizeof *c);
    if (!c) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    pthread_mutex_init(&c->pool_mu, NULL);
    atomic_init(&c->preferred, 0);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : ETCD_DEFAULT_TIMEOUT_MS;
    c->connect_timeout_ms = ETCD_CONNECT_TIMEOUT_MS;
    st = parse_endpoints(c, endpoints, err);
    if (st) goto fail;
    *out = c;
    return ETCD_OK;
fail:
    etcd_client_free(c);
    return st;
}

/* Frees the client, its endpoints and its pooled conns. */
void etcd_client_free(etcd_client *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n_pool; i++)
        conn_free(c->pool[i]);
    for (size_t i = 0; i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    free(c->endpoints);
    free(c->tls_ca);
    free(c->tls_cert);
    free(c->tls_key);
    pthread_mutex_destroy(&c->pool_mu);
    free(c);
}

/* Per-attempt state seen by the curl write callback. */
struct xfer_ctx {
    const struct etcd_xfer *x;
    CURL *easy;
    struct etcd_buf *out;
    struct etcd_buf line; /* partial line of a stream */
    int64_t last_rx_ms;
    bool http_checked;
    bool stream;    /* HTTP 200 and on_line set: deliver lines */
    bool line_stop; /* on_line asked to end */
    bool stopped;   /* should_stop fired */
    bool oom;
};

/* Delivers every complete line in ctx->line; false to end the transfer. */
static bool deliver_lines(struct xfer_ctx *ctx, bool flush)
{
    size_t start = 0;

    for (;;) {
        char *nl = memchr(ctx->line.data + start, '\n', ctx->line.len - start);
        size_t end = nl ? (size_t)(nl - ctx->line.data) : ctx->line.len;
        if (!nl && !flush) break;
        if (end > start && ctx->x->on_line(ctx->x->arg, ctx->line.data + start, end - start)) {
            ctx->line_stop = true;
            return false;
        }
        start = nl ? end + 1 : end;
        if (!nl) break;
    }
    memmove(ctx->line.data, ctx->line.data + start, ctx->line.len - start);
    ctx->line.len -= start;
    ctx->line.data[ctx->line.len] = '\0';
    return true;
}

/* curl write callback: collect the body or split the stream into lines. */
static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
    struct xfer_ctx *ctx = arg;
    size_t n = size * nmemb;

    ctx->last_rx_ms = etcd_now_ms();
    if (!ctx->http_checked) {
        long http = 0;
        curl_easy_getinfo(ctx->easy, CURLINFO_RESPONSE_CODE, &http);
        ctx->stream = http == 200 && ctx->x->on_line;
        ctx->http_checked = true;
    }
    if (ctx->x->should_stop && ctx->x->should_stop(ctx->x->arg)) {
        ctx->stopped = true;
        return 0;
    }
    if (!ctx->stream) {
        if (!etcd_buf_append(ctx->out, p, n)) {
            ctx->oom = true;
            return 0;
        }
        return n;
    }
    if (!etcd_buf_append(&ctx->line, p, n)) {
        ctx->oom = true;
        return 0;
    }
    return deliver_lines(ctx, false) ? n : 0;
}

/* True when curl's error shows the request never reached the server. */
static bool never_connected(CURLcode rc, CURL *easy)
{
    curl_off_t connect_us = 0;

    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_COULDNT_RESOLVE_PROXY)
        return true;
    if (rc != CURLE_OPERATION_TIMEDOUT) return false;
    curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    return connect_us == 0;
}

/* Sets the options of one attempt on k->easy. */
static void setup_easy(const etcd_client *c, struct etcd_conn *k, const char *url,
                       const struct etcd_xfer *x, long timeout_ms, long connect_ms,
                       struct xfer_ctx *ctx)
{
    CURL *e = k->easy;

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(x->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, ctx);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (c->tls_ca != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, c->tls_ca);
    if (c->tls_cert != NULL) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->tls_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->tls_key);
    }
}

/* Drives k until the transfer ends; returns curl's result for it. */
static CURLcode drive(struct etcd_conn *k, struct xfer_ctx *ctx, bool *idle)
{
    CURLcode rc = CURLE_OK;
    CURLMsg *m;
    int running = 1, left;

    *idle = false;
    curl_multi_add_handle(k->multi, k->easy);
    while (running) {
        if (curl_multi_perform(k->multi, &running) != CURLM_OK) {
            rc = CURLE_OUT_OF_MEMORY;
            goto done;
        }
        if (!running) break;
        if (ctx->x->should_stop && ctx->x->should_stop(ctx->x->arg)) {
            ctx->stopped = true;
            rc = CURLE_ABORTED_BY_CALLBACK;
            goto done;
        }
        if (ctx->x->idle_timeout_ms && etcd_now_ms() - ctx->last_rx_ms > ctx->x->idle_timeout_ms) {
            *idle = true;
            rc = CURLE_OPERATION_TIMEDOUT;
            goto done;
        }
        curl_multi_poll(k->multi, NULL, 0, ETCD_POLL_MS, NULL);
    }
    while ((m = curl_multi_info_read(k->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == k->easy) rc = m->data.result;
done:
    curl_multi_remove_handle(k->multi, k->easy);
    return rc;
}

/* Runs one POST with failover; see etcd_internal.h. */
etcd_status etcd_xfer_run(etcd_client *c, const struct etcd_xfer *x, long *http,
                          struct etcd_buf *out, etcd_err *err)
{
    struct xfer_ctx ctx = {.x = x, .out = out};
    struct etcd_conn *k = conn_get(c);
    size_t first = atomic_load(&c->preferred);
    int64_t deadline = x->timeout_ms ? etcd_now_ms() + x->timeout_ms : 0;
    char url[512], last[200] = "no endpoint tried";
    etcd_status st = ETCD_EUNAVAILABLE;

    *http = 0;
    if (!k) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    ctx.easy = k->easy;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        size_t ep = (first + i) % c->n_endpoints;
        long remain = 0, connect_ms = c->connect_timeout_ms;
        CURLcode rc;
        bool idle;

        if (deadline) {
            remain = (long)(deadline - etcd_now_ms());
            if (remain <= 0) break;
            if (connect_ms > remain) connect_ms = remain;
        }
        snprintf(url, sizeof url, "%s%s", c->endpoints[ep], x->path);
        ctx.last_rx_ms = etcd_now_ms();
        ctx.http_checked = ctx.stream = ctx.line_stop = ctx.stopped = ctx.oom = false;
        ctx.line.len = 0;
        out->len = 0;
        setup_easy(c, k, url, x, remain, connect_ms, &ctx);
        rc = drive(k, &ctx, &idle);
        if (ctx.stopped) {
            st = etcd_fail(err, ETCD_ECANCELED, "%s: cancelled", x->path);
            goto done;
        }
        if (ctx.oom) {
            st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
            goto done;
        }
        if (ctx.line_stop) {
            curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, http);
            st = ETCD_OK;
            goto done;
        }
        if (rc == CURLE_OK) {
            curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, http);
            if (*http == 503 && i + 1 < c->n_endpoints) {
                snprintf(last, sizeof last, "%s: HTTP 503", c->endpoints[ep]);
                continue;
            }
            if (ctx.stream && ctx.line.len) deliver_lines(&ctx, true);
            if (i > 0) atomic_store(&c->preferred, ep);
            st = ETCD_OK;
            goto done;
        }
        snprintf(last, sizeof last, "%s: %s", c->endpoints[ep],
                 idle ? "stream idle too long" : curl_easy_strerror(rc));
        if (!never_connected(rc, k->easy)) {
            /* Reached etcd, then failed: do not resend elsewhere. */
            st = etcd_fail(err, ETCD_EUNAVAILABLE, "%s %s", x->path, last);
            goto done;
        }
    }
    st = etcd_fail(err, ETCD_EUNAVAILABLE, "%s: no etcd endpoint reachable (last: %s)", x->path,
                   last);
done:
    if (st == ETCD_OK)
        atomic_store(&c->last_ok_ms, etcd_now_ms());
    else if (st == ETCD_EUNAVAILABLE)
        atomic_store(&c->last_fail_ms, etcd_now_ms());
    etcd_buf_free(&ctx.line);
    conn_put(c, k);
    return st;
}

/* Reachability as the client's requests saw it (etcd.h). */
void etcd_client_health(etcd_client *c, struct etcd_client_health *h)
{
    int64_t now = etcd_now_ms(), ok = atomic_load(&c->last_ok_ms),
            fail = atomic_load(&c->last_fail_ms);
    h->ok_age_ms = ok != 0 ? now - ok : -1;
    h->fail_age_ms = fail != 0 ? now - fail : -1;
}

/* Maps an etcd error reply to a status. */
etcd_status etcd_error_status(long http, const cJSON *error, const char *what, etcd_err *err)
{
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(error, "message");
    int64_t code = 0;
    const char *m = cJSON_IsString(msg) ? msg->valuestring : "";
    etcd_status st = ETCD_EPROTO;

    if (!cJSON_GetObjectItemCaseSensitive(error, "code") || !etcd_json_i64(error, "code", &code))
        etcd_json_i64(error, "grpc_code", &code); /* stream errors use grpc_code */
    switch (code) {
    case 3:
        st = ETCD_EINVAL;
        break; /* INVALID_ARGUMENT */
    case 4:
    case 14:
        st = ETCD_EUNAVAILABLE;
        break; /* DEADLINE, UNAVAILABLE */
    case 5:
        st = strstr(m, "lease") ? ETCD_ELEASE : ETCD_ENOTFOUND;
        break; /* NOT_FOUND */
    case 11:
        st = ETCD_ECOMPACTED;
        break; /* OUT_OF_RANGE */
    default:
        break;
    }
    if (strstr(m, "compacted")) st = ETCD_ECOMPACTED;
    return etcd_fail(err, st, "%s: HTTP %ld, etcd code %lld: %s", what, http, (long long)code,
                     *m ? m : "(no message)");
}

/* Unary POST, parse, error mapping. */
etcd_status etcd_call(etcd_client *c, const char *path, const cJSON *body, cJSON **reply,
                      etcd_err *err)
{
    struct etcd_buf buf = {0};
    struct etcd_xfer x = {.path = path, .timeout_ms = c->timeout_ms};
    char *text = cJSON_PrintUnformatted(body);
    cJSON *j = NULL;
    long http;
    etcd_status st;

    *reply = NULL;
    if (!text) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    x.body = text;
    st = etcd_xfer_run(c, &x, &http, &buf, err);
    if (st) goto fail;
    j = buf.len ? cJSON_ParseWithLength(buf.data, buf.len) : NULL;
    if (http != 200) {
        st = j ? etcd_error_status(http, j, path, err)
               : etcd_fail(err, ETCD_EPROTO, "%s: HTTP %ld: %.100s", path, http,
                           buf.data ? buf.data : "");
        goto fail;
    }
    if (!cJSON_IsObject(j)) {
        st = etcd_fail(err, ETCD_EPROTO, "%s: reply is not a JSON object", path);
        goto fail;
    }
    *reply = j;
    j = NULL;
fail:
    cJSON_Delete(j);
    etcd_buf_free(&buf);
    free(text);
    return st;
}
