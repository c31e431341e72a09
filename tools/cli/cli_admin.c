/*
 * cli_admin.c — the vecshard commands that are one call each: create, drop,
 * list, describe, status, get, delete and rebalance.
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

#include "tools/cli/cli.h"

#define MAX_IDS 100000 /* docs/design.md §8: ids per Get/Delete call */

/* Fills a table row for a collection config (9 cells, numbers in bufs). */
static void config_cells(const Vecshard__V1__CollectionConfig *cfg, char bufs[8][32],
                         const char *cells[9])
{
    snprintf(bufs[0], 32, "%u", cfg->dim);
    snprintf(bufs[1], 32, "%u", cfg->shards);
    snprintf(bufs[2], 32, "%u", cfg->replication_factor);
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
static void print_collections(Vecshard__V1__CollectionConfig *const *cfgs, size_t n)
{
    static const char *const hdr[] = {"NAME",     "DIM", "METRIC",          "SHARDS",
                                      "REPLICAS", "M",   "EF_CONSTRUCTION", "EF_SEARCH",
                                      "CREATED"};
    struct cli_table *t = cli_table_new(9, hdr);
    for (size_t i = 0; t && i < n; i++) {
        char bufs[8][32];
        const char *cells[9];
        config_cells(cfgs[i], bufs, cells);
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
}

/* Prints shard entries as a table. */
static void print_shards(Vecshard__V1__ShardInfo *const *shards, size_t n, bool with_collection)
{
    static const char *const hdr[] = {"COLLECTION", "SHARD",      "EPOCH", "PRIMARY", "REPLICAS",
                                      "IN_SYNC",    "RECOVERING", "LSN",   "STATE"};
    int skip = with_collection ? 0 : 1;
    struct cli_table *t = cli_table_new(9 - skip, hdr + skip);
    for (size_t i = 0; t && i < n; i++) {
        const Vecshard__V1__ShardInfo *s = shards[i];
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
        if (shards[i]->primary_state_reason && *shards[i]->primary_state_reason)
            printf("  %s/%u is %s: %s\n", shards[i]->collection, shards[i]->shard,
                   shards[i]->primary_state, shards[i]->primary_state_reason);
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
    const char *name = NULL, *metric = "l2";
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
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
    };
    int rc = parse_name(argc, argv, flags, sizeof flags / sizeof flags[0], cli_usage_create, &name);
    if (rc) return rc;
    if (!have_dim) return cli_usage_error(argv[0], cli_usage_create, "--dim is required");

    Vecshard__V1__CollectionConfig cfg = VECSHARD__V1__COLLECTION_CONFIG__INIT;
    if (!strcmp(metric, "l2"))
        cfg.metric = VECSHARD__V1__METRIC__METRIC_L2;
    else if (!strcmp(metric, "ip"))
        cfg.metric = VECSHARD__V1__METRIC__METRIC_IP;
    else if (!strcmp(metric, "cosine"))
        cfg.metric = VECSHARD__V1__METRIC__METRIC_COSINE;
    else
        return cli_usage_error(argv[0], cli_usage_create, "--metric must be l2, ip or cosine");
    cfg.name = (char *)name;
    cfg.dim = dim;
    cfg.shards = shards;
    cfg.replication_factor = replicas;
    cfg.m = m;
    cfg.ef_construction = efc;
    cfg.ef_search = ef;

    Vecshard__V1__CreateCollectionRequest req = VECSHARD__V1__CREATE_COLLECTION_REQUEST__INIT;
    ProtobufCMessage *resp;
    req.config = &cfg;
    if (cli_call(c, CLI_METHOD("CreateCollection"), &req.base,
                 &vecshard__v1__create_collection_response__descriptor, &resp, NULL))
        return CLI_FAIL;
    const Vecshard__V1__CollectionConfig *got =
        ((Vecshard__V1__CreateCollectionResponse *)resp)->config;
    if (json) {
        cli_json_config(stdout, got ? got : &cfg);
        fputc('\n', stdout);
    } else if (got) {
        printf("created collection %s: dim %u, metric %s, %u shard%s x %u replica%s, M %u, "
               "ef_construction %u, ef_search %u\n",
               got->name, got->dim, cli_metric_name(got->metric), got->shards,
               got->shards == 1 ? "" : "s", got->replication_factor,
               got->replication_factor == 1 ? "" : "s", got->m, got->ef_construction,
               got->ef_search);
    } else {
        printf("created collection %s\n", name);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return CLI_OK;
}

/* ===================================================================== drop */

/* vecshard drop NAME */
int cli_cmd_drop(struct cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int rc = parse_name(argc, argv, NULL, 0, cli_usage_drop, &name);
    if (rc) return rc;

    Vecshard__V1__DropCollectionRequest req = VECSHARD__V1__DROP_COLLECTION_REQUEST__INIT;
    ProtobufCMessage *resp;
    req.name = (char *)name;
    if (cli_call(c, CLI_METHOD("DropCollection"), &req.base,
                 &vecshard__v1__drop_collection_response__descriptor, &resp, NULL))
        return CLI_FAIL;
    protobuf_c_message_free_unpacked(resp, NULL);
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

    Vecshard__V1__ListCollectionsRequest req = VECSHARD__V1__LIST_COLLECTIONS_REQUEST__INIT;
    ProtobufCMessage *resp;
    if (cli_call(c, CLI_METHOD("ListCollections"), &req.base,
                 &vecshard__v1__list_collections_response__descriptor, &resp, NULL))
        return CLI_FAIL;
    Vecshard__V1__ListCollectionsResponse *r = (Vecshard__V1__ListCollectionsResponse *)resp;
    if (json) {
        fputs("{\"collections\":[", stdout);
        for (size_t i = 0; i < r->n_collections; i++) {
            if (i) fputc(',', stdout);
            cli_json_config(stdout, r->collections[i]);
        }
        fputs("]}\n", stdout);
    } else if (r->n_collections == 0) {
        printf("no collections\n");
    } else {
        print_collections(r->collections, r->n_collections);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return CLI_OK;
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

    Vecshard__V1__DescribeCollectionResponse *r = cli_describe(c, name);
    if (!r) return CLI_FAIL;
    const Vecshard__V1__CollectionConfig *cfg = r->config;
    if (json) {
        fputs("{\"config\":", stdout);
        if (cfg)
            cli_json_config(stdout, cfg);
        else
            fputs("null", stdout);
        fprintf(stdout, ",\"count\":%" PRIu64 ",\"shards\":[", r->count);
        for (size_t i = 0; i < r->n_shards; i++) {
            if (i) fputc(',', stdout);
            cli_json_shard(stdout, r->shards[i]);
        }
        fputs("]}\n", stdout);
    } else {
        char when[32];
        printf("collection %s\n", cfg ? cfg->name : name);
        if (cfg) {
            printf("  dim %u, metric %s, M %u, ef_construction %u, ef_search %u\n", cfg->dim,
                   cli_metric_name(cfg->metric), cfg->m, cfg->ef_construction, cfg->ef_search);
            printf("  %u shard%s x %u replica%s, created %s\n", cfg->shards,
                   cfg->shards == 1 ? "" : "s", cfg->replication_factor,
                   cfg->replication_factor == 1 ? "" : "s",
                   cli_time(cfg->created_at, when, sizeof when));
        }
        printf("  points %" PRIu64 "\n\n", r->count);
        print_shards(r->shards, r->n_shards, false);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return CLI_OK;
}

/* ===================================================================== status */

/* Writes ClusterStatus as one JSON object. */
static void status_json(const Vecshard__V1__ClusterStatusResponse *r)
{
    fputs("{\"controller\":", stdout);
    cli_json_str(stdout, r->controller ? r->controller : "",
                 r->controller ? strlen(r->controller) : 0);
    fprintf(stdout, ",\"revision\":%" PRId64 ",\"nodes\":[", r->revision);
    for (size_t i = 0; i < r->n_nodes; i++) {
        const Vecshard__V1__NodeInfo *n = r->nodes[i];
        fputs(i ? ",{\"id\":" : "{\"id\":", stdout);
        cli_json_str(stdout, n->id, strlen(n->id));
        fputs(",\"addr\":", stdout);
        cli_json_str(stdout, n->addr, strlen(n->addr));
        fprintf(stdout, ",\"alive\":%s,\"replicas\":%u,\"primaries\":%u,\"version\":",
                n->alive ? "true" : "false", n->replicas, n->primaries);
        cli_json_str(stdout, n->version, strlen(n->version));
        fprintf(stdout, ",\"started_at\":%" PRId64 "}", n->started_at);
    }
    fputs("],\"collections\":[", stdout);
    for (size_t i = 0; i < r->n_collections; i++) {
        if (i) fputc(',', stdout);
        cli_json_config(stdout, r->collections[i]);
    }
    fputs("],\"shards\":[", stdout);
    for (size_t i = 0; i < r->n_shards; i++) {
        if (i) fputc(',', stdout);
        cli_json_shard(stdout, r->shards[i]);
    }
    fputs("]}\n", stdout);
}

/* Prints ClusterStatus as three tables. */
static void status_text(const struct cli *c, const Vecshard__V1__ClusterStatusResponse *r)
{
    size_t alive = 0;
    for (size_t i = 0; i < r->n_nodes; i++)
        alive += r->nodes[i]->alive;
    printf("router %s, controller %s, etcd revision %" PRId64 "\n\n", c->router,
           r->controller && *r->controller ? r->controller : "(none)", r->revision);

    printf("NODES (%zu, %zu alive)\n", r->n_nodes, alive);
    static const char *const hdr[] = {"ID",        "ADDR",    "ALIVE",  "REPLICAS",
                                      "PRIMARIES", "VERSION", "STARTED"};
    struct cli_table *t = cli_table_new(7, hdr);
    for (size_t i = 0; t && i < r->n_nodes; i++) {
        const Vecshard__V1__NodeInfo *n = r->nodes[i];
        char reps[16], prim[16], when[32];
        snprintf(reps, sizeof reps, "%u", n->replicas);
        snprintf(prim, sizeof prim, "%u", n->primaries);
        const char *cells[7] = {n->id,
                                n->addr,
                                n->alive ? "yes" : "no",
                                reps,
                                prim,
                                *n->version ? n->version : "-",
                                cli_time(n->started_at, when, sizeof when)};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);

    printf("\nCOLLECTIONS (%zu)\n", r->n_collections);
    print_collections(r->collections, r->n_collections);

    printf("\nSHARDS (%zu)\n", r->n_shards);
    print_shards(r->shards, r->n_shards, true);
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

    Vecshard__V1__ClusterStatusRequest req = VECSHARD__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *resp;
    req.collection = (char *)collection;
    if (cli_call(c, CLI_METHOD("ClusterStatus"), &req.base,
                 &vecshard__v1__cluster_status_response__descriptor, &resp, NULL))
        return CLI_FAIL;
    if (json)
        status_json((Vecshard__V1__ClusterStatusResponse *)resp);
    else
        status_text(c, (Vecshard__V1__ClusterStatusResponse *)resp);
    protobuf_c_message_free_unpacked(resp, NULL);
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
static void print_point(const Vecshard__V1__Point *p, bool json, bool first)
{
    if (json) {
        fprintf(stdout, "%s{\"id\":%" PRIu64, first ? "" : ",", p->id);
        if (p->payload.data) {
            fputs(",\"payload\":", stdout);
            cli_json_str(stdout, (const char *)p->payload.data, p->payload.len);
        }
        if (p->n_vector) {
            fputs(",\"vector\":[", stdout);
            for (size_t j = 0; j < p->n_vector; j++)
                fprintf(stdout, "%s%.9g", j ? "," : "", (double)p->vector[j]);
            fputc(']', stdout);
        }
        fputc('}', stdout);
        return;
    }
    printf("id %" PRIu64, p->id);
    if (p->payload.data) {
        fputs("  payload ", stdout);
        cli_json_str(stdout, (const char *)p->payload.data, p->payload.len);
    }
    if (p->n_vector) {
        fputs("  vector [", stdout);
        for (size_t j = 0; j < p->n_vector; j++)
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

    Vecshard__V1__GetRequest req = VECSHARD__V1__GET_REQUEST__INIT;
    ProtobufCMessage *resp;
    req.collection = (char *)name;
    req.ids = ids;
    req.n_ids = n_ids;
    req.with_vector = vec;
    req.with_payload = payload;
    rc = cli_call(c, CLI_METHOD("Get"), &req.base, &vecshard__v1__get_response__descriptor, &resp,
                  NULL);
    free(ids);
    if (rc) return rc;
    Vecshard__V1__GetResponse *r = (Vecshard__V1__GetResponse *)resp;
    if (json) fputs("{\"points\":[", stdout);
    for (size_t i = 0; i < r->n_points; i++)
        print_point(r->points[i], json, i == 0);
    if (json) {
        fputs("],\"missing\":[", stdout);
        for (size_t i = 0; i < r->n_missing_ids; i++)
            fprintf(stdout, "%s%" PRIu64, i ? "," : "", r->missing_ids[i]);
        fputs("]}\n", stdout);
    } else if (r->n_missing_ids) {
        fputs("missing", stdout);
        for (size_t i = 0; i < r->n_missing_ids; i++)
            fprintf(stdout, "%s%" PRIu64, i ? "," : " ", r->missing_ids[i]);
        fputc('\n', stdout);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return CLI_OK;
}

/* vecshard delete NAME ID... */
int cli_cmd_delete(struct cli *c, int argc, char **argv)
{
    const char *name = NULL;
    uint64_t *ids;
    size_t n_ids;
    int rc = parse_name_ids(argc, argv, NULL, 0, cli_usage_delete, &name, &ids, &n_ids);
    if (rc) return rc;

    Vecshard__V1__DeleteRequest req = VECSHARD__V1__DELETE_REQUEST__INIT;
    ProtobufCMessage *resp;
    req.collection = (char *)name;
    req.ids = ids;
    req.n_ids = n_ids;
    rc = cli_call(c, CLI_METHOD("Delete"), &req.base, &vecshard__v1__delete_response__descriptor,
                  &resp, NULL);
    free(ids);
    if (rc) return rc;
    printf("deleted %u id%s from %s\n", ((Vecshard__V1__DeleteResponse *)resp)->deleted,
           n_ids == 1 ? "" : "s", name);
    protobuf_c_message_free_unpacked(resp, NULL);
    return CLI_OK;
}

/* ===================================================================== rebalance */

/* vecshard rebalance [--dry-run] [--collection NAME] [--json] */
int cli_cmd_rebalance(struct cli *c, int argc, char **argv)
{
    bool dry = false, json = false;
    const char *collection = "";
    const struct cli_flag flags[] = {
        {"--dry-run", CLI_FLAG_BOOL, &dry, 0, 0, NULL},
        {"--collection", CLI_FLAG_STR, &collection, 0, 0, NULL},
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
    };
    const char *pos[1];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, 3, pos, 0, &n_pos, cli_usage_rebalance);
    if (rc) return rc;

    Vecshard__V1__RebalanceRequest req = VECSHARD__V1__REBALANCE_REQUEST__INIT;
    ProtobufCMessage *resp;
    req.dry_run = dry;
    req.collection = (char *)collection;
    if (cli_call(c, CLI_METHOD("Rebalance"), &req.base,
                 &vecshard__v1__rebalance_response__descriptor, &resp, NULL))
        return CLI_FAIL;
    Vecshard__V1__RebalanceResponse *r = (Vecshard__V1__RebalanceResponse *)resp;
    if (json) {
        fputs("{\"moves\":[", stdout);
        for (size_t i = 0; i < r->n_moves; i++) {
            const Vecshard__V1__ReplicaMove *m = r->moves[i];
            fputs(i ? ",{\"collection\":" : "{\"collection\":", stdout);
            cli_json_str(stdout, m->collection, strlen(m->collection));
            fprintf(stdout, ",\"shard\":%u,\"from_node\":", m->shard);
            cli_json_str(stdout, m->from_node, strlen(m->from_node));
            fputs(",\"to_node\":", stdout);
            cli_json_str(stdout, m->to_node, strlen(m->to_node));
            fprintf(stdout, ",\"primary\":%s}", m->primary ? "true" : "false");
        }
        fprintf(stdout, "],\"started\":%s}\n", r->started ? "true" : "false");
    } else if (r->n_moves == 0) {
        printf("already balanced: no moves\n");
    } else {
        static const char *const hdr[] = {"COLLECTION", "SHARD", "FROM", "TO", "PRIMARY"};
        struct cli_table *t = cli_table_new(5, hdr);
        for (size_t i = 0; t && i < r->n_moves; i++) {
            const Vecshard__V1__ReplicaMove *m = r->moves[i];
            char shard[16];
            snprintf(shard, sizeof shard, "%u", m->shard);
            const char *cells[5] = {m->collection, shard, m->from_node, m->to_node,
                                    m->primary ? "yes" : "no"};
            cli_table_add(t, cells);
        }
        cli_table_print(t, stdout);
        printf("%zu move%s %s\n", r->n_moves, r->n_moves == 1 ? "" : "s",
               r->started ? "started (vecshard status shows progress)" : "planned (dry run)");
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return CLI_OK;
}
