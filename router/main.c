/*
 * main.c — vecshard-router: the stateless process that serves the public
 * vecshard.v1.VecShard gRPC service (docs/design.md §1, §5; docs/router.md).
 *
 * Start-up order:
 *   1. flags (exit 2 on a bad value) and logging;
 *   2. block SIGTERM / SIGINT / SIGHUP before any thread exists, so only the
 *      sigwait of proc_wait_stop sees them (gRPC's threads inherit the
 *      mask; common/util/proc.h);
 *   3. etcd client and the routing table (lists and watches in the
 *      background; the router serves even while etcd is unreachable);
 *   4. the node channel pool and the gRPC server (port 0 = ephemeral; the
 *      bound address is printed on stdout and logged like the node's);
 *      then the --http endpoint (/metrics, /healthz, /readyz);
 *   5. with --controller on, the controller thread (campaigns as
 *      --router-id, default "<hostname>:<bound port>").
 * Shutdown on a signal: stop the controller (it resigns, so another router
 * takes over at once), stop accepting calls and let running ones finish
 * (grace period), stop the watch, close the channels, exit 0. A second
 * signal during shutdown exits at once with status 1.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/http/http.h"
#include "common/metrics/metrics.h"
#include "common/util/log.h"
#include "common/util/proc.h"
#include "router/router.h"

/* What SIGHUP reloads (docs/security.md): the TLS files of the public port
 * and of the calls to nodes, and the API key file. On an error the old ones
 * stay in use. */
struct reload_ctx {
    struct router *r;
    struct rpc_server *srv;
};

static void reload(void *arg)
{
    struct reload_ctx *x = arg;
    char err[256];
    if (rpc_server_reload_tls(x->srv, err, sizeof err) != 0)
        log_error("TLS reload of the public port failed; the old certificate stays", "error=%s",
                  log_quote(err));
    if (auth_reload(&x->r->auth, err, sizeof err) != 0)
        log_error("API key reload failed; the old keys stay", "error=%s", log_quote(err));
    else if (x->r->auth.path != NULL)
        log_info("API keys reloaded", "keys=%zu", auth_keys_count(x->r->auth.keys));
    if (rpc_client_reload_tls(x->r->client, err, sizeof err) != 0)
        log_error("TLS reload of the node client failed; the old certificate stays", "error=%s",
                  log_quote(err));
}

/* Runs the router until a stop signal; returns the exit status. */
int main(int argc, char **argv)
{
    struct router_config cfg;
    enum router_config_result pr = router_config_parse(argc, argv, &cfg);
    if (pr != ROUTER_CONFIG_OK) {
        router_config_free(&cfg);
        return pr == ROUTER_CONFIG_EXIT_OK ? 0 : 2;
    }
    log_set_level((enum log_level)cfg.log_level);

    sigset_t set;
    proc_block_stop_signals(&set);

    int status = 1;
    char err[256];
    struct router r;
    struct rpc_server *srv = NULL;
    struct http_server *http = NULL;

    log_info("starting vecshard-router",
             "version=%s etcd=%s etcd_prefix=%s threads=%d default_timeout_ms=%d", ROUTER_VERSION,
             log_quote(cfg.etcd), log_quote(cfg.etcd_prefix), cfg.threads, cfg.default_timeout_ms);

    struct metrics *metrics = metrics_create();
    if (metrics == NULL || metrics_add_process(metrics, "vecshard-router", ROUTER_VERSION) != 0) {
        log_error("cannot create the metrics registry", NULL);
        metrics_destroy(metrics);
        router_config_free(&cfg);
        return 1;
    }
    memset(&r, 0, sizeof r);
    struct rpc_tls stls = {.cert = cfg.tls_cert,
                           .key = cfg.tls_key,
                           .ca = cfg.tls_ca,
                           .client_auth = (enum rpc_tls_client_auth)cfg.tls_client_auth};
    if (rpc_tls_on(&stls))
        log_info("TLS on", "tls_cert=%s tls_ca=%s tls_client_auth=%d", log_quote(cfg.tls_cert),
                 log_quote(cfg.tls_ca), cfg.tls_client_auth);
    else
        log_warn("TLS off: the public port and the calls to nodes are plaintext "
                 "(docs/security.md)",
                 NULL);
    if (rpc_tls_check(&stls, true, err, sizeof err) != 0) {
        log_error("cannot use the TLS files (--tls-cert, --tls-key, --tls-ca)", "error=%s",
                  log_quote(err));
        goto fail;
    }
    if (router_open(&r, &cfg, metrics, err, sizeof err) != 0) {
        log_error("cannot start the router", "error=%s", log_quote(err));
        goto fail;
    }
    struct rpc_server_config scfg = {
        .addr = cfg.listen,
        .workers = cfg.threads,
        .max_msg_bytes = (size_t)cfg.max_message_bytes,
        .shutdown_grace_ms = cfg.shutdown_grace_ms > 0 ? cfg.shutdown_grace_ms : 1,
        .metrics = r.metrics,
        .tls = &stls,
        .max_concurrent = cfg.max_concurrent,
    };
    srv = rpc_server_create(&scfg, err, sizeof err);
    if (srv == NULL) {
        log_error("cannot create the gRPC server", "error=%s", log_quote(err));
        goto fail;
    }
    if (router_register(srv, &r) != 0) {
        log_error("cannot register the VecShard methods", NULL);
        goto fail;
    }
    int port = rpc_server_start(srv, err, sizeof err);
    if (port <= 0) {
        log_error("cannot listen", "listen=%s error=%s", log_quote(cfg.listen), log_quote(err));
        goto fail;
    }
    char bound[300];
    proc_bound_addr(cfg.listen, port, bound, sizeof bound);
    log_info("listening", "addr=%s", log_quote(bound));
    proc_print_listening(bound);
    router_self_addr(&r, cfg.listen, port);

    char id[300];
    if (cfg.router_id != NULL) {
        snprintf(id, sizeof id, "%s", cfg.router_id);
    } else {
        char host[256];
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "router");
        host[sizeof host - 1] = '\0';
        snprintf(id, sizeof id, "%s:%d", host, port);
    }
    r.id = id;
    if (cfg.controller && controller_start(&r, id, bound, &r.controller, err, sizeof err) != 0) {
        log_error("cannot start the controller", "error=%s", log_quote(err));
        goto fail;
    }
    log_info("router identity", "router_id=%s controller=%s controller_ttl=%d replace_after_ms=%d",
             log_quote(id), cfg.controller ? "on" : "off", cfg.controller_ttl,
             cfg.replace_after_ms);

    /* Last: the probes and collectors read r.controller, r.client and r.self_addr. */
    struct http_config hcfg = {.addr = cfg.http,
                               .metrics = r.metrics,
                               .healthz = router_healthz,
                               .readyz = router_readyz,
                               .user = &r};
    if (http_start_logged(&hcfg, &http) != 0) goto fail;

    struct reload_ctx rx = {.r = &r, .srv = srv};
    proc_wait_stop(&set, reload, &rx);
    status = 0;

fail:
    http_stop(http); /* first: collectors read the routing table and the controller */
    controller_stop(r.controller);
    rpc_server_shutdown(srv);
    router_close(&r);
    metrics_destroy(metrics);
    if (status == 0) log_info("stopped", NULL);
    router_config_free(&cfg);
    return status;
}
