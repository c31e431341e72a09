/*
 * router.c — the router context without its listening port: router_open
 * loads the API keys, connects etcd, starts the routing table, creates the
 * metric families and the node client; router_close releases them. The
 * vecshard-router process (main.c) and a node's coordinator port
 * (node/node_coordinator.c) both serve the VecShard methods over one
 * context opened here, so routing and merging exist once.
 */
#include <stdio.h>
#include <string.h>

#include "common/metrics/metrics.h"
#include "common/util/log.h"
#include "router/router.h"

int router_open(struct router *r, const struct router_config *cfg, struct metrics *m, char *err,
                size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    pthread_mutex_init(&r->load.lock, NULL);
    r->metrics = m;

    char why[256];
    if (auth_init(&r->auth, cfg->api_keys, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot load the API keys (--api-keys): %s", why);
        return -1;
    }
    if (cfg->api_keys != NULL)
        log_info("authentication on: every VecShard call needs an API key", "api_keys=%s keys=%zu",
                 log_quote(cfg->api_keys), auth_keys_count(r->auth.keys));
    else
        log_warn("authentication off: anyone who can reach the port may call every method, "
                 "DropCollection included (--api-keys; docs/security.md)",
                 NULL);
    etcd_err eerr;
    if (etcd_client_new(cfg->etcd, cfg->etcd_timeout_ms, &r->etcd, &eerr) != ETCD_OK) {
        snprintf(err, errlen, "etcd client for %s: %s", cfg->etcd, eerr.msg);
        return -1;
    }
    etcd_tls etls = {.ca = cfg->etcd_cacert, .cert = cfg->etcd_cert, .key = cfg->etcd_key};
    if (etcd_client_set_tls(r->etcd, &etls, &eerr) != ETCD_OK) {
        snprintf(err, errlen, "TLS to etcd: %s", eerr.msg);
        return -1;
    }
    if (rt_start(r->etcd, cfg->etcd_prefix, &r->rt, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot start the routing table: %s", why);
        return -1;
    }
    if (router_metrics_init(r, m) != 0) {
        snprintf(err, errlen, "cannot create the router's metric families");
        return -1;
    }
    /* One certificate: the public port's server certificate and the client
     * certificate of the calls to nodes (docs/security.md). Every call to a
     * node has a deadline (docs/security.md §4). */
    struct rpc_tls ctls = {.cert = cfg->tls_cert,
                           .key = cfg->tls_key,
                           .ca = cfg->tls_ca,
                           .server_name = cfg->tls_server_name};
    struct rpc_client_config ccfg = {.max_msg_bytes = (size_t)cfg->max_message_bytes,
                                     .tls = &ctls,
                                     .default_deadline_ms = 30000,
                                     /* the server serving r polls (rpc.h) */
                                     .no_spare_poller = true};
    r->client = rpc_client_create(&ccfg);
    if (r->client == NULL) {
        snprintf(err, errlen, "cannot create the gRPC client");
        return -1;
    }
    return 0;
}

void router_close(struct router *r)
{
    rt_stop(r->rt);
    if (r->client != NULL) rpc_client_destroy(r->client);
    etcd_client_free(r->etcd);
    pthread_mutex_destroy(&r->load.lock);
    auth_destroy(&r->auth);
    r->rt = NULL;
    r->client = NULL;
    r->etcd = NULL;
}
