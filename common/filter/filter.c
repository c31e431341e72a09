/*
 * filter.c — checking and compiling a Filter tree, and testing a point's
 * attribute blob against it.
 *
 * Numbers compare by value across int and double (as long double, which
 * holds every int64 and every double exactly on x86-64); strings byte for
 * byte; a string attribute behaves as a one-tag list for eq, in and tags_*.
 */
#include "common/filter/filter.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct compiler {
    struct filter *f;
    uint32_t cap_nodes, cap_kids, cap_vals;
    char *err;
    size_t errlen;
    bool nomem;
};

static int bad(struct compiler *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct compiler *c, const char *path, const char *fmt, ...)
{
    int n = snprintf(c->err, c->errlen, "%s ", path);
    if (n < 0 || (size_t)n >= c->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* The path of a sub-node into dst (cut at FILTER_ERR_MAX: the message stays readable). */
static void subpath(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void subpath(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, FILTER_ERR_MAX, fmt, ap);
    va_end(ap);
}

/* Grows an array of elements of `size` to hold `need`; false when out of memory. */
static bool grow(void **arr, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap) return true;
    uint32_t c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    void *p = realloc(*arr, (size_t)c * size);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

static int new_node(struct compiler *c, const char *path, uint32_t *out)
{
    struct filter *f = c->f;
    if (f->nnodes >= FILTER_MAX_NODES)
        return bad(c, path, "makes the tree larger than %d nodes", FILTER_MAX_NODES);
    if (!grow((void **)&f->nodes, &c->cap_nodes, f->nnodes + 1, sizeof *f->nodes)) {
        c->nomem = true;
        return -1;
    }
    memset(&f->nodes[f->nnodes], 0, sizeof f->nodes[0]);
    *out = f->nnodes++;
    return 0;
}

/* A value of eq / in into vals; tags_* pass strings_only. */
static int add_value(struct compiler *c, const char *path, const Vecshard__V1__AttributeValue *v)
{
    struct filter *f = c->f;
    if (!grow((void **)&f->vals, &c->cap_vals, f->nvals + 1, sizeof *f->vals)) {
        c->nomem = true;
        return -1;
    }
    struct filter_value *x = &f->vals[f->nvals];
    memset(x, 0, sizeof *x);
    switch (v ? v->kind_case : VECSHARD__V1__ATTRIBUTE_VALUE__KIND__NOT_SET) {
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE:
        x->type = ATTR_INT;
        x->i = v->int_value;
        break;
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_DOUBLE_VALUE:
        if (!isfinite(v->double_value)) return bad(c, path, "is %g: it must be finite", v->double_value);
        x->type = ATTR_DOUBLE;
        x->d = v->double_value;
        break;
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE:
        x->type = ATTR_STRING;
        x->s = v->string_value;
        x->len = (uint32_t)strlen(v->string_value);
        if (x->len > ATTR_STRING_MAX)
            return bad(c, path, "has %u bytes, the limit is %d", x->len, ATTR_STRING_MAX);
        break;
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_BOOL_VALUE:
        x->type = ATTR_BOOL;
        x->b = v->bool_value;
        break;
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS:
        return bad(c, path, "is a tags list: compare tags with tags_any or tags_all");
    default:
        return bad(c, path, "has no value");
    }
    f->nvals++;
    return 0;
}

static int add_string(struct compiler *c, const char *path, const char *s)
{
    struct filter *f = c->f;
    if (!grow((void **)&f->vals, &c->cap_vals, f->nvals + 1, sizeof *f->vals)) {
        c->nomem = true;
        return -1;
    }
    struct filter_value *x = &f->vals[f->nvals];
    memset(x, 0, sizeof *x);
    x->type = ATTR_STRING;
    x->s = s ? s : "";
    x->len = (uint32_t)strlen(x->s);
    if (x->len > ATTR_STRING_MAX)
        return bad(c, path, "has %u bytes, the limit is %d", x->len, ATTR_STRING_MAX);
    f->nvals++;
    return 0;
}

static int compile_cond(struct compiler *c, const Vecshard__V1__Condition *cond, const char *path,
                        uint32_t n)
{
    char sub[FILTER_ERR_MAX];
    const char *key = cond->key ? cond->key : "";
    size_t klen = strlen(key);
    if (!attrs_name_ok(key, klen))
        return bad(c, path, "has key '%.64s': an attribute name matches [A-Za-z0-9_.-]{1,%d}",
                   key, ATTR_NAME_MAX);
    struct filter_node *x = &c->f->nodes[n];
    x->key = key;
    x->key_len = (uint32_t)klen;
    x->first = c->f->nvals;
    switch (cond->test_case) {
    case VECSHARD__V1__CONDITION__TEST_EQ:
        x->op = FILTER_EQ;
        subpath(sub, "%s.eq", path);
        if (add_value(c, sub, cond->eq)) return -1;
        break;
    case VECSHARD__V1__CONDITION__TEST_IN_VALUES: {
        x->op = FILTER_IN;
        size_t nv = cond->in_values ? cond->in_values->n_values : 0;
        if (nv < 1 || nv > FILTER_MAX_VALUES)
            return bad(c, path, "in_values has %zu values, it takes 1..%d", nv, FILTER_MAX_VALUES);
        for (size_t i = 0; i < nv; i++) {
            subpath(sub, "%s.in_values[%zu]", path, i);
            if (add_value(c, sub, cond->in_values->values[i])) return -1;
        }
        break;
    }
    case VECSHARD__V1__CONDITION__TEST_RANGE: {
        x->op = FILTER_RANGE;
        const Vecshard__V1__Range *r = cond->range;
        const Vecshard__V1__Number *b[4] = {r ? r->gt : NULL, r ? r->gte : NULL, r ? r->lt : NULL,
                                            r ? r->lte : NULL};
        double *dst[4] = {&x->gt, &x->gte, &x->lt, &x->lte};
        static const char *names[4] = {"gt", "gte", "lt", "lte"};
        for (int i = 0; i < 4; i++) {
            if (!b[i]) continue;
            if (isnan(b[i]->value)) return bad(c, path, "range.%s is NaN", names[i]);
            *dst[i] = b[i]->value;
            x->bounds |= 1u << i;
        }
        if (!x->bounds) return bad(c, path, "range has no bound (set gt, gte, lt or lte)");
        break;
    }
    case VECSHARD__V1__CONDITION__TEST_EXISTS:
        x->op = cond->exists && !cond->exists->exists ? FILTER_MISSING : FILTER_EXISTS;
        break;
    case VECSHARD__V1__CONDITION__TEST_TAGS_ANY:
    case VECSHARD__V1__CONDITION__TEST_TAGS_ALL: {
        bool any = cond->test_case == VECSHARD__V1__CONDITION__TEST_TAGS_ANY;
        x->op = any ? FILTER_TAGS_ANY : FILTER_TAGS_ALL;
        const Vecshard__V1__StringList *l = any ? cond->tags_any : cond->tags_all;
        size_t nv = l ? l->n_values : 0;
        if (nv < 1 || nv > FILTER_MAX_VALUES)
            return bad(c, path, "%s has %zu values, it takes 1..%d", any ? "tags_any" : "tags_all",
                       nv, FILTER_MAX_VALUES);
        for (size_t i = 0; i < nv; i++) {
            subpath(sub, "%s.%s[%zu]", path, any ? "tags_any" : "tags_all", i);
            if (add_string(c, sub, l->values[i])) return -1;
        }
        break;
    }
    default:
        return bad(c, path, "has no test (set eq, in_values, range, exists, tags_any or tags_all)");
    }
    c->f->nodes[n].count = c->f->nvals - c->f->nodes[n].first;
    return 0;
}

static int compile_node(struct compiler *c, const Vecshard__V1__Filter *f, const char *path,
                        int depth, uint32_t *out)
{
    char sub[FILTER_ERR_MAX];
    if (!f) return bad(c, path, "is missing");
    if (depth > FILTER_MAX_DEPTH)
        return bad(c, path, "is nested deeper than %d levels", FILTER_MAX_DEPTH);
    uint32_t n;
    if (new_node(c, path, &n)) return -1;
    *out = n;
    switch (f->expr_case) {
    case VECSHARD__V1__FILTER__EXPR_ALL_OF:
    case VECSHARD__V1__FILTER__EXPR_ANY_OF: {
        bool all = f->expr_case == VECSHARD__V1__FILTER__EXPR_ALL_OF;
        const Vecshard__V1__FilterList *l = all ? f->all_of : f->any_of;
        size_t nk = l ? l->n_filters : 0;
        if (nk < 1 || nk > FILTER_MAX_CHILDREN)
            return bad(c, path, "%s has %zu sub-filters, it takes 1..%d", all ? "all_of" : "any_of",
                       nk, FILTER_MAX_CHILDREN);
        uint32_t kids[FILTER_MAX_CHILDREN];
        for (size_t i = 0; i < nk; i++) {
            subpath(sub, "%s.%s[%zu]", path, all ? "all_of" : "any_of", i);
            if (compile_node(c, l->filters[i], sub, depth + 1, &kids[i])) return -1;
        }
        struct filter *fl = c->f;
        if (!grow((void **)&fl->kids, &c->cap_kids, fl->nkids + (uint32_t)nk, sizeof *fl->kids)) {
            c->nomem = true;
            return -1;
        }
        fl->nodes[n].op = all ? FILTER_AND : FILTER_OR;
        fl->nodes[n].first = fl->nkids;
        fl->nodes[n].count = (uint32_t)nk;
        memcpy(fl->kids + fl->nkids, kids, nk * sizeof *kids);
        fl->nkids += (uint32_t)nk;
        return 0;
    }
    case VECSHARD__V1__FILTER__EXPR_NOT_FILTER: {
        uint32_t k;
        subpath(sub, "%s.not_filter", path);
        if (compile_node(c, f->not_filter, sub, depth + 1, &k)) return -1;
        c->f->nodes[n].op = FILTER_NOT;
        c->f->nodes[n].first = k;
        return 0;
    }
    case VECSHARD__V1__FILTER__EXPR_CONDITION:
        subpath(sub, "%s.condition", path);
        if (!f->condition) return bad(c, sub, "is missing");
        return compile_cond(c, f->condition, sub, n);
    default:
        return bad(c, path, "is empty (set all_of, any_of, not_filter or condition)");
    }
}

int filter_compile(const Vecshard__V1__Filter *f, const char *what, struct filter **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    struct filter *fl = calloc(1, sizeof *fl);
    if (!fl) return -2;
    struct compiler c = {.f = fl, .err = err, .errlen = errlen};
    uint32_t root;
    if (compile_node(&c, f, what, 1, &root)) {
        filter_free(fl);
        if (c.nomem) snprintf(err, errlen, "out of memory compiling %s", what);
        return c.nomem ? -2 : -1;
    }
    fl->root = root;
    *out = fl;
    return 0;
}

void filter_free(struct filter *f)
{
    if (!f) return;
    free(f->nodes);
    free(f->kids);
    free(f->vals);
    free(f);
}

/* ------------------------------------------------------------ matching */

static bool str_eq(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* True if the string or tags attribute a contains s. */
static bool contains(const struct attr_view *a, const char *s, uint32_t len)
{
    if (a->type == ATTR_STRING) return str_eq(a->s, a->len, s, len);
    if (a->type != ATTR_TAGS) return false;
    const char *it = a->s, *t;
    uint32_t tl;
    for (uint32_t j = 0; j < a->len; j++) {
        attr_tag_next(&it, &t, &tl);
        if (str_eq(t, tl, s, len)) return true;
    }
    return false;
}

static bool num_of(const struct attr_view *a, long double *x)
{
    if (a->type == ATTR_INT) {
        *x = (long double)a->i;
        return true;
    }
    if (a->type == ATTR_DOUBLE) {
        *x = (long double)a->d;
        return true;
    }
    return false;
}

static bool value_eq(const struct attr_view *a, const struct filter_value *v)
{
    long double x;
    switch (v->type) {
    case ATTR_INT:
        if (a->type == ATTR_INT) return a->i == v->i;
        return num_of(a, &x) && x == (long double)v->i;
    case ATTR_DOUBLE:
        return num_of(a, &x) && x == (long double)v->d;
    case ATTR_STRING:
        return contains(a, v->s, v->len);
    case ATTR_BOOL:
        return a->type == ATTR_BOOL && a->b == v->b;
    default:
        return false;
    }
}

bool filter_match_node(const struct filter *f, uint32_t n, const uint8_t *blob, size_t len)
{
    const struct filter_node *x = &f->nodes[n];
    struct attr_view a;
    switch (x->op) {
    case FILTER_AND:
        for (uint32_t i = 0; i < x->count; i++)
            if (!filter_match_node(f, f->kids[x->first + i], blob, len)) return false;
        return true;
    case FILTER_OR:
        for (uint32_t i = 0; i < x->count; i++)
            if (filter_match_node(f, f->kids[x->first + i], blob, len)) return true;
        return false;
    case FILTER_NOT:
        return !filter_match_node(f, x->first, blob, len);
    case FILTER_EXISTS:
        return len && attrs_find(blob, len, x->key, x->key_len, &a);
    case FILTER_MISSING:
        return !(len && attrs_find(blob, len, x->key, x->key_len, &a));
    default:
        break;
    }
    if (!len || !attrs_find(blob, len, x->key, x->key_len, &a)) return false;
    switch (x->op) {
    case FILTER_EQ:
    case FILTER_IN:
    case FILTER_TAGS_ANY:
        for (uint32_t i = 0; i < x->count; i++)
            if (value_eq(&a, &f->vals[x->first + i])) return true;
        return false;
    case FILTER_TAGS_ALL:
        for (uint32_t i = 0; i < x->count; i++)
            if (!value_eq(&a, &f->vals[x->first + i])) return false;
        return true;
    case FILTER_RANGE: {
        long double v;
        if (!num_of(&a, &v)) return false;
        if ((x->bounds & FILTER_GT) && !(v > (long double)x->gt)) return false;
        if ((x->bounds & FILTER_GTE) && !(v >= (long double)x->gte)) return false;
        if ((x->bounds & FILTER_LT) && !(v < (long double)x->lt)) return false;
        if ((x->bounds & FILTER_LTE) && !(v <= (long double)x->lte)) return false;
        return true;
    }
    default:
        return false;
    }
}

bool filter_match(const struct filter *f, const uint8_t *blob, size_t len)
{
    return filter_match_node(f, f->root, blob, len);
}

void filter_range_interval(const struct filter_node *n, double *lo, double *hi)
{
    *lo = -INFINITY;
    *hi = INFINITY;
    if ((n->bounds & FILTER_GT) && n->gt > *lo) *lo = n->gt;
    if ((n->bounds & FILTER_GTE) && n->gte > *lo) *lo = n->gte;
    if ((n->bounds & FILTER_LT) && n->lt < *hi) *hi = n->lt;
    if ((n->bounds & FILTER_LTE) && n->lte < *hi) *hi = n->lte;
}
