/*
 * filter_json.c — the JSON form of filters and attributes (docs/filtering.md
 * "The JSON form"), for the CLI and anyone scripting against it:
 *
 *   {"and": [F, ...]}  {"or": [F, ...]}  {"not": F}
 *   {"eq": {"key": V}}  {"in": {"key": [V, ...]}}
 *   {"range": {"key": {"gt"|"gte"|"lt"|"lte": N, ...}}}
 *   {"exists": "key"}  {"exists": {"key": false}}
 *   {"any": {"key": ["tag", ...]}}  {"all": {"key": ["tag", ...]}}
 *
 * Messages built here come from malloc, so protobuf-c's free_unpacked with
 * the default allocator frees them.
 */
#include "common/filter/filter.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jctx {
    char *err;
    size_t errlen;
};

static void *jfail(struct jctx *j, const char *path, const char *what)
{
    snprintf(j->err, j->errlen, "filter%s %s", path, what);
    return NULL;
}

static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

/* A JSON scalar (number, string, bool) as a value; NULL if it is none. */
static Vecshard__V1__AttributeValue *value_from(const cJSON *v)
{
    Vecshard__V1__AttributeValue *a = malloc(sizeof *a);
    if (!a) return NULL;
    vecshard__v1__attribute_value__init(a);
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
            a->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE;
            a->int_value = (int64_t)d;
        } else {
            a->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_DOUBLE_VALUE;
            a->double_value = d;
        }
    } else if (cJSON_IsString(v)) {
        a->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE;
        if (!(a->string_value = dupstr(v->valuestring))) {
            free(a);
            return NULL;
        }
    } else if (cJSON_IsBool(v)) {
        a->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_BOOL_VALUE;
        a->bool_value = cJSON_IsTrue(v);
    } else {
        free(a);
        return NULL;
    }
    return a;
}

/* A string array as a StringList; NULL if v is not one. */
static Vecshard__V1__StringList *strings_from(const cJSON *v)
{
    if (!cJSON_IsArray(v)) return NULL;
    Vecshard__V1__StringList *l = malloc(sizeof *l);
    if (!l) return NULL;
    vecshard__v1__string_list__init(l);
    int n = cJSON_GetArraySize(v);
    if (n > 0 && !(l->values = calloc((size_t)n, sizeof *l->values))) {
        free(l);
        return NULL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it) || !(l->values[l->n_values] = dupstr(it->valuestring))) {
            vecshard__v1__string_list__free_unpacked(l, NULL);
            return NULL;
        }
        l->n_values++;
    }
    return l;
}

static Vecshard__V1__Filter *parse(struct jctx *j, const cJSON *o, const char *path, int depth);

/* The single "key": value member of a condition's object. */
static const cJSON *only_member(struct jctx *j, const cJSON *o, const char *path, const char *op)
{
    char what[128];
    if (!cJSON_IsObject(o) || !o->child || o->child->next) {
        snprintf(what, sizeof what, "\"%s\" takes an object with one attribute name", op);
        return jfail(j, path, what);
    }
    return o->child;
}

static Vecshard__V1__Condition *new_cond(const char *key)
{
    Vecshard__V1__Condition *c = malloc(sizeof *c);
    if (!c) return NULL;
    vecshard__v1__condition__init(c);
    if (!(c->key = dupstr(key))) {
        free(c);
        return NULL;
    }
    return c;
}

static Vecshard__V1__Condition *parse_cond(struct jctx *j, const char *op, const cJSON *arg,
                                           const char *path)
{
    char p[512];
    snprintf(p, sizeof p, "%s.%s", path, op);
    if (strcmp(op, "exists") == 0 && cJSON_IsString(arg)) {
        Vecshard__V1__Condition *c = new_cond(arg->valuestring);
        Vecshard__V1__Exists *e = c ? malloc(sizeof *e) : NULL;
        if (!e) {
            free(c ? c->key : NULL);
            free(c);
            return jfail(j, p, "out of memory");
        }
        vecshard__v1__exists__init(e);
        e->exists = true;
        c->test_case = VECSHARD__V1__CONDITION__TEST_EXISTS;
        c->exists = e;
        return c;
    }
    const cJSON *m = only_member(j, arg, p, op);
    if (!m) return NULL;
    Vecshard__V1__Condition *c = new_cond(m->string);
    if (!c) return jfail(j, p, "out of memory");
    snprintf(p, sizeof p, "%s.%s.%s", path, op, m->string);
    if (strcmp(op, "eq") == 0) {
        c->test_case = VECSHARD__V1__CONDITION__TEST_EQ;
        if (!(c->eq = value_from(m))) goto badval;
    } else if (strcmp(op, "in") == 0) {
        c->test_case = VECSHARD__V1__CONDITION__TEST_IN_VALUES;
        Vecshard__V1__ValueList *l = malloc(sizeof *l);
        if (!l) goto nomem;
        vecshard__v1__value_list__init(l);
        c->in_values = l;
        if (!cJSON_IsArray(m)) {
            jfail(j, p, "must be an array of values");
            goto out;
        }
        int n = cJSON_GetArraySize(m);
        if (n > 0 && !(l->values = calloc((size_t)n, sizeof *l->values))) goto nomem;
        const cJSON *it;
        cJSON_ArrayForEach(it, m)
        {
            if (!(l->values[l->n_values] = value_from(it))) goto badval;
            l->n_values++;
        }
    } else if (strcmp(op, "range") == 0) {
        c->test_case = VECSHARD__V1__CONDITION__TEST_RANGE;
        Vecshard__V1__Range *r = malloc(sizeof *r);
        if (!r) goto nomem;
        vecshard__v1__range__init(r);
        c->range = r;
        if (!cJSON_IsObject(m)) {
            jfail(j, p, "must be an object of gt, gte, lt, lte");
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, m)
        {
            Vecshard__V1__Number **dst = strcmp(it->string, "gt") == 0    ? &r->gt
                                         : strcmp(it->string, "gte") == 0 ? &r->gte
                                         : strcmp(it->string, "lt") == 0  ? &r->lt
                                         : strcmp(it->string, "lte") == 0 ? &r->lte
                                                                           : NULL;
            if (!dst || !cJSON_IsNumber(it)) {
                char what[160];
                snprintf(what, sizeof what, "has \"%.64s\": a range takes numbers gt, gte, lt, lte",
                         it->string);
                jfail(j, p, what);
                goto out;
            }
            if (*dst || !(*dst = malloc(sizeof **dst))) goto nomem;
            vecshard__v1__number__init(*dst);
            (*dst)->value = it->valuedouble;
        }
    } else if (strcmp(op, "exists") == 0) {
        c->test_case = VECSHARD__V1__CONDITION__TEST_EXISTS;
        Vecshard__V1__Exists *e = malloc(sizeof *e);
        if (!e) goto nomem;
        vecshard__v1__exists__init(e);
        c->exists = e;
        if (!cJSON_IsBool(m)) {
            jfail(j, p, "must be true or false");
            goto out;
        }
        e->exists = cJSON_IsTrue(m);
    } else if (strcmp(op, "any") == 0 || strcmp(op, "all") == 0) {
        bool any = op[1] == 'n';
        c->test_case = any ? VECSHARD__V1__CONDITION__TEST_TAGS_ANY : VECSHARD__V1__CONDITION__TEST_TAGS_ALL;
        Vecshard__V1__StringList *l = strings_from(m);
        if (!l) {
            jfail(j, p, "must be an array of strings");
            goto out;
        }
        if (any)
            c->tags_any = l;
        else
            c->tags_all = l;
    }
    return c;
badval:
    jfail(j, p, "must be a number, a string or a bool");
    goto out;
nomem:
    jfail(j, p, "out of memory");
out:
    vecshard__v1__condition__free_unpacked(c, NULL);
    return NULL;
}

static Vecshard__V1__Filter *parse(struct jctx *j, const cJSON *o, const char *path, int depth)
{
    if (depth > FILTER_MAX_DEPTH) return jfail(j, path, "is nested too deep");
    if (!cJSON_IsObject(o) || !o->child || o->child->next)
        return jfail(j, path,
                     "must be an object with one operator: and, or, not, eq, in, range, exists, "
                     "any, all");
    const char *op = o->child->string;
    const cJSON *arg = o->child;
    char p[512];
    Vecshard__V1__Filter *f = malloc(sizeof *f);
    if (!f) return jfail(j, path, "out of memory");
    vecshard__v1__filter__init(f);
    if (strcmp(op, "and") == 0 || strcmp(op, "or") == 0) {
        bool all = op[0] == 'a';
        snprintf(p, sizeof p, "%s.%s", path, op);
        if (!cJSON_IsArray(arg)) {
            jfail(j, p, "must be an array of filters");
            goto fail;
        }
        Vecshard__V1__FilterList *l = malloc(sizeof *l);
        if (!l) goto fail;
        vecshard__v1__filter_list__init(l);
        f->expr_case = all ? VECSHARD__V1__FILTER__EXPR_ALL_OF : VECSHARD__V1__FILTER__EXPR_ANY_OF;
        if (all)
            f->all_of = l;
        else
            f->any_of = l;
        int n = cJSON_GetArraySize(arg);
        if (n > 0 && !(l->filters = calloc((size_t)n, sizeof *l->filters))) goto fail;
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, arg)
        {
            snprintf(p, sizeof p, "%s.%s[%d]", path, op, i++);
            if (!(l->filters[l->n_filters] = parse(j, it, p, depth + 1))) goto fail;
            l->n_filters++;
        }
        return f;
    }
    if (strcmp(op, "not") == 0) {
        snprintf(p, sizeof p, "%s.not", path);
        f->expr_case = VECSHARD__V1__FILTER__EXPR_NOT_FILTER;
        if (!(f->not_filter = parse(j, arg, p, depth + 1))) goto fail;
        return f;
    }
    static const char *conds[] = {"eq", "in", "range", "exists", "any", "all"};
    for (size_t i = 0; i < sizeof conds / sizeof *conds; i++)
        if (strcmp(op, conds[i]) == 0) {
            f->expr_case = VECSHARD__V1__FILTER__EXPR_CONDITION;
            if (!(f->condition = parse_cond(j, op, arg, path))) goto fail;
            return f;
        }
    char what[160];
    snprintf(what, sizeof what,
             "has unknown operator \"%.64s\" (and, or, not, eq, in, range, exists, any, all)", op);
    jfail(j, path, what);
fail:
    vecshard__v1__filter__free_unpacked(f, NULL);
    return NULL;
}

Vecshard__V1__Filter *filter_from_json(const char *json, char *err, size_t errlen)
{
    struct jctx j = {err, errlen};
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        snprintf(err, errlen, "filter is not valid JSON (near '%.20s')", at ? at : "");
        return NULL;
    }
    Vecshard__V1__Filter *f = parse(&j, root, "", 1);
    cJSON_Delete(root);
    return f;
}

void filter_attrs_free(Vecshard__V1__Point__AttributesEntry **e, size_t n)
{
    for (size_t i = 0; e && i < n; i++)
        if (e[i]) protobuf_c_message_free_unpacked(&e[i]->base, NULL);
    free(e);
}

bool filter_attrs_from_json(const char *json, Vecshard__V1__Point__AttributesEntry ***out,
                            size_t *nout, char *err, size_t errlen)
{
    *out = NULL;
    *nout = 0;
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "attributes must be a JSON object");
        cJSON_Delete(root);
        return false;
    }
    int n = cJSON_GetArraySize(root);
    Vecshard__V1__Point__AttributesEntry **e = n ? calloc((size_t)n, sizeof *e) : NULL;
    size_t k = 0;
    const cJSON *it;
    if (n && !e) goto nomem;
    cJSON_ArrayForEach(it, root)
    {
        Vecshard__V1__Point__AttributesEntry *x = malloc(sizeof *x);
        if (!x) goto nomem;
        vecshard__v1__point__attributes_entry__init(x);
        e[k++] = x;
        if (!(x->key = dupstr(it->string))) goto nomem;
        if (cJSON_IsArray(it)) {
            Vecshard__V1__StringList *l = strings_from(it);
            if (!l) {
                snprintf(err, errlen, "attribute '%.64s': an array must hold strings (tags)",
                         it->string);
                goto fail;
            }
            if (!(x->value = malloc(sizeof *x->value))) {
                vecshard__v1__string_list__free_unpacked(l, NULL);
                goto nomem;
            }
            vecshard__v1__attribute_value__init(x->value);
            x->value->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS;
            x->value->tags = l;
        } else if (!(x->value = value_from(it))) {
            snprintf(err, errlen, "attribute '%.64s' must be a number, a string, a bool or an "
                     "array of strings", it->string);
            goto fail;
        }
    }
    cJSON_Delete(root);
    *out = e;
    *nout = k;
    return true;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    filter_attrs_free(e, k);
    cJSON_Delete(root);
    return false;
}

char *filter_attrs_to_json(Vecshard__V1__Point__AttributesEntry *const *e, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        const Vecshard__V1__AttributeValue *v = e[i]->value;
        cJSON *x = NULL;
        switch (v ? v->kind_case : 0) {
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE: {
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", (long long)v->int_value);
            x = cJSON_CreateRaw(buf); /* exact, also beyond 2^53 */
            break;
        }
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_DOUBLE_VALUE: {
            char buf[40];
            snprintf(buf, sizeof buf, "%.17g", v->double_value);
            if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
            x = cJSON_CreateRaw(buf);
            break;
        }
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE:
            x = cJSON_CreateString(v->string_value);
            break;
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_BOOL_VALUE:
            x = cJSON_CreateBool(v->bool_value);
            break;
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS:
            x = cJSON_CreateStringArray((const char *const *)v->tags->values,
                                        (int)v->tags->n_values);
            break;
        default:
            x = cJSON_CreateNull();
        }
        if (!x || !cJSON_AddItemToObject(o, e[i]->key, x)) {
            cJSON_Delete(x);
            cJSON_Delete(o);
            return NULL;
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
