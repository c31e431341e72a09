/*
 * http.h — the observability HTTP endpoint of every vecshard process
 * (flag --http): GET /metrics, /healthz and /readyz, on a port of its own,
 * served by libmicrohttpd (Debian libmicrohttpd-dev).
 *
 *   /metrics  200, the registry rendered in the Prometheus text format 0.0.4
 *             (Content-Type: text/plain; version=0.0.4; charset=utf-8)
 *   /healthz  200 "ok\n" when the liveness probe says so, else 503 and the
 *             probe's reason on one line
 *   /readyz   the same with the readiness probe
 *   anything else: 404; a method other than GET or HEAD: 405.
 * What each probe checks belongs to the process (docs/operations.md,
 * "Probes"); a NULL probe always answers ok.
 *
 * Threading and ownership. libmicrohttpd runs its own threads: an internal
 * polling thread pool of 2 (epoll), not a thread per connection, so a burst
 * of connections cannot create threads without bound (server.c); probes
 * and metric collectors run on them and must return within a second or so
 * (no network calls without a short deadline). The server borrows the registry and the probes' user
 * pointer: both must outlive http_stop. Never aborts; errors are returned.
 */
#ifndef VS_HTTP_H
#define VS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct metrics;
struct http_server;

/* A probe: returns true when healthy/ready; otherwise writes why (one line). */
typedef bool (*http_probe_fn)(void *user, char *why, size_t whylen);

struct http_config {
    const char *addr;        /* "host:port" to bind; port 0 picks a free one */
    struct metrics *metrics; /* rendered at /metrics; NULL: 404 */
    http_probe_fn healthz;   /* NULL: always ok */
    http_probe_fn readyz;    /* NULL: always ok */
    void *user;              /* passed to both probes */
};

/* Binds and starts serving. Returns the server and sets *port to the bound
 * port, or returns NULL with a message in err. */
struct http_server *http_start(const struct http_config *cfg, int *port, char *err, size_t errlen);

/* The processes' --http start-up: does nothing when cfg->addr is "" (off),
 * else http_start and logs `msg="http listening" addr=<host:bound port>`
 * (or the error). Returns 0 with *out set (NULL when off), or -1. */
int http_start_logged(const struct http_config *cfg, struct http_server **out);

/* 0 when addr is "" (off) or "host:port" with a port in 0..65535 (the
 * --http flag's check; the host is resolved only by http_start), else -1. */
int http_addr_check(const char *addr);

/* Stops serving (waits for running requests) and frees the server. NULL is a no-op. */
void http_stop(struct http_server *h);

#endif
