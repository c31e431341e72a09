/*
 * router/controller/controller.c — the controller's election and decision
 * loop (docs/replication.md §7).
 *
 * Election: each round grants a lease of --controller-ttl seconds, keeps it
 * alive (etcd_lease_keeper) and campaigns on `<prefix>/controller`. When the
 * keeper reports the lease lost, `lost` is set and the campaign (if still
 * waiting) is cancelled: the controller stops acting at that moment — every
 * shard-entry change callback refuses once `lost` is set — and campaigns
 * again on a new lease. On stop it resigns and revokes, so another router
 * takes over without waiting for the TTL.
 *
 * Decisions, while elected, on every view change and at least every 250 ms:
 * the nodes seen missing (and since when, by the monotonic clock, reset at
 * each election: a new controller waits a full grace before replacing) feed
 * failover_plan; the candidates' and primaries' ShardStatus is asked in one
 * fan-out (1 s deadline); each action is one cluster_shard_update whose
 * callback re-checks its precondition on the fresh entry against the current
 * view. Every decision is logged in logfmt (decision=, collection=, shard=,
 * from=, to=, epoch_from=, epoch_to=, lsn=, reason=); a `wait` once per shard
 * and cause, until that cause goes away. After failover's actions, the
 * same view goes to the move executor (moves.c: rebalance moves, drains,
 * automatic plans; reset at each election).
 *
 * Threading: one thread (ctl_main) does all of the above; `lock` protects
 * `stop` and `cancel` (the campaign's token, fired from the keeper thread or
 * controller_stop). `leading` and `lost` are atomics read by other threads
 * (controller_leader, the keeper callback). The missing and waits lists,
 * `warned` and the move executor belong to the thread.
 */
#define _GNU_SOURCE
#include "router/controller/controller.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/metrics/metrics.h"
#include "common/util/log.h"
#include "router/controller/failover.h"
#include "router/controller/moves.h"
#include "router/router.h"

#define CTL_TICK_MS   250
#define CTL_STATUS_MS 1000
#define CTL_RETRY_MS  1000

/* A node seen missing (owned id). */
struct ctl_missing {
    char *id;
    int64_t since_ms;
};

struct controller {
    struct router *r;
    char *id, *value, *election;
    pthread_t thread;
    pthread_mutex_t lock; /* protects stop, cancel; cond wakes the loop */
    pthread_cond_t cond;
    bool stop;
    etcd_cancel *cancel;
    atomic_bool leading; /* elected and the lease not lost */
    atomic_bool lost;    /* this round's lease was lost */
    struct ctl_missing *missing;
    size_t n_missing;
    char **waits; /* "coll/shard/node/reason" of the waits logged last tick */
    size_t n_waits;
    bool warned;              /* a failed campaign was logged (once per outage) */
    struct moves_exec *moves; /* the move executor (docs/rebalance.md), reset at each election */
};

/* Keeper callback: the lease is gone; stop acting and abandon the campaign. */
static void ctl_lease_lost(void *arg, int64_t lease, etcd_status why)
{
    struct controller *c = arg;
    atomic_store(&c->lost, true);
    atomic_store(&c->leading, false);
    pthread_mutex_lock(&c->lock);
    if (c->cancel != NULL) etcd_cancel_fire(c->cancel);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    log_warn("controller lease lost", "lease=%llx why=%s", (unsigned long long)lease,
             etcd_status_str(why));
}

/* True once controller_stop was called. */
static bool ctl_stopping(struct controller *c)
{
    pthread_mutex_lock(&c->lock);
    bool s = c->stop;
    pthread_mutex_unlock(&c->lock);
    return s;
}

/* Waits up to ms, or until stop or loss. */
static void ctl_pause(struct controller *c, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->lock);
    if (!c->stop) pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ missing nodes */

/* Updates the missing list from v: nodes named by a shard entry but not
 * registered are added (since now), registered or unnamed ones dropped. */
static void ctl_track_missing(struct controller *c, const struct rt_view *v, int64_t now)
{
    size_t keep = 0;
    for (size_t i = 0; i < c->n_missing; i++) {
        if (rt_view_named(v, c->missing[i].id) && rt_view_node(v, c->missing[i].id) == NULL)
            c->missing[keep++] = c->missing[i];
        else
            free(c->missing[i].id);
    }
    c->n_missing = keep;
    for (size_t k = 0; k < v->n_colls; k++)
        for (uint32_t s = 0; s < v->colls[k].shards; s++) {
            const struct cluster_shard *sh = &v->colls[k].shard[s];
            for (uint32_t j = 0; j <= sh->replicas.n; j++) {
                const char *id = j < sh->replicas.n ? sh->replicas.v[j] : sh->primary;
                if (id[0] == '\0' || rt_view_node(v, id) != NULL) continue;
                bool known = false;
                for (size_t i = 0; i < c->n_missing && !known; i++)
                    known = strcmp(c->missing[i].id, id) == 0;
                if (known) continue;
                struct ctl_missing *m = realloc(c->missing, (c->n_missing + 1) * sizeof *m);
                if (m == NULL) return;
                c->missing = m;
                if ((m[c->n_missing].id = strdup(id)) == NULL) return;
                m[c->n_missing++].since_ms = now;
                log_info("controller sees node missing", "node=%s", log_quote(id));
            }
        }
}

/* Forgets every missing time and logged wait (at each election). */
static void ctl_forget(struct controller *c)
{
    for (size_t i = 0; i < c->n_missing; i++)
        free(c->missing[i].id);
    c->n_missing = 0;
    for (size_t i = 0; i < c->n_waits; i++)
        free(c->waits[i]);
    c->n_waits = 0;
}

/* ------------------------------------------------------------ entry changes */

/* What a change callback needs. */
struct ctl_change {
    struct controller *c;
    const struct failover_action *a;
    const char *to; /* PROMOTE: the chosen node; REPLACE: the target */
};

/* Refuses unless this router still leads; then whether id is unregistered now. */
static int ctl_check_common(struct ctl_change *ch, const char *dead, char *err, size_t errlen)
{
    if (atomic_load(&ch->c->lost) || !atomic_load(&ch->c->leading)) {
        snprintf(err, errlen, "controller leadership lost");
        return -1;
    }
    struct rt_view *v = rt_acquire(ch->c->r->rt);
    bool back = dead[0] != '\0' && rt_view_node(v, dead) != NULL;
    bool to_ok = ch->to == NULL || rt_view_node(v, ch->to) != NULL;
    rt_release(v);
    if (back) {
        snprintf(err, errlen, "node %s is registered again", dead);
        return -1;
    }
    if (!to_ok) {
        snprintf(err, errlen, "node %s is no longer registered", ch->to);
        return -1;
    }
    return 0;
}

/* cluster_shard_update callback of PROMOTE, DROP_IN_SYNC and REPLACE. */
static int ctl_change_fn(struct cluster_shard *s, void *arg, char *err, size_t errlen)
{
    struct ctl_change *ch = arg;
    const struct failover_action *a = ch->a;
    if (ctl_check_common(ch, a->node, err, errlen) != 0) return -1;
    switch (a->kind) {
    case FAILOVER_PROMOTE: {
        if (strcmp(s->primary, a->node) != 0) {
            snprintf(err, errlen, "primary is now %s", s->primary);
            return -1;
        }
        if (!cluster_ids_has(&s->in_sync, ch->to)) {
            snprintf(err, errlen, "%s left in_sync", ch->to);
            return -1;
        }
        char *p = strdup(ch->to);
        if (p == NULL) goto nomem;
        free(s->primary);
        s->primary = p;
        if (a->node[0] != '\0') cluster_ids_remove(&s->in_sync, a->node);
        break;
    }
    case FAILOVER_DROP_IN_SYNC:
        if (strcmp(s->primary, a->node) == 0 || !cluster_ids_remove(&s->in_sync, a->node)) {
            snprintf(err, errlen, "%s is the primary or not in in_sync", a->node);
            return -1;
        }
        break;
    case FAILOVER_REPLACE:
        if (strcmp(s->primary, a->node) == 0 || !cluster_ids_has(&s->replicas, a->node) ||
            cluster_ids_has(&s->replicas, ch->to)) {
            snprintf(err, errlen, "%s is the primary or not a replica, or %s holds one", a->node,
                     ch->to);
            return -1;
        }
        cluster_ids_remove(&s->replicas, a->node);
        cluster_ids_remove(&s->in_sync, a->node);
        if (cluster_ids_add(&s->replicas, ch->to) != 0) goto nomem;
        break;
    case FAILOVER_WAIT:
        snprintf(err, errlen, "nothing to change");
        return -1;
    }
    if (cluster_shard_set_recovering(s) != 0) goto nomem;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Applies one action as a shard-entry CAS and logs the decision. */
static void ctl_apply(struct controller *c, const struct failover_action *a, const char *to,
                      uint64_t lsn, const char *reason)
{
    struct ctl_change ch = {.c = c, .a = a, .to = to};
    struct cluster_shard out = {0};
    char err[256] = "";
    uint64_t epoch_from = a->coll->shard[a->shard].epoch;
    enum cluster_status st =
        cluster_shard_update(c->r->etcd, c->r->cfg->etcd_prefix, a->coll->name, a->shard, 0,
                             ctl_change_fn, &ch, &out, err, sizeof err);
    if (st == CLUSTER_OK)
        metrics_add(c->r->m.decisions, (const char *const[]){failover_kind_name(a->kind)}, 1);
    if (st == CLUSTER_OK)
        log_info("controller decision",
                 "decision=%s collection=%s shard=%u from=%s to=%s epoch_from=%llu "
                 "epoch_to=%llu lsn=%llu reason=%s",
                 failover_kind_name(a->kind), log_quote(a->coll->name), a->shard,
                 log_quote(a->node), log_quote(to != NULL ? to : ""),
                 (unsigned long long)epoch_from, (unsigned long long)out.epoch,
                 (unsigned long long)lsn, log_quote(reason));
    else
        log_warn("controller decision not applied",
                 "decision=%s collection=%s shard=%u from=%s to=%s epoch_from=%llu status=%s "
                 "error=%s",
                 failover_kind_name(a->kind), log_quote(a->coll->name), a->shard,
                 log_quote(a->node), log_quote(to != NULL ? to : ""),
                 (unsigned long long)epoch_from, cluster_status_str(st), log_quote(err));
    cluster_shard_clear(&out);
}

/* Logs decision=wait unless this (shard, cause) was logged last tick; the
 * key joins `next` (n_next entries) either way. */
static void ctl_wait(struct controller *c, const struct failover_action *a, const char *reason,
                     char **next, size_t *n_next)
{
    char *key = NULL;
    if (asprintf(&key, "%s/%u/%s/%s", a->coll->name, a->shard, a->node, reason) < 0) return;
    for (size_t i = 0; i < *n_next; i++)
        if (strcmp(next[i], key) == 0) {
            free(key);
            return;
        }
    bool seen = false;
    for (size_t i = 0; i < c->n_waits && !seen; i++)
        seen = strcmp(c->waits[i], key) == 0;
    if (!seen)
        log_info("controller decision",
                 "decision=wait collection=%s shard=%u from=%s epoch_from=%llu reason=%s",
                 log_quote(a->coll->name), a->shard, log_quote(a->node),
                 (unsigned long long)a->coll->shard[a->shard].epoch, log_quote(reason));
    next[(*n_next)++] = key;
}

/* The candidates of a PROMOTE from the fan-out's replies (one per in-sync member). */
static size_t ctl_candidates(const struct rt_view *v, const struct failover_action *a,
                             Vecshard__V1__ShardStatusResponse *const *st,
                             struct failover_candidate *out)
{
    const struct cluster_shard *sh = &a->coll->shard[a->shard];
    size_t n = 0;
    for (uint32_t i = 0; i < sh->in_sync.n; i++) {
        const struct rt_node *node = rt_view_node(v, sh->in_sync.v[i]);
        const Vecshard__V1__ShardReplicaStatus *rs =
            node != NULL ? router_replica_status(st[node - v->nodes], a->coll->name, a->shard)
                         : NULL;
        out[n++] = (struct failover_candidate){
            .node_id = sh->in_sync.v[i],
            .answered = rs != NULL,
            .ready = rs != NULL && rs->state == VECSHARD__V1__REPLICA_STATE__REPLICA_STATE_READY,
            .lsn = rs != NULL ? rs->lsn : 0,
            .epoch = rs != NULL ? rs->epoch : 0,
        };
    }
    return n;
}

/* still_leading of moves_exec_tick. */
static bool ctl_still_leading(void *arg)
{
    struct controller *c = arg;
    return atomic_load(&c->leading) && !atomic_load(&c->lost);
}

/* One round of decisions on the current view. */
static void ctl_tick(struct controller *c)
{
    struct rt_view *v = rt_acquire(c->r->rt);
    struct failover_action *acts = NULL;
    bool *want = NULL;
    Vecshard__V1__ShardStatusResponse **st = NULL;
    char **next = NULL;
    size_t n_next = 0, n = 0;
    if (v->revision == 0) goto out; /* etcd never read: nothing is known */
    int64_t now = rpc_now_ms();
    ctl_track_missing(c, v, now);
    struct failover_missing *fm = calloc(c->n_missing + 1, sizeof *fm);
    if (fm == NULL) goto out;
    for (size_t i = 0; i < c->n_missing; i++)
        fm[i] = (struct failover_missing){c->missing[i].id, c->missing[i].since_ms};
    n = failover_plan(v, fm, c->n_missing, now, c->r->cfg->replace_after_ms, NULL, 0);
    acts = calloc(n + 1, sizeof *acts);
    want = calloc(v->n_nodes + 1, sizeof *want);
    st = calloc(v->n_nodes + 1, sizeof *st);
    next = calloc(n + 1, sizeof *next);
    if (acts == NULL || want == NULL || st == NULL || next == NULL) {
        free(fm);
        goto out;
    }
    failover_plan(v, fm, c->n_missing, now, c->r->cfg->replace_after_ms, acts, n);
    free(fm);
    bool ask = false;
    for (size_t i = 0; i < n; i++) {
        const struct cluster_shard *sh = &acts[i].coll->shard[acts[i].shard];
        if (acts[i].kind == FAILOVER_PROMOTE)
            for (uint32_t j = 0; j < sh->in_sync.n; j++) {
                const struct rt_node *node = rt_view_node(v, sh->in_sync.v[j]);
                if (node != NULL) ask = want[node - v->nodes] = true;
            }
        if (acts[i].kind == FAILOVER_REPLACE) {
            const struct rt_node *node = rt_view_node(v, sh->primary);
            if (node != NULL) ask = want[node - v->nodes] = true;
        }
    }
    if (ask) router_shard_status(c->r, v, want, "", rpc_now_ms() + CTL_STATUS_MS, st);
    for (size_t i = 0; i < n && atomic_load(&c->leading); i++) {
        const struct failover_action *a = &acts[i];
        const struct cluster_shard *sh = &a->coll->shard[a->shard];
        if (a->kind == FAILOVER_WAIT) {
            ctl_wait(c, a, a->reason, next, &n_next);
        } else if (a->kind == FAILOVER_PROMOTE) {
            struct failover_candidate cands[ROUTER_MAX_RF * 2];
            size_t nc = ctl_candidates(v, a, st, cands);
            char why[256];
            int pick = failover_choose(v, sh, cands, nc, why, sizeof why);
            if (pick < 0)
                ctl_wait(c, a, why, next, &n_next);
            else
                ctl_apply(c, a, cands[pick].node_id, cands[pick].lsn, a->reason);
        } else if (a->kind == FAILOVER_REPLACE) {
            const struct rt_node *p = rt_view_node(v, sh->primary);
            const Vecshard__V1__ShardReplicaStatus *rs =
                p != NULL ? router_replica_status(st[p - v->nodes], a->coll->name, a->shard) : NULL;
            if (rs == NULL || rs->state != VECSHARD__V1__REPLICA_STATE__REPLICA_STATE_READY)
                ctl_wait(c, a, "primary not READY", next, &n_next);
            else
                ctl_apply(c, a, a->to, rs->lsn, a->reason);
        } else {
            ctl_apply(c, a, NULL, 0, a->reason);
        }
    }
    /* the moves, on the same view: failover's decisions above come first */
    if (ctl_still_leading(c)) moves_exec_tick(c->moves, v, ctl_still_leading, c);
out:
    for (size_t i = 0; i < c->n_waits; i++)
        free(c->waits[i]);
    free(c->waits);
    c->waits = next;
    c->n_waits = n_next;
    router_shard_status_free(st, st != NULL ? v->n_nodes : 0);
    free(st);
    free(want);
    free(acts);
    rt_release(v);
}

/* ------------------------------------------------------------ election */

/* One election round: lease, keeper, campaign, and the decision loop while
 * elected. Returns when the lease is lost, etcd fails or on stop. */
static void ctl_round(struct controller *c)
{
    etcd_err eerr;
    int64_t lease = 0;
    etcd_lease_keeper *keeper = NULL;
    etcd_leader leader = {0};
    int64_t ttl = c->r->cfg->controller_ttl;
    atomic_store(&c->lost, false);
    if (etcd_lease_grant(c->r->etcd, ttl, &lease, NULL, &eerr) != ETCD_OK) {
        log_debug("controller cannot grant its lease", "error=%s", log_quote(eerr.msg));
        return;
    }
    etcd_cancel *cancel = etcd_cancel_new();
    pthread_mutex_lock(&c->lock);
    c->cancel = cancel;
    bool stop = c->stop;
    pthread_mutex_unlock(&c->lock);
    if (cancel == NULL || stop ||
        etcd_lease_keeper_start(c->r->etcd, lease, ttl, ctl_lease_lost, c, &keeper, &eerr) !=
            ETCD_OK)
        goto out;
    etcd_status es = etcd_campaign(c->r->etcd, c->election, c->value, strlen(c->value), lease,
                                   cancel, &leader, &eerr);
    if (es != ETCD_OK) {
        if (es != ETCD_ECANCELED && !c->warned)
            log_warn("controller campaign failed; retrying every second", "error=%s",
                     log_quote(eerr.msg));
        c->warned = es != ETCD_ECANCELED;
        goto out;
    }
    c->warned = false;
    if (atomic_load(&c->lost)) goto out;
    ctl_forget(c);
    moves_exec_reset(c->moves);
    atomic_store(&c->leading, true);
    log_info("controller elected",
             "router_id=%s lease=%llx ttl=%lld auto_rebalance=%s max_moves=%d "
             "move_timeout_ms=%d rebalance_settle_ms=%d",
             log_quote(c->id), (unsigned long long)lease, (long long)ttl,
             c->r->cfg->auto_rebalance ? "on" : "off", c->r->cfg->max_moves,
             c->r->cfg->move_timeout_ms, c->r->cfg->rebalance_settle_ms);
    int64_t seen_rev = -1, last = 0;
    while (!ctl_stopping(c) && !atomic_load(&c->lost)) {
        struct rt_view *v = rt_acquire(c->r->rt);
        int64_t rev = v->revision;
        rt_release(v);
        if (rev != seen_rev || rpc_now_ms() - last >= CTL_TICK_MS) {
            seen_rev = rev;
            last = rpc_now_ms();
            ctl_tick(c);
        }
        ctl_pause(c, 50);
    }
    atomic_store(&c->leading, false);
    if (!atomic_load(&c->lost)) {
        etcd_resign(c->r->etcd, &leader, NULL);
        log_info("controller resigned", "router_id=%s", log_quote(c->id));
    } else {
        log_warn("controller stopped acting: lease lost", "router_id=%s", log_quote(c->id));
    }
out:
    atomic_store(&c->leading, false);
    etcd_lease_keeper_stop(keeper);
    etcd_lease_revoke(c->r->etcd, lease, NULL);
    etcd_leader_clear(&leader);
    pthread_mutex_lock(&c->lock);
    c->cancel = NULL;
    pthread_mutex_unlock(&c->lock);
    etcd_cancel_free(cancel);
}

/* The controller thread: election rounds until stop. */
static void *ctl_main(void *arg)
{
    struct controller *c = arg;
    while (!ctl_stopping(c)) {
        ctl_round(c);
        if (!ctl_stopping(c)) ctl_pause(c, atomic_load(&c->lost) ? 100 : CTL_RETRY_MS);
    }
    return NULL;
}

/* Frees c and what it owns (the thread is not running). */
static void ctl_free(struct controller *c)
{
    ctl_forget(c);
    moves_exec_free(c->moves);
    free(c->missing);
    free(c->waits);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c->id);
    free(c->election);
    free(c->value);
    free(c);
}

int controller_start(struct router *r, const char *id, const char *addr, struct controller **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    struct controller *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->r = r;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->id = strdup(id);
    c->moves = moves_exec_new(r);
    c->election = cluster_key_controller(r->cfg->etcd_prefix);
    if (asprintf(&c->value, "%s %s", id, addr) < 0) c->value = NULL;
    if (c->id == NULL || c->election == NULL || c->value == NULL || c->moves == NULL) {
        snprintf(err, errlen, "out of memory");
        ctl_free(c);
        return -1;
    }
    if (pthread_create(&c->thread, NULL, ctl_main, c) != 0) {
        snprintf(err, errlen, "cannot start the controller thread");
        ctl_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void controller_stop(struct controller *c)
{
    if (c == NULL) return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    if (c->cancel != NULL) etcd_cancel_fire(c->cancel);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    ctl_free(c);
}

bool controller_leading(struct controller *c)
{
    return c != NULL && atomic_load(&c->leading);
}

void controller_leader(struct router *r, struct controller *c, char *out, size_t len)
{
    if (c != NULL && atomic_load(&c->leading)) {
        snprintf(out, len, "%s", c->id);
        return;
    }
    struct rt_view *v = rt_acquire(r->rt);
    snprintf(out, len, "%s", v->controller != NULL ? v->controller : "");
    rt_release(v);
}
