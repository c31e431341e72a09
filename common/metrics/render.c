/*
 * render.c — the Prometheus text exposition format 0.0.4: the output buffer
 * of one scrape, escaping (label values: backslash, double quote, newline;
 * HELP text: backslash, newline), numbers (shortest decimal that reads back
 * as the same double; NaN, +Inf, -Inf), histograms as cumulative
 * _bucket{le=...} series ending in le="+Inf", then _sum and _count, and the
 * collector side of the API (metrics_family, metrics_sample).
 *
 * Families render in creation order, then collectors in the order they were
 * added; children in the order of their first update.
 */
#define _GNU_SOURCE
#include "common/metrics/metrics_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for n more bytes plus a NUL. */
static bool reserve(struct metrics_writer *w, size_t n)
{
    if (w->failed) return false;
    if (w->len + n + 1 <= w->cap) return true;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + n + 1)
        cap *= 2;
    char *b = realloc(w->buf, cap);
    if (b == NULL) {
        w->failed = true;
        return false;
    }
    w->buf = b;
    w->cap = cap;
    return true;
}

void mw_printf(struct metrics_writer *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(w, (size_t)n)) return;
    if ((size_t)n < sizeof small) {
        memcpy(w->buf + w->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(w->buf + w->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    w->len += (size_t)n;
}

/* Appends s with \\, \n (and \" when quoted) escaped. */
static void put_escaped(struct metrics_writer *w, const char *s, bool quoted)
{
    for (; *s != '\0'; s++) {
        const char *e = NULL;
        if (*s == '\\')
            e = "\\\\";
        else if (*s == '\n')
            e = "\\n";
        else if (*s == '"' && quoted)
            e = "\\\"";
        if (e != NULL) {
            if (!reserve(w, 2)) return;
            memcpy(w->buf + w->len, e, 2);
            w->len += 2;
        } else {
            if (!reserve(w, 1)) return;
            w->buf[w->len++] = *s;
        }
    }
    if (!w->failed) w->buf[w->len] = '\0';
}

void mw_number(struct metrics_writer *w, double v)
{
    if (isnan(v)) {
        mw_printf(w, "NaN");
    } else if (isinf(v)) {
        mw_printf(w, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        mw_printf(w, "%.0f", v);
    } else {
        char b[40];
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(b, sizeof b, "%.*g", prec, v);
            if (strtod(b, NULL) == v) break;
        }
        mw_printf(w, "%s", b);
    }
}

void mw_header(struct metrics_writer *w, const char *name, const char *type, const char *help)
{
    mw_printf(w, "# HELP %s ", name);
    put_escaped(w, help != NULL ? help : "", false);
    mw_printf(w, "\n# TYPE %s %s\n", name, type);
}

void mw_sample(struct metrics_writer *w, const char *name, const char *suffix,
               const char *const *names, const char *const *values, int n,
               const char *extra_name, const char *extra_value, double v)
{
    mw_printf(w, "%s%s", name, suffix != NULL ? suffix : "");
    if (n > 0 || extra_name != NULL) {
        mw_printf(w, "{");
        for (int k = 0; k < n; k++) {
            mw_printf(w, "%s%s=\"", k > 0 ? "," : "", names[k]);
            put_escaped(w, values[k] != NULL ? values[k] : "", true);
            mw_printf(w, "\"");
        }
        if (extra_name != NULL) mw_printf(w, "%s%s=\"%s\"", n > 0 ? "," : "", extra_name, extra_value);
        mw_printf(w, "}");
    }
    mw_printf(w, " ");
    mw_number(w, v);
    mw_printf(w, "\n");
}

static const char *kind_name(enum metrics_kind k)
{
    return k == METRICS_COUNTER ? "counter" : k == METRICS_GAUGE ? "gauge" : "histogram";
}

void mw_family(struct metrics_writer *w, struct metrics_family *f)
{
    const char *const *names = (const char *const *)f->labels;
    mw_header(w, f->name, kind_name(f->kind), f->help);
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n_children; i++) {
        const struct metrics_child *c = f->children[i];
        const char *const *vals = (const char *const *)c->values;
        if (f->kind != METRICS_HISTOGRAM) {
            mw_sample(w, f->name, NULL, names, vals, f->n_labels, NULL, NULL, c->value);
            continue;
        }
        uint64_t cum = 0;
        for (size_t b = 0; b <= f->n_buckets; b++) {
            cum += c->counts[b];
            char le[40] = "+Inf";
            if (b < f->n_buckets) {
                struct metrics_writer tmp = {0};
                mw_number(&tmp, f->buckets[b]);
                snprintf(le, sizeof le, "%s", tmp.buf != NULL ? tmp.buf : "0");
                free(tmp.buf);
            }
            mw_sample(w, f->name, "_bucket", names, vals, f->n_labels, "le", le, (double)cum);
        }
        mw_sample(w, f->name, "_sum", names, vals, f->n_labels, NULL, NULL, c->sum);
        mw_sample(w, f->name, "_count", names, vals, f->n_labels, NULL, NULL, (double)c->count);
    }
    pthread_mutex_unlock(&f->mu);
}

/* ------------------------------------------------------------ collectors */

void metrics_family(struct metrics_writer *w, const char *name, const char *type, const char *help)
{
    if (w == NULL || !metrics_name_ok(name)) return;
    if (type == NULL ||
        (strcmp(type, "gauge") != 0 && strcmp(type, "counter") != 0 && strcmp(type, "untyped") != 0))
        type = "untyped";
    w->family = name;
    mw_header(w, name, type, help);
}

void metrics_sample(struct metrics_writer *w, const char *name, double v, ...)
{
    if (w == NULL || !metrics_name_ok(name)) return;
    const char *names[16], *values[16];
    int n = 0;
    va_list ap;
    va_start(ap, v);
    for (const char *k; (k = va_arg(ap, const char *)) != NULL;) {
        const char *val = va_arg(ap, const char *);
        if (n < 16) {
            names[n] = k;
            values[n++] = val;
        }
    }
    va_end(ap);
    mw_sample(w, name, NULL, names, values, n, NULL, NULL, v);
}

char *metrics_render(struct metrics *m, size_t *len)
{
    struct metrics_writer w = {0};
    struct metrics_family *fams[METRICS_FAMILIES_MAX];
    struct metrics_collector cols[METRICS_COLLECTORS_MAX];
    pthread_mutex_lock(&m->mu);
    int nf = m->n_families, nc = m->n_collectors;
    memcpy(fams, m->families, (size_t)nf * sizeof fams[0]);
    memcpy(cols, m->collectors, (size_t)nc * sizeof cols[0]);
    pthread_mutex_unlock(&m->mu);

    reserve(&w, 0);
    for (int i = 0; i < nf; i++)
        mw_family(&w, fams[i]);
    for (int i = 0; i < nc; i++)
        cols[i].fn(&w, cols[i].user);
    if (w.failed) {
        free(w.buf);
        return NULL;
    }
    w.buf[w.len] = '\0';
    if (len != NULL) *len = w.len;
    return w.buf;
}
