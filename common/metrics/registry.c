/*
 * registry.c — the registry: family constructors, the children of a family
 * (one per combination of label values, found through a small open-addressing
 * index so an update costs one hash and one short lock), updates, and the
 * collector list.
 *
 * A family never forgets a child (Prometheus series should not vanish
 * between scrapes); METRICS_CHILDREN_MAX bounds the memory instead, and an
 * update for a further combination only increments
 * vecshard_metrics_dropped_series_total{metric="<family>"}.
 */
#define _GNU_SOURCE
#include "common/metrics/metrics_internal.h"

#include <stdlib.h>
#include <string.h>

const double metrics_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                          5,      10};
const size_t metrics_latency_buckets_n = sizeof metrics_latency_buckets / sizeof(double);

bool metrics_name_ok(const char *s)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9')) return false;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':'))
            return false;
    }
    return true;
}

/* True when s is a valid label name (no ':', not reserved "__"). */
static bool label_name_ok(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9') || (n >= 2 && s[0] == '_' && s[1] == '_'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Frees a family and its children. */
static void family_free(struct metrics_family *f)
{
    if (f == NULL) return;
    for (size_t i = 0; i < f->n_children; i++) {
        struct metrics_child *c = f->children[i];
        for (int k = 0; k < f->n_labels; k++)
            free(c->values[k]);
        free(c->values);
        free(c->counts);
        free(c);
    }
    free(f->children);
    free(f->index);
    for (int k = 0; k < f->n_labels; k++)
        free(f->labels[k]);
    free(f->buckets);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* Splits "a,b" into f->labels. 0 or -1 (bad name, too many, ENOMEM). */
static int parse_labels(struct metrics_family *f, const char *labels)
{
    if (labels == NULL || *labels == '\0') return 0;
    const char *p = labels;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        if (f->n_labels == METRICS_LABELS_MAX || !label_name_ok(p, n)) return -1;
        if (f->kind == METRICS_HISTOGRAM && n == 2 && memcmp(p, "le", 2) == 0) return -1;
        if ((f->labels[f->n_labels] = strndup(p, n)) == NULL) return -1;
        f->n_labels++;
        if (e == NULL) return 0;
        p = e + 1;
    }
}

/* True when f was declared with exactly these kind, labels and buckets. */
static bool same_shape(const struct metrics_family *f, const struct metrics_family *g)
{
    if (f->kind != g->kind || f->n_labels != g->n_labels || f->n_buckets != g->n_buckets)
        return false;
    for (int k = 0; k < f->n_labels; k++)
        if (strcmp(f->labels[k], g->labels[k]) != 0) return false;
    for (size_t i = 0; i < f->n_buckets; i++)
        if (f->buckets[i] != g->buckets[i]) return false;
    return true;
}

/* Builds a family and adds it, or returns the existing one of that name. */
static struct metrics_family *family_new(struct metrics *m, enum metrics_kind kind,
                                         const char *name, const char *help, const char *labels,
                                         const double *buckets, size_t n_buckets)
{
    if (m == NULL || !metrics_name_ok(name)) return NULL;
    struct metrics_family *f = calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    pthread_mutex_init(&f->mu, NULL);
    f->m = m;
    f->kind = kind;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    if (f->name == NULL || f->help == NULL || parse_labels(f, labels) != 0) goto fail;
    if (kind == METRICS_HISTOGRAM) {
        if (buckets == NULL) {
            buckets = metrics_latency_buckets;
            n_buckets = metrics_latency_buckets_n;
        }
        if (n_buckets == 0 || (f->buckets = malloc(n_buckets * sizeof(double))) == NULL)
            goto fail;
        for (size_t i = 0; i < n_buckets; i++) {
            if (buckets[i] != buckets[i] || (i > 0 && buckets[i] <= buckets[i - 1])) goto fail;
            f->buckets[i] = buckets[i];
        }
        f->n_buckets = n_buckets;
    }

    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_families; i++) {
        struct metrics_family *g = m->families[i];
        if (strcmp(g->name, name) != 0) continue;
        pthread_mutex_unlock(&m->mu);
        bool same = same_shape(f, g);
        family_free(f);
        return same ? g : NULL;
    }
    if (m->n_families == METRICS_FAMILIES_MAX) {
        pthread_mutex_unlock(&m->mu);
        goto fail;
    }
    m->families[m->n_families++] = f;
    pthread_mutex_unlock(&m->mu);
    return f;
fail:
    family_free(f);
    return NULL;
}

struct metrics *metrics_create(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->dropped = metrics_counter(m, "vecshard_metrics_dropped_series_total",
                                 "Updates not recorded because their metric already has the "
                                 "maximum number of label combinations",
                                 "metric");
    if (m->dropped == NULL) {
        metrics_destroy(m);
        return NULL;
    }
    return m;
}

void metrics_destroy(struct metrics *m)
{
    if (m == NULL) return;
    for (int i = 0; i < m->n_families; i++)
        family_free(m->families[i]);
    free(m->process);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

struct metrics_family *metrics_counter(struct metrics *m, const char *name, const char *help,
                                       const char *labels)
{
    return family_new(m, METRICS_COUNTER, name, help, labels, NULL, 0);
}

struct metrics_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                     const char *labels)
{
    return family_new(m, METRICS_GAUGE, name, help, labels, NULL, 0);
}

struct metrics_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                         const char *labels, const double *buckets,
                                         size_t n_buckets)
{
    return family_new(m, METRICS_HISTOGRAM, name, help, labels, buckets, n_buckets);
}

/* ------------------------------------------------------------ children */

/* FNV-1a over the label values, each ended by a 0xff separator. */
static uint32_t values_hash(const char *const *values, int n)
{
    uint32_t h = 2166136261u;
    for (int k = 0; k < n; k++) {
        for (const unsigned char *p = (const unsigned char *)(values[k] != NULL ? values[k] : "");
             *p != '\0'; p++)
            h = (h ^ *p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

static bool values_equal(const struct metrics_child *c, const char *const *values, int n)
{
    for (int k = 0; k < n; k++)
        if (strcmp(c->values[k], values[k] != NULL ? values[k] : "") != 0) return false;
    return true;
}

/* Rebuilds the index at twice the children capacity. 0 or -1. */
static int index_grow(struct metrics_family *f)
{
    size_t size = f->index_size ? 2 * f->index_size : 16;
    int32_t *ix = malloc(size * sizeof *ix);
    if (ix == NULL) return -1;
    for (size_t i = 0; i < size; i++)
        ix[i] = -1;
    for (size_t i = 0; i < f->n_children; i++) {
        size_t j = f->children[i]->hash & (size - 1);
        while (ix[j] >= 0)
            j = (j + 1) & (size - 1);
        ix[j] = (int32_t)i;
    }
    free(f->index);
    f->index = ix;
    f->index_size = size;
    return 0;
}

/* The child for values, created on first use; NULL when the cap is reached
 * or on ENOMEM. Called with f->mu held. */
static struct metrics_child *child_get(struct metrics_family *f, const char *const *values)
{
    uint32_t h = values_hash(values, f->n_labels);
    if (f->index_size > 0) {
        for (size_t j = h & (f->index_size - 1); f->index[j] >= 0; j = (j + 1) & (f->index_size - 1)) {
            struct metrics_child *c = f->children[f->index[j]];
            if (c->hash == h && values_equal(c, values, f->n_labels)) return c;
        }
    }
    if (f->n_children >= METRICS_CHILDREN_MAX) return NULL;
    /* keep the index at most half full */
    if (2 * (f->n_children + 1) > f->index_size && index_grow(f) != 0) return NULL;
    if (f->n_children == f->cap_children) {
        size_t cap = f->cap_children ? 2 * f->cap_children : 8;
        struct metrics_child **nc = realloc(f->children, cap * sizeof *nc);
        if (nc == NULL) return NULL;
        f->children = nc;
        f->cap_children = cap;
    }
    struct metrics_child *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->hash = h;
    if (f->n_labels > 0 && (c->values = calloc((size_t)f->n_labels, sizeof(char *))) == NULL)
        goto fail;
    for (int k = 0; k < f->n_labels; k++)
        if ((c->values[k] = strdup(values[k] != NULL ? values[k] : "")) == NULL) goto fail;
    if (f->kind == METRICS_HISTOGRAM &&
        (c->counts = calloc(f->n_buckets + 1, sizeof(uint64_t))) == NULL)
        goto fail;
    f->children[f->n_children] = c;
    size_t j = h & (f->index_size - 1);
    while (f->index[j] >= 0)
        j = (j + 1) & (f->index_size - 1);
    f->index[j] = (int32_t)f->n_children++;
    return c;
fail:
    for (int k = 0; c->values != NULL && k < f->n_labels; k++)
        free(c->values[k]);
    free(c->values);
    free(c);
    return NULL;
}

/* Counts one update that found no room in f. */
static void count_dropped(struct metrics_family *f)
{
    struct metrics_family *d = f->m->dropped;
    if (d == NULL || d == f) return; /* the dropped counter itself has one child per family */
    const char *v[1] = {f->name};
    metrics_add(d, v, 1);
}

/* Applies one update of kind `kind` to f's child for values. */
static void update(struct metrics_family *f, enum metrics_kind kind, const char *const *values,
                   double v)
{
    if (f == NULL || f->kind != kind || (values == NULL && f->n_labels > 0)) return;
    static const char *const none[1] = {""};
    if (values == NULL) values = none;
    pthread_mutex_lock(&f->mu);
    struct metrics_child *c = child_get(f, values);
    if (c != NULL) {
        if (kind == METRICS_COUNTER) {
            if (v > 0) c->value += v; /* counters never go down */
        } else if (kind == METRICS_GAUGE) {
            c->value = v;
        } else {
            size_t i = 0;
            while (i < f->n_buckets && v > f->buckets[i])
                i++;
            c->counts[i]++;
            c->sum += v;
            c->count++;
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (c == NULL) count_dropped(f);
}

void metrics_add(struct metrics_family *f, const char *const *values, double v)
{
    update(f, METRICS_COUNTER, values, v);
}

void metrics_set(struct metrics_family *f, const char *const *values, double v)
{
    update(f, METRICS_GAUGE, values, v);
}

void metrics_observe(struct metrics_family *f, const char *const *values, double v)
{
    update(f, METRICS_HISTOGRAM, values, v);
}

int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *user)
{
    if (m == NULL || fn == NULL) return -1;
    pthread_mutex_lock(&m->mu);
    int rc = -1;
    if (m->n_collectors < METRICS_COLLECTORS_MAX) {
        m->collectors[m->n_collectors++] = (struct metrics_collector){fn, user};
        rc = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}
