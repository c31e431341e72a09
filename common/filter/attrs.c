/*
 * attrs.c — the check, the canonical encoding and the decoding of point
 * attributes (the blob format is in attrs.h).
 */
#include "common/filter/attrs.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool attrs_name_ok(const char *name, size_t len)
{
    if (len < 1 || len > ATTR_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* Order of names in a blob: bytes, then the shorter first. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

static size_t value_size(const Vecshard__V1__AttributeValue *v);

bool attrs_check(Vecshard__V1__Point__AttributesEntry *const *e, size_t n, const char *what,
                 char *err, size_t errlen)
{
    if (n > ATTR_MAX_COUNT) {
        snprintf(err, errlen, "%s.attributes has %zu entries, the limit is %d", what, n,
                 ATTR_MAX_COUNT);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = e[i] && e[i]->key ? e[i]->key : "";
        size_t klen = strlen(k);
        if (!attrs_name_ok(k, klen)) {
            snprintf(err, errlen,
                     "%s.attributes['%.64s'] has an invalid name: it must match "
                     "[A-Za-z0-9_.-]{1,%d}",
                     what, k, ATTR_NAME_MAX);
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(e[j]->key, k) == 0) {
                snprintf(err, errlen, "%s.attributes has the name '%s' twice", what, k);
                return false;
            }
        const Vecshard__V1__AttributeValue *v = e[i]->value;
        switch (v ? v->kind_case : VECSHARD__V1__ATTRIBUTE_VALUE__KIND__NOT_SET) {
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE:
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_BOOL_VALUE:
            break;
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_DOUBLE_VALUE:
            if (!isfinite(v->double_value)) {
                snprintf(err, errlen, "%s.attributes['%s'] is %g: a double must be finite", what,
                         k, v->double_value);
                return false;
            }
            break;
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE: {
            size_t len = v->string_value ? strlen(v->string_value) : 0;
            if (len > ATTR_STRING_MAX) {
                snprintf(err, errlen, "%s.attributes['%s'] has %zu bytes, the limit is %d", what,
                         k, len, ATTR_STRING_MAX);
                return false;
            }
            break;
        }
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS: {
            const Vecshard__V1__StringList *t = v->tags;
            size_t nt = t ? t->n_values : 0;
            if (nt > ATTR_TAGS_MAX) {
                snprintf(err, errlen, "%s.attributes['%s'] has %zu tags, the limit is %d", what,
                         k, nt, ATTR_TAGS_MAX);
                return false;
            }
            for (size_t j = 0; j < nt; j++) {
                size_t len = t->values[j] ? strlen(t->values[j]) : 0;
                if (len > ATTR_STRING_MAX) {
                    snprintf(err, errlen,
                             "%s.attributes['%s'].tags[%zu] has %zu bytes, the limit is %d", what,
                             k, j, len, ATTR_STRING_MAX);
                    return false;
                }
            }
            break;
        }
        default:
            snprintf(err, errlen, "%s.attributes['%s'] has no value (set one kind)", what, k);
            return false;
        }
    }
    size_t size = attrs_encoded_size(e, n);
    if (size > ATTR_BLOB_MAX) {
        snprintf(err, errlen, "%s.attributes encode to %zu bytes, the limit is %u", what, size,
                 ATTR_BLOB_MAX);
        return false;
    }
    return true;
}

/* Bytes of one entry's value. */
static size_t value_size(const Vecshard__V1__AttributeValue *v)
{
    switch (v->kind_case) {
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE:
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_DOUBLE_VALUE:
        return 8;
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_BOOL_VALUE:
        return 1;
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE:
        return 2 + strlen(v->string_value);
    case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS: {
        size_t s = 1;
        for (size_t j = 0; v->tags && j < v->tags->n_values; j++)
            s += 2 + strlen(v->tags->values[j]);
        return s;
    }
    default:
        return 0;
    }
}

size_t attrs_encoded_size(Vecshard__V1__Point__AttributesEntry *const *e, size_t n)
{
    size_t s = 1;
    for (size_t i = 0; i < n; i++)
        s += 2 + strlen(e[i]->key) + value_size(e[i]->value);
    return s;
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
    size_t len = strlen(s);
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    memcpy(p + 2, s, len);
    return p + 2 + len;
}

size_t attrs_encode(Vecshard__V1__Point__AttributesEntry *const *e, size_t n, uint8_t *out)
{
    /* Insertion order of names sorted (n <= 64). */
    uint8_t order[ATTR_MAX_COUNT];
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        size_t ki = strlen(e[i]->key);
        while (j > 0 &&
               name_cmp(e[order[j - 1]]->key, strlen(e[order[j - 1]]->key), e[i]->key, ki) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (uint8_t)i;
    }
    uint8_t *p = out;
    *p++ = (uint8_t)n;
    for (size_t o = 0; o < n; o++) {
        const Vecshard__V1__Point__AttributesEntry *x = e[order[o]];
        size_t klen = strlen(x->key);
        *p++ = (uint8_t)klen;
        memcpy(p, x->key, klen);
        p += klen;
        const Vecshard__V1__AttributeValue *v = x->value;
        switch (v->kind_case) {
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE:
            *p++ = ATTR_INT;
            memcpy(p, &v->int_value, 8);
            p += 8;
            break;
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_DOUBLE_VALUE: {
            *p++ = ATTR_DOUBLE;
            double d = v->double_value == 0 ? 0.0 : v->double_value; /* -0 is 0 */
            memcpy(p, &d, 8);
            p += 8;
            break;
        }
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_BOOL_VALUE:
            *p++ = ATTR_BOOL;
            *p++ = v->bool_value ? 1 : 0;
            break;
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE:
            *p++ = ATTR_STRING;
            p = put_str(p, v->string_value);
            break;
        case VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS:
            *p++ = ATTR_TAGS;
            *p++ = (uint8_t)(v->tags ? v->tags->n_values : 0);
            for (size_t j = 0; v->tags && j < v->tags->n_values; j++)
                p = put_str(p, v->tags->values[j]);
            break;
        default:
            break;
        }
    }
    return (size_t)(p - out);
}

/* Reads one entry at *pp (bounded by end) into *v; false if malformed. */
static bool read_entry(const uint8_t **pp, const uint8_t *end, struct attr_view *v)
{
    const uint8_t *p = *pp;
    if (p >= end) return false;
    uint32_t nl = *p++;
    if ((size_t)(end - p) < nl + 1u) return false;
    v->name = (const char *)p;
    v->name_len = nl;
    p += nl;
    v->type = (enum attr_type) * p++;
    switch (v->type) {
    case ATTR_INT:
    case ATTR_DOUBLE:
        if (end - p < 8) return false;
        if (v->type == ATTR_INT)
            memcpy(&v->i, p, 8);
        else
            memcpy(&v->d, p, 8);
        p += 8;
        break;
    case ATTR_BOOL:
        if (end - p < 1) return false;
        v->b = *p++ != 0;
        break;
    case ATTR_STRING: {
        if (end - p < 2) return false;
        uint32_t len = (uint32_t)p[0] | (uint32_t)p[1] << 8;
        p += 2;
        if ((size_t)(end - p) < len) return false;
        v->s = (const char *)p;
        v->len = len;
        p += len;
        break;
    }
    case ATTR_TAGS: {
        if (end - p < 1) return false;
        uint32_t nt = *p++;
        v->s = (const char *)p;
        v->len = nt;
        for (uint32_t j = 0; j < nt; j++) {
            if (end - p < 2) return false;
            uint32_t len = (uint32_t)p[0] | (uint32_t)p[1] << 8;
            p += 2;
            if ((size_t)(end - p) < len) return false;
            p += len;
        }
        break;
    }
    default:
        return false;
    }
    *pp = p;
    return true;
}

bool attrs_blob_check(const uint8_t *blob, size_t len)
{
    if (len < 1 || len > ATTR_BLOB_MAX) return false;
    const uint8_t *p = blob + 1, *end = blob + len;
    uint32_t n = blob[0];
    if (n > ATTR_MAX_COUNT) return false;
    struct attr_view prev = {0}, v = {0};
    for (uint32_t i = 0; i < n; i++) {
        if (!read_entry(&p, end, &v)) return false;
        if (!attrs_name_ok(v.name, v.name_len)) return false;
        if (i > 0 && name_cmp(prev.name, prev.name_len, v.name, v.name_len) >= 0) return false;
        if (v.type == ATTR_DOUBLE && !isfinite(v.d)) return false;
        if (v.type == ATTR_STRING && v.len > ATTR_STRING_MAX) return false;
        if (v.type == ATTR_TAGS) {
            if (v.len > ATTR_TAGS_MAX) return false;
            const char *it = v.s, *s;
            uint32_t l;
            for (uint32_t j = 0; j < v.len; j++) {
                attr_tag_next(&it, &s, &l);
                if (l > ATTR_STRING_MAX) return false;
            }
        }
        prev = v;
    }
    return p == end;
}

void attrs_iter_init(struct attrs_iter *it, const uint8_t *blob, size_t len)
{
    it->p = blob + (len ? 1 : 0);
    it->end = blob + len;
    it->left = len ? blob[0] : 0;
}

bool attrs_iter_next(struct attrs_iter *it, struct attr_view *v)
{
    if (it->left == 0 || !read_entry(&it->p, it->end, v)) return false;
    it->left--;
    return true;
}

bool attrs_find(const uint8_t *blob, size_t len, const char *name, size_t name_len,
                struct attr_view *v)
{
    struct attrs_iter it;
    attrs_iter_init(&it, blob, len);
    while (attrs_iter_next(&it, v)) {
        int c = name_cmp(v->name, v->name_len, name, name_len);
        if (c == 0) return true;
        if (c > 0) return false; /* sorted: passed it */
    }
    return false;
}

/* A NUL-terminated copy of s[0..len) from alloc. */
static char *dup_str(attrs_alloc_fn alloc, void *ctx, const char *s, size_t len)
{
    char *d = alloc(ctx, len + 1, 1);
    if (d) memcpy(d, s, len);
    return d;
}

_Static_assert(sizeof(Vecshard__V1__Point__AttributesEntry) ==
                   sizeof(Vecshard__V1__ScoredPoint__AttributesEntry) &&
                   offsetof(Vecshard__V1__Point__AttributesEntry, key) ==
                       offsetof(Vecshard__V1__ScoredPoint__AttributesEntry, key) &&
                   offsetof(Vecshard__V1__Point__AttributesEntry, value) ==
                       offsetof(Vecshard__V1__ScoredPoint__AttributesEntry, value),
               "the attribute entry types of Point and ScoredPoint differ in layout");

bool attrs_to_pb(const uint8_t *blob, size_t len, const ProtobufCMessageDescriptor *entry_desc,
                 attrs_alloc_fn alloc, void *ctx, attrs_entry ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    uint32_t n = len ? blob[0] : 0;
    if (n == 0) return true;
    Vecshard__V1__Point__AttributesEntry **ptrs = alloc(ctx, n, sizeof *ptrs);
    Vecshard__V1__Point__AttributesEntry *ents = alloc(ctx, n, sizeof *ents);
    Vecshard__V1__AttributeValue *vals = alloc(ctx, n, sizeof *vals);
    if (!ptrs || !ents || !vals) return false;
    struct attrs_iter it;
    struct attr_view v = {0};
    attrs_iter_init(&it, blob, len);
    uint32_t i = 0;
    while (i < n && attrs_iter_next(&it, &v)) {
        vecshard__v1__point__attributes_entry__init(&ents[i]);
        ents[i].base.descriptor = entry_desc;
        vecshard__v1__attribute_value__init(&vals[i]);
        if (!(ents[i].key = dup_str(alloc, ctx, v.name, v.name_len))) return false;
        ents[i].value = &vals[i];
        Vecshard__V1__AttributeValue *pv = &vals[i];
        switch (v.type) {
        case ATTR_INT:
            pv->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE;
            pv->int_value = v.i;
            break;
        case ATTR_DOUBLE:
            pv->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_DOUBLE_VALUE;
            pv->double_value = v.d;
            break;
        case ATTR_BOOL:
            pv->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_BOOL_VALUE;
            pv->bool_value = v.b;
            break;
        case ATTR_STRING:
            pv->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE;
            if (!(pv->string_value = dup_str(alloc, ctx, v.s, v.len))) return false;
            break;
        case ATTR_TAGS: {
            Vecshard__V1__StringList *t = alloc(ctx, 1, sizeof *t);
            if (!t) return false;
            vecshard__v1__string_list__init(t);
            pv->kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS;
            pv->tags = t;
            if (v.len) {
                if (!(t->values = alloc(ctx, v.len, sizeof *t->values))) return false;
                const char *tit = v.s, *s;
                uint32_t l;
                for (uint32_t j = 0; j < v.len; j++) {
                    attr_tag_next(&tit, &s, &l);
                    if (!(t->values[j] = dup_str(alloc, ctx, s, l))) return false;
                }
                t->n_values = v.len;
            }
            break;
        }
        }
        ptrs[i] = &ents[i];
        i++;
    }
    *out = ptrs;
    *nout = i;
    return true;
}
