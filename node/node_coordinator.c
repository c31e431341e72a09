/*
 * node_coordinator.c — the coordinator port of a node (node_coordinator.h).
 *
 * Its configuration is a router's, built by the router's own flag parser
 * from the node's flags (etcd, prefix, TLS, threads, timeouts), so both
 * tiers have the same defaults: --controller off, no HTTP endpoint of its
 * own (the node's /metrics shows its families), the router id is the node
 * id.
 */
#define _GNU_SOURCE
#include "node/node_coordinator.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"
#include "common/util/proc.h"
#include "node/node_config.h"
#include "router/router.h"

struct node_coordinator {
    struct router_config rcfg;
    struct router r;
    struct rpc_server *srv;
    bool opened; /* router_open ran: router_close owes */
};

#define COORD_WAIT_SELF_MS 10000 /* longest wait for our own registration in the view */

/* True when r's routing table lists r->local_node. */
static bool sees_self(struct router *r)
{
    struct rt_view *v = rt_acquire(r->rt);
    bool yes = rt_view_node(v, r->local_node) != NULL;
    rt_release(v);
    return yes;
}

/* Appends "--name value" to argv when value is set. */
static void arg(char **argv, int *argc, const char *name, const char *value)
{
    if (value == NULL) return;
    argv[(*argc)++] = (char *)name;
    argv[(*argc)++] = (char *)value;
}

/* The router configuration of the port, from the node's flags. */
static int coordinator_config(const struct node_config *cfg, struct router_config *rc)
{
    char threads[16], timeout[16], maxmsg[24], level[8];
    snprintf(threads, sizeof threads, "%d", cfg->threads);
    snprintf(timeout, sizeof timeout, "%ld", cfg->etcd_timeout_ms);
    snprintf(maxmsg, sizeof maxmsg, "%llu", (unsigned long long)cfg->max_message_bytes);
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    snprintf(level, sizeof level, "%s",
             levels[cfg->log_level >= 0 && cfg->log_level < 4 ? cfg->log_level : 1]);
    char *argv[48];
    int argc = 0;
    argv[argc++] = "vecshard-node";
    arg(argv, &argc, "--listen", cfg->coordinator_listen);
    arg(argv, &argc, "--etcd", cfg->etcd);
    arg(argv, &argc, "--etcd-prefix", cfg->etcd_prefix);
    arg(argv, &argc, "--threads", threads);
    arg(argv, &argc, "--etcd-timeout-ms", timeout);
    arg(argv, &argc, "--max-message-bytes", maxmsg);
    arg(argv, &argc, "--log-level", level);
    arg(argv, &argc, "--controller", "off");
    arg(argv, &argc, "--router-id", cfg->node_id);
    arg(argv, &argc, "--tls-cert", cfg->tls_cert);
    arg(argv, &argc, "--tls-key", cfg->tls_key);
    arg(argv, &argc, "--tls-ca", cfg->tls_ca);
    arg(argv, &argc, "--tls-server-name", cfg->tls_server_name);
    arg(argv, &argc, "--etcd-cacert", cfg->etcd_cacert);
    arg(argv, &argc, "--etcd-cert", cfg->etcd_cert);
    arg(argv, &argc, "--etcd-key", cfg->etcd_key);
    arg(argv, &argc, "--api-keys", cfg->coordinator_api_keys);
    argv[argc] = NULL;
    return router_config_parse(argc, argv, rc) == ROUTER_CONFIG_OK ? 0 : -1;
}

int node_coordinator_start(const struct node_config *cfg, struct rpc_server *node_srv,
                           const char *node_addr, struct metrics *m, struct node_coordinator **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->coordinator_listen == NULL) return 0;
    struct node_coordinator *nc = calloc(1, sizeof *nc);
    if (nc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (coordinator_config(cfg, &nc->rcfg) != 0) {
        snprintf(err, errlen, "bad coordinator configuration (the message above)");
        goto fail;
    }
    struct rpc_tls stls = {.cert = nc->rcfg.tls_cert,
                           .key = nc->rcfg.tls_key,
                           .ca = nc->rcfg.tls_ca,
                           .client_auth = (enum rpc_tls_client_auth)nc->rcfg.tls_client_auth};
    if (rpc_tls_check(&stls, true, err, errlen) != 0) goto fail;
    nc->opened = true;
    if (router_open(&nc->r, &nc->rcfg, m, err, errlen) != 0) goto fail;
    nc->r.id = cfg->node_id;
    nc->r.local_node = cfg->node_id;
    if (rpc_client_set_local(nc->r.client, node_addr, node_srv) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* Open the port once the routing table shows this node registered, so a
     * client that connects at once (a one-node deployment's first
     * CreateCollection) finds it; etcd being slow only delays the port. */
    for (int i = 0; i < COORD_WAIT_SELF_MS / 20 && !sees_self(&nc->r); i++)
        router_sleep_ms(20);
    if (!sees_self(&nc->r))
        log_warn("the coordinator's routing table does not show this node yet; opening anyway",
                 "node_id=%s waited_ms=%d", log_quote(cfg->node_id), COORD_WAIT_SELF_MS);
    struct rpc_server_config scfg = {
        .addr = nc->rcfg.listen,
        .workers = nc->rcfg.threads,
        .max_msg_bytes = (size_t)nc->rcfg.max_message_bytes,
        .shutdown_grace_ms = cfg->shutdown_grace_ms > 0 ? cfg->shutdown_grace_ms : 1,
        .metrics = m,
        .tls = &stls,
        .max_concurrent = (int)cfg->max_concurrent,
        .share_pollers = node_srv, /* one thread polls both ports (rpc.h) */
    };
    nc->srv = rpc_server_create(&scfg, err, errlen);
    if (nc->srv == NULL) goto fail;
    if (router_register(nc->srv, &nc->r) != 0) {
        snprintf(err, errlen, "cannot register the VecShard methods");
        goto fail;
    }
    int port = rpc_server_start(nc->srv, err, errlen);
    if (port <= 0) goto fail;
    router_self_addr(&nc->r, nc->rcfg.listen, port);
    char bound[300];
    proc_bound_addr(nc->rcfg.listen, port, bound, sizeof bound);
    log_info("coordinator listening", "addr=%s local=%s", log_quote(bound), log_quote(node_addr));
    *out = nc;
    return 0;
fail:
    node_coordinator_stop(nc);
    return -1;
}

void node_coordinator_reload(struct node_coordinator *nc)
{
    if (nc == NULL) return;
    char err[256];
    if (rpc_server_reload_tls(nc->srv, err, sizeof err) != 0)
        log_error("TLS reload of the coordinator port failed; the old certificate stays",
                  "error=%s", log_quote(err));
    if (auth_reload(&nc->r.auth, err, sizeof err) != 0)
        log_error("coordinator API key reload failed; the old keys stay", "error=%s",
                  log_quote(err));
    if (rpc_client_reload_tls(nc->r.client, err, sizeof err) != 0)
        log_error("TLS reload of the coordinator's node client failed", "error=%s", log_quote(err));
}

void node_coordinator_stop(struct node_coordinator *nc)
{
    if (nc == NULL) return;
    rpc_server_shutdown(nc->srv);
    if (nc->opened) router_close(&nc->r);
    router_config_free(&nc->rcfg);
    free(nc);
}
