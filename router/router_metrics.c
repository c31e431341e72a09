/*
 * router_metrics.c — the router's Prometheus metrics (docs/operations.md,
 * "Metrics"), on top of the per-method call counters and latency histograms
 * that common/rpc keeps for every server.
 *
 * Two kinds, as common/metrics/metrics.h describes:
 *   - families updated where things happen (search fan-out width and merge
 *     time in search.c, node calls, retries and failures in shard_call.c,
 *     slow calls in request.c, the controller's applied decisions and
 *     finished moves' bytes in controller/): counters and histograms of
 *     this process since it started;
 *   - one collector that describes the routing table at scrape time: its
 *     freshness (rt_health), the cluster as the view holds it (nodes,
 *     collections, shards, per-shard replicas in sync against the
 *     replication factor, drains, moves by state) and whether this router
 *     is the controller. It reads one referenced view (rt_acquire) and never
 *     calls etcd, so a scrape during an etcd outage answers at once with the
 *     cached map and says how stale it is.
 *
 * Every family is declared (HELP and TYPE) even with no sample, so the set
 * of names a router exports does not depend on the cluster's state.
 * Label values are bounded: node ids, method names and status names, and
 * per-shard series that exist as long as the shard does.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "common/metrics/metrics.h"
#include "router/router.h"

/* Shards per search: powers of two up to the per-collection limit. */
static const double fanout_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128};

const char *router_method_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

/* The collector of the routing table, the cluster view and the controller. */
static void collect_view(struct metrics_writer *w, void *user)
{
    struct router *r = user;
    struct rt_health h;
    rt_health(r->rt, &h);

    metrics_family(w, "vecshard_router_view_loaded", "gauge",
                   "1 once the routing table has read a full listing of the cluster map from etcd");
    metrics_sample(w, "vecshard_router_view_loaded", h.loaded ? 1 : 0, NULL);
    metrics_family(w, "vecshard_router_view_revision", "gauge",
                   "etcd revision the routing table's current view reflects (0 = etcd never read)");
    metrics_sample(w, "vecshard_router_view_revision", (double)h.revision, NULL);
    metrics_family(w, "vecshard_router_view_stale_seconds", "gauge",
                   "Seconds the routing view has not been known current: 0 while the etcd watch "
                   "is up, else since it went down (or since start before the first listing)");
    metrics_sample(w, "vecshard_router_view_stale_seconds", (double)h.stale_ms / 1000.0, NULL);
    metrics_family(w, "vecshard_router_view_updates_total", "counter",
                   "Views of the cluster map the routing table has published (one per watch "
                   "message or listing)");
    metrics_sample(w, "vecshard_router_view_updates_total", (double)h.updates, NULL);
    /* The watch stream is a request that never completes while it is up, so
     * the client's last-outcome record alone would lag behind a router that
     * only watches (--controller off): either proves etcd reachable. */
    struct etcd_client_health eh;
    etcd_client_health(r->etcd, &eh);
    bool answered = eh.ok_age_ms >= 0 && (eh.fail_age_ms < 0 || eh.fail_age_ms > eh.ok_age_ms);
    metrics_family(w, "vecshard_etcd_reachable", "gauge",
                   "1 when the process's last etcd request got an answer (router: or its routing "
                   "table's watch stream is up), else 0");
    metrics_sample(w, "vecshard_etcd_reachable", h.watch_live || answered ? 1 : 0, NULL);

    struct rt_view *v = rt_acquire(r->rt);
    size_t shards = 0;
    for (size_t i = 0; i < v->n_colls; i++)
        for (uint32_t s = 0; s < v->colls[i].shards; s++)
            shards += v->colls[i].shard[s].present;
    metrics_family(w, "vecshard_cluster_nodes", "gauge",
                   "Nodes registered in etcd (live leases), as the routing view holds them");
    metrics_sample(w, "vecshard_cluster_nodes", (double)v->n_nodes, NULL);
    metrics_family(w, "vecshard_cluster_collections", "gauge", "Collections in the routing view");
    metrics_sample(w, "vecshard_cluster_collections", (double)v->n_colls, NULL);
    metrics_family(w, "vecshard_cluster_shards", "gauge",
                   "Shard entries (placements) in the routing view, all collections together");
    metrics_sample(w, "vecshard_cluster_shards", (double)shards, NULL);
    metrics_family(w, "vecshard_cluster_nodes_draining", "gauge",
                   "Nodes marked for draining (drain/<node-id> in etcd)");
    metrics_sample(w, "vecshard_cluster_nodes_draining", (double)v->n_drains, NULL);

    static const struct {
        const char *name, *help;
    } per_shard[] = {
        {"vecshard_cluster_shard_replicas",
         "Replicas a shard entry places (primary included), from the routing view"},
        {"vecshard_cluster_shard_in_sync_replicas",
         "Replicas of a shard in its in_sync set (primary included), from the routing view"},
        {"vecshard_cluster_shard_replicas_wanted",
         "The collection's replication factor: replicas each shard should have"},
        {"vecshard_cluster_shard_primary_up",
         "1 when the shard's primary is a registered node, 0 when it has none or it is gone"},
    };
    for (size_t f = 0; f < sizeof per_shard / sizeof per_shard[0]; f++) {
        metrics_family(w, per_shard[f].name, "gauge", per_shard[f].help);
        for (size_t i = 0; i < v->n_colls; i++) {
            const struct rt_collection *c = &v->colls[i];
            for (uint32_t s = 0; s < c->shards; s++) {
                const struct cluster_shard *sh = &c->shard[s];
                if (!sh->present) continue;
                double val = f == 0   ? sh->replicas.n
                             : f == 1 ? sh->in_sync.n
                             : f == 2
                                 ? c->replication_factor
                                 : (sh->primary[0] != '\0' && rt_view_node(v, sh->primary) != NULL);
                char shard[12];
                snprintf(shard, sizeof shard, "%u", s);
                metrics_sample(w, per_shard[f].name, val, "collection", c->name, "shard", shard,
                               NULL);
            }
        }
    }

    static const enum cluster_move_state states[] = {CLUSTER_MOVE_QUEUED, CLUSTER_MOVE_RUNNING,
                                                     CLUSTER_MOVE_DONE, CLUSTER_MOVE_FAILED,
                                                     CLUSTER_MOVE_CANCELLED};
    metrics_family(w, "vecshard_rebalance_moves", "gauge",
                   "Rebalance move documents in etcd by state (running = moves in flight; "
                   "finished ones are kept up to the newest 50)");
    for (size_t k = 0; k < sizeof states / sizeof states[0]; k++) {
        size_t n = 0;
        for (size_t i = 0; i < v->n_moves; i++)
            n += v->moves[i].state == states[k];
        metrics_sample(w, "vecshard_rebalance_moves", (double)n, "state",
                       cluster_move_state_name(states[k]), NULL);
    }
    rt_release(v);

    metrics_family(w, "vecshard_controller_leader", "gauge",
                   "1 while this router holds the controller election and acts on it");
    metrics_sample(w, "vecshard_controller_leader", controller_leading(r->controller) ? 1 : 0,
                   NULL);
}

int router_metrics_init(struct router *r, struct metrics *m)
{
    memset(&r->m, 0, sizeof r->m);
    if (m == NULL) return 0;
    struct router_metrics *x = &r->m;
    x->fanout_shards = metrics_histogram(
        m, "vecshard_router_search_fanout_shards",
        "Shards a search was sent to (every shard of its collection; retries not counted)", NULL,
        fanout_buckets, sizeof fanout_buckets / sizeof fanout_buckets[0]);
    x->merge_seconds = metrics_histogram(
        m, "vecshard_router_search_merge_seconds",
        "Time to merge the shards' top-k lists and build a search reply", NULL, NULL, 0);
    x->partial = metrics_counter(
        m, "vecshard_router_search_partial_total",
        "Searches answered with coverage < 1 (some shards missing, allowed by min_coverage)", NULL);
    x->shard_calls = metrics_counter(
        m, "vecshard_router_shard_calls_total",
        "Calls from this router to shard nodes for client requests, by node id, node method "
        "and status code (DEADLINE_EXCEEDED when no answer came in time, CANCELLED when the "
        "request no longer needed it)",
        "node,method,code");
    x->shard_retries = metrics_counter(
        m, "vecshard_router_shard_retries_total",
        "Shard calls re-sent after a failure: to another in-sync replica (reads) or to the "
        "primary after a pause or an epoch refresh (writes)",
        "method");
    x->shard_failures = metrics_counter(
        m, "vecshard_router_shard_failures_total",
        "Shards of a request that no replica answered, after every retry", "method");
    x->hedges = metrics_counter(
        m, "vecshard_router_search_hedges_total",
        "Hedged shard searches: sent (a second replica asked after the hedging threshold), then "
        "won (its answer came first), lost (the first try's did) or failed (neither answered)",
        "outcome");
    x->auth_failures = metrics_counter(
        m, "vecshard_router_auth_failures_total",
        "Client calls refused by the API-key check, by reason (unauthenticated: missing or "
        "unknown key; permission_denied: role or collection scope)",
        "reason");
    x->slow_requests = metrics_counter(
        m, "vecshard_router_slow_requests_total",
        "Client calls slower than --slow-query-ms (each also logged as \"slow request\")",
        "method");
    x->decisions = metrics_counter(
        m, "vecshard_controller_decisions_total",
        "Shard-entry changes this router's controller applied: failover (a new primary), "
        "drop_in_sync, replace (re-replication)",
        "decision");
    x->moved_bytes =
        metrics_counter(m, "vecshard_rebalance_moved_bytes_total",
                        "Bytes copied by rebalance moves this router's controller finished (their "
                        "bytes_total)",
                        NULL);
    if (x->fanout_shards == NULL || x->merge_seconds == NULL || x->partial == NULL ||
        x->shard_calls == NULL || x->shard_retries == NULL || x->shard_failures == NULL ||
        x->hedges == NULL ||
        x->slow_requests == NULL || x->auth_failures == NULL || x->decisions == NULL || x->moved_bytes == NULL)
        return -1;
    return metrics_add_collector(m, collect_view, r);
}
