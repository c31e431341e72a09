/*
 * replica_tune.c — automatic ef for one replica (SearchRequest.target_recall,
 * docs/engine.md "Automatic ef").
 *
 * The replica keeps the last REPLICA_TUNE_RING unfiltered query vectors it
 * served and, per k asked for (up to REPLICA_TUNE_CURVES of them), an ef ->
 * recall@k curve from hnsw_calibrate: over those past queries once at
 * least REPLICA_TUNE_MIN_PAST have been seen, before that leave-one-out
 * over REPLICA_TUNE_SAMPLE of its own points (conservative: it errs low).
 *
 * The first request for a k measures its curve in the request (a one-time
 * cost, about nsample exact scans; logged by the metrics as latency). A
 * curve goes stale when the live count has moved by more than 20 % since,
 * when REPLICA_TUNE_REFRESH queries have been served since, or when past
 * queries became available for a leave-one-out curve; a stale curve keeps
 * answering while one background thread measures its successor.
 *
 * Locks: tune.lock (a leaf) guards the curves and the ring; a calibration
 * runs with no lock held. At most one background calibration runs per
 * replica; replica_tune_stop joins it.
 */
#include "node/storage/replica_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Capacity of the past-query ring, and how many it needs for a past-query curve. */
#define REPLICA_TUNE_RING     256
#define REPLICA_TUNE_MIN_PAST 128
/* Own points measured when there are not enough past queries. */
#define REPLICA_TUNE_SAMPLE 200
/* Distinct k values with a curve; the least recently used is replaced. */
#define REPLICA_TUNE_CURVES 4
/* Queries served after which a curve is measured again. */
#define REPLICA_TUNE_REFRESH 100000
/* The widest ef a curve measures. */
#define REPLICA_TUNE_MAX_EF 2048

struct tune_curve {
    struct hnsw_recall_curve c;
    uint64_t used;        /* LRU clock of the last pick */
    uint64_t served_then; /* tune.served when measured */
};

struct replica_tune {
    pthread_mutex_t lock;
    struct tune_curve curves[REPLICA_TUNE_CURVES];
    uint32_t ncurves;
    uint64_t clock, served;
    float *ring; /* REPLICA_TUNE_RING x dim */
    uint32_t ring_next, ring_n;
    pthread_mutex_t calib_lock; /* one calibration at a time (request or background) */
    bool bg_running, bg_started;
    uint32_t bg_k;
    pthread_t bg;
};

int replica_tune_create(struct replica *r)
{
    struct replica_tune *t = calloc(1, sizeof *t);
    if (!t) return -1;
    t->ring = malloc((size_t)REPLICA_TUNE_RING * r->dim * sizeof(float));
    if (!t->ring) {
        free(t);
        return -1;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->calib_lock, NULL);
    r->tune = t;
    return 0;
}

void replica_tune_stop(struct replica *r)
{
    struct replica_tune *t = r->tune;
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    bool join = t->bg_started;
    t->bg_started = false;
    pthread_mutex_unlock(&t->lock);
    if (join) pthread_join(t->bg, NULL);
}

void replica_tune_free(struct replica *r)
{
    struct replica_tune *t = r->tune;
    if (!t) return;
    replica_tune_stop(r);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->calib_lock);
    free(t->ring);
    free(t);
    r->tune = NULL;
}

void replica_tune_note_query(struct replica *r, const float *v)
{
    struct replica_tune *t = r->tune;
    if (!t || pthread_mutex_trylock(&t->lock) != 0) return; /* busy: this one is not kept */
    memcpy(t->ring + (size_t)t->ring_next * r->dim, v, r->dim * sizeof(float));
    t->ring_next = (t->ring_next + 1) % REPLICA_TUNE_RING;
    if (t->ring_n < REPLICA_TUNE_RING) t->ring_n++;
    t->served++;
    pthread_mutex_unlock(&t->lock);
}

/* Measures the curve for k (no lock held on entry); returns 0 or -1 with err set. */
static int measure(struct replica *r, uint32_t k, struct hnsw_recall_curve *out, char *err)
{
    struct replica_tune *t = r->tune;
    float *past = NULL;
    uint32_t npast = 0;
    pthread_mutex_lock(&t->lock);
    if (t->ring_n >= REPLICA_TUNE_MIN_PAST &&
        (past = malloc((size_t)t->ring_n * r->dim * sizeof(float))) != NULL) {
        npast = t->ring_n;
        memcpy(past, t->ring, (size_t)npast * r->dim * sizeof(float));
    }
    pthread_mutex_unlock(&t->lock);
    char herr[HNSW_ERR_MAX];
    pthread_mutex_lock(&t->calib_lock);
    int rc = hnsw_calibrate(r->idx, k, past, npast, REPLICA_TUNE_SAMPLE, REPLICA_TUNE_MAX_EF,
                            0x74756e65ull + r->shard, out, herr);
    pthread_mutex_unlock(&t->calib_lock);
    free(past);
    if (rc) {
        replica_fail(err, replica_engine_code(rc), "calibrating ef: %s", herr);
        return -1;
    }
    return 0;
}

/* Stores curve c (replacing the one for its k, else the least recently used). Lock held. */
static void store(struct replica_tune *t, const struct hnsw_recall_curve *c)
{
    uint32_t at = t->ncurves;
    for (uint32_t i = 0; i < t->ncurves; i++)
        if (t->curves[i].c.k == c->k) at = i;
    if (at == REPLICA_TUNE_CURVES) {
        at = 0;
        for (uint32_t i = 1; i < t->ncurves; i++)
            if (t->curves[i].used < t->curves[at].used) at = i;
    } else if (at == t->ncurves) {
        t->ncurves++;
    }
    t->curves[at].c = *c;
    t->curves[at].used = ++t->clock;
    t->curves[at].served_then = t->served;
}

/* Background re-measurement of one curve. */
static void *bg_main(void *arg)
{
    struct replica *r = arg;
    struct replica_tune *t = r->tune;
    pthread_mutex_lock(&t->lock);
    uint32_t k = t->bg_k;
    pthread_mutex_unlock(&t->lock);
    struct hnsw_recall_curve c;
    char err[REPLICA_ERR_MAX];
    int rc = measure(r, k, &c, err);
    pthread_mutex_lock(&t->lock);
    if (rc == 0) store(t, &c);
    t->bg_running = false;
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* True when curve tc should be measured again. Lock held. */
static bool stale(const struct replica_tune *t, const struct tune_curve *tc, uint64_t live)
{
    double moved = fabs((double)live - (double)tc->c.count);
    return moved > 0.2 * (double)tc->c.count + 1 ||
           t->served - tc->served_then >= REPLICA_TUNE_REFRESH ||
           (!tc->c.past_queries && t->ring_n >= REPLICA_TUNE_MIN_PAST);
}

int replica_auto_ef(struct replica *r, uint32_t k, float target, uint32_t *ef, float *est,
                    char *err)
{
    struct replica_tune *t = r->tune;
    uint64_t live = hnsw_count(r->idx);
    pthread_mutex_lock(&t->lock);
    struct tune_curve *tc = NULL;
    for (uint32_t i = 0; i < t->ncurves; i++)
        if (t->curves[i].c.k == k) tc = &t->curves[i];
    if (!tc) {
        pthread_mutex_unlock(&t->lock);
        struct hnsw_recall_curve c;
        if (measure(r, k, &c, err) != 0) return REPLICA_ENOMEM;
        pthread_mutex_lock(&t->lock);
        store(t, &c);
        for (uint32_t i = 0; i < t->ncurves; i++)
            if (t->curves[i].c.k == k) tc = &t->curves[i];
    }
    tc->used = ++t->clock;
    double e;
    *ef = hnsw_curve_pick(&tc->c, target, &e);
    *est = (float)e;
    if (stale(t, tc, live) && !t->bg_running) {
        if (t->bg_started) {
            /* The previous background run has finished (bg_running is false): reap it. */
            pthread_t old = t->bg;
            t->bg_started = false;
            pthread_mutex_unlock(&t->lock);
            pthread_join(old, NULL);
            pthread_mutex_lock(&t->lock);
        }
        if (!t->bg_running && !t->bg_started) {
            t->bg_k = k;
            t->bg_running = true;
            if (pthread_create(&t->bg, NULL, bg_main, r) == 0)
                t->bg_started = true;
            else
                t->bg_running = false; /* no thread: the old curve keeps serving */
        }
    }
    pthread_mutex_unlock(&t->lock);
    return REPLICA_OK;
}
