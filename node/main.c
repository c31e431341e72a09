/*
 * main.c — vecshard-node: the process that hosts shard replicas and serves
 * the internal vecshard.v1.ShardNode gRPC service (docs/design.md §1).
 *
 * Start-up order matters:
 *   1. flags (exit 2 on a bad value) and logging;
 *   2. block SIGTERM / SIGINT / SIGHUP in this thread before any other thread
 *      exists (gRPC's and ours inherit the mask), so that only the sigwait
 *      of proc_wait_stop ever sees them (common/util/proc.h, grpc-core-notes §6.8);
 *      nothing here forks;
 *   3. check that the data dir is this node's (its identity file, written
 *      at the first start; another node id or cluster exits 2 unless
 *      --identity-mismatch says adopt or wipe: node_claim.h);
 *   4. start the gRPC server at once (port 0 = ephemeral; the bound address
 *      is printed on stdout and logged), with Health/Check NOT_SERVING, then
 *      reopen the replicas already on disk, in parallel, so reads work even
 *      if etcd is down (docs/design.md §3). Meanwhile ShardStatus lists them as
 *      LOADING and calls on them answer UNAVAILABLE (retryable); once all
 *      are open Health/Check answers SERVING;
 *      The --http endpoint (/metrics, /healthz, /readyz) starts right after
 *      the gRPC server, so probes answer during the load;
 *   5. register in etcd and follow the shard map (node_meta, background).
 *      Registration waits for step 4: routers find the node only once its
 *      replicas are open, and the reconciler (which may open, close and
 *      delete replicas) never runs while they load.
 * From step 3 on, a thread waits for the stop signal (proc_wait_stop): one
 * arriving during step 4 lets the load finish (a replica open cannot be
 * interrupted), skips step 5 and shuts down; a second one exits at once.
 * Shutdown on SIGTERM or SIGINT: stop accepting calls and let running ones
 * finish (grace period), stop following etcd, revoke the lease so the node
 * key disappears at once (the controller promotes the backups of the shards
 * it led while it snapshots), snapshot every replica with writes no snapshot
 * holds (--shutdown-snapshot-timeout-ms bounds it), so the next start
 * replays almost nothing, close every replica (the WAL is fsynced), exit 0.
 * A second signal during shutdown exits at once with status 1.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/etcd/etcd.h"
#include "common/http/http.h"
#include "common/metrics/metrics.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "common/util/proc.h"
#include "node/node_claim.h"
#include "node/node_config.h"
#include "node/node_coordinator.h"
#include "node/node_meta.h"
#include "node/node_metrics.h"
#include "node/node_service.h"
#include "node/node_shards.h"
#include "node/storage/wal.h"

/* True for hosts that mean "every interface" and cannot be advertised. */
static bool wildcard_host(const char *h, size_t len)
{
    return len == 0 || (len == 7 && strncmp(h, "0.0.0.0", 7) == 0) ||
           (len == 4 && strncmp(h, "[::]", 4) == 0) || (len == 2 && strncmp(h, "::", 2) == 0);
}

/* The address to register: --advertise, or the bound host:port (hostname for wildcards). */
static void advertised_addr(const struct node_config *cfg, int port, char *buf, size_t size)
{
    if (cfg->advertise != NULL) {
        snprintf(buf, size, "%s", cfg->advertise);
        return;
    }
    const char *colon = strrchr(cfg->listen, ':');
    size_t hl = (size_t)(colon - cfg->listen);
    if (wildcard_host(cfg->listen, hl)) {
        char host[200];
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(buf, size, "%.200s:%d", host, port);
    } else {
        snprintf(buf, size, "%.*s:%d", (int)hl, cfg->listen, port);
    }
}

/* The address /healthz checks the gRPC server on: loopback for a wildcard host, else the host
 * the server bound. */
static void self_check_addr(const struct node_config *cfg, int port, char *buf, size_t size)
{
    const char *colon = strrchr(cfg->listen, ':');
    size_t hl = (size_t)(colon - cfg->listen);
    if (wildcard_host(cfg->listen, hl))
        snprintf(buf, size, "127.0.0.1:%d", port);
    else
        snprintf(buf, size, "%.*s:%d", (int)hl, cfg->listen, port);
}

/* Unix milliseconds now. */
static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The stop-signal waiter: the set to wait on, whether a signal came, and
 * what SIGHUP reloads. */
struct stop_waiter {
    sigset_t *set;
    atomic_bool stopped;
    struct rpc_server *srv;
    struct rpc_client *cl;
    struct node_coordinator *_Atomic coord; /* set once it started */
};

/* SIGHUP (docs/security.md, "Rotating certificates"): the TLS files of the
 * gRPC port and of the calls to peers are read again; on an error the old
 * ones stay in use. */
static void reload(void *arg)
{
    struct stop_waiter *w = arg;
    char err[256];
    if (rpc_server_reload_tls(w->srv, err, sizeof err) != 0)
        log_error("TLS reload of the gRPC port failed; the old certificate stays", "error=%s",
                  log_quote(err));
    if (rpc_client_reload_tls(w->cl, err, sizeof err) != 0)
        log_error("TLS reload of the peer client failed; the old certificate stays", "error=%s",
                  log_quote(err));
    node_coordinator_reload(atomic_load(&w->coord));
}

/* Thread body: waits for the first stop signal (which arms the second-signal watchdog). */
static void *wait_stop(void *arg)
{
    struct stop_waiter *w = arg;
    proc_wait_stop(w->set, reload, w);
    atomic_store(&w->stopped, true);
    return NULL;
}

/* Runs the node until SIGTERM / SIGINT; returns the exit status. */
int main(int argc, char **argv)
{
    struct node_config cfg;
    enum node_config_result pr = node_config_parse(argc, argv, &cfg);
    if (pr != NODE_CONFIG_OK) {
        node_config_free(&cfg);
        return pr == NODE_CONFIG_EXIT_OK ? 0 : 2;
    }
    log_set_level((enum log_level)cfg.log_level);

    sigset_t set;
    proc_block_stop_signals(&set);

    int status = 1;
    char err[2 * NODE_ERR_MAX];
    struct node_shards *reg = NULL;
    struct rpc_server *srv = NULL;
    etcd_client *etcd = NULL;
    struct node_meta *meta = NULL;
    struct http_server *http = NULL;
    struct node_coordinator *coord = NULL;
    struct node_service svc;
    memset(&svc, 0, sizeof svc);
    svc.cfg = &cfg;
    svc.started_at_ms = unix_ms();

    log_info("starting vecshard-node",
             "version=%s node_id=%s data_dir=%s etcd=%s etcd_prefix=%s fsync=%s threads=%d "
             "lease_ttl=%d",
             NODE_VERSION, cfg.node_id, log_quote(cfg.data_dir), log_quote(cfg.etcd),
             log_quote(cfg.etcd_prefix), wal_fsync_name((enum wal_fsync)cfg.fsync), cfg.threads,
             cfg.lease_ttl);

    int64_t dir_created_at = 0;
    if (node_claim_data_dir(cfg.data_dir, cfg.node_id, cfg.etcd_prefix, cfg.identity_mismatch,
                            &dir_created_at, err, sizeof err) != 0) {
        log_error("refusing to start: the data dir is not this node's", "error=%s", log_quote(err));
        fprintf(stderr, "vecshard-node: %s\n", err);
        status = 2;
        goto fail;
    }

    struct node_shards_config scfg = {
        .data_dir = cfg.data_dir,
        .node_id = cfg.node_id,
        .fsync = cfg.fsync,
        .snapshot_wal_bytes = cfg.snapshot_wal_bytes,
        .snapshot_wal_records = cfg.snapshot_wal_records,
        .snapshot_age_ms = cfg.snapshot_max_age_s * 1000,
        .load_threads = cfg.load_threads,
        .max_batch = cfg.max_batch_points,
        .max_payload = cfg.max_payload_bytes,
        .dir_created_at = dir_created_at,
        .reset_replicas = cfg.reset_replica,
    };
    if (node_shards_create(&scfg, &reg, err) != 0) {
        log_error("cannot start", "error=%s", log_quote(err));
        goto fail;
    }
    svc.reg = reg;
    svc.metrics = metrics_create();
    if (svc.metrics == NULL ||
        metrics_add_process(svc.metrics, "vecshard-node", NODE_VERSION) != 0 ||
        node_metrics_register(svc.metrics, &svc) != 0) {
        log_error("cannot create the metrics registry", NULL);
        goto fail;
    }
    struct rpc_tls tls = {
        .cert = cfg.tls_cert,
        .key = cfg.tls_key,
        .ca = cfg.tls_ca,
        .client_auth = RPC_TLS_CLIENT_REQUIRE,
        .server_name = cfg.tls_server_name,
    };
    if (rpc_tls_on(&tls))
        log_info("TLS on: the gRPC port requires client certificates of the cluster CA (mTLS)",
                 "tls_cert=%s tls_ca=%s", log_quote(cfg.tls_cert), log_quote(cfg.tls_ca));
    else
        log_warn("TLS off: the gRPC port and the calls to peers are plaintext, and anyone who "
                 "can reach the port can call it (docs/security.md)",
                 NULL);
    if (rpc_tls_check(&tls, true, err, sizeof err) != 0) {
        log_error("cannot use the TLS files (--tls-cert, --tls-key, --tls-ca)", "error=%s",
                  log_quote(err));
        goto fail;
    }
    /* every internal unary call has a deadline (docs/security.md §4) */
    struct rpc_client_config ccfg = {
        .tls = &tls, .default_deadline_ms = 30000, .no_spare_poller = true /* srv polls */};
    svc.rpc = rpc_client_create(&ccfg);
    if (svc.rpc == NULL) {
        log_error("cannot create the gRPC client", NULL);
        goto fail;
    }
    struct transfer_config tcfg = {
        .reg = reg,
        .rpc = svc.rpc,
        .data_dir = cfg.data_dir,
        .node_id = cfg.node_id,
        .max_bytes_per_sec = cfg.transfer_max_mbps * 1000000,
    };
    if (transfers_create(&tcfg, &svc.xfer, err, sizeof err) != 0) {
        log_error("cannot set up shard transfers", "error=%s", log_quote(err));
        goto fail;
    }

    struct rpc_server_config rcfg = {
        .addr = cfg.listen,
        .workers = cfg.threads,
        .max_msg_bytes = (size_t)cfg.max_message_bytes,
        .shutdown_grace_ms = cfg.shutdown_grace_ms > 0 ? cfg.shutdown_grace_ms : 1,
        .metrics = svc.metrics,
        .tls = &tls,
        .max_concurrent = (int)cfg.max_concurrent,
    };
    srv = rpc_server_create(&rcfg, err, sizeof err);
    if (srv == NULL) {
        log_error("cannot create the gRPC server", "error=%s", log_quote(err));
        goto fail;
    }
    if (node_service_register(srv, &svc) != 0) {
        log_error("cannot register the ShardNode methods", NULL);
        goto fail;
    }
    rpc_server_set_serving(srv, false);
    int port = rpc_server_start(srv, err, sizeof err);
    if (port <= 0) {
        log_error("cannot listen", "listen=%s error=%s", log_quote(cfg.listen), log_quote(err));
        goto fail;
    }
    advertised_addr(&cfg, port, svc.addr, sizeof svc.addr);
    char bound[300];
    proc_bound_addr(cfg.listen, port, bound, sizeof bound);
    log_info("listening", "addr=%s advertise=%s", log_quote(bound), log_quote(svc.addr));
    proc_print_listening(bound);
    self_check_addr(&cfg, port, svc.self_addr, sizeof svc.self_addr);
    struct http_config hcfg = {.addr = cfg.http,
                               .metrics = svc.metrics,
                               .healthz = node_probe_healthz,
                               .readyz = node_probe_readyz,
                               .user = &svc};
    if (http_start_logged(&hcfg, &http) != 0) goto fail;

    struct stop_waiter waiter = {.set = &set, .srv = srv, .cl = svc.rpc};
    pthread_t waiter_thread;
    if (pthread_create(&waiter_thread, NULL, wait_stop, &waiter) != 0) {
        log_error("cannot start the stop-signal thread", NULL);
        goto fail;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int opened = node_shards_load_local(reg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double load_s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (atomic_load(&waiter.stopped)) {
        log_info("stop signal while loading; not registering", "replicas=%d load_seconds=%.3f",
                 opened, load_s);
        goto stop;
    }
    rpc_server_set_serving(srv, true);
    log_info("serving", "replicas=%d load_seconds=%.3f", opened, load_s);

    /* A keep-alive must fail (and be retried) well within the TTL. */
    long etcd_timeout = cfg.etcd_timeout_ms;
    if (etcd_timeout > cfg.lease_ttl * 1000L / 3) etcd_timeout = cfg.lease_ttl * 1000L / 3;
    etcd_err eerr;
    if (etcd_client_new(cfg.etcd, etcd_timeout, &etcd, &eerr) != ETCD_OK) {
        log_error("cannot create the etcd client", "etcd=%s error=%s", log_quote(cfg.etcd),
                  log_quote(eerr.msg));
        goto fail;
    }
    etcd_tls etls = {.ca = cfg.etcd_cacert, .cert = cfg.etcd_cert, .key = cfg.etcd_key};
    if (etcd_client_set_tls(etcd, &etls, &eerr) != ETCD_OK) {
        log_error("cannot set up TLS to etcd", "error=%s", log_quote(eerr.msg));
        goto fail;
    }
    struct repl_config pcfg = {
        .reg = reg,
        .rpc = svc.rpc,
        .etcd = etcd,
        .prefix = cfg.etcd_prefix,
        .node_id = cfg.node_id,
        .addr = svc.addr,
        .timeout_ms = cfg.replicate_timeout_ms,
    };
    struct repl *repl = NULL;
    if (repl_create(&pcfg, &repl, err, sizeof err) != 0) {
        log_error("cannot start replication", "error=%s", log_quote(err));
        goto fail;
    }
    atomic_store(&svc.repl, repl);
    struct node_meta_config mcfg = {
        .etcd = etcd,
        .prefix = cfg.etcd_prefix,
        .node_id = cfg.node_id,
        .addr = svc.addr,
        .version = NODE_VERSION,
        .capacity = cfg.capacity,
        .started_at_ms = svc.started_at_ms,
        .lease_ttl = cfg.lease_ttl,
        .data_dir = cfg.data_dir,
        .trash_grace_ms = (int64_t)cfg.trash_grace_ms,
    };
    if (node_meta_start(&mcfg, reg, &meta, err, sizeof err) != 0) {
        log_error("cannot start etcd registration", "error=%s", log_quote(err));
        goto fail;
    }
    atomic_store(&svc.meta, meta);
    if (node_coordinator_start(&cfg, srv, svc.addr, svc.metrics, &coord, err, sizeof err) != 0) {
        log_error("cannot start the coordinator port (--coordinator-listen)", "error=%s",
                  log_quote(err));
        goto fail;
    }
    atomic_store(&waiter.coord, coord);

stop:
    pthread_join(waiter_thread, NULL);
    status = 0;

fail:
    /* Stop serving first, so no handler or collector borrows a replica while it
     * closes; the coordinator first of all, as its handlers call this node's. */
    http_stop(http);
    node_coordinator_stop(coord);
    rpc_server_shutdown(srv);
    if (meta != NULL) node_meta_stop_sync(meta);
    repl_destroy(atomic_exchange(&svc.repl, NULL));
    transfers_destroy(svc.xfer); /* jobs end (failed or installed) before the snapshots */
    /* Leave before the snapshots: the controller promotes the backups of the
     * shards this node led now, not after up to --shutdown-snapshot-timeout-ms. */
    node_meta_leave(meta);
    if (status == 0 && cfg.shutdown_snapshot_timeout_ms > 0)
        node_shards_snapshot_all(reg, cfg.shutdown_snapshot_timeout_ms);
    node_shards_destroy(reg);
    node_meta_stop(meta);
    etcd_client_free(etcd);
    if (svc.rpc != NULL) rpc_client_destroy(svc.rpc);
    metrics_destroy(svc.metrics);
    if (status == 0) log_info("stopped", "node_id=%s", cfg.node_id);
    node_config_free(&cfg);
    return status;
}
