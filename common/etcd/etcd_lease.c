/*
 * etcd_lease.c — leases: grant, keep-alive, revoke, time-to-live, and the
 * keeper thread that holds a lease for a process (a node's membership key).
 *
 * Keep-alive through the gateway is one POST per renewal: the gRPC stream
 * becomes a request with one JSON object and a reply with one
 * {"result":{...}}. A lease that was revoked or expired still gets HTTP 200,
 * with "TTL" missing (zero-value omission), which is reported as ETCD_ELEASE.
 *
 * The keeper renews every TTL/3. A failed renewal is retried every 500 ms.
 * It gives up, and reports the loss once, either when etcd says the lease is
 * gone or when no renewal succeeded for a whole TTL since the last good one:
 * from then on the lease may have expired in etcd, and docs/design.md §3 wants
 * the holder to fence itself.
 */
#include "common/etcd/etcd_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEEPER_RETRY_MS 500

/* Grants a lease; see etcd.h. */
etcd_status etcd_lease_grant(etcd_client *c, int64_t ttl, int64_t *id, int64_t *granted_ttl,
                             etcd_err *err)
{
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    int64_t got_id, got_ttl;
    etcd_status st;

    if (ttl <= 0) {
        st = etcd_fail(err, ETCD_EINVAL, "lease TTL must be > 0");
        goto fail;
    }
    if (!body || !etcd_json_add_i64(body, "TTL", ttl)) {
        st = etcd_fail(err, ETCD_ENOMEM, "out of memory");
        goto fail;
    }
    st = etcd_call(c, "/v3/lease/grant", body, &reply, err);
    if (st) goto fail;
    if (!etcd_json_i64(reply, "ID", &got_id) || !etcd_json_i64(reply, "TTL", &got_ttl) ||
        got_id == 0) {
        st = etcd_fail(err, ETCD_EPROTO, "lease grant: reply without ID/TTL");
        goto fail;
    }
    *id = got_id;
    if (granted_ttl) *granted_ttl = got_ttl;
fail:
    cJSON_Delete(body);
    cJSON_Delete(reply);
    return st;
}

/* POSTs {"ID":id} to path; the parsed reply goes to *reply. */
static etcd_status lease_call(etcd_client *c, const char *path, int64_t id, bool keys,
                              cJSON **reply, etcd_err *err)
{
    cJSON *body = cJSON_CreateObject();
    etcd_status st;

    *reply = NULL;
    if (!body || !etcd_json_add_i64(body, "ID", id) ||
        (keys && !cJSON_AddTrueToObject(body, "keys"))) {
        cJSON_Delete(body);
        return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    }
    st = etcd_call(c, path, body, reply, err);
    cJSON_Delete(body);
    return st;
}

/* One keep-alive; see etcd.h. */
etcd_status etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t *ttl, etcd_err *err)
{
    cJSON *reply = NULL;
    const cJSON *result;
    int64_t t;
    etcd_status st = lease_call(c, "/v3/lease/keepalive", id, false, &reply, err);

    if (st) goto fail;
    result = cJSON_GetObjectItemCaseSensitive(reply, "result");
    if (!result) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
        st = e ? etcd_error_status(200, e, "lease keepalive", err)
               : etcd_fail(err, ETCD_EPROTO, "lease keepalive: reply without result");
        goto fail;
    }
    if (!etcd_json_i64(result, "TTL", &t)) {
        st = etcd_fail(err, ETCD_EPROTO, "lease keepalive: bad TTL");
        goto fail;
    }
    if (t <= 0) {
        st = etcd_fail(err, ETCD_ELEASE, "lease %lld not found or expired", (long long)id);
        goto fail;
    }
    if (ttl) *ttl = t;
fail:
    cJSON_Delete(reply);
    return st;
}

/* Revokes a lease; see etcd.h. */
etcd_status etcd_lease_revoke(etcd_client *c, int64_t id, etcd_err *err)
{
    cJSON *reply = NULL;
    etcd_status st = lease_call(c, "/v3/lease/revoke", id, false, &reply, err);

    cJSON_Delete(reply);
    return st;
}

/* Time-to-live of a lease; see etcd.h. */
etcd_status etcd_lease_ttl(etcd_client *c, int64_t id, int64_t *ttl, int64_t *granted_ttl,
                           etcd_err *err)
{
    cJSON *reply = NULL;
    int64_t t, g;
    etcd_status st = lease_call(c, "/v3/lease/timetolive", id, false, &reply, err);

    if (st) goto fail;
    if (!etcd_json_i64(reply, "TTL", &t) || !etcd_json_i64(reply, "grantedTTL", &g)) {
        st = etcd_fail(err, ETCD_EPROTO, "lease timetolive: bad TTL");
        goto fail;
    }
    /* An unknown lease answers TTL -1; an expiring one may show 0. */
    if (t < 0 || (t == 0 && g == 0)) {
        st = etcd_fail(err, ETCD_ELEASE, "lease %lld not found or expired", (long long)id);
        goto fail;
    }
    if (ttl) *ttl = t;
    if (granted_ttl) *granted_ttl = g;
fail:
    cJSON_Delete(reply);
    return st;
}

/* ------------------------------------------------------------ keeper */

struct etcd_lease_keeper {
    etcd_client *c; /* borrowed */
    int64_t lease;
    int64_t ttl_ms;
    etcd_lease_lost_fn on_lost;
    void *arg;
    pthread_t thread;
    pthread_mutex_t mu; /* protects stop; pairs with cv */
    pthread_cond_t cv;  /* signalled by etcd_lease_keeper_stop */
    bool stop;
    _Atomic int64_t last_ok_ms; /* last successful keep-alive (etcd_now_ms) */
};

/* Sleeps up to ms on the keeper's cv; true when asked to stop. */
static bool keeper_wait(struct etcd_lease_keeper *k, int64_t ms)
{
    struct timespec ts;
    bool stop;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&k->mu);
    while (!k->stop)
        if (pthread_cond_timedwait(&k->cv, &k->mu, &ts) == ETIMEDOUT) break;
    stop = k->stop;
    pthread_mutex_unlock(&k->mu);
    return stop;
}

/* Keeper thread: renew every TTL/3 until stopped or the lease is lost. */
static void *keeper_main(void *arg)
{
    struct etcd_lease_keeper *k = arg;
    int64_t last_ok = etcd_now_ms(), wait_ms = k->ttl_ms / 3;

    while (!keeper_wait(k, wait_ms)) {
        int64_t ttl = 0;
        etcd_status st = etcd_lease_keepalive(k->c, k->lease, &ttl, NULL);
        if (st == ETCD_OK) {
            last_ok = etcd_now_ms();
            atomic_store(&k->last_ok_ms, last_ok);
            k->ttl_ms = ttl * 1000;
            wait_ms = k->ttl_ms / 3;
            continue;
        }
        if (st == ETCD_ELEASE || etcd_now_ms() - last_ok >= k->ttl_ms) {
            k->on_lost(k->arg, k->lease, st == ETCD_ELEASE ? ETCD_ELEASE : ETCD_EUNAVAILABLE);
            break;
        }
        wait_ms = KEEPER_RETRY_MS;
    }
    return NULL;
}

/* Starts a keeper; see etcd.h. */
etcd_status etcd_lease_keeper_start(etcd_client *c, int64_t lease, int64_t ttl,
                                    etcd_lease_lost_fn on_lost, void *arg, etcd_lease_keeper **out,
                                    etcd_err *err)
{
    struct etcd_lease_keeper *k;
    pthread_condattr_t ca;
    int rc;

    *out = NULL;
    if (!c || !on_lost || lease == 0 || ttl <= 0)
        return etcd_fail(err, ETCD_EINVAL, "keeper needs a client, lease, TTL > 0, callback");
    k = calloc(1, sizeof *k);
    if (!k) return etcd_fail(err, ETCD_ENOMEM, "out of memory");
    k->c = c;
    k->lease = lease;
    k->ttl_ms = ttl * 1000;
    k->last_ok_ms = etcd_now_ms();
    k->on_lost = on_lost;
    k->arg = arg;
    pthread_mutex_init(&k->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->cv, &ca);
    pthread_condattr_destroy(&ca);
    rc = pthread_create(&k->thread, NULL, keeper_main, k);
    if (rc) {
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        free(k);
        return etcd_fail(err, ETCD_ENOMEM, "pthread_create: %s", strerror(rc));
    }
    *out = k;
    return ETCD_OK;
}

/* The last successful keep-alive (etcd.h). */
int64_t etcd_lease_keeper_ok_age_ms(etcd_lease_keeper *k)
{
    return etcd_now_ms() - atomic_load(&k->last_ok_ms);
}

/* Stops, joins and frees a keeper. */
void etcd_lease_keeper_stop(etcd_lease_keeper *k)
{
    if (!k) return;
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    free(k);
}
