/*
 * move_doc.c — parse and format the drain marks and rebalance move documents
 * (cluster.h, docs/rebalance.md §2, §4), with the same strictness as doc.c:
 * every refusal names the field.
 */
#define _GNU_SOURCE
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/cluster.h"

/* An integer field given as a JSON number (or decimal string); absent or
 * null gives 0. False if it is something else or negative. */
static bool move_i64(const cJSON *o, const char *name, int64_t *out)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    *out = 0;
    if (f == NULL || cJSON_IsNull(f)) return true;
    if (cJSON_IsNumber(f)) {
        if (f->valuedouble < 0 || f->valuedouble > 9007199254740992.0 ||
            f->valuedouble != (double)(int64_t)f->valuedouble)
            return false;
        *out = (int64_t)f->valuedouble;
        return true;
    }
    return cJSON_IsString(f) && etcd_parse_int64(f->valuestring, out) && *out >= 0;
}

/* A string field copied into *out; absent or null gives def (NULL def:
 * required). False if it is not a string, or required and missing/empty. */
static bool move_str(const cJSON *o, const char *name, const char *def, char **out, bool *nomem)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    const char *v = def;
    if (f != NULL && !cJSON_IsNull(f)) {
        if (!cJSON_IsString(f)) return false;
        v = f->valuestring;
    }
    if (v == NULL || (def == NULL && v[0] == '\0')) return false;
    if ((*out = strdup(v)) == NULL) *nomem = true;
    return *out != NULL;
}

/* ------------------------------------------------------------ drain */

void cluster_drain_clear(struct cluster_drain *d)
{
    if (d == NULL) return;
    free(d->node_id);
    memset(d, 0, sizeof *d);
}

int cluster_drain_parse(const char *json, size_t len, struct cluster_drain *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_ParseWithLength(json, len);
    bool nomem = false;
    if (o == NULL || !cJSON_IsObject(o)) {
        snprintf(err, errlen, "drain mark is not a JSON object");
    } else if (!move_str(o, "node_id", NULL, &out->node_id, &nomem)) {
        snprintf(err, errlen,
                 nomem ? "out of memory"
                       : "drain field \"node_id\" is missing or not a non-empty string");
    } else if (!move_i64(o, "since", &out->since)) {
        snprintf(err, errlen, "drain field \"since\" is not a non-negative integer");
    } else {
        cJSON_Delete(o);
        return 0;
    }
    cJSON_Delete(o);
    cluster_drain_clear(out);
    return -1;
}

char *cluster_drain_format(const struct cluster_drain *d)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) return NULL;
    cJSON_AddStringToObject(o, "node_id", d->node_id != NULL ? d->node_id : "");
    cJSON_AddNumberToObject(o, "since", (double)d->since);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ------------------------------------------------------------ names */

void cluster_move_id(char id[CLUSTER_MOVE_ID_MAX + 1], int64_t now_ms, uint32_t seq)
{
    snprintf(id, CLUSTER_MOVE_ID_MAX + 1, "%013lld-%05u", (long long)now_ms, seq % 100000u);
}

const char *cluster_move_kind_name(enum cluster_move_kind k)
{
    return k == CLUSTER_MOVE_LEADER ? "leader" : "replica";
}

int cluster_move_kind_parse(const char *s, enum cluster_move_kind *out)
{
    if (strcmp(s, "replica") == 0)
        *out = CLUSTER_MOVE_REPLICA;
    else if (strcmp(s, "leader") == 0)
        *out = CLUSTER_MOVE_LEADER;
    else
        return -1;
    return 0;
}

static const char *const state_names[] = {"", "queued", "running", "done", "failed", "cancelled"};

const char *cluster_move_state_name(enum cluster_move_state st)
{
    return (int)st >= 1 && (int)st <= 5 ? state_names[st] : "unknown";
}

int cluster_move_state_parse(const char *s, enum cluster_move_state *out)
{
    for (int i = 1; i <= 5; i++)
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum cluster_move_state)i;
            return 0;
        }
    return -1;
}

bool cluster_move_active(const struct cluster_move *m)
{
    return m->state == CLUSTER_MOVE_QUEUED || m->state == CLUSTER_MOVE_RUNNING;
}

/* ------------------------------------------------------------ move */

void cluster_move_clear(struct cluster_move *m)
{
    if (m == NULL) return;
    free(m->from);
    free(m->to);
    free(m->step);
    free(m->reason);
    free(m->origin);
    memset(m, 0, sizeof *m);
}

int cluster_move_set(char **field, const char *value)
{
    char *v = strdup(value != NULL ? value : "");
    if (v == NULL) return -1;
    free(*field);
    *field = v;
    return 0;
}

int cluster_move_parse(const char *json, size_t len, struct cluster_move *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (o == NULL || !cJSON_IsObject(o)) {
        snprintf(err, errlen, "move is not a JSON object");
        cJSON_Delete(o);
        return -1;
    }
    bool nomem = false;
    const char *bad = NULL;
    char *id = NULL, *name = NULL, *kind = NULL, *state = NULL;
    int64_t shard = 0, attempts = 0, bytes = 0;
    const cJSON *prim = cJSON_GetObjectItemCaseSensitive(o, "primary");
    if (!move_str(o, "id", NULL, &id, &nomem) || strlen(id) > CLUSTER_MOVE_ID_MAX)
        bad = "id";
    else if (!move_str(o, "collection", NULL, &name, &nomem) ||
             !cluster_name_ok(name, strlen(name)))
        bad = "collection";
    else if (!move_i64(o, "shard", &shard) || shard > UINT32_MAX)
        bad = "shard";
    else if (!move_str(o, "from", NULL, &out->from, &nomem))
        bad = "from";
    else if (!move_str(o, "to", NULL, &out->to, &nomem))
        bad = "to";
    else if (!move_str(o, "kind", "replica", &kind, &nomem) ||
             cluster_move_kind_parse(kind, &out->kind) != 0)
        bad = "kind";
    else if (prim != NULL && !cJSON_IsNull(prim) && !cJSON_IsBool(prim))
        bad = "primary";
    else if (!move_str(o, "state", "queued", &state, &nomem) ||
             cluster_move_state_parse(state, &out->state) != 0)
        bad = "state";
    else if (!move_str(o, "step", "", &out->step, &nomem))
        bad = "step";
    else if (!move_i64(o, "attempts", &attempts) || attempts > UINT32_MAX)
        bad = "attempts";
    else if (!move_str(o, "reason", "", &out->reason, &nomem))
        bad = "reason";
    else if (!move_str(o, "origin", "manual", &out->origin, &nomem))
        bad = "origin";
    else if (!move_i64(o, "bytes_total", &bytes))
        bad = "bytes_total";
    else if (!move_i64(o, "created_at", &out->created_at))
        bad = "created_at";
    else if (!move_i64(o, "started_at", &out->started_at))
        bad = "started_at";
    else if (!move_i64(o, "finished_at", &out->finished_at))
        bad = "finished_at";
    if (bad == NULL && !nomem) {
        memcpy(out->id, id, strlen(id) + 1);
        memcpy(out->name, name, strlen(name) + 1);
        out->shard = (uint32_t)shard;
        out->primary = cJSON_IsTrue(prim);
        out->attempts = (uint32_t)attempts;
        out->bytes_total = (uint64_t)bytes;
    } else if (nomem) {
        snprintf(err, errlen, "out of memory");
    } else {
        snprintf(err, errlen, "move field \"%s\" is missing or invalid", bad);
    }
    free(id);
    free(name);
    free(kind);
    free(state);
    cJSON_Delete(o);
    if (bad == NULL && !nomem) return 0;
    cluster_move_clear(out);
    return -1;
}

int cluster_move_copy(struct cluster_move *dst, const struct cluster_move *src)
{
    *dst = *src;
    dst->from = dst->to = dst->step = dst->reason = dst->origin = NULL;
    if (cluster_move_set(&dst->from, src->from) != 0 || cluster_move_set(&dst->to, src->to) != 0 ||
        cluster_move_set(&dst->step, src->step) != 0 ||
        cluster_move_set(&dst->reason, src->reason) != 0 ||
        cluster_move_set(&dst->origin, src->origin) != 0) {
        cluster_move_clear(dst);
        return -1;
    }
    return 0;
}

char *cluster_move_format(const struct cluster_move *m)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) return NULL;
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "collection", m->name);
    cJSON_AddNumberToObject(o, "shard", m->shard);
    cJSON_AddStringToObject(o, "from", m->from != NULL ? m->from : "");
    cJSON_AddStringToObject(o, "to", m->to != NULL ? m->to : "");
    cJSON_AddStringToObject(o, "kind", cluster_move_kind_name(m->kind));
    cJSON_AddBoolToObject(o, "primary", m->primary);
    cJSON_AddStringToObject(o, "state", cluster_move_state_name(m->state));
    cJSON_AddStringToObject(o, "step", m->step != NULL ? m->step : "");
    cJSON_AddNumberToObject(o, "attempts", m->attempts);
    cJSON_AddStringToObject(o, "reason", m->reason != NULL ? m->reason : "");
    cJSON_AddStringToObject(o, "origin", m->origin != NULL ? m->origin : "manual");
    cJSON_AddNumberToObject(o, "bytes_total", (double)m->bytes_total);
    cJSON_AddNumberToObject(o, "created_at", (double)m->created_at);
    cJSON_AddNumberToObject(o, "started_at", (double)m->started_at);
    cJSON_AddNumberToObject(o, "finished_at", (double)m->finished_at);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
