/*
 * primary.c — replication senders, the acknowledgement wait and the in_sync
 * changes of a primary (docs/replication.md §3, §5; shape and locking in
 * primary.h).
 *
 * A sender's loop, per peer: read the registry view (stop sending when this
 * node is no longer primary), pick the call (a TRUNCATE or TRANSFER the last
 * answer asked for; a probe while the peer's position is unknown or it is
 * caught up and idle; otherwise the WAL records after its acknowledged LSN),
 * make it with the --replicate-timeout-ms deadline, and turn the answer into
 * the peer's new position and the next step (the table of §5). A caught-up
 * peer outside in_sync is added back with the hold protocol of §5: while
 * `holding`, no waiting write returns; once the peer acknowledged every LSN
 * handed to a write, the CAS adds it, and the held writes count it.
 *
 * Ack wait (repl_wait): every member of the group's in_sync other than this
 * node must have acked >= lsn. A member whose last call failed, or that has
 * not acked within the timeout, is removed by CAS first (one CAS at a time
 * per group, `cas_busy`); a member that answered with a newer epoch is never
 * removed: the write fails FAILED_PRECONDITION (this node was deposed).
 */
#define _GNU_SOURCE
#include "node/replication/primary.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cluster/cluster.h"
#include "common/util/clock.h"
#include "common/util/log.h"
#include "node/storage/replica.h"
#include "proto/vecshard/v1/shard_node.pb-c.h"

#define REPL_MAX_CALL_BYTES (4u << 20) /* records per Replicate call */
#define REPL_PROBE_MS       1000       /* idle probe period */
#define REPL_TRANSFER_MS    500        /* probe period while the peer transfers */
#define REPL_TRUNCATE_MS    120000     /* deadline of a TRUNCATE call (the backup reopens) */
#define REPL_RETRY_MS       200        /* pause after a failed call */
#define REPL_MANAGE_MS      200        /* manager period */
#define REPLICATE_METHOD    "/vecshard.v1.ShardNode/Replicate"

/* What the next call to a peer asks for. */
enum next_step { STEP_APPEND = 0, STEP_TRUNCATE, STEP_TRANSFER };

struct group;

/* One other replica of a primary replica, with its sender thread. Fields under g->lock. */
struct peer {
    struct group *g;
    char id[NODE_ID_MAX + 1];
    pthread_t thread;
    bool stop;
    bool known;        /* acked is the peer's real position */
    uint64_t acked;    /* highest LSN it acknowledged */
    bool failed;       /* its last call failed (an error other than a newer epoch) */
    int64_t failed_ms; /* rpc_now_ms when that call ended */
    bool stale;        /* it answered with a newer epoch */
    enum next_step step;
    uint64_t truncate_after;
    char state[24];
    char reason[RPC_DETAILS_MAX + 32];
    uint64_t xfer_done, xfer_total;
    int64_t last_call_ms; /* rpc_now_ms of the last call */
};

/* The replication state of one primary replica. */
struct group {
    struct repl *r;
    char coll[NODE_NAME_MAX + 1];
    uint32_t shard;
    /* lock protects every field below and the peers' fields; cv (CLOCK_MONOTONIC) signals acks,
     * new writes, in_sync changes and stopping. */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    uint64_t epoch;
    struct node_ids in_sync;
    uint64_t handed;    /* highest LSN handed to a waiting write */
    bool holding;       /* a re-add is in progress: waiting writes do not return */
    int64_t hold_since; /* rpc_now_ms when holding began */
    bool cas_busy;      /* a CAS on the entry is running */
    bool deposed;       /* no longer primary: waiting writes fail */
    int waiters;        /* repl_wait calls inside */
    struct peer *peers[NODE_REPLICAS_MAX];
    size_t npeers;
};

struct repl {
    struct node_shards *reg;
    struct rpc_client *rpc;
    etcd_client *etcd;
    char *prefix, *node_id, *addr;
    int timeout_ms;
    /* lock protects groups, ngroups and stop; cv wakes the manager. */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct group **groups;
    size_t ngroups, cap;
    bool stop;
    pthread_t manager;
    bool manager_running;
    int64_t last_step_down_ms;       /* manager only */
    _Atomic uint64_t removals, adds; /* repl_stats */
};

/* ------------------------------------------------------------ helpers */

/* Waits on g->cv for at most ms. g->lock held. */
static void group_sleep(struct group *g, long ms)
{
    struct timespec ts = clock_mono_after_ms(ms);
    pthread_cond_timedwait(&g->cv, &g->lock, &ts);
}

/* The peer for node id, or NULL. g->lock held. */
static struct peer *peer_of(struct group *g, const char *id)
{
    for (size_t i = 0; i < g->npeers; i++)
        if (strcmp(g->peers[i]->id, id) == 0) return g->peers[i];
    return NULL;
}

/* Sets the peer's state and reason. g->lock held. */
static void peer_note(struct peer *p, const char *state, const char *reason)
{
    snprintf(p->state, sizeof p->state, "%s", state);
    snprintf(p->reason, sizeof p->reason, "%s", reason);
}

/* Takes a newer view of the entry into the group (epoch, in_sync). g->lock held. */
static void group_take_view(struct group *g, const struct node_shard_view *v)
{
    if (v->epoch > g->epoch) {
        g->epoch = v->epoch;
        g->in_sync = v->in_sync;
        pthread_cond_broadcast(&g->cv);
    }
}

/* Copies a cluster id list into a node_ids. */
static void ids_from(struct node_ids *out, const struct cluster_ids *in)
{
    out->n = 0;
    for (uint32_t i = 0; i < in->n && out->n < NODE_REPLICAS_MAX; i++)
        snprintf(out->v[out->n++], sizeof out->v[0], "%s", in->v[i]);
}

/* ------------------------------------------------------------ shard-entry changes */

/* Recomputes recovering = replicas - in_sync (docs/replication.md §1). 0, or -1 (ENOMEM). */
static int set_recovering(struct cluster_shard *s, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < s->recovering.n; i++)
        free(s->recovering.v[i]);
    s->recovering.n = 0;
    for (uint32_t i = 0; i < s->replicas.n; i++)
        if (!cluster_ids_has(&s->in_sync, s->replicas.v[i]) &&
            cluster_ids_add(&s->recovering, s->replicas.v[i]) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    return 0;
}

/* Argument of the in_sync change callbacks. */
struct in_sync_change {
    const char *self, *peer;
    bool add;
};

/* cluster_shard_update callback: adds or removes peer in in_sync while self is primary. */
static int change_in_sync(struct cluster_shard *s, void *arg, char *err, size_t errlen)
{
    struct in_sync_change *c = arg;
    if (strcmp(s->primary, c->self) != 0) {
        snprintf(err, errlen, "the shard entry names %s as primary, not this node",
                 s->primary[0] != '\0' ? s->primary : "no node");
        return -1;
    }
    if (c->add) {
        if (!cluster_ids_has(&s->replicas, c->peer)) {
            snprintf(err, errlen, "%s is no longer in replicas", c->peer);
            return -1;
        }
        if (cluster_ids_add(&s->in_sync, c->peer) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    } else {
        cluster_ids_remove(&s->in_sync, c->peer);
    }
    return set_recovering(s, err, errlen);
}

/* Argument of change_step_down. */
struct step_down {
    struct repl *r;
    char to[NODE_ID_MAX + 1]; /* filled: the member primaryship went to */
};

/* cluster_shard_update callback: hands primaryship to a registered in-sync member. */
static int change_step_down(struct cluster_shard *s, void *arg, char *err, size_t errlen)
{
    struct step_down *d = arg;
    if (strcmp(s->primary, d->r->node_id) != 0) {
        snprintf(err, errlen, "the shard entry names %s as primary, not this node", s->primary);
        return -1;
    }
    d->to[0] = '\0';
    char addr[256];
    for (uint32_t i = 0; i < s->in_sync.n && d->to[0] == '\0'; i++)
        if (strcmp(s->in_sync.v[i], d->r->node_id) != 0 &&
            node_shards_node_addr(d->r->reg, s->in_sync.v[i], addr, sizeof addr) == 1)
            snprintf(d->to, sizeof d->to, "%s", s->in_sync.v[i]);
    if (d->to[0] == '\0') {
        snprintf(err, errlen, "no other registered member of in_sync to take over");
        return -1;
    }
    char *np = strdup(d->to);
    if (np == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(s->primary);
    s->primary = np;
    cluster_ids_remove(&s->in_sync, d->r->node_id);
    return set_recovering(s, err, errlen);
}

/* A DAMAGED primary replica hands primaryship to another in-sync member (replication.md §1). */
static void step_down(struct repl *r, const struct node_shard_view *v)
{
    struct step_down d = {.r = r};
    char err[256];
    struct cluster_shard out;
    memset(&out, 0, sizeof out);
    enum cluster_status st = cluster_shard_update(r->etcd, r->prefix, v->coll.name, v->shard, 3,
                                                  change_step_down, &d, &out, err, sizeof err);
    if (st != CLUSTER_OK) {
        log_debug("damaged primary cannot step down yet", "collection=%s shard=%u error=%s",
                  v->coll.name, v->shard, log_quote(err));
        return;
    }
    struct node_ids in_sync, replicas;
    ids_from(&in_sync, &out.in_sync);
    ids_from(&replicas, &out.replicas);
    node_shards_adopt(r->reg, v->coll.name, v->shard, out.epoch, out.primary, &replicas, &in_sync);
    log_warn("damaged primary stepped down",
             "collection=%s shard=%u epoch_from=%llu epoch_to=%llu primary=%s reason=%s",
             v->coll.name, v->shard, (unsigned long long)v->epoch, (unsigned long long)out.epoch,
             log_quote(d.to), log_quote(v->reason));
    cluster_shard_clear(&out);
}

/*
 * Adds (add) or removes peer in the entry's in_sync by CAS. On success the
 * registry and the group take the written entry. g->lock held on entry and
 * exit, released during the etcd call; g->cas_busy set by the caller.
 */
static int group_cas(struct group *g, const char *peer, bool add, const char *why, char *err,
                     size_t errlen)
{
    struct repl *r = g->r;
    uint64_t from = g->epoch;
    pthread_mutex_unlock(&g->lock);
    struct in_sync_change c = {.self = r->node_id, .peer = peer, .add = add};
    struct cluster_shard out;
    memset(&out, 0, sizeof out);
    enum cluster_status st = cluster_shard_update(r->etcd, r->prefix, g->coll, g->shard, 3,
                                                  change_in_sync, &c, &out, err, errlen);
    struct node_ids in_sync, replicas;
    if (st == CLUSTER_OK) {
        ids_from(&in_sync, &out.in_sync);
        ids_from(&replicas, &out.replicas);
        node_shards_adopt(r->reg, g->coll, g->shard, out.epoch, out.primary, &replicas, &in_sync);
    }
    pthread_mutex_lock(&g->lock);
    if (st != CLUSTER_OK) {
        log_error(add ? "cannot add backup to in_sync" : "cannot remove backup from in_sync",
                  "collection=%s shard=%u backup=%s epoch=%llu status=%s error=%s reason=%s",
                  g->coll, g->shard, peer, (unsigned long long)from, cluster_status_str(st),
                  log_quote(err), log_quote(why));
        return -1;
    }
    if (out.epoch > g->epoch) {
        g->epoch = out.epoch;
        g->in_sync = in_sync;
    }
    pthread_cond_broadcast(&g->cv);
    atomic_fetch_add(add ? &r->adds : &r->removals, 1);
    log_warn(add ? "backup added to in_sync" : "backup removed from in_sync",
             "collection=%s shard=%u backup=%s epoch_from=%llu epoch_to=%llu reason=%s", g->coll,
             g->shard, peer, (unsigned long long)from, (unsigned long long)out.epoch,
             log_quote(why));
    cluster_shard_clear(&out);
    return 0;
}

/*
 * A peer answered with a newer epoch: re-reads the entry and adopts it. True
 * when this node is still the primary (the peer is then simply resent to).
 */
static bool reread_entry(struct group *g)
{
    struct repl *r = g->r;
    char *key = cluster_key_shard(r->prefix, g->coll, g->shard);
    etcd_kv kv;
    memset(&kv, 0, sizeof kv);
    etcd_err eerr;
    etcd_status st = key != NULL ? etcd_get(r->etcd, key, &kv, &eerr) : ETCD_ENOMEM;
    free(key);
    if (st != ETCD_OK) return false;
    struct cluster_shard s;
    char err[256];
    int rc = cluster_shard_parse(kv.value, kv.value_len, &s, err, sizeof err);
    etcd_kv_clear(&kv);
    if (rc != 0) return false;
    struct node_ids in_sync, replicas;
    ids_from(&in_sync, &s.in_sync);
    ids_from(&replicas, &s.replicas);
    node_shards_adopt(r->reg, g->coll, g->shard, s.epoch, s.primary, &replicas, &in_sync);
    bool primary = strcmp(s.primary, r->node_id) == 0;
    pthread_mutex_lock(&g->lock);
    if (s.epoch > g->epoch) {
        g->epoch = s.epoch;
        g->in_sync = in_sync;
    }
    if (!primary) g->deposed = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->lock);
    cluster_shard_clear(&s);
    return primary;
}

/* ------------------------------------------------------------ sender */

/* The records after `after` from the WAL, at most REPL_MAX_CALL_BYTES, into req. */
static int fill_records(struct replica *rep, uint64_t after, uint64_t upto,
                        Vecshard__V1__ReplicateRequest *req, char *err)
{
    struct wal_iter *it = NULL;
    int rc = replica_wal_iter(rep, after + 1, &it, err);
    if (rc != REPLICA_OK) return rc;
    size_t bytes = 0, cap = 0;
    for (;;) {
        struct wal_record wr;
        bool has = false;
        char werr[WAL_ERR_MAX];
        if (wal_iter_next(it, &wr, &has, werr) != WAL_OK) {
            rc = REPLICA_EIO;
            snprintf(err, REPLICA_ERR_MAX, "reading the WAL: %s", werr);
            break;
        }
        if (!has || wr.lsn > upto) break;
        if (req->n_records > 0 && bytes + wr.len > REPL_MAX_CALL_BYTES) break;
        if (req->n_records == cap) {
            cap = cap ? cap * 2 : 16;
            Vecshard__V1__WalRecord **v = realloc(req->records, cap * sizeof *v);
            if (v == NULL) {
                rc = REPLICA_ENOMEM;
                break;
            }
            req->records = v;
        }
        Vecshard__V1__WalRecord *w = malloc(sizeof *w);
        uint8_t *data = malloc(wr.len ? wr.len : 1);
        if (w == NULL || data == NULL) {
            free(w);
            free(data);
            rc = REPLICA_ENOMEM;
            break;
        }
        vecshard__v1__wal_record__init(w);
        memcpy(data, wr.data, wr.len);
        w->lsn = wr.lsn;
        w->epoch = wr.epoch;
        w->batch.data = data;
        w->batch.len = wr.len;
        req->records[req->n_records++] = w;
        bytes += wr.len;
    }
    wal_iter_close(it);
    return rc;
}

/* Frees the records fill_records added. */
static void free_records(Vecshard__V1__ReplicateRequest *req)
{
    for (size_t i = 0; i < req->n_records; i++) {
        free(req->records[i]->batch.data);
        free(req->records[i]);
    }
    free(req->records);
    req->records = NULL;
    req->n_records = 0;
}

/*
 * Decides the step after a MISMATCH{l1, e1} (docs/replication.md §5):
 * TRUNCATE(t), t = min(l1, s - 1) with s the primary's first LSN of an
 * epoch > e1, or TRANSFER when the history does not reach back to t.
 * g->lock held.
 */
static void on_mismatch(struct peer *p, struct replica *rep, uint64_t l1, uint64_t e1,
                        const char *why)
{
    uint64_t s = 0;
    bool known = replica_first_lsn_after_epoch(rep, e1, &s);
    uint64_t t = s - 1 < l1 ? s - 1 : l1;
    uint64_t e;
    if (!known || t < replica_history_base(rep) || !replica_epoch_at(rep, t, &e)) {
        p->step = STEP_TRANSFER;
        peer_note(p, "transferring", "history diverged before the primary's history starts");
        return;
    }
    log_info("history diverged",
             "collection=%s shard=%u peer=%s backup_lsn=%llu backup_epoch=%llu "
             "first_lsn_after=%llu truncate_after=%llu why=%s",
             p->g->coll, p->g->shard, p->id, (unsigned long long)l1, (unsigned long long)e1,
             (unsigned long long)s, (unsigned long long)t, log_quote(why));
    p->step = STEP_TRUNCATE;
    p->truncate_after = t;
    p->known = false;
    char reason[256];
    snprintf(reason, sizeof reason, "history diverged (%s): truncating after lsn %" PRIu64, why, t);
    peer_note(p, "truncating", reason);
}

/*
 * One round of a sender: picks and makes one call, updates the peer.
 * Returns how long to pause before the next round (0 = none).
 */
static long sender_round(struct peer *p)
{
    struct group *g = p->g;
    struct repl *r = g->r;
    struct node_shard_view v;
    struct node_shard *e = node_shards_acquire(r->reg, g->coll, g->shard, &v);
    if (e == NULL || v.role != NODE_ROLE_PRIMARY || v.rep == NULL) {
        node_shards_release(r->reg, e);
        return REPL_MANAGE_MS;
    }
    char addr[256];
    int reg_state = node_shards_node_addr(r->reg, p->id, addr, sizeof addr);
    struct replica_stat rs;
    replica_status(v.rep, &rs);
    uint64_t plsn = rs.lsn;

    pthread_mutex_lock(&g->lock);
    group_take_view(g, &v);
    bool member = node_ids_has(&g->in_sync, p->id);
    if (reg_state < 0) {
        peer_note(p, "not_registered", "the node has never registered in etcd");
        p->failed = true;
        pthread_mutex_unlock(&g->lock);
        node_shards_release(r->reg, e);
        return REPL_PROBE_MS;
    }
    /* A caught-up peer outside in_sync: the hold protocol of §5. */
    if (!member && p->known && p->step == STEP_APPEND && !p->failed && !p->stale &&
        p->acked >= plsn && !g->cas_busy) {
        if (!g->holding) {
            g->holding = true;
            g->hold_since = rpc_now_ms();
        }
        /* Every LSN handed to a write (and applied here) is acked by the peer: add it. */
        replica_status(v.rep, &rs);
        if (p->acked >= rs.lsn && p->acked >= g->handed) {
            g->cas_busy = true;
            char err[256];
            group_cas(g, p->id, true, "caught up with the primary", err, sizeof err);
            g->cas_busy = false;
            g->holding = false;
            pthread_cond_broadcast(&g->cv);
            pthread_mutex_unlock(&g->lock);
            node_shards_release(r->reg, e);
            return REPL_RETRY_MS;
        }
        plsn = rs.lsn;
    }
    if (g->holding && rpc_now_ms() - g->hold_since > r->timeout_ms) {
        g->holding = false; /* the peer did not catch up in time; writes go on, retry later */
        pthread_cond_broadcast(&g->cv);
    }
    Vecshard__V1__ReplicateRequest req = VECSHARD__V1__REPLICATE_REQUEST__INIT;
    req.collection = g->coll;
    req.shard = g->shard;
    req.epoch = g->epoch;
    req.primary = r->node_id;
    req.primary_addr = r->addr;
    req.primary_lsn = plsn;
    enum next_step step = p->step;
    bool probe = false;
    uint64_t from = p->acked;
    if (step == STEP_TRUNCATE) {
        req.action = VECSHARD__V1__REPLICATE_ACTION__REPLICATE_ACTION_TRUNCATE;
        req.truncate_after = p->truncate_after;
    } else if (step == STEP_TRANSFER) {
        req.action = VECSHARD__V1__REPLICATE_ACTION__REPLICATE_ACTION_TRANSFER;
    } else if (!p->known || p->acked >= plsn) {
        /* Position unknown: ask with the primary's last record; caught up: idle probe. */
        probe = true;
        if (p->known && p->acked >= plsn && g->handed <= p->acked && !p->failed &&
            rpc_now_ms() - p->last_call_ms < REPL_PROBE_MS) {
            group_sleep(g, REPL_PROBE_MS - (long)(rpc_now_ms() - p->last_call_ms));
            pthread_mutex_unlock(&g->lock);
            node_shards_release(r->reg, e);
            return 0;
        }
        from = p->known ? p->acked : plsn;
    }
    pthread_mutex_unlock(&g->lock);

    char err[REPLICA_ERR_MAX] = "";
    if (step == STEP_APPEND) {
        req.prev_lsn = from;
        if (!replica_epoch_at(v.rep, from, &req.prev_epoch)) {
            pthread_mutex_lock(&g->lock);
            p->step = STEP_TRANSFER;
            peer_note(p, "transferring", "the primary's history does not reach its position");
            pthread_mutex_unlock(&g->lock);
            node_shards_release(r->reg, e);
            return 0;
        }
        if (!probe) {
            int rc = fill_records(v.rep, from, plsn, &req, err);
            if (rc == REPLICA_ENOTFOUND) {
                pthread_mutex_lock(&g->lock);
                p->step = STEP_TRANSFER;
                peer_note(p, "transferring", "the primary's WAL no longer holds its next record");
                pthread_mutex_unlock(&g->lock);
                free_records(&req);
                node_shards_release(r->reg, e);
                return 0;
            }
            if (rc != REPLICA_OK) {
                log_error("cannot read records to replicate", "collection=%s shard=%u error=%s",
                          g->coll, g->shard, log_quote(err));
                free_records(&req);
                node_shards_release(r->reg, e);
                return REPL_RETRY_MS;
            }
        }
    }

    pthread_mutex_lock(&g->lock);
    p->last_call_ms = rpc_now_ms();
    pthread_mutex_unlock(&g->lock);
    struct rpc_channel *ch = rpc_client_channel(r->rpc, addr);
    /* A TRUNCATE reopens the backup's replica (a WAL replay): give it time to answer. */
    int64_t call_ms = step == STEP_TRUNCATE && r->timeout_ms < REPL_TRUNCATE_MS ? REPL_TRUNCATE_MS
                                                                                : r->timeout_ms;
    struct rpc_opts o = {.deadline_ms = rpc_deadline_in(call_ms)};
    struct rpc_status st;
    Vecshard__V1__ReplicateResponse *resp = NULL;
    grpc_status_code code = ch == NULL ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                       : rpc_unary(ch, REPLICATE_METHOD, &req.base,
                                                   &vecshard__v1__replicate_response__descriptor,
                                                   (ProtobufCMessage **)&resp, &o, &st);
    uint64_t last_sent = req.n_records > 0 ? req.records[req.n_records - 1]->lsn : req.prev_lsn;
    free_records(&req);

    long pause = 0;
    pthread_mutex_lock(&g->lock);
    if (code == GRPC_STATUS_FAILED_PRECONDITION && rpc_status_trailer(&st, "vs-epoch") != NULL &&
        strtoull(rpc_status_trailer(&st, "vs-epoch"), NULL, 10) > req.epoch) {
        /* Never removed for it: this node may have been deposed. */
        p->stale = true;
        peer_note(p, "unreachable", st.details);
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->lock);
        bool still = reread_entry(g);
        pthread_mutex_lock(&g->lock);
        if (still) p->stale = false;
        pause = REPL_RETRY_MS;
    } else if (code != GRPC_STATUS_OK) {
        p->failed = true;
        p->failed_ms = rpc_now_ms();
        p->known = false;
        char reason[RPC_DETAILS_MAX + 32];
        snprintf(reason, sizeof reason, "%s: %s", rpc_status_name(code),
                 ch == NULL ? "out of memory" : st.details);
        peer_note(p, "unreachable", reason);
        pause = REPL_RETRY_MS;
    } else {
        p->failed = false;
        p->stale = false;
        bool empty = !member && plsn > 0 && resp->applied_lsn == 0 &&
                     (resp->result == VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_OK ||
                      resp->result == VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_GAP);
        if (empty) {
            /* An empty copy outside in_sync: one full copy beats resending every record. */
            p->step = STEP_TRANSFER;
            p->known = false;
            peer_note(p, "transferring", "an empty copy gets a full transfer");
        } else
            switch (resp->result) {
            case VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_OK: {
                uint64_t e1 = 0;
                bool ahead =
                    resp->applied_lsn > last_sent && step == STEP_APPEND &&
                    (!replica_epoch_at(v.rep, resp->applied_lsn, &e1) || e1 != resp->last_epoch);
                if (ahead) {
                    on_mismatch(p, v.rep, resp->applied_lsn, resp->last_epoch,
                                "the backup holds records the primary does not");
                    break;
                }
                p->known = true;
                p->acked = resp->applied_lsn;
                p->step = STEP_APPEND;
                peer_note(p, member ? "in_sync" : "catching_up",
                          member ? "" : "catching up from its LSN");
                break;
            }
            case VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_GAP:
                p->known = true;
                p->acked = resp->lsn_gap != NULL ? resp->lsn_gap->have : resp->applied_lsn;
                p->step = STEP_APPEND;
                peer_note(p, member ? "in_sync" : "catching_up", "resending from its LSN");
                break;
            case VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_MISMATCH:
                on_mismatch(p, v.rep, resp->applied_lsn, resp->last_epoch, resp->reason);
                break;
            case VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_NEED_TRANSFER:
                p->step = STEP_TRANSFER;
                p->known = false;
                peer_note(p, "transferring", resp->reason);
                break;
            case VECSHARD__V1__REPLICATE_RESULT__REPLICATE_RESULT_TRANSFERRING:
                p->step = STEP_APPEND;
                p->known = false;
                p->xfer_done = resp->transfer_bytes_done;
                p->xfer_total = resp->transfer_bytes_total;
                peer_note(p, "transferring", "receiving a full copy");
                pause = REPL_TRANSFER_MS;
                break;
            default:
                break;
            }
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->lock);
    if (resp != NULL) protobuf_c_message_free_unpacked(&resp->base, NULL);
    node_shards_release(r->reg, e);
    return pause;
}

/* A sender thread: rounds until stopped. */
static void *sender_main(void *arg)
{
    struct peer *p = arg;
    struct group *g = p->g;
    for (;;) {
        pthread_mutex_lock(&g->lock);
        bool stop = p->stop;
        pthread_mutex_unlock(&g->lock);
        if (stop) break;
        long pause = sender_round(p);
        if (pause > 0) {
            pthread_mutex_lock(&g->lock);
            if (!p->stop) group_sleep(g, pause);
            pthread_mutex_unlock(&g->lock);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ groups */

/* Starts a sender for node id. g->lock held. */
static void peer_start(struct group *g, const char *id)
{
    if (g->npeers == NODE_REPLICAS_MAX) return;
    struct peer *p = calloc(1, sizeof *p);
    if (p == NULL) return;
    p->g = g;
    snprintf(p->id, sizeof p->id, "%s", id);
    peer_note(p, "catching_up", "position not known yet");
    if (pthread_create(&p->thread, NULL, sender_main, p) != 0) {
        free(p);
        return;
    }
    g->peers[g->npeers++] = p;
}

/* Stops and frees a peer already taken out of g->peers. g->lock not held. */
static void peer_stop(struct group *g, struct peer *p)
{
    pthread_mutex_lock(&g->lock);
    p->stop = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->lock);
    pthread_join(p->thread, NULL);
    free(p);
}

/* Makes g's peers the members of replicas other than this node. */
static void group_set_peers(struct group *g, const struct node_ids *replicas)
{
    struct peer *gone[NODE_REPLICAS_MAX];
    size_t ngone = 0;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->npeers;) {
        if (!node_ids_has(replicas, g->peers[i]->id)) {
            gone[ngone++] = g->peers[i];
            g->peers[i] = g->peers[--g->npeers];
        } else {
            i++;
        }
    }
    for (uint32_t i = 0; i < replicas->n; i++)
        if (strcmp(replicas->v[i], g->r->node_id) != 0 && peer_of(g, replicas->v[i]) == NULL)
            peer_start(g, replicas->v[i]);
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->lock);
    for (size_t i = 0; i < ngone; i++)
        peer_stop(g, gone[i]);
}

/* The group of v's shard, created if missing. r->lock held. */
static struct group *group_get(struct repl *r, const struct node_shard_view *v)
{
    for (size_t i = 0; i < r->ngroups; i++)
        if (r->groups[i]->shard == v->shard && strcmp(r->groups[i]->coll, v->coll.name) == 0)
            return r->groups[i];
    if (r->ngroups == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct group **gv = realloc(r->groups, cap * sizeof *gv);
        if (gv == NULL) return NULL;
        r->groups = gv;
        r->cap = cap;
    }
    struct group *g = calloc(1, sizeof *g);
    if (g == NULL) return NULL;
    g->r = r;
    snprintf(g->coll, sizeof g->coll, "%s", v->coll.name);
    g->shard = v->shard;
    g->epoch = v->epoch;
    g->in_sync = v->in_sync;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->groups[r->ngroups++] = g;
    group_set_peers(g, &v->replicas);
    return g;
}

/* Stops a group taken out of r->groups: fails its waiters, stops its senders, frees it. */
static void group_free(struct group *g)
{
    pthread_mutex_lock(&g->lock);
    g->deposed = true;
    pthread_cond_broadcast(&g->cv);
    size_t n = g->npeers;
    struct peer *peers[NODE_REPLICAS_MAX];
    memcpy(peers, g->peers, n * sizeof *peers);
    g->npeers = 0;
    pthread_mutex_unlock(&g->lock);
    for (size_t i = 0; i < n; i++)
        peer_stop(g, peers[i]);
    pthread_mutex_lock(&g->lock);
    while (g->waiters > 0)
        group_sleep(g, 50);
    pthread_mutex_unlock(&g->lock);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cv);
    free(g);
}

/* One manager pass: groups for every READY primary, peers per replicas, stop the others. */
static void manage(struct repl *r)
{
    struct node_shard_view *views = NULL;
    long n = node_shards_list(r->reg, NULL, NULL, 0, &views);
    if (n < 0) return;
    struct group *gone[64];
    size_t ngone = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->ngroups;) {
        struct group *g = r->groups[i];
        bool keep = false;
        for (long k = 0; k < n && !keep; k++)
            keep = views[k].shard == g->shard && strcmp(views[k].coll.name, g->coll) == 0 &&
                   views[k].role == NODE_ROLE_PRIMARY && views[k].state == NODE_STATE_READY;
        if (!keep && ngone < 64) {
            gone[ngone++] = g;
            r->groups[i] = r->groups[--r->ngroups];
        } else {
            i++;
        }
    }
    struct group *keep[256];
    const struct node_shard_view *kv[256];
    size_t nkeep = 0;
    for (long k = 0; k < n && nkeep < 256; k++)
        if (views[k].role == NODE_ROLE_PRIMARY && views[k].state == NODE_STATE_READY) {
            struct group *g = group_get(r, &views[k]);
            if (g != NULL) {
                kv[nkeep] = &views[k];
                keep[nkeep++] = g;
            }
        }
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < nkeep; i++) {
        pthread_mutex_lock(&keep[i]->lock);
        group_take_view(keep[i], kv[i]);
        pthread_mutex_unlock(&keep[i]->lock);
        group_set_peers(keep[i], &kv[i]->replicas);
    }
    int64_t now = rpc_now_ms();
    for (long k = 0; k < n && r->etcd != NULL; k++)
        if (views[k].role == NODE_ROLE_PRIMARY && views[k].state == NODE_STATE_DAMAGED &&
            now - r->last_step_down_ms >= 1000) {
            r->last_step_down_ms = now;
            step_down(r, &views[k]);
        }
    for (size_t i = 0; i < ngone; i++) {
        log_info("replication senders stopped: no longer primary", "collection=%s shard=%u",
                 gone[i]->coll, gone[i]->shard);
        group_free(gone[i]);
    }
    free(views);
}

/* The manager thread. */
static void *manager_main(void *arg)
{
    struct repl *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        pthread_mutex_unlock(&r->lock);
        manage(r);
        pthread_mutex_lock(&r->lock);
        if (r->stop) break;
        struct timespec ts = clock_mono_after_ms(REPL_MANAGE_MS);
        pthread_cond_timedwait(&r->cv, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ------------------------------------------------------------ public */

int repl_create(const struct repl_config *cfg, struct repl **out, char *err, size_t errlen)
{
    struct repl *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->reg = cfg->reg;
    r->rpc = cfg->rpc;
    r->etcd = cfg->etcd;
    r->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 2000;
    r->prefix = strdup(cfg->prefix);
    r->node_id = strdup(cfg->node_id);
    r->addr = strdup(cfg->addr);
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (r->prefix == NULL || r->node_id == NULL || r->addr == NULL) {
        snprintf(err, errlen, "out of memory");
        repl_destroy(r);
        return -1;
    }
    int e = pthread_create(&r->manager, NULL, manager_main, r);
    if (e != 0) {
        snprintf(err, errlen, "cannot start the replication manager: %s", strerror(e));
        repl_destroy(r);
        return -1;
    }
    r->manager_running = true;
    *out = r;
    return 0;
}

void repl_destroy(struct repl *r)
{
    if (r == NULL) return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->lock);
    if (r->manager_running) pthread_join(r->manager, NULL);
    for (size_t i = 0; i < r->ngroups; i++)
        group_free(r->groups[i]);
    free(r->groups);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cv);
    free(r->prefix);
    free(r->node_id);
    free(r->addr);
    free(r);
}

grpc_status_code repl_wait(struct repl *r, const struct node_shard_view *v, uint64_t lsn,
                           uint64_t *epoch_out, char *msg, size_t msglen)
{
    *epoch_out = v->epoch;
    pthread_mutex_lock(&r->lock);
    struct group *g = r->stop ? NULL : group_get(r, v);
    if (g != NULL) {
        pthread_mutex_lock(&g->lock);
        g->waiters++;
    }
    pthread_mutex_unlock(&r->lock);
    if (g == NULL) {
        snprintf(msg, msglen, "replication is not running on this node (shutting down)");
        return GRPC_STATUS_UNAVAILABLE;
    }
    group_take_view(g, v);
    if (lsn > g->handed) g->handed = lsn;
    pthread_cond_broadcast(&g->cv);
    int64_t start = rpc_now_ms();
    grpc_status_code code = GRPC_STATUS_OK;
    for (;;) {
        if (g->deposed) {
            snprintf(msg, msglen,
                     "node %s is no longer the primary of %s/%u (a newer epoch than %llu); lsn "
                     "%llu is not acknowledged",
                     r->node_id, g->coll, g->shard, (unsigned long long)v->epoch,
                     (unsigned long long)lsn);
            code = GRPC_STATUS_FAILED_PRECONDITION;
            break;
        }
        if (g->holding || g->cas_busy) {
            group_sleep(g, 20);
            continue;
        }
        bool all = true;
        const char *victim = NULL;
        char why[300] = "";
        int64_t waited = rpc_now_ms() - start;
        for (uint32_t i = 0; i < g->in_sync.n && code == GRPC_STATUS_OK; i++) {
            const char *m = g->in_sync.v[i];
            if (strcmp(m, r->node_id) == 0) continue;
            struct peer *p = peer_of(g, m);
            if (p != NULL && p->stale) {
                snprintf(msg, msglen,
                         "backup %s of %s/%u holds a newer epoch than %llu: this node may have "
                         "been deposed; lsn %llu is not acknowledged",
                         m, g->coll, g->shard, (unsigned long long)g->epoch,
                         (unsigned long long)lsn);
                code = GRPC_STATUS_FAILED_PRECONDITION;
                break;
            }
            if (p != NULL && p->known && p->acked >= lsn) continue;
            all = false;
            if (victim != NULL) continue;
            if (p == NULL) {
                victim = m;
                snprintf(why, sizeof why, "not in replicas");
            } else if (p->failed && p->failed_ms >= start) {
                /* Failed on a call made for this write (an older failure gets a new try). */
                victim = m;
                snprintf(why, sizeof why, "%s", p->reason);
            } else if (waited >= r->timeout_ms) {
                victim = m;
                snprintf(why, sizeof why, "no acknowledgement of lsn %llu within %d ms",
                         (unsigned long long)lsn, r->timeout_ms);
            }
        }
        if (code != GRPC_STATUS_OK || all) break;
        if (victim != NULL) {
            char name[NODE_ID_MAX + 1], err[256];
            snprintf(name, sizeof name, "%s", victim);
            g->cas_busy = true;
            int rc = group_cas(g, name, false, why, err, sizeof err);
            g->cas_busy = false;
            pthread_cond_broadcast(&g->cv);
            if (rc != 0) {
                snprintf(msg, msglen,
                         "backup %s of %s/%u failed (%s) and could not be removed from in_sync: "
                         "%s; lsn %llu is not acknowledged",
                         name, g->coll, g->shard, why, err, (unsigned long long)lsn);
                code = GRPC_STATUS_UNAVAILABLE;
                break;
            }
            continue;
        }
        group_sleep(g, 20);
    }
    *epoch_out = g->epoch;
    g->waiters--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->lock);
    return code;
}

/* Counters since start-up (primary.h). */
void repl_stats(struct repl *r, struct repl_stats *st)
{
    st->in_sync_removals = atomic_load(&r->removals);
    st->in_sync_adds = atomic_load(&r->adds);
}

size_t repl_peers(struct repl *r, const char *collection, uint32_t shard,
                  struct repl_peer_status *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->ngroups; i++) {
        struct group *g = r->groups[i];
        if (g->shard != shard || strcmp(g->coll, collection) != 0) continue;
        pthread_mutex_lock(&g->lock);
        for (size_t k = 0; k < g->npeers && n < max; k++) {
            const struct peer *p = g->peers[k];
            struct repl_peer_status *o = &out[n++];
            memset(o, 0, sizeof *o);
            snprintf(o->node_id, sizeof o->node_id, "%s", p->id);
            o->in_sync = node_ids_has(&g->in_sync, p->id);
            o->acked_lsn = p->known ? p->acked : 0;
            o->lag = g->handed > o->acked_lsn ? g->handed - o->acked_lsn : 0;
            bool caught = o->in_sync && !p->failed && !p->stale;
            snprintf(o->state, sizeof o->state, "%s", caught ? "in_sync" : p->state);
            snprintf(o->reason, sizeof o->reason, "%s", caught ? "" : p->reason);
            o->transfer_bytes_done = p->xfer_done;
            o->transfer_bytes_total = p->xfer_total;
        }
        pthread_mutex_unlock(&g->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}
