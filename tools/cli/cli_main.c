/*
 * cli_main.c — `vecshard`, the command-line client of a vecshard cluster:
 * global flags, the command table, help, and the exit status.
 *
 * Global flags may stand anywhere on the line (before or after the
 * command): `--router ADDR` (else $VECSHARD_ROUTER, else 127.0.0.1:7300, where a
 * router listens by default) and `--timeout MS` (deadline of every
 * call, default 30000). They are taken out of argv first, so each command's
 * parser only sees its own flags. Scripts depend on the command forms and on
 * the exit status (0 ok, 1 failed call or unreadable file, 2 bad usage);
 * docs/cli.md documents both.
 */
#include <stdlib.h>
#include <string.h>

#include "common/util/version.h"
#include "tools/cli/cli.h"

/* clang-format off */
const char *const cli_usage_create =
    "usage: vecshard create NAME --dim D [--metric l2|ip|cosine] [--shards S] [--replicas R]\n"
    "                       [--M 16] [--ef-construction 200] [--ef 64] [--quantization none|sq8]\n"
    "  Creates a collection of D-dimensional vectors split into S shards (default 1),\n"
    "  each on R nodes (default 1). --M, --ef-construction: HNSW build parameters;\n"
    "  --ef: the default search width of the collection. Metric default l2.\n"
    "  --quantization sq8: 8-bit codes for the graph walk, float vectors re-rank\n"
    "  (docs/engine.md); default none.\n";
const char *const cli_usage_drop =
    "usage: vecshard drop NAME\n"
    "  Deletes a collection and its data.\n";
const char *const cli_usage_list =
    "usage: vecshard list [--json]\n"
    "  Lists the collections with their configuration.\n";
const char *const cli_usage_describe =
    "usage: vecshard describe NAME [--json]\n"
    "  Shows a collection's configuration, point count, shard placement, replicas\n"
    "  and, per node, its replicas, primaries, bytes and points of the collection.\n";
const char *const cli_usage_status =
    "usage: vecshard status [--collection NAME] [--json]\n"
    "  Shows the cluster as the router sees it: nodes (alive, address, replica and\n"
    "  primary counts), collections, and every shard's primary, replicas, in-sync\n"
    "  and recovering replicas, epoch and LSN; per node also draining, bytes and\n"
    "  points; then the rebalance moves (queued, running with progress, finished).\n";
const char *const cli_usage_get =
    "usage: vecshard get NAME ID... [--vector] [--payload] [--json]\n"
    "  Fetches points by id; --vector and --payload include those fields.\n"
    "  Ids that do not exist are listed as missing (not an error).\n";
const char *const cli_usage_delete =
    "usage: vecshard delete NAME ID...\n"
    "       vecshard delete NAME --filter JSON\n"
    "  Deletes points by id (absent ids are not an error), or every point\n"
    "  matching a filter (docs/filtering.md), e.g.\n"
    "  --filter '{\"range\":{\"price\":{\"lt\":1}}}'.\n";
const char *const cli_usage_count =
    "usage: vecshard count NAME [--filter JSON] [--json]\n"
    "  Prints the number of points matching the filter (docs/filtering.md), e.g.\n"
    "  --filter '{\"and\":[{\"eq\":{\"color\":\"red\"}},{\"range\":{\"price\":{\"lt\":50}}}]}';\n"
    "  every point without one.\n";
const char *const cli_usage_rebalance =
    "usage: vecshard rebalance [--dry-run] [--collection NAME] [--watch] [--json]\n"
    "  Plans replica moves that even out the nodes (docs/rebalance.md) and, unless\n"
    "  --dry-run, queues them for the controller. One line per move: shard, from,\n"
    "  to, kind, bytes. --watch follows the moves until none is active (a bar per\n"
    "  running move on a terminal) and exits 1 if one failed; while a rebalance\n"
    "  runs already, --watch follows that one.\n";
const char *const cli_usage_drain =
    "usage: vecshard drain NODE [--wait] [--json]\n"
    "  Marks NODE draining: it gets no new replica and the controller moves every\n"
    "  replica off it. --wait follows until it is empty and can be stopped.\n";
const char *const cli_usage_undrain =
    "usage: vecshard undrain NODE [--json]\n"
    "  Removes NODE's drain mark; queued drain moves are cancelled, running ones finish.\n";
const char *const cli_usage_stop_check =
    "usage: vecshard stop-check NODE [--wait] [--timeout-s 600]\n"
    "  Exits 0 when stopping NODE now leaves every shard with an in-sync copy on\n"
    "  another live node, else lists the shards that would have none and exits 1.\n"
    "  --wait polls until it is safe (e.g. a restarted peer caught up) or the\n"
    "  timeout passes. The node pods' preStop hook (deploy/k8s) runs it.\n";
const char *const cli_usage_load =
    "usage: vecshard load NAME FILE [--start-id 0] [--batch 1000] [--concurrency 4]\n"
    "                     [--retries 5] [--json]\n"
    "  Upserts every row of FILE (.fvecs, or .npy float32 2-d) as points with ids\n"
    "  start-id, start-id+1, ... in file order, --batch points per call and\n"
    "  --concurrency calls in flight. A failed batch is retried --retries times\n"
    "  when the error is transient (UNAVAILABLE, DEADLINE_EXCEEDED, ...).\n"
    "  Progress on stderr (a bar on a terminal, else a line per 10%); the last\n"
    "  line on stdout gives points, seconds and points/s (--json: as JSON).\n";
const char *const cli_usage_search =
    "usage: vecshard search NAME --query FILE [--k 10] [--ef E] [--gt FILE.ivecs]\n"
    "                       [--queries N] [--batch 1] [--concurrency 4]\n"
    "                       [--min-coverage F] [--filter JSON] [--target-recall R]\n"
    "                       [--print] [--payload] [--json]\n"
    "  Searches every row of FILE (.fvecs or .npy; the first N with --queries),\n"
    "  --batch queries per call, --concurrency calls in flight, and prints\n"
    "  recall@k (with --gt: exact neighbours as ids), QPS and p50/p99 call latency.\n"
    "  --ef defaults to the collection's ef_search. --print shows each query's hits\n"
    "  (--payload adds payloads). --filter: only points matching it are hits\n"
    "  (docs/filtering.md). --target-recall R (0..1] instead of --ef: each shard\n"
    "  picks the smallest ef its calibration says reaches recall@k R (docs/engine.md).\n"
    "  With --json the last stdout line is one object:\n"
    "  {\"n\",\"k\",\"ef\",\"batch\",\"concurrency\",\"recall\",\"qps\",\"p50_ms\",\"p99_ms\",...}.\n";
/* clang-format on */

static const char usage_global[] =
    "usage: vecshard [--router ADDR] [--timeout MS] [--api-key KEY] [--tls ...] COMMAND [ARGS]\n"
    "       vecshard --version\n"
    "\n"
    "Global flags (anywhere on the line):\n"
    "  --router ADDR   router address host:port (env VECSHARD_ROUTER; default " CLI_DEFAULT_ROUTER
    ")\n"
    "  --timeout MS    deadline of each call in milliseconds (default 30000)\n"
    "  --api-key KEY   sent as \"authorization: Bearer KEY\" (env VECSHARD_API_KEY)\n"
    "  --tls           TLS to the router, verified with the system roots (env VECSHARD_TLS=1)\n"
    "  --tls-ca FILE   TLS, verified with this PEM CA bundle (env VECSHARD_TLS_CA)\n"
    "  --tls-cert FILE, --tls-key FILE\n"
    "                  client certificate for a router run with --tls-client-auth\n"
    "                  (env VECSHARD_TLS_CERT, VECSHARD_TLS_KEY)\n"
    "  --tls-server-name NAME\n"
    "                  name the router's certificate must carry (default: the host)\n"
    "\n"
    "Commands:\n"
    "  create     create a collection            drop       delete a collection\n"
    "  list       list collections               describe   one collection in detail\n"
    "  status     nodes, collections, shards     get        fetch points by id\n"
    "  delete     delete points by id            rebalance  even out replicas per node\n"
    "  load       bulk-load a vector file        search     search, recall, QPS, latency\n"
    "  drain      move every replica off a node  undrain    cancel a drain\n"
    "  stop-check is a node safe to stop            key        new API key, or a key's hash\n"
    "  help [COMMAND]\n"
    "\n"
    "Exit status: 0 ok, 1 a call failed (\"error: CODE: message\" on stderr) or a\n"
    "file could not be read, 2 bad usage.\n";

struct command {
    const char *name;
    int (*fn)(struct cli *c, int argc, char **argv);
    const char *const *usage;
};

static const struct command commands[] = {
    {"create", cli_cmd_create, &cli_usage_create},
    {"drop", cli_cmd_drop, &cli_usage_drop},
    {"list", cli_cmd_list, &cli_usage_list},
    {"describe", cli_cmd_describe, &cli_usage_describe},
    {"status", cli_cmd_status, &cli_usage_status},
    {"get", cli_cmd_get, &cli_usage_get},
    {"delete", cli_cmd_delete, &cli_usage_delete},
    {"count", cli_cmd_count, &cli_usage_count},
    {"rebalance", cli_cmd_rebalance, &cli_usage_rebalance},
    {"drain", cli_cmd_drain, &cli_usage_drain},
    {"undrain", cli_cmd_undrain, &cli_usage_undrain},
    {"stop-check", cli_cmd_stop_check, &cli_usage_stop_check},
    {"load", cli_cmd_load, &cli_usage_load},
    {"search", cli_cmd_search, &cli_usage_search},
    {"key", cli_cmd_key, &cli_usage_key},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* The command called name, or NULL. */
static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

/* `vecshard help [COMMAND]`: the overview and every command's usage, or one. */
static int help(int argc, char **argv)
{
    if (argc > 1) {
        const struct command *cmd = find_command(argv[1]);
        if (!cmd) {
            fprintf(stderr, "vecshard: unknown command \"%s\"\n%s", argv[1], usage_global);
            return CLI_USAGE;
        }
        fputs(*cmd->usage, stdout);
        return CLI_OK;
    }
    fputs(usage_global, stdout);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        fputc('\n', stdout);
        fputs(*commands[i].usage, stdout);
    }
    return CLI_OK;
}

/* The global flags: each sets one string of struct cli, or the two special
 * ones (--timeout, a number; --tls, no value). Each has an environment twin. */
static const struct global_flag {
    const char *name; /* without "--" */
    const char *env;
    size_t offset; /* of the const char * field; SIZE_MAX for timeout / tls */
} global_flags[] = {
    {"router", "VECSHARD_ROUTER", offsetof(struct cli, router)},
    {"timeout", NULL, SIZE_MAX},
    {"api-key", "VECSHARD_API_KEY", offsetof(struct cli, api_key)},
    {"tls", "VECSHARD_TLS", SIZE_MAX},
    {"tls-ca", "VECSHARD_TLS_CA", offsetof(struct cli, tls_ca)},
    {"tls-cert", "VECSHARD_TLS_CERT", offsetof(struct cli, tls_cert)},
    {"tls-key", "VECSHARD_TLS_KEY", offsetof(struct cli, tls_key)},
    {"tls-server-name", "VECSHARD_TLS_SERVER_NAME", offsetof(struct cli, tls_server_name)},
};
#define N_GLOBAL (sizeof global_flags / sizeof global_flags[0])

/* Sets global flag f to v; 0, or -1 after printing why v is bad. */
static int set_global(struct cli *c, const struct global_flag *f, const char *v)
{
    if (!strcmp(f->name, "tls")) {
        c->tls = !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on");
        return 0;
    }
    if (!strcmp(f->name, "timeout")) {
        uint64_t ms;
        if (cli_parse_u64(v, &ms) || ms == 0 || ms > 86400000u) {
            fprintf(stderr, "vecshard: --timeout wants milliseconds in 1..86400000, not \"%s\"\n",
                    v);
            return -1;
        }
        c->timeout_ms = (int64_t)ms;
        return 0;
    }
    if (!*v) {
        fprintf(stderr, "vecshard: --%s needs a value\n", f->name);
        return -1;
    }
    *(const char **)((char *)c + f->offset) = v;
    return 0;
}

/* The environment twins, before the command line overrides them. */
static int take_global_env(struct cli *c)
{
    for (size_t i = 0; i < N_GLOBAL; i++) {
        const char *v = global_flags[i].env ? getenv(global_flags[i].env) : NULL;
        if (v && *v && set_global(c, &global_flags[i], v) != 0) return -1;
    }
    return 0;
}

/*
 * Takes the global flags out of argv (up to a "--"), compacting it in place;
 * returns the new argc, or -1 after printing a usage error.
 */
static int take_global_flags(struct cli *c, int argc, char **argv)
{
    int out = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        const struct global_flag *f = NULL;
        const char *v = NULL;
        for (size_t j = 0; j < N_GLOBAL && f == NULL && !strncmp(a, "--", 2); j++) {
            size_t n = strlen(global_flags[j].name);
            if (strncmp(a + 2, global_flags[j].name, n) != 0) continue;
            if (a[2 + n] == '\0') {
                f = &global_flags[j];
            } else if (a[2 + n] == '=') {
                f = &global_flags[j];
                v = a + 3 + n;
            }
        }
        if (f == NULL) {
            argv[out++] = argv[i];
            continue;
        }
        if (v == NULL && !strcmp(f->name, "tls")) {
            v = "1";
        } else if (v == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vecshard: --%s needs a value\n%s", f->name, usage_global);
                return -1;
            }
            v = argv[++i];
        }
        if (set_global(c, f, v) != 0) return -1;
    }
    argv[out] = NULL;
    if ((c->tls_cert != NULL) != (c->tls_key != NULL)) {
        fprintf(stderr, "vecshard: --tls-cert and --tls-key go together (both or neither)\n");
        return -1;
    }
    return out;
}

int main(int argc, char **argv)
{
    struct cli c = {
        .router = CLI_DEFAULT_ROUTER,
        .timeout_ms = CLI_DEFAULT_TIMEOUT_MS,
    };

    if (take_global_env(&c) != 0) return CLI_USAGE;
    argc = take_global_flags(&c, argc, argv);
    if (argc < 0) return CLI_USAGE;
    if (argc < 2) {
        fputs(usage_global, stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--version")) {
        printf("vecshard %s\n", VECSHARD_VERSION);
        return CLI_OK;
    }
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h"))
        return help(argc - 1, argv + 1);
    const struct command *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "vecshard: unknown command \"%s\"\n%s", name, usage_global);
        return CLI_USAGE;
    }
    int rc = cmd->fn(&c, argc - 1, argv + 1);
    if (rc < 0) rc = CLI_OK; /* --help of a command */
    fflush(stdout);
    vecshard_close(c.client);
    return rc;
}
