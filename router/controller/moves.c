/*
 * router/controller/moves.c — the controller's move executor (moves.h,
 * docs/rebalance.md §2–§4): drives each move document through its steps,
 * undoes and retries failed attempts, queues drain moves and automatic
 * rebalances, and prunes finished documents.
 *
 * Every step is decided from the shard entry in the controller's view (so a
 * new controller resumes a RUNNING move where the entry says it is), and
 * every entry change is one cluster_shard_update whose callback re-checks
 * its precondition on the freshly read entry (a repeated step finds nothing
 * to do and counts as done). Move documents are written only here, with
 * etcd_put after still_leading; the view lags behind those writes, so each
 * document's last written revision is remembered and a move whose view copy
 * is older is left alone until the watch delivers it.
 *
 * Every step is logged in logfmt like the failover decisions:
 * decision=move_start|move_add|move_switch|move_done|move_undo|move_fail|
 * move_cancel move= collection= shard= from= to= epoch_from= epoch_to= reason=.
 *
 * Threading: a struct moves_exec belongs to the controller thread (its only
 * caller); the change callbacks run on that thread inside
 * cluster_shard_update. Ownership: the executor owns its track and node
 * lists; views are borrowed for one tick.
 */
#define _GNU_SOURCE
#include "router/controller/moves.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics/metrics.h"
#include "common/util/log.h"
#include "router/router.h"

#define MX_STATUS_MS   1000 /* ShardStatus fan-out of the running moves' targets */
#define MX_RETRY_MS    5000 /* an undone attempt is retried after this */
#define MX_ATTEMPTS    3    /* attempts before a move is failed */
#define MX_KEEP        50   /* finished documents kept */
#define MX_DRAIN_EVERY 1000 /* ms between two drain plans */
#define MX_UNSEEN_MS                                                                               \
    10000 /* a queued move the view never showed (deleted at once) is forgotten                    \
           */

/* What the executor remembers of one move (by id). */
struct mx_track {
    char id[CLUSTER_MOVE_ID_MAX + 1];
    int64_t wrote_rev;             /* etcd revision of our last put of its document */
    enum cluster_move_state state; /* the state that put wrote */
    int64_t retry_at;              /* monotonic ms: not started again before (after an undo) */
    uint64_t seen_bytes, seen_lsn; /* the target's progress last seen */
    int64_t progress_at;           /* monotonic ms of the last progress; 0 = not watched yet */
    bool waiting;                  /* a switch wait was logged */
    bool unseen;                   /* queued by us, not yet in the view */
    int64_t queued_at;             /* monotonic ms of that put */
};

struct moves_exec {
    struct router *r;
    struct mx_track *t;
    size_t n_t;
    char **known; /* nodes seen registered since the election */
    size_t n_known;
    bool started;   /* the first view after the election was taken in */
    char **missing; /* nodes named by an entry but not registered */
    size_t n_missing;
    bool trigger;          /* a join or an unnamed node asks for an automatic plan */
    int64_t settled_since; /* monotonic ms; 0 = not settled */
    int64_t drain_next;    /* monotonic ms before which no drain plan is made */
    char note[256];        /* last planner note logged */
};

/* One tick's context. */
struct mx {
    struct moves_exec *x;
    const struct rt_view *v;
    bool (*still_leading)(void *arg);
    void *arg;
    bool stop; /* leadership lost: no more writes this tick */
    int64_t now;
    Vecshard__V1__ShardStatusResponse **st; /* the targets' ShardStatus, by v->nodes index */
};

/* ------------------------------------------------------------ small helpers */

static bool ids_has(char *const *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], id) == 0) return true;
    return false;
}

static int ids_push(char ***v, size_t *n, const char *id)
{
    char **g = realloc(*v, (*n + 1) * sizeof *g);
    if (g == NULL) return -1;
    *v = g;
    if ((g[*n] = strdup(id)) == NULL) return -1;
    (*n)++;
    return 0;
}

static void ids_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static struct mx_track *track_find(struct moves_exec *x, const char *id)
{
    for (size_t i = 0; i < x->n_t; i++)
        if (strcmp(x->t[i].id, id) == 0) return &x->t[i];
    return NULL;
}

/* The track of id, created when missing (NULL on ENOMEM). */
static struct mx_track *track_get(struct moves_exec *x, const char *id)
{
    struct mx_track *t = track_find(x, id);
    if (t != NULL) return t;
    t = realloc(x->t, (x->n_t + 1) * sizeof *t);
    if (t == NULL) return NULL;
    x->t = t;
    t = &x->t[x->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", id);
    return t;
}

/* Our last write of m is not in the view yet. */
static bool pending(struct moves_exec *x, const struct cluster_move *m)
{
    const struct mx_track *t = track_find(x, m->id);
    return t != NULL && t->wrote_rev > m->mod_revision;
}

/* m's state as far as this controller knows (its own newer write wins). */
static enum cluster_move_state state_of(struct moves_exec *x, const struct cluster_move *m)
{
    const struct mx_track *t = track_find(x, m->id);
    return t != NULL && t->wrote_rev > m->mod_revision ? t->state : m->state;
}

/* The entry of m's shard in v, or NULL (collection or shard gone). */
static const struct cluster_shard *entry_of(const struct rt_view *v, const struct cluster_move *m,
                                            const struct rt_collection **coll)
{
    const struct rt_collection *c = rt_view_collection(v, m->name);
    if (coll != NULL) *coll = c;
    if (c == NULL || m->shard >= c->shards || !c->shard[m->shard].present) return NULL;
    return &c->shard[m->shard];
}

/* The target's replica status in this tick's fan-out, or NULL. */
static const Vecshard__V1__ShardReplicaStatus *target_status(struct mx *c,
                                                             const struct cluster_move *m)
{
    const struct rt_node *n = rt_view_node(c->v, m->to);
    return n != NULL && c->st != NULL
               ? router_replica_status(c->st[n - c->v->nodes], m->name, m->shard)
               : NULL;
}

static void log_move(const char *decision, const struct cluster_move *m, uint64_t epoch_from,
                     uint64_t epoch_to, const char *reason)
{
    log_info("controller decision",
             "decision=%s move=%s collection=%s shard=%u from=%s to=%s epoch_from=%llu "
             "epoch_to=%llu reason=%s",
             decision, log_quote(m->id), log_quote(m->name), m->shard, log_quote(m->from),
             log_quote(m->to), (unsigned long long)epoch_from, (unsigned long long)epoch_to,
             log_quote(reason));
}

/* ------------------------------------------------------------ documents */

/* Checks leadership (once lost, the tick stops writing). */
static bool leading(struct mx *c)
{
    if (!c->stop && !c->still_leading(c->arg)) c->stop = true;
    return !c->stop;
}

/* Writes m (the caller's edited copy) as its document. 0 or -1. */
static int put_move(struct mx *c, const struct cluster_move *m)
{
    if (!leading(c)) return -1;
    struct mx_track *t = track_get(c->x, m->id);
    char *key = cluster_key_move(c->x->r->cfg->etcd_prefix, m->id);
    char *doc = cluster_move_format(m);
    etcd_err eerr = {0};
    int64_t rev = 0;
    etcd_status es = t != NULL && key != NULL && doc != NULL
                         ? etcd_put(c->x->r->etcd, key, doc, strlen(doc), 0, NULL, &rev, &eerr)
                         : ETCD_ENOMEM;
    free(key);
    free(doc);
    if (es != ETCD_OK) {
        log_warn("controller cannot write a move document", "move=%s error=%s", log_quote(m->id),
                 log_quote(es == ETCD_ENOMEM ? "out of memory" : eerr.msg));
        return -1;
    }
    t->wrote_rev = rev;
    t->state = m->state;
    return 0;
}

/* A copy of m with state, step and reason replaced (finished_at set when
 * the state is final); the caller clears it. 0 or -1. */
static int edit(struct cluster_move *out, const struct cluster_move *m,
                enum cluster_move_state state, const char *step, const char *reason)
{
    memset(out, 0, sizeof *out);
    if (cluster_move_copy(out, m) != 0) return -1;
    out->state = state;
    if (!cluster_move_active(out)) out->finished_at = router_unix_ms();
    if (cluster_move_set(&out->step, step) != 0 ||
        (reason != NULL && cluster_move_set(&out->reason, reason) != 0)) {
        cluster_move_clear(out);
        return -1;
    }
    return 0;
}

/* Writes m with a new state/step/reason. 0 or -1. */
static int put_state(struct mx *c, const struct cluster_move *m, enum cluster_move_state state,
                     const char *step, const char *reason)
{
    struct cluster_move e;
    if (edit(&e, m, state, step, reason) != 0) return -1;
    int rc = put_move(c, &e);
    if (rc == 0 && state == CLUSTER_MOVE_DONE)
        metrics_add(c->x->r->m.moved_bytes, NULL, (double)e.bytes_total);
    cluster_move_clear(&e);
    return rc;
}

/* Finishes m as CANCELLED with why. */
static void cancel_move(struct mx *c, const struct cluster_move *m, const char *why)
{
    const struct cluster_shard *sh = entry_of(c->v, m, NULL);
    if (put_state(c, m, CLUSTER_MOVE_CANCELLED, "", why) == 0)
        log_move("move_cancel", m, sh != NULL ? sh->epoch : 0, sh != NULL ? sh->epoch : 0, why);
}

/* ------------------------------------------------------------ entry changes */

enum mx_op { MX_ADD, MX_SWITCH, MX_LEADER, MX_UNDO };

struct mx_change {
    struct mx *c;
    const struct cluster_move *m;
    enum mx_op op;
    uint32_t rf;
    bool noop; /* the entry already shows the step done: nothing written */
};

/* cluster_shard_update callback of the four move changes. */
static int mx_change_fn(struct cluster_shard *s, void *arg, char *err, size_t errlen)
{
    struct mx_change *ch = arg;
    const struct cluster_move *m = ch->m;
    if (!ch->c->still_leading(ch->c->arg)) {
        snprintf(err, errlen, "controller leadership lost");
        return -1;
    }
    struct rt_view *v = rt_acquire(ch->c->x->r->rt);
    bool to_live = rt_view_node(v, m->to) != NULL, to_draining = rt_view_draining(v, m->to);
    bool from_live = rt_view_node(v, m->from) != NULL;
    rt_release(v);
    bool to_in = cluster_ids_has(&s->replicas, m->to),
         from_in = cluster_ids_has(&s->replicas, m->from);
    switch (ch->op) {
    case MX_ADD:
        if (to_in) goto noop;
        if (!from_in) {
            snprintf(err, errlen, "%s holds no copy any more", m->from);
            return -1;
        }
        if (!to_live || to_draining) {
            snprintf(err, errlen, "target %s is %s", m->to,
                     !to_live ? "not registered" : "draining");
            return -1;
        }
        if (cluster_ids_add(&s->replicas, m->to) != 0) goto nomem;
        break;
    case MX_SWITCH: {
        if (!from_in) goto noop;
        if (!cluster_ids_has(&s->in_sync, m->to) || !to_in) {
            snprintf(err, errlen, "target %s is not in in_sync", m->to);
            return -1;
        }
        uint32_t left = 0;
        if (from_live) {
            struct rt_view *w = rt_acquire(ch->c->x->r->rt);
            for (uint32_t i = 0; i < s->in_sync.n; i++)
                if (strcmp(s->in_sync.v[i], m->from) != 0 &&
                    rt_view_node(w, s->in_sync.v[i]) != NULL)
                    left++;
            rt_release(w);
            if (left < ch->rf) {
                snprintf(err, errlen, "only %u registered in-sync copies would remain (R = %u)",
                         left, ch->rf);
                return -1;
            }
        }
        if (strcmp(s->primary, m->from) == 0) {
            char *p = strdup(m->to);
            if (p == NULL) goto nomem;
            free(s->primary);
            s->primary = p;
        }
        cluster_ids_remove(&s->replicas, m->from);
        cluster_ids_remove(&s->in_sync, m->from);
        break;
    }
    case MX_LEADER:
        if (strcmp(s->primary, m->to) == 0) goto noop;
        if (strcmp(s->primary, m->from) != 0) {
            snprintf(err, errlen, "primary is now %s", s->primary);
            return -1;
        }
        if (!to_live || !cluster_ids_has(&s->in_sync, m->to)) {
            snprintf(err, errlen, "target %s is not a registered member of in_sync", m->to);
            return -1;
        }
        {
            char *p = strdup(m->to);
            if (p == NULL) goto nomem;
            free(s->primary);
            s->primary = p;
        }
        break;
    case MX_UNDO:
        if (!to_in) goto noop;
        if (strcmp(s->primary, m->to) == 0) {
            snprintf(err, errlen, "target %s has become the primary", m->to);
            return -1;
        }
        cluster_ids_remove(&s->replicas, m->to);
        cluster_ids_remove(&s->in_sync, m->to);
        break;
    }
    if (cluster_shard_set_recovering(s) != 0) goto nomem;
    return 0;
noop:
    ch->noop = true;
    snprintf(err, errlen, "already done");
    return -1;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Applies one change to m's entry; logs it as `decision` (with reason)
 * when written. 0 when written or already done, 1 when the precondition
 * refused it (why in err), -1 when nothing was decided (leadership lost,
 * etcd failed, conflicts: tried again next tick). */
static int change(struct mx *c, const struct cluster_move *m, enum mx_op op, const char *decision,
                  const char *reason, char *err, size_t errlen)
{
    const struct rt_collection *coll = NULL;
    const struct cluster_shard *sh = entry_of(c->v, m, &coll);
    if (!leading(c)) {
        snprintf(err, errlen, "controller leadership lost");
        return -1;
    }
    struct mx_change ch = {
        .c = c, .m = m, .op = op, .rf = coll != NULL ? coll->replication_factor : 1};
    struct cluster_shard out = {0};
    enum cluster_status st =
        cluster_shard_update(c->x->r->etcd, c->x->r->cfg->etcd_prefix, m->name, m->shard, 0,
                             mx_change_fn, &ch, &out, err, errlen);
    int rc = -1;
    if (st == CLUSTER_OK) {
        log_move(decision, m, sh != NULL ? sh->epoch : 0, out.epoch, reason);
        rc = 0;
    } else if (st == CLUSTER_REFUSED && ch.noop) {
        rc = 0;
    } else if (st == CLUSTER_REFUSED) {
        rc = strcmp(err, "controller leadership lost") == 0 ? -1 : 1;
    } else {
        log_warn("controller move change not applied",
                 "decision=%s move=%s collection=%s shard=%u status=%s error=%s", decision,
                 log_quote(m->id), log_quote(m->name), m->shard, cluster_status_str(st),
                 log_quote(err));
    }
    cluster_shard_clear(&out);
    return rc;
}

/* ------------------------------------------------------------ steps */

/* Ends a failed attempt of m (why): back to QUEUED, retried after
 * MX_RETRY_MS, or FAILED once it has had MX_ATTEMPTS. */
static void attempt_failed(struct mx *c, const struct cluster_move *m, const char *why)
{
    const struct cluster_shard *sh = entry_of(c->v, m, NULL);
    uint64_t ep = sh != NULL ? sh->epoch : 0;
    bool fail = m->attempts >= MX_ATTEMPTS;
    char reason[300];
    snprintf(reason, sizeof reason, "%s (attempt %u of %u)", why, m->attempts, MX_ATTEMPTS);
    if (put_state(c, m, fail ? CLUSTER_MOVE_FAILED : CLUSTER_MOVE_QUEUED, "", reason) != 0) return;
    log_move(fail ? "move_fail" : "move_retry", m, ep, ep, reason);
    struct mx_track *t = track_get(c->x, m->id);
    if (t != NULL) {
        t->retry_at = c->now + MX_RETRY_MS;
        t->progress_at = 0;
        t->waiting = false;
    }
}

/* Undoes the running attempt of m (why): one CAS removes the target, then
 * attempt_failed. */
static void undo(struct mx *c, const struct cluster_move *m, const char *why)
{
    char err[256] = "";
    if (change(c, m, MX_UNDO, "move_undo", why, err, sizeof err) != 0) {
        if (!c->stop)
            log_warn("controller cannot undo a move", "move=%s reason=%s error=%s",
                     log_quote(m->id), log_quote(why), log_quote(err));
        return;
    }
    attempt_failed(c, m, why);
}

/* What start makes of a queued move. */
enum mx_check { MX_GO, MX_WAIT, MX_CANCEL, MX_NO_TARGET };

/* Start's checks of m against its entry (docs/rebalance.md §2 step 1):
 * GO; WAIT while the shard is not fully in sync (a transient state);
 * NO_TARGET when the target is not registered (a failed attempt: retried);
 * CANCEL with why in buf when the move no longer applies. */
static enum mx_check check(const struct rt_view *v, const struct cluster_move *m, char *buf,
                           size_t len)
{
    const struct cluster_shard *sh = entry_of(v, m, NULL);
    if (sh == NULL)
        snprintf(buf, len, "no longer applies: the collection or shard is gone");
    else if (strcmp(m->from, m->to) == 0)
        snprintf(buf, len, "no longer applies: from and to are the same node");
    else if (m->kind == CLUSTER_MOVE_LEADER && strcmp(sh->primary, m->from) != 0)
        snprintf(buf, len, "no longer applies: %s is not the primary", m->from);
    else if (m->kind == CLUSTER_MOVE_REPLICA && !cluster_ids_has(&sh->replicas, m->from))
        snprintf(buf, len, "no longer applies: %s holds no copy", m->from);
    else if (m->kind == CLUSTER_MOVE_REPLICA && cluster_ids_has(&sh->replicas, m->to))
        snprintf(buf, len, "no longer applies: %s already holds a copy", m->to);
    else if (m->kind == CLUSTER_MOVE_LEADER && !cluster_ids_has(&sh->in_sync, m->to))
        snprintf(buf, len, "no longer applies: %s holds no in-sync copy", m->to);
    else if (rt_view_draining(v, m->to) && m->kind == CLUSTER_MOVE_REPLICA)
        snprintf(buf, len, "no longer applies: %s is draining", m->to);
    else if (rt_view_node(v, m->to) == NULL) {
        snprintf(buf, len, "target %s is not registered", m->to);
        return MX_NO_TARGET;
    } else if (sh->in_sync.n != sh->replicas.n)
        return MX_WAIT;
    else
        return MX_GO;
    return MX_CANCEL;
}

/* A LEADER move: one CAS, then DONE (or CANCELLED when refused). */
static void run_leader(struct mx *c, const struct cluster_move *m)
{
    char err[256] = "";
    int rc = change(c, m, MX_LEADER, "move_switch", "primaryship handed over", err, sizeof err);
    if (rc == 0) {
        const struct cluster_shard *sh = entry_of(c->v, m, NULL);
        if (put_state(c, m, CLUSTER_MOVE_DONE, "", NULL) == 0)
            log_move("move_done", m, sh != NULL ? sh->epoch : 0, sh != NULL ? sh->epoch : 0, "");
    } else if (rc == 1) {
        char why[300];
        snprintf(why, sizeof why, "no longer applies: %s", err);
        cancel_move(c, m, why);
    }
}

/* Drives a RUNNING replica move one step, deciding from its entry. */
static void drive(struct mx *c, const struct cluster_move *m)
{
    const struct cluster_shard *sh = entry_of(c->v, m, NULL);
    if (sh == NULL) {
        cancel_move(c, m, "no longer applies: the collection or shard is gone");
        return;
    }
    if (m->kind == CLUSTER_MOVE_LEADER) {
        run_leader(c, m);
        return;
    }
    struct mx_track *t = track_get(c->x, m->id);
    if (t == NULL) return;
    bool to_in = cluster_ids_has(&sh->replicas, m->to);
    bool to_sync = cluster_ids_has(&sh->in_sync, m->to);
    bool from_in = cluster_ids_has(&sh->replicas, m->from);
    char err[256] = "";
    if (!to_in) { /* adding (first step, or resumed) */
        int rc = change(c, m, MX_ADD, "move_add", "", err, sizeof err);
        if (rc == 0) {
            t->progress_at = c->now;
            if (strcmp(m->step, "copying") != 0)
                put_state(c, m, CLUSTER_MOVE_RUNNING, "copying", NULL);
        } else if (rc < 0) {
            /* nothing decided: tried again next tick */
        } else if (rt_view_node(c->v, m->to) == NULL || strstr(err, "not registered") != NULL) {
            attempt_failed(c, m, err);
        } else {
            char why[300];
            snprintf(why, sizeof why, "no longer applies: %s", err);
            cancel_move(c, m, why);
        }
        return;
    }
    if (!from_in) { /* the source is gone: the switch happened */
        if (put_state(c, m, CLUSTER_MOVE_DONE, "", NULL) == 0)
            log_move("move_done", m, sh->epoch, sh->epoch, "");
        return;
    }
    /* a target that has become the primary (failover promoted it) is past
     * the point of undoing: only the switch is left */
    bool to_primary = strcmp(sh->primary, m->to) == 0;
    if (rt_view_node(c->v, m->to) == NULL && !to_primary) {
        char why[200];
        snprintf(why, sizeof why, "target %s is not registered", m->to);
        undo(c, m, why);
        return;
    }
    if (!to_sync) { /* copying / catching up: the primary does the work, we watch */
        const Vecshard__V1__ShardReplicaStatus *rs = target_status(c, m);
        uint64_t bytes = rs != NULL ? rs->transfer_bytes_done : 0, lsn = rs != NULL ? rs->lsn : 0;
        if (t->progress_at == 0 || bytes != t->seen_bytes || lsn != t->seen_lsn) {
            t->progress_at = c->now;
            t->seen_bytes = bytes;
            t->seen_lsn = lsn;
        } else if (c->now - t->progress_at >= c->x->r->cfg->move_timeout_ms) {
            char why[200];
            snprintf(why, sizeof why, "no progress for %d ms", c->x->r->cfg->move_timeout_ms);
            undo(c, m, why);
            return;
        }
        const char *step = "copying";
        if (rs != NULL && strcmp(rs->recovery, "transferring") != 0 &&
            (rs->transfers_completed > 0 || rs->lsn > 0))
            step = "catching_up";
        if (strcmp(m->step, step) != 0 && !pending(c->x, m)) {
            struct cluster_move e;
            if (edit(&e, m, CLUSTER_MOVE_RUNNING, step, NULL) == 0) {
                if (rs != NULL && rs->transfer_bytes_total > e.bytes_total)
                    e.bytes_total = rs->transfer_bytes_total;
                put_move(c, &e);
                cluster_move_clear(&e);
            }
        }
        return;
    }
    /* switching: the target is in in_sync */
    int rc = change(c, m, MX_SWITCH, "move_switch", m->primary ? "primaryship handed over" : "",
                    err, sizeof err);
    if (rc == 0) {
        const struct cluster_shard *now = entry_of(c->v, m, NULL);
        if (put_state(c, m, CLUSTER_MOVE_DONE, "", NULL) == 0)
            log_move("move_done", m, now->epoch, now->epoch, "");
        return;
    }
    if (rc < 0) return;
    if (!t->waiting) {
        log_info("controller decision",
                 "decision=wait move=%s collection=%s shard=%u from=%s to=%s epoch_from=%llu "
                 "reason=%s",
                 log_quote(m->id), log_quote(m->name), m->shard, log_quote(m->from),
                 log_quote(m->to), (unsigned long long)sh->epoch, log_quote(err));
        t->waiting = true;
    }
    if (strcmp(m->step, "switching") != 0 && !pending(c->x, m))
        put_state(c, m, CLUSTER_MOVE_RUNNING, "switching", NULL);
}

/* Starts a QUEUED move when it still applies; true when it is now running. */
static bool start(struct mx *c, const struct cluster_move *m)
{
    char buf[300];
    enum mx_check ck = check(c->v, m, buf, sizeof buf);
    if (ck == MX_CANCEL) cancel_move(c, m, buf);
    if (ck == MX_NO_TARGET) { /* counts as an attempt that failed at once */
        struct cluster_move e;
        if (edit(&e, m, CLUSTER_MOVE_QUEUED, "", NULL) == 0) {
            e.attempts++;
            attempt_failed(c, &e, buf);
            cluster_move_clear(&e);
        }
    }
    if (ck != MX_GO) return false;
    struct cluster_move e;
    if (edit(&e, m, CLUSTER_MOVE_RUNNING, m->kind == CLUSTER_MOVE_LEADER ? "switching" : "adding",
             NULL) != 0)
        return false;
    e.attempts++;
    e.finished_at = 0;
    if (e.started_at == 0) e.started_at = router_unix_ms();
    int rc = put_move(c, &e);
    if (rc == 0) {
        const struct cluster_shard *sh = entry_of(c->v, m, NULL);
        char r[64];
        snprintf(r, sizeof r, "attempt %u", e.attempts);
        log_move("move_start", &e, sh->epoch, sh->epoch, r);
        struct mx_track *t = track_find(c->x, m->id);
        if (t != NULL) t->progress_at = 0;
        if (m->kind == CLUSTER_MOVE_LEADER)
            run_leader(c, &e);
        else
            drive(c, &e);
    }
    cluster_move_clear(&e);
    return rc == 0;
}

/* ------------------------------------------------------------ automatic */

/* Plans with scope and queues the result as origin; logs what it did. */
static void plan_and_queue(struct mx *c, enum moves_scope scope, const char *origin)
{
    struct cluster_move *mv = NULL;
    size_t n = 0;
    char note[256] = "", err[256] = "";
    if (moves_plan(c->x->r, c->v, "", scope, &mv, &n, note, sizeof note) != 0) return;
    if (n > 0 && leading(c)) {
        if (moves_queue(c->x->r, mv, n, origin, NULL, err, sizeof err) != 0)
            log_warn("controller cannot queue moves", "origin=%s error=%s", origin, log_quote(err));
        else
            for (size_t i = 0; i < n; i++) {
                log_info("controller decision",
                         "decision=move_queue move=%s collection=%s shard=%u from=%s to=%s "
                         "kind=%s origin=%s",
                         log_quote(mv[i].id), log_quote(mv[i].name), mv[i].shard,
                         log_quote(mv[i].from), log_quote(mv[i].to),
                         cluster_move_kind_name(mv[i].kind), origin);
                /* the watch has not delivered them: count them active until it does */
                struct mx_track *t = track_get(c->x, mv[i].id);
                if (t != NULL) {
                    t->unseen = true;
                    t->queued_at = c->now;
                }
            }
    }
    if (strcmp(note, c->x->note) != 0) {
        if (note[0] != '\0')
            log_info("controller rebalance note", "origin=%s note=%s", origin, log_quote(note));
        snprintf(c->x->note, sizeof c->x->note, "%s", note);
    }
    moves_free(mv, n);
}

/* Moves we queued that the view does not show yet. */
static bool any_queued_unseen(struct mx *c)
{
    for (size_t i = 0; i < c->x->n_t; i++)
        if (c->x->t[i].unseen) return true;
    return false;
}

/* Some move is active (in the view or only in our writes). */
static bool any_active(struct mx *c)
{
    for (size_t i = 0; i < c->v->n_moves; i++) {
        enum cluster_move_state s = state_of(c->x, &c->v->moves[i]);
        if (s == CLUSTER_MOVE_QUEUED || s == CLUSTER_MOVE_RUNNING) return true;
    }
    return any_queued_unseen(c);
}

/* Some draining node still holds a replica: its drain is not done. */
static bool drain_pending(const struct rt_view *v)
{
    for (size_t d = 0; d < v->n_drains; d++)
        for (size_t k = 0; k < v->n_colls; k++)
            for (uint32_t s = 0; s < v->colls[k].shards; s++)
                if (cluster_ids_has(&v->colls[k].shard[s].replicas, v->drains[d].node_id))
                    return true;
    return false;
}

/* Join / unnamed-node triggers, the settle check and the drain plans. An
 * automatic plan waits while a drain is not done: between two batches of
 * drain moves the cluster looks settled, and an "auto" plan would take the
 * draining node's remaining replicas as its own moves. */
static void automatic(struct mx *c)
{
    struct moves_exec *x = c->x;
    const struct rt_view *v = c->v;
    for (size_t i = 0; i < v->n_nodes; i++) {
        if (ids_has(x->known, x->n_known, v->nodes[i].id)) continue;
        if (ids_push(&x->known, &x->n_known, v->nodes[i].id) != 0) return;
        if (x->started) {
            log_info("controller sees node join", "node=%s", log_quote(v->nodes[i].id));
            x->trigger = true;
        }
    }
    if (!x->started) x->started = x->trigger = true; /* one settle check per election */
    size_t keep = 0;
    for (size_t i = 0; i < x->n_missing; i++) {
        bool back = rt_view_node(v, x->missing[i]) != NULL, still = rt_view_named(v, x->missing[i]);
        if (!back && !still) {
            log_info("controller sees node no longer named", "node=%s", log_quote(x->missing[i]));
            x->trigger = true;
        }
        if (!back && still)
            x->missing[keep++] = x->missing[i];
        else
            free(x->missing[i]);
    }
    x->n_missing = keep;
    bool in_sync = true;
    for (size_t k = 0; k < v->n_colls; k++)
        for (uint32_t s = 0; s < v->colls[k].shards; s++) {
            const struct cluster_shard *sh = &v->colls[k].shard[s];
            if (!sh->present) continue;
            if (sh->in_sync.n != sh->replicas.n) in_sync = false;
            for (uint32_t j = 0; j < sh->replicas.n; j++)
                if (rt_view_node(v, sh->replicas.v[j]) == NULL &&
                    !ids_has(x->missing, x->n_missing, sh->replicas.v[j]) &&
                    ids_push(&x->missing, &x->n_missing, sh->replicas.v[j]) != 0)
                    return;
        }
    bool settled = x->n_missing == 0 && in_sync && !any_active(c);
    if (!settled)
        x->settled_since = 0;
    else if (x->settled_since == 0)
        x->settled_since = c->now;
    if (x->r->cfg->auto_rebalance && x->trigger && settled && !drain_pending(v) &&
        c->now - x->settled_since >= x->r->cfg->rebalance_settle_ms) {
        x->trigger = false;
        plan_and_queue(c, MOVES_ALL, "auto");
    }
    if (v->n_drains == 0 || c->now < x->drain_next || c->stop) return;
    bool need = false;
    for (size_t d = 0; d < v->n_drains && !need; d++) {
        const char *node = v->drains[d].node_id;
        bool uncovered = false, busy = false;
        for (size_t k = 0; k < v->n_colls && !busy; k++)
            for (uint32_t s = 0; s < v->colls[k].shards && !busy; s++) {
                if (!cluster_ids_has(&v->colls[k].shard[s].replicas, node)) continue;
                bool active = false;
                for (size_t i = 0; i < v->n_moves && !active; i++) {
                    enum cluster_move_state st = state_of(x, &v->moves[i]);
                    active = (st == CLUSTER_MOVE_QUEUED || st == CLUSTER_MOVE_RUNNING) &&
                             v->moves[i].shard == s &&
                             strcmp(v->moves[i].name, v->colls[k].name) == 0;
                }
                if (active)
                    busy = true;
                else
                    uncovered = true;
            }
        need = uncovered && !busy;
    }
    if (!need || any_queued_unseen(c)) return;
    x->drain_next = c->now + MX_DRAIN_EVERY;
    plan_and_queue(c, MOVES_DRAIN_ONLY, "drain");
}

/* ------------------------------------------------------------ upkeep */

/* Deletes the oldest finished documents beyond the newest MX_KEEP. */
static void prune(struct mx *c)
{
    size_t fin = 0;
    for (size_t i = 0; i < c->v->n_moves; i++)
        if (!cluster_move_active(&c->v->moves[i])) fin++;
    for (size_t i = 0; i < c->v->n_moves && fin > MX_KEEP; i++) {
        const struct cluster_move *m = &c->v->moves[i];
        if (cluster_move_active(m) || pending(c->x, m)) continue;
        if (!leading(c)) return;
        char *key = cluster_key_move(c->x->r->cfg->etcd_prefix, m->id);
        etcd_err eerr;
        if (key != NULL && etcd_delete(c->x->r->etcd, key, false, NULL, &eerr) == ETCD_OK) fin--;
        free(key);
    }
}

/* Forgets tracks of documents the view no longer has (deleted, or
 * another controller's); marks our queued moves seen once they appear. */
static void gc_tracks(struct moves_exec *x, const struct rt_view *v, int64_t now)
{
    size_t keep = 0;
    for (size_t i = 0; i < x->n_t; i++) {
        struct mx_track *t = &x->t[i];
        bool in_view = false;
        for (size_t j = 0; j < v->n_moves && !in_view; j++)
            in_view = strcmp(v->moves[j].id, t->id) == 0;
        if (in_view || now - t->queued_at > MX_UNSEEN_MS) t->unseen = false;
        if (in_view || t->unseen || t->wrote_rev > v->revision) x->t[keep++] = *t;
    }
    x->n_t = keep;
}

/* One shard in the list of busy (collection, shard) pairs. */
struct mx_busy {
    const char *name;
    uint32_t shard;
};

static bool busy_has(const struct mx_busy *b, size_t n, const struct cluster_move *m)
{
    for (size_t i = 0; i < n; i++)
        if (b[i].shard == m->shard && strcmp(b[i].name, m->name) == 0) return true;
    return false;
}

struct moves_exec *moves_exec_new(struct router *r)
{
    struct moves_exec *x = calloc(1, sizeof *x);
    if (x != NULL) x->r = r;
    return x;
}

void moves_exec_reset(struct moves_exec *x)
{
    free(x->t);
    x->t = NULL;
    x->n_t = 0;
    ids_free(x->known, x->n_known);
    x->known = NULL;
    x->n_known = 0;
    ids_free(x->missing, x->n_missing);
    x->missing = NULL;
    x->n_missing = 0;
    x->started = x->trigger = false;
    x->settled_since = x->drain_next = 0;
    x->note[0] = '\0';
}

void moves_exec_free(struct moves_exec *x)
{
    if (x == NULL) return;
    moves_exec_reset(x);
    free(x);
}

void moves_exec_tick(struct moves_exec *x, const struct rt_view *v,
                     bool (*still_leading)(void *arg), void *arg)
{
    if (v->revision == 0) return; /* etcd never read */
    struct mx c = {.x = x, .v = v, .still_leading = still_leading, .arg = arg, .now = rpc_now_ms()};
    gc_tracks(x, v, c.now);
    /* one ShardStatus fan-out for the targets of every running replica move */
    bool *want = calloc(v->n_nodes + 1, sizeof *want);
    struct mx_busy *busy = calloc(v->n_moves + 1, sizeof *busy);
    c.st = calloc(v->n_nodes + 1, sizeof *c.st);
    if (want == NULL || busy == NULL || c.st == NULL) goto out;
    bool ask = false;
    for (size_t i = 0; i < v->n_moves; i++) {
        const struct cluster_move *m = &v->moves[i];
        const struct rt_node *n = rt_view_node(v, m->to);
        if (m->state == CLUSTER_MOVE_RUNNING && m->kind == CLUSTER_MOVE_REPLICA && n != NULL)
            ask = want[n - v->nodes] = true;
    }
    if (ask) router_shard_status(x->r, v, want, "", rpc_now_ms() + MX_STATUS_MS, c.st);
    size_t running = 0, n_busy = 0;
    for (size_t i = 0; i < v->n_moves && !c.stop; i++) {
        const struct cluster_move *m = &v->moves[i];
        if (state_of(x, m) != CLUSTER_MOVE_RUNNING) continue;
        running++;
        busy[n_busy++] = (struct mx_busy){m->name, m->shard};
        if (!pending(x, m)) drive(&c, m);
    }
    size_t max = (size_t)x->r->cfg->max_moves;
    for (size_t i = 0; i < v->n_moves && !c.stop; i++) {
        const struct cluster_move *m = &v->moves[i];
        if (m->state != CLUSTER_MOVE_QUEUED || pending(x, m)) continue;
        if (strcmp(m->origin, "drain") == 0 && !rt_view_draining(v, m->from)) {
            cancel_move(&c, m, "undrained: the drain mark was removed");
            continue;
        }
        if (running >= max || busy_has(busy, n_busy, m)) continue;
        const struct mx_track *t = track_find(x, m->id);
        if (t != NULL && t->retry_at > c.now) {
            busy[n_busy++] = (struct mx_busy){m->name, m->shard}; /* keeps its turn on the shard */
            continue;
        }
        busy[n_busy++] = (struct mx_busy){m->name, m->shard};
        if (start(&c, m)) running++;
    }
    if (!c.stop) automatic(&c);
    if (!c.stop) prune(&c);
out:
    if (c.st != NULL) router_shard_status_free(c.st, v->n_nodes);
    free(c.st);
    free(busy);
    free(want);
}
