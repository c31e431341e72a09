/*
 * cli_util.c — what every vecshard command uses: the flag parser, the
 * libvecshard client of the run and the check that turns a failed call into
 * "error: CODE: message", text tables and JSON output.
 *
 * JSON is written by hand (a few fixed shapes, no library needed); strings
 * are escaped per RFC 8259 and bytes >= 0x80 are passed through, so UTF-8
 * payloads stay readable while control characters are always escaped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/cli/cli.h"

/* ===================================================================== flags */

/* Parses an unsigned decimal; 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

/* Prints a usage error for cmd and the usage text; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vecshard %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);
    return CLI_USAGE;
}

/* Stores one flag value; CLI_OK or CLI_USAGE (printed). */
static int set_flag(const char *cmd, const char *usage, const struct cli_flag *f, const char *v)
{
    uint64_t u;
    char *end;
    double d;

    switch (f->type) {
    case CLI_FLAG_BOOL:
        *(bool *)f->dst = true;
        break;
    case CLI_FLAG_STR:
        *(const char **)f->dst = v;
        break;
    case CLI_FLAG_U32:
    case CLI_FLAG_U64:
        if (cli_parse_u64(v, &u) || (double)u < f->min || (double)u > f->max)
            return cli_usage_error(cmd, usage, "%s wants an integer in %.0f..%.0f, not \"%s\"",
                                   f->name, f->min, f->max, v);
        if (f->type == CLI_FLAG_U32)
            *(uint32_t *)f->dst = (uint32_t)u;
        else
            *(uint64_t *)f->dst = u;
        break;
    case CLI_FLAG_DOUBLE:
        errno = 0;
        d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < f->min || d > f->max)
            return cli_usage_error(cmd, usage, "%s wants a number in %g..%g, not \"%s\"", f->name,
                                   f->min, f->max, v);
        *(double *)f->dst = d;
        break;
    }
    if (f->seen) *f->seen = true;
    return CLI_OK;
}

/* Flags anywhere, positionals collected in order; see cli.h. */
int cli_parse(int argc, char **argv, const struct cli_flag *flags, int n, const char **pos,
              int max_pos, int *n_pos, const char *usage)
{
    const char *cmd = argv[0];
    bool only_pos = false;

    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (*n_pos >= max_pos)
                return cli_usage_error(cmd, usage, "unexpected argument \"%s\"", a);
            pos[(*n_pos)++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return -1;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct cli_flag *f = NULL;
        for (int j = 0; j < n && !f; j++)
            if (strlen(flags[j].name) == len && !strncmp(flags[j].name, a, len)) f = &flags[j];
        if (!f) return cli_usage_error(cmd, usage, "unknown flag %.*s", (int)len, a);
        const char *v = NULL;
        if (f->type == CLI_FLAG_BOOL) {
            if (eq) return cli_usage_error(cmd, usage, "%s takes no value", f->name);
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            return cli_usage_error(cmd, usage, "%s needs a value", f->name);
        }
        int rc = set_flag(cmd, usage, f, v);
        if (rc != CLI_OK) return rc;
    }
    return CLI_OK;
}

/* ===================================================================== calls */

/* The run's client, opened on first use. */
struct vecshard_client *cli_client(struct cli *c)
{
    if (!c->client) {
        struct vecshard_options o = {.timeout_ms = c->timeout_ms,
                                     .api_key = c->api_key,
                                     .tls = c->tls,
                                     .tls_ca = c->tls_ca,
                                     .tls_cert = c->tls_cert,
                                     .tls_key = c->tls_key,
                                     .tls_server_name = c->tls_server_name};
        struct vecshard_error err;
        if (vecshard_connect(c->router, &o, &c->client, &err) != VECSHARD_OK)
            fprintf(stderr, "error: cannot create a gRPC client (%s)\n", err.message);
    }
    return c->client;
}

/* Prints "error: CODE: message" and, for a router that cannot be reached, a hint. */
void cli_print_status(const struct cli *c, const struct vecshard_error *err)
{
    if (err->message[0])
        fprintf(stderr, "error: %s: %s\n", vecshard_code_name(err->code), err->message);
    else
        fprintf(stderr, "error: %s\n", vecshard_code_name(err->code));
    /*
     * gRPC's own text for a refused or unresolvable address starts the
     * message; the router's messages may quote such text about a node
     * further in, and then the router itself was reached.
     */
    if (err->code == VECSHARD_UNAVAILABLE &&
        (strncmp(err->message, "failed to connect", 17) == 0 ||
         strncmp(err->message, "DNS resolution failed", 21) == 0 ||
         strncmp(err->message, "Connection refused", 18) == 0 || err->message[0] == 0))
        fprintf(stderr,
                "hint: is a vecshard-router listening at %s? (--router or VECSHARD_ROUTER)\n",
                c->router);
    else if (err->code == VECSHARD_DEADLINE_EXCEEDED)
        fprintf(stderr, "hint: the call took longer than --timeout %" PRId64 " ms\n",
                c->timeout_ms);
}

/* CLI_OK, or the error printed and CLI_FAIL. */
int cli_check(const struct cli *c, enum vecshard_code code, const struct vecshard_error *err)
{
    if (code == VECSHARD_OK) return CLI_OK;
    cli_print_status(c, err);
    return CLI_FAIL;
}

/* DescribeCollection, errors printed. */
struct vecshard_collection_info *cli_describe(struct cli *c, const char *name)
{
    struct vecshard_client *vc = cli_client(c);
    struct vecshard_collection_info *info;
    struct vecshard_error err;
    if (!vc) return NULL;
    if (cli_check(c, vecshard_describe_collection(vc, name, &info, &err), &err)) return NULL;
    return info;
}

/* ===================================================================== output */

/* Monotonic seconds. */
double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleeps ms milliseconds (restarted after signals). */
void cli_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Seconds as "1h02m", "3m05s" or "42s". */
const char *cli_eta(double s, char *buf, size_t len)
{
    long t = (long)(s + 0.5);
    if (s < 0 || s > 1e7)
        snprintf(buf, len, "?");
    else if (t >= 3600)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
    else if (t >= 60)
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, len, "%lds", t);
    return buf;
}

/* "[####......]" for frac of CLI_BAR_WIDTH cells. */
const char *cli_bar(double frac, char *buf, size_t len)
{
    if (len < CLI_BAR_WIDTH + 3) {
        if (len) buf[0] = '\0';
        return buf;
    }
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    int fill = (int)(frac * CLI_BAR_WIDTH);
    buf[0] = '[';
    for (int i = 0; i < CLI_BAR_WIDTH; i++)
        buf[i + 1] = i < fill ? '#' : '.';
    buf[CLI_BAR_WIDTH + 1] = ']';
    buf[CLI_BAR_WIDTH + 2] = '\0';
    return buf;
}

/* Bytes in binary units with one decimal ("512 B", "1.5 KiB", "12.0 MiB"). */
const char *cli_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " B", n);
        return buf;
    }
    double v = (double)n / 1024;
    int u = 0;
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, unit[u]);
    return buf;
}

/* Metric name as on the command line. */
const char *cli_metric_name(enum vecshard_metric m)
{
    switch (m) {
    case VECSHARD_METRIC_L2:
        return "l2";
    case VECSHARD_METRIC_IP:
        return "ip";
    case VECSHARD_METRIC_COSINE:
        return "cosine";
    default:
        return "?";
    }
}

/* ISO 8601 UTC time of a Unix millisecond stamp. */
const char *cli_time(int64_t unix_ms, char *buf, size_t len)
{
    if (unix_ms <= 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, len, "%" PRId64, unix_ms);
    return buf;
}

/* JSON string literal. */
void cli_json_str(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (ch < 0x20 || ch == 0x7f)
                fprintf(f, "\\u%04x", ch);
            else
                fputc(ch, f);
        }
    }
    fputc('"', f);
}

/* A C string as a JSON string. */
static void json_cstr(FILE *f, const char *s)
{
    cli_json_str(f, s ? s : "", s ? strlen(s) : 0);
}

/* An array of C strings as a JSON array. */
static void json_strs(FILE *f, const char *const *strs, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i) fputc(',', f);
        json_cstr(f, strs[i]);
    }
    fputc(']', f);
}

/* Collection config as JSON. */
void cli_json_config(FILE *f, const struct vecshard_collection_config *cfg)
{
    fputs("{\"name\":", f);
    json_cstr(f, cfg->name);
    fprintf(f,
            ",\"dim\":%u,\"metric\":\"%s\",\"m\":%u,\"ef_construction\":%u,\"ef_search\":%u,"
            "\"shards\":%u,\"replication_factor\":%u,\"created_at\":%" PRId64
            ",\"quantization\":\"%s\"}",
            cfg->dim, cli_metric_name(cfg->metric), cfg->m, cfg->ef_construction, cfg->ef_search,
            cfg->shards, cfg->replicas, cfg->created_at,
            cfg->quantization == VECSHARD_QUANT_SQ8 ? "sq8" : "none");
}

/* Shard entry as JSON. */
void cli_json_shard(FILE *f, const struct vecshard_shard_info *s)
{
    fputs("{\"collection\":", f);
    json_cstr(f, s->collection);
    fprintf(f, ",\"shard\":%u,\"epoch\":%" PRIu64 ",\"primary\":", s->shard, s->epoch);
    json_cstr(f, s->primary);
    fputs(",\"replicas\":", f);
    json_strs(f, s->replicas, s->n_replicas);
    fputs(",\"in_sync\":", f);
    json_strs(f, s->in_sync, s->n_in_sync);
    fputs(",\"recovering\":", f);
    json_strs(f, s->recovering, s->n_recovering);
    fprintf(f, ",\"lsn\":%" PRIu64 ",\"primary_state\":", s->lsn);
    json_cstr(f, s->primary_state);
    fputs(",\"primary_state_reason\":", f);
    json_cstr(f, s->primary_state_reason);
    if (s->n_replica_status) fputs(",\"replica_status\":[", f);
    for (size_t i = 0; i < s->n_replica_status; i++) {
        const struct vecshard_replica_info *r = &s->replica_status[i];
        fputs(i ? ",{\"node_id\":" : "{\"node_id\":", f);
        json_cstr(f, r->node_id);
        fprintf(f, ",\"alive\":%s,\"role\":", r->alive ? "true" : "false");
        json_cstr(f, r->role);
        fputs(",\"state\":", f);
        json_cstr(f, r->state);
        fprintf(f, ",\"in_sync\":%s,\"lsn\":%" PRIu64 ",\"lag\":%" PRIu64 ",\"recovery\":",
                r->in_sync ? "true" : "false", r->lsn, r->lag);
        json_cstr(f, r->recovery);
        fprintf(f,
                ",\"transfer_bytes_done\":%" PRIu64 ",\"transfer_bytes_total\":%" PRIu64
                ",\"reason\":",
                r->transfer_bytes_done, r->transfer_bytes_total);
        json_cstr(f, r->reason);
        fputc('}', f);
    }
    if (s->n_replica_status) fputc(']', f);
    fputc('}', f);
}

/* Comma-joined list, "-" when empty. */
const char *cli_join(const char *const *strs, size_t n, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at < len; i++) {
        int w = snprintf(buf + at, len - at, "%s%s", i ? "," : "", strs[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
    if (n == 0) snprintf(buf, len, "-");
    return buf;
}

/* ===================================================================== tables */

struct cli_table {
    int ncols;
    size_t nrows, cap; /* rows including the header row */
    char **cells;      /* nrows * ncols strings, row-major */
};

/* A table holding just its header row. */
struct cli_table *cli_table_new(int ncols, const char *const *headers)
{
    struct cli_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ncols = ncols;
    if (cli_table_add(t, headers)) {
        free(t->cells);
        free(t);
        return NULL;
    }
    return t;
}

/* Appends one row (cells copied). */
int cli_table_add(struct cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **grown = realloc(t->cells, cap * (size_t)t->ncols * sizeof *grown);
        if (!grown) return -1;
        t->cells = grown;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * (size_t)t->ncols;
    for (int i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

/* Prints with every column padded to its widest cell, two spaces apart. */
void cli_table_print(struct cli_table *t, FILE *f)
{
    if (!t) return;
    size_t *w = calloc((size_t)t->ncols, sizeof *w);
    for (size_t r = 0; w && r < t->nrows; r++)
        for (int i = 0; i < t->ncols; i++) {
            size_t len = strlen(t->cells[r * (size_t)t->ncols + i]);
            if (len > w[i]) w[i] = len;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *cell = t->cells[r * (size_t)t->ncols + i];
            if (i == t->ncols - 1 || !w)
                fprintf(f, "%s%s", cell, i == t->ncols - 1 ? "" : "  ");
            else
                fprintf(f, "%-*s  ", (int)w[i], cell);
        }
        fputc('\n', f);
    }
    for (size_t k = 0; k < t->nrows * (size_t)t->ncols; k++)
        free(t->cells[k]);
    free(w);
    free(t->cells);
    free(t);
}
