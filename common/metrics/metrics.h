/*
 * metrics.h — the Prometheus metrics of one vecshard process: a registry of
 * counter, gauge and histogram families, rendered in the Prometheus text
 * exposition format 0.0.4 for the /metrics endpoint (common/http).
 *
 * Two ways to feed it:
 *   - families created once at start-up (metrics_counter, metrics_gauge,
 *     metrics_histogram) and updated on hot paths with label values; the
 *     child for a new combination of label values is created on first use;
 *   - collectors: callbacks run at every scrape that write gauges (and
 *     counters kept elsewhere, e.g. in a replica) straight into the output
 *     with metrics_family / metrics_sample. State that already lives in a
 *     module (replica points, WAL bytes, moves in flight) is read there,
 *     never copied into the registry.
 *
 * Naming follows the Prometheus rules (docs/operations.md, "Metrics"): every
 * name starts with "vecshard_", carries its unit in base units (_seconds,
 * _bytes), counters end in _total. Label values are escaped on output
 * (backslash, double quote, newline), so any collection name is safe.
 *
 * Ownership and threading. The process creates one registry
 * (metrics_create) and destroys it after everything that updates it and the
 * HTTP server have stopped. Families belong to the registry. Updates are
 * thread-safe and cheap (one short mutex section per family; a family holds
 * at most METRICS_CHILDREN_MAX label combinations, further ones are counted
 * in vecshard_metrics_dropped_series_total instead of growing without
 * bound). metrics_render may run concurrently with updates and collectors
 * are called from the rendering thread (the HTTP server's): they must only
 * take locks that are never held while waiting on the network or a disk.
 *
 * libc only (plus /proc for the process collector).
 */
#ifndef VS_METRICS_H
#define VS_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#define METRICS_LABELS_MAX   4    /* label names per family */
#define METRICS_CHILDREN_MAX 4096 /* label-value combinations per family */

struct metrics;        /* the registry */
struct metrics_family; /* one metric name with its label names */
struct metrics_writer; /* the output of one scrape, passed to collectors */

/* Default buckets of latency histograms, seconds: 0.0001 .. 10. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_n;

/* A new, empty registry, or NULL on ENOMEM. */
struct metrics *metrics_create(void);

/* Frees the registry and its families. Nothing may use it any more. */
void metrics_destroy(struct metrics *m);

/*
 * Family constructors. name and help are copied; labels is a
 * comma-separated list of label names ("method,code") or NULL for none.
 * Histogram buckets are upper bounds in increasing order (copied; +Inf is
 * implicit); NULL means metrics_latency_buckets. Creating a name twice
 * returns the existing family when kind and labels match, NULL otherwise
 * (also NULL on ENOMEM or a bad name). NULL families are accepted (and
 * ignored) by every update function, so a process runs without metrics when
 * it has no registry.
 */
struct metrics_family *metrics_counter(struct metrics *m, const char *name, const char *help,
                                       const char *labels);
struct metrics_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                     const char *labels);
struct metrics_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                         const char *labels, const double *buckets,
                                         size_t n_buckets);

/*
 * Updates. `values` holds one string per label name of the family, in its
 * order (NULL when it has none; NULL for a family with labels, or an update
 * of the wrong kind, is ignored). Counters ignore v <= 0. Thread-safe.
 */
void metrics_add(struct metrics_family *f, const char *const *values, double v); /* counter */
void metrics_set(struct metrics_family *f, const char *const *values, double v); /* gauge */
void metrics_observe(struct metrics_family *f, const char *const *values, double v); /* histogram */

/* Collector: called at every scrape, after the registry's own families. */
typedef void (*metrics_collect_fn)(struct metrics_writer *w, void *user);

/* Adds a collector (at most 32). Before the HTTP server starts serving, or
 * at any time if `user` outlives the registry. Returns 0 or -1. */
int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *user);

/*
 * Inside a collector: starts a family (writes its # HELP and # TYPE lines;
 * type is "gauge", "counter" or "untyped"), then any number of samples of it.
 * metrics_sample's variadic part is label name/value string pairs ended by
 * NULL: metrics_sample(w, "vecshard_replica_points", n, "collection", c,
 * "shard", s, NULL). The name of a sample must be the family's.
 */
void metrics_family(struct metrics_writer *w, const char *name, const char *type,
                    const char *help);
void metrics_sample(struct metrics_writer *w, const char *name, double v, ...)
    __attribute__((sentinel));

/*
 * Adds the standard process collector: vecshard_process_resident_memory_bytes,
 * vecshard_process_open_fds, vecshard_process_cpu_seconds_total,
 * vecshard_process_start_time_seconds, and
 * vecshard_build_info{program=...,version=...} 1.
 */
int metrics_add_process(struct metrics *m, const char *program, const char *version);

/*
 * Renders every family and collector. Returns a malloc'd NUL-terminated
 * text the caller frees (its length in *len), or NULL on ENOMEM.
 */
char *metrics_render(struct metrics *m, size_t *len);

#endif
