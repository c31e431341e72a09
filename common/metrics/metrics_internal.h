/*
 * metrics_internal.h — what the files of common/metrics share: the registry
 * and family layout (registry.c owns them) and the output buffer of one
 * scrape (render.c). Not part of the public API.
 *
 * Locks. metrics.mu protects the family list and the collector list (both
 * only grow); each family's mu protects its children. render.c takes the
 * registry lock only to copy the lists, then one family lock at a time, and
 * runs collectors with no lock held (a collector may create families).
 */
#ifndef VS_METRICS_INTERNAL_H
#define VS_METRICS_INTERNAL_H

#include "common/metrics/metrics.h"

#include <pthread.h>
#include <stdint.h>

#define METRICS_COLLECTORS_MAX 32
#define METRICS_FAMILIES_MAX   256

enum metrics_kind { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* One combination of label values of a family. */
struct metrics_child {
    char **values;    /* one per label name, owned */
    uint32_t hash;    /* of the values, for the family's index */
    double value;     /* counter or gauge */
    uint64_t *counts; /* histogram: per bucket (not cumulative), n_buckets + 1 (+Inf) */
    double sum;
    uint64_t count;
};

struct metrics_family {
    struct metrics *m;
    enum metrics_kind kind;
    char *name, *help;
    char *labels[METRICS_LABELS_MAX];
    int n_labels;
    double *buckets; /* histogram upper bounds, increasing */
    size_t n_buckets;

    pthread_mutex_t mu;             /* protects everything below */
    struct metrics_child **children; /* in creation order (the rendering order) */
    size_t n_children, cap_children;
    int32_t *index; /* open addressing over children, -1 = empty; size index_size */
    size_t index_size;
};

struct metrics_collector {
    metrics_collect_fn fn;
    void *user;
};

struct metrics {
    pthread_mutex_t mu; /* protects the two lists */
    struct metrics_family *families[METRICS_FAMILIES_MAX];
    int n_families;
    struct metrics_collector collectors[METRICS_COLLECTORS_MAX];
    int n_collectors;
    struct metrics_family *dropped; /* vecshard_metrics_dropped_series_total{metric} */
    void *process;                  /* metrics_add_process's labels (process.c), owned */
};

/* The growing text of one scrape. `failed` turns every later write into a no-op. */
struct metrics_writer {
    char *buf;
    size_t len, cap;
    bool failed;
    const char *family; /* the family a collector last started (for checks) */
};

/* Appends formatted text. */
void mw_printf(struct metrics_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a sample value or bucket bound as the text format wants it
 * (shortest round-trip decimal, NaN, +Inf, -Inf). */
void mw_number(struct metrics_writer *w, double v);

/* Appends the # HELP and # TYPE lines of a family. */
void mw_header(struct metrics_writer *w, const char *name, const char *type, const char *help);

/* Appends `name{k="v",...} value\n`; names and values in parallel arrays of
 * n labels, plus an optional extra label (le) when extra_name is not NULL. */
void mw_sample(struct metrics_writer *w, const char *name, const char *suffix,
               const char *const *names, const char *const *values, int n,
               const char *extra_name, const char *extra_value, double v);

/* Renders one registry family (takes its lock). */
void mw_family(struct metrics_writer *w, struct metrics_family *f);

/* True when s is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*). */
bool metrics_name_ok(const char *s);

#endif
