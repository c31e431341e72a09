/*
 * server.c — the observability endpoint over libmicrohttpd: address
 * parsing and binding, the request router (/metrics, /healthz, /readyz),
 * and the responses.
 *
 * Threading: MHD_USE_INTERNAL_POLLING_THREAD with a thread pool of 2
 * (MHD_OPTION_THREAD_POOL_SIZE), epoll. Two threads is enough for a
 * scraper and the kubelet's probes, and a fixed pool keeps a burst of
 * connections from creating threads without bound, which
 * MHD_USE_THREAD_PER_CONNECTION would do; one slow probe stalls at most
 * the connections of its own thread. Connections are capped (64) and idle
 * ones closed after 10 s.
 *
 * The listening address is resolved with getaddrinfo (numeric or a host
 * name, "[v6]" brackets allowed, empty host = every interface) and bound by
 * MHD; the bound port is read back from MHD_DAEMON_INFO_BIND_PORT, so port
 * 0 works.
 */
#define _GNU_SOURCE
#include "common/http/http.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "common/metrics/metrics.h"

#define HTTP_THREADS     2
#define HTTP_CONNECTIONS 64
#define HTTP_IDLE_S      10
#define WHY_MAX          512

struct http_server {
    struct MHD_Daemon *d;
    struct http_config cfg; /* addr not kept */
};

/* Queues a response of `len` bytes; `owned` bytes are freed by MHD. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *ctype,
                               char *body, size_t len, bool owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Answers a probe: 200 "ok\n", or 503 with its reason on one line. */
static enum MHD_Result probe(struct MHD_Connection *conn, http_probe_fn fn, void *user)
{
    char why[WHY_MAX] = "";
    if (fn == NULL || fn(user, why, sizeof why))
        return respond(conn, MHD_HTTP_OK, "text/plain; charset=utf-8", "ok\n", 3, false);
    why[sizeof why - 1] = '\0';
    for (char *p = why; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    char *body = NULL;
    int n = asprintf(&body, "%s\n", why[0] != '\0' ? why : "not ok");
    if (n < 0) return MHD_NO;
    return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", body,
                   (size_t)n, true);
}

/* MHD's access handler: one call per request (the body, if any, is ignored). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **state)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)state;
    struct http_server *h = cls;
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, "method not allowed\n", 19, false);
    if (strcmp(url, "/healthz") == 0) return probe(conn, h->cfg.healthz, h->cfg.user);
    if (strcmp(url, "/readyz") == 0) return probe(conn, h->cfg.readyz, h->cfg.user);
    if (strcmp(url, "/metrics") == 0 && h->cfg.metrics != NULL) {
        size_t len = 0;
        char *body = metrics_render(h->cfg.metrics, &len);
        if (body == NULL)
            return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, "out of memory\n", 14,
                           false);
        return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
                       true);
    }
    return respond(conn, MHD_HTTP_NOT_FOUND, text, "not found\n", 10, false);
}

/* Splits "host:port" ("[v6]:port" too) into host (brackets removed) and port.
 * 0, or -1 when it is not that shape or the port is outside 0..65535. */
static int split_addr(const char *addr, char *host, size_t hostlen, long *port)
{
    const char *colon = addr != NULL ? strrchr(addr, ':') : NULL;
    if (colon == NULL || colon[1] == '\0') return -1;
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostlen) return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    *port = strtol(colon + 1, &end, 10);
    return *end != '\0' || *port < 0 || *port > 65535 ? -1 : 0;
}

int http_addr_check(const char *addr)
{
    char host[256];
    long port;
    return addr == NULL || addr[0] == '\0' || split_addr(addr, host, sizeof host, &port) == 0 ? 0
                                                                                             : -1;
}

/* Resolves "host:port" into *res (freeaddrinfo). 0, or -1 with a message. */
static int resolve(const char *addr, struct addrinfo **res, char *err, size_t errlen)
{
    char host[256];
    long port;
    if (split_addr(addr, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "--http: \"%s\" is not host:port (port 0..65535)",
                 addr != NULL ? addr : "");
        return -1;
    }
    char serv[8];
    snprintf(serv, sizeof serv, "%ld", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    int rc = getaddrinfo(host[0] != '\0' ? host : NULL, serv, &hints, res);
    if (rc != 0) {
        snprintf(err, errlen, "--http: cannot resolve \"%s\": %s", addr, gai_strerror(rc));
        return -1;
    }
    return 0;
}

struct http_server *http_start(const struct http_config *cfg, int *port, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    struct addrinfo *ai = NULL;
    if (cfg == NULL || resolve(cfg->addr, &ai, err, errlen) != 0) return NULL;
    struct http_server *h = calloc(1, sizeof *h);
    if (h == NULL) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    h->cfg.addr = NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_THREADS,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTIONS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_S, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (h->d == NULL) {
        snprintf(err, errlen, "--http: cannot listen on %s (address in use or invalid)",
                 cfg->addr);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    if (port != NULL) *port = info != NULL ? info->port : 0;
    return h;
}

void http_stop(struct http_server *h)
{
    if (h == NULL) return;
    MHD_stop_daemon(h->d);
    free(h);
}
