/*
 * keys.c — the etcd keys of docs/design.md §3 (cluster.h): builders for each
 * document's key and the one classifier both the router's routing table and
 * the node's cache use on keys they list or watch.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/cluster.h"

/* asprintf that returns the string or NULL. */
static char *key_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *key_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

char *cluster_key_node(const char *prefix, const char *node_id)
{
    return key_printf("%s/nodes/%s", prefix, node_id);
}

char *cluster_key_collection(const char *prefix, const char *name)
{
    return key_printf("%s/collections/%s", prefix, name);
}

char *cluster_key_shard(const char *prefix, const char *name, uint32_t shard)
{
    return key_printf("%s/shards/%s/%u", prefix, name, shard);
}

char *cluster_key_shards_of(const char *prefix, const char *name)
{
    return key_printf("%s/shards/%s/", prefix, name);
}

char *cluster_key_controller(const char *prefix)
{
    return key_printf("%s/controller", prefix);
}

char *cluster_key_drain(const char *prefix, const char *node_id)
{
    return key_printf("%s/drain/%s", prefix, node_id);
}

char *cluster_key_move(const char *prefix, const char *move_id)
{
    return key_printf("%s/moves/%s", prefix, move_id);
}

char *cluster_key_dir(const char *prefix, const char *dir)
{
    return key_printf("%s/%s/", prefix, dir);
}

/* Parses a shard number: decimal digits only, < 2^32. */
static int parse_shard_number(const char *s, uint32_t *out)
{
    if (*s == '\0' || strlen(s) > 10) return -1;
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

int cluster_key_parse_shard(const char *rel, char name[CLUSTER_NAME_MAX + 1], uint32_t *shard)
{
    const char *slash = strchr(rel, '/');
    if (slash == NULL || !cluster_name_ok(rel, (size_t)(slash - rel))) return -1;
    if (parse_shard_number(slash + 1, shard) != 0) return -1;
    memcpy(name, rel, (size_t)(slash - rel));
    name[slash - rel] = '\0';
    return 0;
}

enum cluster_key_kind cluster_key_parse(const char *rel, struct cluster_key *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(rel, "nodes/", 6) == 0) {
        if (rel[6] != '\0' && strchr(rel + 6, '/') == NULL) {
            out->kind = CLUSTER_KEY_NODE;
            out->node_id = rel + 6;
        }
    } else if (strncmp(rel, "collections/", 12) == 0) {
        const char *name = rel + 12;
        if (cluster_name_ok(name, strlen(name))) {
            out->kind = CLUSTER_KEY_COLLECTION;
            memcpy(out->name, name, strlen(name) + 1);
        }
    } else if (strncmp(rel, "shards/", 7) == 0) {
        if (cluster_key_parse_shard(rel + 7, out->name, &out->shard) == 0)
            out->kind = CLUSTER_KEY_SHARD;
    } else if (strncmp(rel, "drain/", 6) == 0) {
        if (rel[6] != '\0' && strchr(rel + 6, '/') == NULL) {
            out->kind = CLUSTER_KEY_DRAIN;
            out->node_id = rel + 6;
        }
    } else if (strncmp(rel, "moves/", 6) == 0) {
        const char *id = rel + 6;
        size_t n = strlen(id);
        bool ok = n > 0 && n <= CLUSTER_MOVE_ID_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)id[i]) || strchr("_.-", id[i]) != NULL;
        if (ok) {
            out->kind = CLUSTER_KEY_MOVE;
            out->move_id = id;
        }
    }
    return out->kind;
}
