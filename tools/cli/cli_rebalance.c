/*
 * cli_rebalance.c — the vecshard commands that move replicas
 * (docs/rebalance.md, docs/cli.md): `rebalance [--dry-run] [--watch]`,
 * `drain NODE [--wait]`, `undrain NODE`, `stop-check NODE [--wait]` (is a node
 * safe to stop) and the MOVES section that `status` prints.
 *
 * Following (--watch, --wait) is polling: one ClusterStatus every 500 ms
 * until the moves being followed are no longer active (or the node is
 * empty). On a terminal (stdout isatty) the moves table is redrawn in place
 * with a bar per running move (cli_bar, the same bar as `load`); otherwise
 * a plain line is printed whenever a move changes state or step, so logs
 * of scripted runs stay short. The summary line and the exit status (0, or
 * 1 when a followed move failed) are what scripts rely on.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/cli/cli.h"

#define POLL_MS 500

/* ===================================================================== moves */

/* "docs/3" into buf. */
static const char *shard_name(const struct vecshard_replica_move *m, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%u", m->collection, m->shard);
    return buf;
}

/* True for queued and running moves. */
static bool move_active(const struct vecshard_replica_move *m)
{
    return m->state == VECSHARD_MOVE_QUEUED || m->state == VECSHARD_MOVE_RUNNING;
}

/* The PROGRESS cell: running replica moves get their step, a bar on a
 * terminal (a percentage otherwise), bytes and ETA; others their state. */
static const char *progress_cell(const struct vecshard_replica_move *m, bool tty, char *buf,
                                 size_t len)
{
    char done[16], total[16], eta[32], bar[CLI_BAR_WIDTH + 3];
    if (m->state != VECSHARD_MOVE_RUNNING) {
        snprintf(buf, len, "%s", vecshard_move_state_name(m->state));
        return buf;
    }
    if (strcmp(m->kind, "replica") != 0 || m->bytes_total == 0) {
        snprintf(buf, len, "running %s", *m->step ? m->step : "");
        return buf;
    }
    double frac = (double)m->bytes_done / (double)m->bytes_total;
    bool copied = m->bytes_done >= m->bytes_total; /* catching up or switching: no ETA */
    snprintf(buf, len, "%s%s%.0f%% %s/%s%s%s %s", tty ? cli_bar(frac, bar, sizeof bar) : "",
             tty ? " " : "", frac * 100, cli_bytes(m->bytes_done, done, sizeof done),
             cli_bytes(m->bytes_total, total, sizeof total), copied ? "" : " ETA ",
             copied          ? ""
             : m->eta_ms > 0 ? cli_eta((double)m->eta_ms / 1000, eta, sizeof eta)
                             : "?",
             *m->step ? m->step : "");
    return buf;
}

/* Prints moves as a table (ID, SHARD, FROM, TO, KIND, ORIGIN, PROGRESS, REASON) on f. */
static void moves_table(FILE *f, const struct vecshard_replica_move *m, size_t n, bool tty)
{
    static const char *const hdr[] = {"ID",   "SHARD",  "FROM",     "TO",
                                      "KIND", "ORIGIN", "PROGRESS", "REASON"};
    struct cli_table *t = cli_table_new(8, hdr);
    for (size_t i = 0; t && i < n; i++) {
        char shard[96], prog[160], kind[32];
        snprintf(kind, sizeof kind, "%s%s", m[i].kind, m[i].primary ? " (primary)" : "");
        const char *cells[8] = {*m[i].id ? m[i].id : "-",
                                shard_name(&m[i], shard, sizeof shard),
                                m[i].from_node,
                                m[i].to_node,
                                kind,
                                *m[i].origin ? m[i].origin : "-",
                                progress_cell(&m[i], tty, prog, sizeof prog),
                                *m[i].reason ? m[i].reason : "-"};
        cli_table_add(t, cells);
    }
    cli_table_print(t, f);
}

void cli_print_moves(const struct vecshard_replica_move *m, size_t n, bool tty)
{
    size_t active = 0;
    for (size_t i = 0; i < n; i++)
        active += move_active(&m[i]);
    printf("\nMOVES (%zu queued or running, %zu finished)\n", active, n - active);
    if (n) moves_table(stdout, m, n, tty);
}

void cli_json_moves(FILE *f, const struct vecshard_replica_move *m, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        const struct vecshard_replica_move *x = &m[i];
        fputs(i ? ",{\"id\":" : "{\"id\":", f);
        cli_json_str(f, x->id, strlen(x->id));
        fputs(",\"collection\":", f);
        cli_json_str(f, x->collection, strlen(x->collection));
        fprintf(f, ",\"shard\":%u,\"from_node\":", x->shard);
        cli_json_str(f, x->from_node, strlen(x->from_node));
        fputs(",\"to_node\":", f);
        cli_json_str(f, x->to_node, strlen(x->to_node));
        fprintf(f, ",\"primary\":%s,\"kind\":", x->primary ? "true" : "false");
        cli_json_str(f, x->kind, strlen(x->kind));
        fprintf(f, ",\"state\":\"%s\",\"step\":", vecshard_move_state_name(x->state));
        cli_json_str(f, x->step, strlen(x->step));
        fprintf(f,
                ",\"bytes_total\":%" PRIu64 ",\"bytes_done\":%" PRIu64 ",\"eta_ms\":%" PRId64
                ",\"attempts\":%u,\"reason\":",
                x->bytes_total, x->bytes_done, x->eta_ms, x->attempts);
        cli_json_str(f, x->reason, strlen(x->reason));
        fputs(",\"origin\":", f);
        cli_json_str(f, x->origin, strlen(x->origin));
        fprintf(f,
                ",\"created_at\":%" PRId64 ",\"started_at\":%" PRId64 ",\"finished_at\":%" PRId64
                "}",
                x->created_at, x->started_at, x->finished_at);
    }
    fputc(']', f);
}

/* ===================================================================== following */

/* The moves being followed: ids, and the last state/step printed of each. */
struct follow {
    size_t n;
    char **id;
    enum vecshard_move_state *state;
    char **step;
    int tty_lines; /* lines drawn last time (tty redraw) */
};

/* Adds id to f (no duplicates). 0 or -1 (ENOMEM). */
static int follow_add(struct follow *f, const char *id)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->id[i], id)) return 0;
    char **ids = realloc(f->id, (f->n + 1) * sizeof *ids);
    if (!ids) return -1;
    f->id = ids;
    enum vecshard_move_state *st = realloc(f->state, (f->n + 1) * sizeof *st);
    if (!st) return -1;
    f->state = st;
    char **steps = realloc(f->step, (f->n + 1) * sizeof *steps);
    if (!steps) return -1;
    f->step = steps;
    f->id[f->n] = strdup(id);
    f->step[f->n] = strdup("");
    f->state[f->n] = VECSHARD_MOVE_PLANNED;
    if (!f->id[f->n] || !f->step[f->n]) return -1;
    f->n++;
    return 0;
}

static void follow_free(struct follow *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->id[i]);
        free(f->step[i]);
    }
    free(f->id);
    free(f->state);
    free(f->step);
}

/* The followed moves found in a status, in the status's order, into out
 * (room for f->n); returns how many. */
static size_t followed(const struct follow *f, const struct vecshard_cluster_status *st,
                       struct vecshard_replica_move *out)
{
    size_t k = 0;
    for (size_t i = 0; i < st->n_moves; i++)
        for (size_t j = 0; j < f->n; j++)
            if (!strcmp(st->moves[i].id, f->id[j])) out[k++] = st->moves[i];
    return k;
}

/* Shows the followed moves: the table redrawn in place on a terminal, else
 * one line per move whose state or step changed. */
static void show(struct follow *f, const struct vecshard_replica_move *m, size_t n, bool tty)
{
    if (tty) {
        char *buf = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);
        if (!mem) return;
        moves_table(mem, m, n, true);
        fclose(mem);
        if (f->tty_lines) printf("\033[%dA\033[J", f->tty_lines);
        fputs(buf, stdout);
        f->tty_lines = 0;
        for (size_t i = 0; i < len; i++)
            f->tty_lines += buf[i] == '\n';
        free(buf);
        fflush(stdout);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < f->n; j++) {
            if (strcmp(m[i].id, f->id[j]) != 0) continue;
            if (m[i].state == f->state[j] && !strcmp(m[i].step, f->step[j])) break;
            char shard[96], prog[160];
            printf("move %s %s %s -> %s: %s%s%s\n", m[i].id, shard_name(&m[i], shard, sizeof shard),
                   m[i].from_node, m[i].to_node, progress_cell(&m[i], false, prog, sizeof prog),
                   *m[i].reason ? ": " : "", m[i].reason);
            f->state[j] = m[i].state;
            char *s = strdup(m[i].step);
            if (s) {
                free(f->step[j]);
                f->step[j] = s;
            }
            break;
        }
    fflush(stdout);
}

/*
 * Polls ClusterStatus until no followed move is active, showing progress;
 * then prints the summary. CLI_OK when none failed, else CLI_FAIL.
 */
static int watch_moves(struct cli *c, struct follow *f)
{
    bool tty = isatty(STDOUT_FILENO);
    struct vecshard_replica_move *m = calloc(f->n + 1, sizeof *m);
    if (!m) return CLI_FAIL;
    size_t counts[6] = {0}, n = 0;
    for (;;) {
        struct vecshard_cluster_status *st;
        struct vecshard_error err;
        if (cli_check(c, vecshard_cluster_status(cli_client(c), NULL, &st, &err), &err)) {
            free(m);
            return CLI_FAIL;
        }
        n = followed(f, st, m);
        show(f, m, n, tty);
        bool active = false;
        for (size_t i = 0; i < n; i++)
            active = active || move_active(&m[i]);
        if (!active) {
            memset(counts, 0, sizeof counts);
            for (size_t i = 0; i < n; i++)
                counts[m[i].state < 6 ? m[i].state : 0]++;
            printf("rebalance finished: %zu done, %zu failed, %zu cancelled\n",
                   counts[VECSHARD_MOVE_DONE], counts[VECSHARD_MOVE_FAILED],
                   counts[VECSHARD_MOVE_CANCELLED]);
            for (size_t i = 0; i < n; i++)
                if (m[i].state == VECSHARD_MOVE_FAILED || m[i].state == VECSHARD_MOVE_CANCELLED) {
                    char shard[96];
                    printf("  %s %s %s -> %s %s: %s\n", m[i].id,
                           shard_name(&m[i], shard, sizeof shard), m[i].from_node, m[i].to_node,
                           vecshard_move_state_name(m[i].state), m[i].reason);
                }
            vecshard_cluster_status_free(st);
            break;
        }
        vecshard_cluster_status_free(st);
        cli_sleep_ms(POLL_MS);
    }
    free(m);
    return counts[VECSHARD_MOVE_FAILED] ? CLI_FAIL : CLI_OK;
}

/* ===================================================================== rebalance */

/* Prints a plan: one line per move (shard, from -> to, kind, bytes). */
static void print_plan(const struct vecshard_rebalance_plan *r)
{
    if (r->n_moves == 0) {
        printf("already balanced: no moves\n");
    } else {
        static const char *const hdr[] = {"ID", "SHARD", "FROM", "TO", "KIND", "BYTES"};
        struct cli_table *t = cli_table_new(6, hdr);
        for (size_t i = 0; t && i < r->n_moves; i++) {
            const struct vecshard_replica_move *m = &r->moves[i];
            char shard[96], kind[32], bytes[16];
            snprintf(kind, sizeof kind, "%s%s", m->kind, m->primary ? " (primary)" : "");
            const char *cells[6] = {
                *m->id ? m->id : "-",
                shard_name(m, shard, sizeof shard),
                m->from_node,
                m->to_node,
                kind,
                strcmp(m->kind, "replica") ? "-" : cli_bytes(m->bytes_total, bytes, sizeof bytes)};
            cli_table_add(t, cells);
        }
        cli_table_print(t, stdout);
        printf("%zu move%s %s\n", r->n_moves, r->n_moves == 1 ? "" : "s",
               r->started ? "queued (vecshard status or rebalance --watch shows progress)"
                          : "planned (dry run)");
    }
    if (*r->note) printf("note: %s\n", r->note);
}

/* vecshard rebalance [--dry-run] [--collection NAME] [--watch] [--json] */
int cli_cmd_rebalance(struct cli *c, int argc, char **argv)
{
    bool dry = false, json = false, watch = false;
    const char *collection = "";
    const struct cli_flag flags[] = {
        {"--dry-run", CLI_FLAG_BOOL, &dry, 0, 0, NULL},
        {"--collection", CLI_FLAG_STR, &collection, 0, 0, NULL},
        {"--watch", CLI_FLAG_BOOL, &watch, 0, 0, NULL},
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
    };
    const char *pos[1];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, 4, pos, 0, &n_pos, cli_usage_rebalance);
    if (rc) return rc;
    if (watch && (dry || json))
        return cli_usage_error(argv[0], cli_usage_rebalance,
                               "--watch follows queued moves: not with --dry-run or --json");

    struct vecshard_client *vc = cli_client(c);
    struct vecshard_rebalance_plan *r;
    struct vecshard_error err;
    if (!vc) return CLI_FAIL;
    enum vecshard_code code = vecshard_rebalance(vc, dry, collection, &r, &err);
    struct follow f = {0};
    if (code == VECSHARD_FAILED_PRECONDITION && watch) {
        /* A rebalance is already running: follow its active moves. */
        printf("%s; following it\n", err.message);
        struct vecshard_cluster_status *st;
        if (cli_check(c, vecshard_cluster_status(vc, NULL, &st, &err), &err)) return CLI_FAIL;
        for (size_t i = 0; i < st->n_moves; i++)
            if (move_active(&st->moves[i])) follow_add(&f, st->moves[i].id);
        vecshard_cluster_status_free(st);
        rc = watch_moves(c, &f);
        follow_free(&f);
        return rc;
    }
    if (cli_check(c, code, &err)) return CLI_FAIL;
    if (json) {
        fputs("{\"moves\":", stdout);
        cli_json_moves(stdout, r->moves, r->n_moves);
        fprintf(stdout, ",\"started\":%s,\"note\":", r->started ? "true" : "false");
        cli_json_str(stdout, r->note, strlen(r->note));
        fputs("}\n", stdout);
    } else {
        print_plan(r);
    }
    rc = CLI_OK;
    if (watch && r->started) {
        for (size_t i = 0; i < r->n_moves; i++)
            if (follow_add(&f, r->moves[i].id)) rc = CLI_FAIL;
        if (rc == CLI_OK) rc = watch_moves(c, &f);
        follow_free(&f);
    }
    vecshard_rebalance_plan_free(r);
    return rc;
}

/* ===================================================================== drain */

/* Replicas on node id in a status (0 when it is not listed). */
static uint32_t replicas_of(const struct vecshard_cluster_status *st, const char *id,
                            bool *draining)
{
    for (size_t i = 0; i < st->n_nodes; i++)
        if (!strcmp(st->nodes[i].id, id)) {
            *draining = st->nodes[i].draining;
            return st->nodes[i].replicas;
        }
    return 0;
}

/* Follows a drain until the node holds no replica, showing as watch_moves
 * does its moves that are active or were created since `since` (Unix ms).
 * CLI_OK when empty, CLI_FAIL when it stopped draining. */
static int wait_empty(struct cli *c, const char *id, bool tty, int64_t since)
{
    struct follow f = {0};
    int rc = CLI_FAIL;
    for (;;) {
        struct vecshard_cluster_status *st;
        struct vecshard_error err;
        if (cli_check(c, vecshard_cluster_status(cli_client(c), NULL, &st, &err), &err)) break;
        bool draining = true; /* an unregistered node without replicas is not listed */
        uint32_t left = replicas_of(st, id, &draining);
        struct vecshard_replica_move *m = calloc(st->n_moves + 1, sizeof *m);
        size_t n = 0;
        for (size_t i = 0; m && i < st->n_moves; i++)
            if (!strcmp(st->moves[i].from_node, id) &&
                (move_active(&st->moves[i]) || st->moves[i].created_at >= since))
                follow_add(&f, st->moves[i].id);
        n = m ? followed(&f, st, m) : 0;
        if (n) show(&f, m, n, tty);
        free(m);
        vecshard_cluster_status_free(st);
        if (left == 0) {
            printf("node %s is empty: it can be stopped\n", id);
            rc = CLI_OK;
            break;
        }
        if (!draining) {
            printf("node %s is no longer draining (%u replicas left)\n", id, left);
            break;
        }
        cli_sleep_ms(POLL_MS);
    }
    follow_free(&f);
    return rc;
}

/* `drain NODE [--wait] [--json]` and `undrain NODE [--json]`. */
static int drain_cmd(struct cli *c, int argc, char **argv, bool undrain)
{
    const char *usage = undrain ? cli_usage_undrain : cli_usage_drain;
    bool json = false, wait = false;
    const struct cli_flag flags[] = {
        {"--json", CLI_FLAG_BOOL, &json, 0, 0, NULL},
        {"--wait", CLI_FLAG_BOOL, &wait, 0, 0, NULL},
    };
    const char *pos[2];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, undrain ? 1 : 2, pos, 2, &n_pos, usage);
    if (rc) return rc;
    if (n_pos != 1) return cli_usage_error(argv[0], usage, "needs exactly one NODE id");
    if (wait && json)
        return cli_usage_error(argv[0], usage, "--wait prints progress: not with --json");

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t since = (int64_t)now.tv_sec * 1000 - 1000; /* moves the controller queues from now */
    struct vecshard_client *vc = cli_client(c);
    struct vecshard_drain_state d;
    struct vecshard_error err;
    if (!vc || cli_check(c, vecshard_drain(vc, pos[0], undrain, &d, &err), &err)) return CLI_FAIL;
    if (json) {
        fputs("{\"node_id\":", stdout);
        cli_json_str(stdout, pos[0], strlen(pos[0]));
        fprintf(stdout, ",\"draining\":%s,\"replicas_left\":%u,\"empty\":%s,\"note\":",
                d.draining ? "true" : "false", d.replicas_left, d.empty ? "true" : "false");
        cli_json_str(stdout, d.note, strlen(d.note));
        fputs("}\n", stdout);
        return CLI_OK;
    }
    if (undrain)
        printf("node %s is no longer draining (%u replica%s on it)\n", pos[0], d.replicas_left,
               d.replicas_left == 1 ? "" : "s");
    else if (d.empty && !wait)
        printf("node %s is empty: it can be stopped\n", pos[0]);
    else
        printf("node %s is draining: %u replica%s left\n", pos[0], d.replicas_left,
               d.replicas_left == 1 ? "" : "s");
    if (*d.note) printf("note: %s\n", d.note);
    fflush(stdout); /* seen before a --wait that may take long */
    if (wait) return wait_empty(c, pos[0], isatty(STDOUT_FILENO), since);
    return CLI_OK;
}

int cli_cmd_drain(struct cli *c, int argc, char **argv)
{
    return drain_cmd(c, argc, argv, false);
}

int cli_cmd_undrain(struct cli *c, int argc, char **argv)
{
    return drain_cmd(c, argc, argv, true);
}

/* ================================================================ stop-check */

/*
 * Whether stopping node `id` now would leave a shard without an in-sync copy:
 * prints one line per such shard (at most 8, then a count) and returns how
 * many there are. A shard is blocking when `id` holds one of its replicas,
 * it has other replicas, and none of those is in sync on a live node; a
 * shard whose only replica is on `id` cannot be made safe by waiting (only
 * a drain can) and is counted in *single instead.
 */
static size_t stop_blockers(const struct vecshard_cluster_status *st, const char *id,
                            size_t *single, bool print)
{
    size_t blocking = 0;
    *single = 0;
    for (size_t i = 0; i < st->n_shards; i++) {
        const struct vecshard_shard_info *s = &st->shards[i];
        bool here = false;
        for (size_t r = 0; r < s->n_replicas; r++)
            if (!strcmp(s->replicas[r], id)) here = true;
        if (!here) continue;
        if (s->n_replicas == 1) {
            (*single)++;
            continue;
        }
        bool other = false;
        for (size_t r = 0; r < s->n_replica_status; r++) {
            const struct vecshard_replica_info *ri = &s->replica_status[r];
            if (strcmp(ri->node_id, id) && ri->in_sync && ri->alive) other = true;
        }
        if (other) continue;
        if (print && blocking < 8)
            printf("  %s/%u: no other in-sync copy on a live node\n", s->collection, s->shard);
        blocking++;
    }
    if (print && blocking > 8) printf("  ... and %zu more shards\n", blocking - 8);
    return blocking;
}

/* `stop-check NODE [--wait] [--timeout-s S]`: exit 0 when stopping NODE leaves every
 * shard with an in-sync copy (docs/operations.md, "Stopping a node"). */
int cli_cmd_stop_check(struct cli *c, int argc, char **argv)
{
    bool wait = false;
    uint64_t timeout_s = 600;
    const struct cli_flag flags[] = {
        {"--wait", CLI_FLAG_BOOL, &wait, 0, 0, NULL},
        {"--timeout-s", CLI_FLAG_U64, &timeout_s, 1, 86400, NULL},
    };
    const char *pos[2];
    int n_pos;
    int rc = cli_parse(argc, argv, flags, 2, pos, 2, &n_pos, cli_usage_stop_check);
    if (rc) return rc;
    if (n_pos != 1)
        return cli_usage_error(argv[0], cli_usage_stop_check, "needs exactly one NODE id");
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (bool first = true;; first = false) {
        struct vecshard_cluster_status *st;
        struct vecshard_error err;
        if (cli_check(c, vecshard_cluster_status(cli_client(c), NULL, &st, &err), &err))
            return CLI_FAIL;
        size_t single;
        clock_gettime(CLOCK_MONOTONIC, &now);
        bool last = !wait || now.tv_sec - t0.tv_sec >= (time_t)timeout_s;
        size_t blocking = stop_blockers(st, pos[0], &single, false);
        if (blocking == 0 || last || first) {
            if (blocking) printf("node %s cannot be stopped safely yet:\n", pos[0]);
            stop_blockers(st, pos[0], &single, blocking != 0);
        }
        vecshard_cluster_status_free(st);
        if (blocking == 0) {
            printf("node %s can be stopped: every shard keeps an in-sync copy\n", pos[0]);
            if (single)
                printf("note: %zu shard%s %s only replica on %s (replication factor 1): "
                       "unavailable while it is down\n",
                       single, single == 1 ? "" : "s", single == 1 ? "has its" : "have their",
                       pos[0]);
            return CLI_OK;
        }
        if (last) {
            if (wait) printf("gave up after %" PRIu64 " s\n", timeout_s);
            return CLI_FAIL;
        }
        if (first) printf("waiting (up to %" PRIu64 " s) ...\n", timeout_s);
        fflush(stdout);
        cli_sleep_ms(POLL_MS);
    }
}
