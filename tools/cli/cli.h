/*
 * cli.h — the `vecshard` command-line client: what the command files share.
 *
 * The client is a thin layer over the public vecshard.v1.VecShard service of
 * a router (proto/vecshard/v1/vecshard.proto). Every command is one function
 * `int cli_cmd_<name>(struct cli *c, int argc, char **argv)` that parses its
 * own flags with cli_parse(), makes its calls through libvecshard
 * (clients/c/vecshard.h, the one way to the router in C) on the client
 * cli_client() opens, checks each with cli_check() and returns the process
 * exit status:
 *
 *   CLI_OK (0)     success
 *   CLI_FAIL (1)   a call failed (the gRPC status name and message are
 *                  printed on stderr as "error: CODE: message"), or a file
 *                  could not be read
 *   CLI_USAGE (2)  bad command line (the command's usage is printed)
 *
 * Files: cli_main.c (global flags, dispatch, help), cli_util.c (flags, calls,
 * tables, JSON, progress bars), cli_admin.c (create, drop, list, describe,
 * status, get, delete), cli_rebalance.c (rebalance, drain, undrain and the
 * moves section of status), cli_load.c (bulk load), cli_search.c (search
 * and its recall / latency report). docs/cli.md is the user's manual.
 *
 * Ownership: struct cli (router address, timeout, the libvecshard client)
 * lives in main() for the whole run; commands borrow it. Results returned by
 * libvecshard belong to the command, which frees them with their
 * vecshard_*_free function.
 */
#ifndef VS_TOOLS_CLI_H
#define VS_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "clients/c/vecshard.h"

#define CLI_OK    0
#define CLI_FAIL  1
#define CLI_USAGE 2

#define CLI_DEFAULT_ROUTER     VECSHARD_DEFAULT_ADDRESS
#define CLI_DEFAULT_TIMEOUT_MS VECSHARD_DEFAULT_TIMEOUT_MS

/* The run-wide state every command borrows. */
struct cli {
    const char *router;             /* "host:port" of a vecshard-router */
    int64_t timeout_ms;             /* deadline of each call, from its start */
    struct vecshard_client *client; /* opened lazily by cli_client() */
    /* --api-key ($VECSHARD_API_KEY, read by the C client when NULL) and TLS
     * to the router: --tls, --tls-ca, --tls-cert, --tls-key,
     * --tls-server-name (env VECSHARD_TLS_CA, ...; docs/security.md). */
    const char *api_key;
    bool tls;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
};

/* ------------------------------------------------------------------ flags */

enum cli_flag_type {
    CLI_FLAG_BOOL,   /* present or not; sets *(bool *)dst */
    CLI_FLAG_STR,    /* one value; sets *(const char **)dst */
    CLI_FLAG_U32,    /* unsigned decimal, checked against [min, max] */
    CLI_FLAG_U64,    /* unsigned decimal, checked against [min, max] */
    CLI_FLAG_DOUBLE, /* decimal fraction, checked against [min, max] */
};

/* One flag a command accepts ("--k"; "--k=5" is accepted too). */
struct cli_flag {
    const char *name;
    enum cli_flag_type type;
    void *dst;
    double min, max; /* numeric range (inclusive) */
    bool *seen;      /* optional: set when the flag was given */
};

/*
 * Parses argv[0..argc) of one command (argv[0] is the command name): flags
 * from `flags` (n of them, anywhere on the line) and positionals, which are
 * collected into pos (at most max_pos; their number in *n_pos). "--" ends
 * flags. Prints a message naming the bad flag and returns CLI_USAGE, or
 * returns CLI_OK; "--help"/"-h" makes it print `usage` on stdout and return
 * -1 (the caller then exits 0).
 */
int cli_parse(int argc, char **argv, const struct cli_flag *flags, int n, const char **pos,
              int max_pos, int *n_pos, const char *usage);

/* Prints "vecshard CMD: <message>" and the usage text on stderr; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses an unsigned decimal (no sign, no spaces); 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);

/* ------------------------------------------------------------------ calls */

/* The client of the router (opened on first use); NULL after printing why. */
struct vecshard_client *cli_client(struct cli *c);

/*
 * CLI_OK when code is VECSHARD_OK. Otherwise prints err on stderr as
 * "error: CODE: message" (plus a hint when the router cannot be reached)
 * and returns CLI_FAIL.
 */
int cli_check(const struct cli *c, enum vecshard_code code, const struct vecshard_error *err);

/* Prints a failed call's status on stderr as "error: CODE: message". */
void cli_print_status(const struct cli *c, const struct vecshard_error *err);

/* DescribeCollection of `name`; NULL after printing the error. Caller frees
 * (vecshard_collection_info_free). */
struct vecshard_collection_info *cli_describe(struct cli *c, const char *name);

/* ------------------------------------------------------------------ output */

/* Monotonic clock in seconds. */
double cli_now(void);

/* Sleeps ms milliseconds. */
void cli_sleep_ms(long ms);

/* Seconds as "1h02m", "3m05s" or "42s" into buf ("?" when negative or absurd). */
const char *cli_eta(double seconds, char *buf, size_t len);

/* A progress bar "[####......]" of CLI_BAR_WIDTH cells filled to frac (0..1)
 * into buf (>= CLI_BAR_WIDTH + 3 bytes), for the bars of load and rebalance. */
#define CLI_BAR_WIDTH 30
const char *cli_bar(double frac, char *buf, size_t len);

/* Bytes as "512 B", "1.5 KiB", "12.0 MiB", ... into buf (>= 16 bytes). */
const char *cli_bytes(uint64_t n, char *buf, size_t len);

/* "l2", "ip", "cosine" (or "?"). */
const char *cli_metric_name(enum vecshard_metric m);

/* Unix milliseconds as "2026-01-02T03:04:05Z" into buf (>= 32 bytes); "-" for 0. */
const char *cli_time(int64_t unix_ms, char *buf, size_t len);

/* Writes s (len bytes, not NUL-terminated) as a JSON string literal. */
void cli_json_str(FILE *f, const char *s, size_t len);

/* Writes a collection config as a JSON object. */
void cli_json_config(FILE *f, const struct vecshard_collection_config *cfg);

/* Writes a shard entry as a JSON object. */
void cli_json_shard(FILE *f, const struct vecshard_shard_info *s);

/* Joins strs with "," into buf (truncated); "-" when empty. */
const char *cli_join(const char *const *strs, size_t n, char *buf, size_t len);

/* A text table: cells are copied; columns are padded to their widest cell. */
struct cli_table;

/* A table with ncols columns and these headers. NULL on ENOMEM. */
struct cli_table *cli_table_new(int ncols, const char *const *headers);
/* Appends a row of ncols cells (NULL prints as "-"). 0 or -1 on ENOMEM. */
int cli_table_add(struct cli_table *t, const char *const *cells);
/* Prints the table on f and frees it. */
void cli_table_print(struct cli_table *t, FILE *f);

/* ------------------------------------------------------------------ commands */

int cli_cmd_create(struct cli *c, int argc, char **argv);
int cli_cmd_drop(struct cli *c, int argc, char **argv);
int cli_cmd_list(struct cli *c, int argc, char **argv);
int cli_cmd_describe(struct cli *c, int argc, char **argv);
int cli_cmd_status(struct cli *c, int argc, char **argv);
int cli_cmd_get(struct cli *c, int argc, char **argv);
int cli_cmd_delete(struct cli *c, int argc, char **argv);
int cli_cmd_count(struct cli *c, int argc, char **argv);
int cli_cmd_rebalance(struct cli *c, int argc, char **argv);
int cli_cmd_drain(struct cli *c, int argc, char **argv);
int cli_cmd_undrain(struct cli *c, int argc, char **argv);
int cli_cmd_stop_check(struct cli *c, int argc, char **argv);
/* cli_key.c: `key new`, `key hash` (no router call). */
int cli_cmd_key(struct cli *c, int argc, char **argv);

/* cli_rebalance.c: prints moves as the MOVES section of status (a bar per
 * running move when tty), and writes them as a JSON array. */
void cli_print_moves(const struct vecshard_replica_move *m, size_t n, bool tty);
void cli_json_moves(FILE *f, const struct vecshard_replica_move *m, size_t n);
int cli_cmd_load(struct cli *c, int argc, char **argv);
int cli_cmd_search(struct cli *c, int argc, char **argv);

/* Usage texts (cli_main.c), printed by `vecshard help` and on usage errors. */
extern const char *const cli_usage_create,
    *const cli_usage_drop, *const cli_usage_list,
                               *const cli_usage_describe,
                                   *const cli_usage_status,
                                       *const cli_usage_get,
                                           *const cli_usage_delete, *const cli_usage_count,
                                               *const cli_usage_rebalance,
                                                   *const cli_usage_drain,
                                                       *const cli_usage_undrain,
                                                           *const cli_usage_stop_check,
                                                               *const cli_usage_load,
                                                                   *const cli_usage_search,
    *const cli_usage_key;

#endif
