/*
 * cli_admin.c — the vecshard commands that are one call each: create, drop,
 * list, describe, status, get and delete (rebalance and drain are in
 * cli_rebalance.c).
 *
 * Each prints a human-readable answer (tables padded to their widest cell),
 * or with --json one JSON object on one line of stdout, so scripts never
 * parse the tables. Numeric flags left out are sent as 0, which the router
 * replaces by the documented defaults (docs/wire-api.md); the reply carries
 * the effective values, and that is what is printed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli/cli.h"

#define MAX_IDS 100000 /* docs/design.md §8: ids per Get/Delete call */

/* Fills a table row for a collection config (9 cells, numbers in bufs). */
static void config_cells(const struct vecshard_collection_config *cfg, char bufs[8][32],
                         const char *cells[9])
{
    snprintf(bufs[0], 32, "%u", cfg->dim);
    snprintf(bufs[1], 32, "%u", cfg->shards);
    snprintf(bufs[2], 32, "%u", cfg->replicas);
    snprintf(bufs[3], 32, "%u", cfg->m);
    snprintf(bufs[4], 32, "%u", cfg->ef_construction);
    snprintf(bufs[5], 32, "%u", cfg->ef_search);
    cells[0] = cfg->name;
    cells[1] = bufs[0];
    cells[2] = cli_metric_name(cfg->metric);
    cells[3] = bufs[1];
    cells[4] = bufs[2];
    cells[5] = bufs[3];
    cells[6] = bufs[4];
    cells[7] = bufs[5];
    cells[8] = cli_time(cfg->created_at, bufs[6], 32);
}

/* Prints collections as a table. */
static void print_collections(const struct vecshard_collection_config *cfgs, size_t n)
{
    static const char *const hdr[] = {"NAME",     "DIM", "METRIC",          "SHARDS",
                                      "REPLICAS", "M",   "EF_CONSTRUCTION", "EF_SEARCH",
                                      "CREATED"};
    struct cli_table *t = cli_table_new(9, hdr);
    for (size_t i = 0; t && i < n; i++) {
        char bufs[8][32];
        const char *cells[9];
        config_cells(&cfgs[i], bufs, cells);
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
}

/* Prints shard entries as a table. */
static void print_shards(const struct vecshard_shard_info *shards, size_t n, bool with_collection)
{
    static const char *const hdr[] = {"COLLECTION", "SHARD",      "EPOCH", "PRIMARY", "REPLICAS",
                                      "IN_SYNC",    "RECOVERING", "LSN",   "STATE"};
    int skip = with_collection ? 0 : 1;
    struct cli_table *t = cli_table_new(9 - skip, hdr + skip);
    for (size_t i = 0; t && i < n; i++) {
        const struct vecshard_shard_info *s = &shards[i];
        char shard[16], epoch[24], lsn[24], rep[512], sync[512], rec[512];
        snprintf(shard, sizeof shard, "%u", s->shard);
        snprintf(epoch, sizeof epoch, "%" PRIu64, s->epoch);
        snprintf(lsn, sizeof lsn, "%" PRIu64, s->lsn);
        const char *cells[9] = {s->collection,
                                shard,
                                epoch,
                                s->primary && *s->primary ? s->primary : "(none)",
                                cli_join(s->replicas, s->n_replicas, rep, sizeof rep),
                                cli_join(s->in_sync, s->n_in_sync, sync, sizeof sync),
                                cli_join(s->recovering, s->n_recovering, rec, sizeof rec),
                                lsn,
                                s->primary_state && *s->primary_state ? s->primary_state : "?"};
        cli_table_add(t, cells + skip);
    }
    cli_table_print(t, stdout);
    for (size_t i = 0; i < n; i++)
        if (shards[i].primary_state_reason && *shards[i].primary_state_reason)
            printf("  %s/%u is %s: %s\n", shards[i].collection, shards[i].shard,
                   shards[i].primary_state, shards[i].primary_state_reason);
}

/* Parses `NAME` plus flags for the commands that take exactly one name. */
static int parse_name(int argc, char **argv, const struct cli_flag *flags, int n, const char *usage,
                      const char **name)
{
    const char *pos[1];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, n, pos, 1, &n_pos, usage);
    if (rc) return rc;
    if (n_pos != 1) return cli_usage_error(argv[0], usage, "missing collection NAME");
    *name = pos[0];
    return CLI_OK;
}

/* ===================================================================== create */

/* vecshard create NAME --dim D [...] */
int cli_cmd_create(struct cli *c, int argc, char **argv)
{
    const char *name = NULL, *metric = "l2", *quant = "none";
    uint32_t dim = 0, shards = 0, replicas = 0, m = 0, efc = 0, ef = 0;
    bool json = false, have_dim = false;
    const struct cli_flag flags[] = {
        {"--dim", CLI_FLAG_U32, &dim, 1, 65536, &have_dim},
        {"--metric", CLI_FLAG_STR, &metric, 0, 0, NULL},
        {"--shards", CLI_FLAG_U32, &shards, 1, 65536, NULL},
        {"--replicas", CLI_FLAG_U32, &replicas, 1, 64, NULL},
        {"--M", CLI_FLAG_U32, &m, 2, 128, NULL},
        {"--ef-construction", CLI_FLAG_U32, &efc, 1, 100000, NULL},
        {"--ef", CLI_FLAG_U32, &ef, 1, 100000, NULL},
        {"--quantization", CLI_FLAG_STR, &quant, 0, 0, NULL},
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
    };
    int rc = parse_name(argc, argv, flags, sizeof flags / sizeof flags[0], cli_usage_create, &name);
    if (rc) return rc;
    if (!have_dim) return cli_usage_error(argv[0], cli_usage_create, "--dim is required");

    struct vecshard_collection_params p = {0};
    if (!strcmp(metric, "l2"))
        p.metric = VECSHARD_METRIC_L2;
    else if (!strcmp(metric, "ip"))
        p.metric = VECSHARD_METRIC_IP;
    else if (!strcmp(metric, "cosine"))
        p.metric = VECSHARD_METRIC_COSINE;
    else
        return cli_usage_error(argv[0], cli_usage_create, "--metric must be l2, ip or cosine");
    if (!strcmp(quant, "sq8"))
        p.quantization = VECSHARD_QUANT_SQ8;
    else if (strcmp(quant, "none") != 0)
        return cli_usage_error(argv[0], cli_usage_create, "--quantization must be none or sq8");
    p.dim = dim;
    p.shards = shards;
    p.replicas = replicas;
    p.m = m;
    p.ef_construction = efc;
    p.ef_search = ef;

    struct vecshard_client *vc = cli_client(c);
    struct vecshard_collection_config got;
    struct vecshard_error err;
    if (!vc || cli_check(c, vecshard_create_collection(vc, name, &p, &got, &err), &err))
        return CLI_FAIL;
    if (json) {
        cli_json_config(stdout, &got);
        fputc('\n', stdout);
    } else {
        printf("created collection %s: dim %u, metric %s, %u shard%s x %u replica%s, M %u, "
               "ef_construction %u, ef_search %u%s\n",
               got.name, got.dim, cli_metric_name(got.metric), got.shards,
               got.shards == 1 ? "" : "s", got.replicas, got.replicas == 1 ? "" : "s", got.m,
               got.ef_construction, got.ef_search,
               got.quantization == VECSHARD_QUANT_SQ8 ? ", quantization sq8" : "");
    }
    return CLI_OK;
}

/* ===================================================================== drop */

/* vecshard drop NAME */
int cli_cmd_drop(struct cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int rc = parse_name(argc, argv, NULL, 0, cli_usage_drop, &name);
    if (rc) return rc;

    struct vecshard_client *vc = cli_client(c);
    struct vecshard_error err;
    if (!vc || cli_check(c, vecshard_drop_collection(vc, name, &err), &err)) return CLI_FAIL;
    printf("dropped collection %s\n", name);
    return CLI_OK;
}

/* ===================================================================== list */

/* vecshard list [--json] */
int cli_cmd_list(struct cli *c, int argc, char **argv)
{
    bool json = false;
    const struct cli_flag flags[] = {{"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL}};
    const char *pos[1];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, 1, pos, 0, &n_pos, cli_usage_list);
    if (rc) return rc;

    struct vecshard_client *vc = cli_client(c);
    struct vecshard_collection_list *r;
    struct vecshard_error err;
    if (!vc || cli_check(c, vecshard_list_collections(vc, &r, &err), &err)) return CLI_FAIL;
    if (json) {
        fputs("{\"collections\":[", stdout);
        for (size_t i = 0; i < r->n_collections; i++) {
            if (i) fputc(',', stdout);
            cli_json_config(stdout, &r->collections[i]);
        }
        fputs("]}\n", stdout);
    } else if (r->n_collections == 0) {
        printf("no collections\n");
    } else {
        print_collections(r->collections, r->n_collections);
    }
    vecshard_collection_list_free(r);
    return CLI_OK;
}

/* ===================================================================== nodes */

/*
 * Prints nodes as a table (status: with address, version and start time)
 * and the spread of replicas and bytes over the live nodes that are not
 * draining, so an imbalance shows at a glance (docs/operations.md).
 */
static void print_nodes(const struct vecshard_node_info *nodes, size_t n, bool full)
{
    static const char *const hdr[] = {"ID",    "ALIVE",  "DRAINING", "REPLICAS", "PRIMARIES",
                                      "BYTES", "POINTS", "ADDR",     "VERSION",  "STARTED"};
    struct cli_table *t = cli_table_new(full ? 10 : 7, hdr);
    uint32_t rmin = UINT32_MAX, rmax = 0;
    uint64_t bmin = UINT64_MAX, bmax = 0;
    for (size_t i = 0; t && i < n; i++) {
        const struct vecshard_node_info *x = &nodes[i];
        char reps[16], prim[16], bytes[16], points[24], when[32];
        snprintf(reps, sizeof reps, "%u", x->replicas);
        snprintf(prim, sizeof prim, "%u", x->primaries);
        snprintf(points, sizeof points, "%" PRIu64, x->points);
        const char *cells[10] = {x->id,
                                 x->alive ? "yes" : "no",
                                 x->draining ? "yes" : "no",
                                 reps,
                                 prim,
                                 x->answered ? cli_bytes(x->bytes, bytes, sizeof bytes) : "?",
                                 x->answered ? points : "?",
                                 *x->addr ? x->addr : "-",
                                 *x->version ? x->version : "-",
                                 cli_time(x->started_at, when, sizeof when)};
        cli_table_add(t, cells);
        if (!x->alive || x->draining) continue;
        rmin = x->replicas < rmin ? x->replicas : rmin;
        rmax = x->replicas > rmax ? x->replicas : rmax;
        bmin = x->bytes < bmin ? x->bytes : bmin;
        bmax = x->bytes > bmax ? x->bytes : bmax;
    }
    cli_table_print(t, stdout);
    if (rmax >= rmin && bmax >= bmin) {
        char lo[16], hi[16];
        printf("spread over live nodes not draining: replicas %u..%u, bytes %s..%s%s\n", rmin, rmax,
               cli_bytes(bmin, lo, sizeof lo), cli_bytes(bmax, hi, sizeof hi),
               rmax - rmin >= 2 ? " (uneven: vecshard rebalance --dry-run shows a plan)" : "");
    }
}

/* Writes nodes as a JSON array. */
static void json_nodes(const struct vecshard_node_info *nodes, size_t n)
{
    fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        const struct vecshard_node_info *x = &nodes[i];
        fputs(i ? ",{\"id\":" : "{\"id\":", stdout);
        cli_json_str(stdout, x->id, strlen(x->id));
        fputs(",\"addr\":", stdout);
        cli_json_str(stdout, x->addr, strlen(x->addr));
        fprintf(stdout,
                ",\"alive\":%s,\"draining\":%s,\"replicas\":%u,\"primaries\":%u,\"bytes\":%" PRIu64
                ",\"points\":%" PRIu64 ",\"answered\":%s,\"version\":",
                x->alive ? "true" : "false", x->draining ? "true" : "false", x->replicas,
                x->primaries, x->bytes, x->points, x->answered ? "true" : "false");
        cli_json_str(stdout, x->version, strlen(x->version));
        fprintf(stdout, ",\"started_at\":%" PRId64 "}", x->started_at);
    }
    fputc(']', stdout);
}

/* ===================================================================== describe */

/* vecshard describe NAME [--json] */
int cli_cmd_describe(struct cli *c, int argc, char **argv)
{
    const char *name = NULL;
    bool json = false;
    const struct cli_flag flags[] = {{"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL}};
    int rc = parse_name(argc, argv, flags, 1, cli_usage_describe, &name);
    if (rc) return rc;

    struct vecshard_collection_info *r = cli_describe(c, name);
    if (!r) return CLI_FAIL;
    const struct vecshard_collection_config *cfg = &r->config;
    if (json) {
        fputs("{\"config\":", stdout);
        cli_json_config(stdout, cfg);
        fprintf(stdout, ",\"count\":%" PRIu64 ",\"shards\":[", r->count);
        for (size_t i = 0; i < r->n_shards; i++) {
            if (i) fputc(',', stdout);
            cli_json_shard(stdout, &r->shards[i]);
        }
        fputs("],\"nodes\":", stdout);
        json_nodes(r->nodes, r->n_nodes);
        fputs("}\n", stdout);
    } else {
        char when[32];
        printf("collection %s\n", cfg->name[0] ? cfg->name : name);
        printf("  dim %u, metric %s, M %u, ef_construction %u, ef_search %u, quantization %s\n",
               cfg->dim, cli_metric_name(cfg->metric), cfg->m, cfg->ef_construction,
               cfg->ef_search, cfg->quantization == VECSHARD_QUANT_SQ8 ? "sq8" : "none");
        printf("  %u shard%s x %u replica%s, created %s\n", cfg->shards,
               cfg->shards == 1 ? "" : "s", cfg->replicas, cfg->replicas == 1 ? "" : "s",
               cli_time(cfg->created_at, when, sizeof when));
        printf("  points %" PRIu64 "\n\n", r->count);
        print_shards(r->shards, r->n_shards, false);
        printf("\nNODES (%zu holding replicas of %s)\n", r->n_nodes, name);
        print_nodes(r->nodes, r->n_nodes, false);
    }
    vecshard_collection_info_free(r);
    return CLI_OK;
}

/* ===================================================================== status */

/* Writes ClusterStatus as one JSON object. */
static void status_json(const struct vecshard_cluster_status *r)
{
    fputs("{\"controller\":", stdout);
    cli_json_str(stdout, r->controller, strlen(r->controller));
    fprintf(stdout, ",\"revision\":%" PRId64 ",\"nodes\":", r->revision);
    json_nodes(r->nodes, r->n_nodes);
    fputs(",\"collections\":[", stdout);
    for (size_t i = 0; i < r->n_collections; i++) {
        if (i) fputc(',', stdout);
        cli_json_config(stdout, &r->collections[i]);
    }
    fputs("],\"shards\":[", stdout);
    for (size_t i = 0; i < r->n_shards; i++) {
        if (i) fputc(',', stdout);
        cli_json_shard(stdout, &r->shards[i]);
    }
    fputs("],\"moves\":", stdout);
    cli_json_moves(stdout, r->moves, r->n_moves);
    fputs("}\n", stdout);
}

/* Replication health of one shard: 0 fully in sync (live primary, every
 * replica alive and in in_sync), 1 degraded, 2 without a live primary. */
static int shard_health(const struct vecshard_shard_info *s)
{
    bool primary_alive = false, all = s->n_in_sync == s->n_replicas;
    for (size_t j = 0; j < s->n_replica_status; j++) {
        const struct vecshard_replica_info *r = &s->replica_status[j];
        if (strcmp(r->node_id, s->primary) == 0) primary_alive = r->alive;
        all = all && r->alive && r->in_sync;
    }
    return !*s->primary || !primary_alive ? 2 : all ? 0 : 1;
}

/* Prints the replication summary line and one row per replica. */
static void print_replication(const struct vecshard_shard_info *shards, size_t n)
{
    size_t count[3] = {0, 0, 0}, n_rep = 0;
    for (size_t i = 0; i < n; i++) {
        count[shard_health(&shards[i])]++;
        n_rep += shards[i].n_replica_status;
    }
    printf("\nREPLICATION: %zu shards fully in sync, %zu degraded, %zu without a live primary\n",
           count[0], count[1], count[2]);
    if (n_rep == 0) return;
    static const char *const hdr[] = {"COLLECTION", "SHARD",    "NODE",    "ROLE",
                                      "ALIVE",      "STATE",    "IN_SYNC", "LSN",
                                      "LAG",        "RECOVERY", "COPIED",  "REASON"};
    struct cli_table *t = cli_table_new(12, hdr);
    for (size_t i = 0; t && i < n; i++)
        for (size_t j = 0; j < shards[i].n_replica_status; j++) {
            const struct vecshard_replica_info *r = &shards[i].replica_status[j];
            char shard[16], lsn[24], lag[24], copied[64] = "-";
            snprintf(shard, sizeof shard, "%u", shards[i].shard);
            snprintf(lsn, sizeof lsn, "%" PRIu64, r->lsn);
            snprintf(lag, sizeof lag, "%" PRIu64, r->lag);
            if (r->transfer_bytes_total)
                snprintf(copied, sizeof copied, "%" PRIu64 "/%" PRIu64, r->transfer_bytes_done,
                         r->transfer_bytes_total);
            const char *cells[12] = {shards[i].collection,
                                     shard,
                                     r->node_id,
                                     r->role,
                                     r->alive ? "yes" : "no",
                                     *r->state ? r->state : "?",
                                     r->in_sync ? "yes" : "no",
                                     lsn,
                                     lag,
                                     *r->recovery ? r->recovery : "-",
                                     copied,
                                     *r->reason ? r->reason : "-"};
            cli_table_add(t, cells);
        }
    cli_table_print(t, stdout);
}

/* Prints ClusterStatus: nodes, collections, shards, replication, moves. */
static void status_text(const struct cli *c, const struct vecshard_cluster_status *r)
{
    size_t alive = 0;
    for (size_t i = 0; i < r->n_nodes; i++)
        alive += r->nodes[i].alive;
    printf("router %s, controller %s, etcd revision %" PRId64 "\n\n", c->router,
           *r->controller ? r->controller : "(none)", r->revision);

    printf("NODES (%zu, %zu alive)\n", r->n_nodes, alive);
    print_nodes(r->nodes, r->n_nodes, true);

    printf("\nCOLLECTIONS (%zu)\n", r->n_collections);
    print_collections(r->collections, r->n_collections);

    printf("\nSHARDS (%zu)\n", r->n_shards);
    print_shards(r->shards, r->n_shards, true);
    print_replication(r->shards, r->n_shards);
    cli_print_moves(r->moves, r->n_moves, isatty(STDOUT_FILENO));
}

/* vecshard status [--collection NAME] [--json] */
int cli_cmd_status(struct cli *c, int argc, char **argv)
{
    bool json = false;
    const char *collection = "";
    const struct cli_flag flags[] = {
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
        {"--collection", CLI_FLAG_STR, &collection, 0, 0, NULL},
    };
    const char *pos[1];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, 2, pos, 0, &n_pos, cli_usage_status);
    if (rc) return rc;

    struct vecshard_client *vc = cli_client(c);
    struct vecshard_cluster_status *r;
    struct vecshard_error err;
    if (!vc || cli_check(c, vecshard_cluster_status(vc, collection, &r, &err), &err))
        return CLI_FAIL;
    if (json)
        status_json(r);
    else
        status_text(c, r);
    vecshard_cluster_status_free(r);
    return CLI_OK;
}

/* ===================================================================== get, delete */

/* Parses `NAME ID...` into *name and a new id array (caller frees). */
static int parse_name_ids(int argc, char **argv, const struct cli_flag *flags, int n,
                          const char *usage, const char **name, uint64_t **ids, size_t *n_ids)
{
    const char **pos = calloc((size_t)argc, sizeof *pos);
    int n_pos = 0, rc;
    *ids = NULL;
    if (!pos) return CLI_FAIL;
    rc = cli_parse(argc, argv, flags, n, pos, argc, &n_pos, usage);
    if (rc) goto done;
    if (n_pos < 2) {
        rc = cli_usage_error(argv[0], usage, "needs a collection NAME and at least one ID");
        goto done;
    }
    if (n_pos - 1 > MAX_IDS) {
        rc = cli_usage_error(argv[0], usage, "at most %d ids per call", MAX_IDS);
        goto done;
    }
    *name = pos[0];
    *n_ids = (size_t)n_pos - 1;
    *ids = malloc(*n_ids * sizeof **ids);
    if (!*ids) {
        rc = CLI_FAIL;
        goto done;
    }
    for (size_t i = 0; i < *n_ids; i++)
        if (cli_parse_u64(pos[i + 1], &(*ids)[i])) {
            rc = cli_usage_error(argv[0], usage, "\"%s\" is not an id (unsigned 64-bit integer)",
                                 pos[i + 1]);
            free(*ids);
            *ids = NULL;
            goto done;
        }
done:
    free(pos);
    return rc;
}

/* Prints one fetched point (text or JSON). */
static void print_point(const struct vecshard_point *p, bool json, bool first)
{
    if (json) {
        fprintf(stdout, "%s{\"id\":%" PRIu64, first ? "" : ",", p->id);
        if (p->payload) {
            fputs(",\"payload\":", stdout);
            cli_json_str(stdout, p->payload, p->payload_len);
        }
        if (p->vector) {
            fputs(",\"vector\":[", stdout);
            for (size_t j = 0; j < p->dim; j++)
                fprintf(stdout, "%s%.9g", j ? "," : "", (double)p->vector[j]);
            fputc(']', stdout);
        }
        fputc('}', stdout);
        return;
    }
    printf("id %" PRIu64, p->id);
    if (p->payload) {
        fputs("  payload ", stdout);
        cli_json_str(stdout, p->payload, p->payload_len);
    }
    if (p->vector) {
        fputs("  vector [", stdout);
        for (size_t j = 0; j < p->dim; j++)
            fprintf(stdout, "%s%.9g", j ? ", " : "", (double)p->vector[j]);
        fputc(']', stdout);
    }
    fputc('\n', stdout);
}

/* vecshard get NAME ID... [--vector] [--payload] [--json] */
int cli_cmd_get(struct cli *c, int argc, char **argv)
{
    const char *name = NULL;
    uint64_t *ids;
    size_t n_ids;
    bool vec = false, payload = false, json = false;
    const struct cli_flag flags[] = {
        {"--vector", CLI_FLAG_BOOL, &vec, 0, 0, NULL},
        {"--payload", CLI_FLAG_BOOL, &payload, 0, 0, NULL},
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
    };
    int rc = parse_name_ids(argc, argv, flags, 3, cli_usage_get, &name, &ids, &n_ids);
    if (rc) return rc;

    struct vecshard_client *vc = cli_client(c);
    struct vecshard_points *r = NULL;
    struct vecshard_error err;
    rc = !vc ? CLI_FAIL
             : cli_check(c, vecshard_get(vc, name, ids, n_ids, vec, payload, &r, &err), &err);
    free(ids);
    if (rc) return rc;
    if (json) fputs("{\"points\":[", stdout);
    for (size_t i = 0; i < r->n_points; i++)
        print_point(&r->points[i], json, i == 0);
    if (json) {
        fputs("],\"missing\":[", stdout);
        for (size_t i = 0; i < r->n_missing; i++)
            fprintf(stdout, "%s%" PRIu64, i ? "," : "", r->missing_ids[i]);
        fputs("]}\n", stdout);
    } else if (r->n_missing) {
        fputs("missing", stdout);
        for (size_t i = 0; i < r->n_missing; i++)
            fprintf(stdout, "%s%" PRIu64, i ? "," : " ", r->missing_ids[i]);
        fputc('\n', stdout);
    }
    vecshard_points_free(r);
    return CLI_OK;
}

/* vecshard delete NAME ID... */
int cli_cmd_delete(struct cli *c, int argc, char **argv)
{
    const char *name = NULL, *filter = NULL;
    uint64_t *ids;
    size_t n_ids;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--filter")) filter = argv[i + 1];
    if (filter) {
        /* delete NAME --filter JSON: every matching point, in atomic batches per shard */
        const struct cli_flag flags[] = {{"--filter", CLI_FLAG_STR, &filter, 0, 0, NULL}};
        const char *pos[1];
        int n_pos;
        int rc = cli_parse(argc, argv, flags, 1, pos, 1, &n_pos, cli_usage_delete);
        if (rc) return rc;
        if (n_pos != 1) return cli_usage_error(argv[0], cli_usage_delete, "missing collection NAME");
        struct vecshard_client *vc = cli_client(c);
        struct vecshard_error err;
        uint32_t deleted = 0;
        rc = !vc ? CLI_FAIL
                 : cli_check(c, vecshard_delete_matching(vc, pos[0], filter, &deleted, &err), &err);
        if (rc) return rc;
        printf("deleted %u point%s matching the filter from %s\n", deleted, deleted == 1 ? "" : "s",
               pos[0]);
        return CLI_OK;
    }
    int rc = parse_name_ids(argc, argv, NULL, 0, cli_usage_delete, &name, &ids, &n_ids);
    if (rc) return rc;

    struct vecshard_client *vc = cli_client(c);
    struct vecshard_error err;
    uint32_t deleted = 0;
    rc = !vc ? CLI_FAIL : cli_check(c, vecshard_delete(vc, name, ids, n_ids, &deleted, &err), &err);
    free(ids);
    if (rc) return rc;
    printf("deleted %u id%s from %s\n", deleted, n_ids == 1 ? "" : "s", name);
    return CLI_OK;
}

int cli_cmd_count(struct cli *c, int argc, char **argv)
{
    const char *filter = NULL;
    bool json = false;
    const struct cli_flag flags[] = {
        {"--filter", CLI_FLAG_STR, &filter, 0, 0, NULL},
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
    };
    const char *pos[1];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, 2, pos, 1, &n_pos, cli_usage_count);
    if (rc) return rc;
    if (n_pos != 1) return cli_usage_error(argv[0], cli_usage_count, "missing collection NAME");
    struct vecshard_client *vc = cli_client(c);
    struct vecshard_error err;
    uint64_t n = 0;
    rc = !vc ? CLI_FAIL : cli_check(c, vecshard_count_matching(vc, pos[0], filter, &n, &err), &err);
    if (rc) return rc;
    if (json)
        printf("{\"count\":%llu}\n", (unsigned long long)n);
    else
        printf("%llu\n", (unsigned long long)n);
    return CLI_OK;
}
