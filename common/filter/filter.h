/*
 * filter.h — filters over point attributes (docs/filtering.md): the check
 * of a vecshard.v1.Filter tree, its compiled form, the test of one point's
 * attribute blob (attrs.h), and the JSON form the CLI and the docs use.
 *
 * One check for every process: the router calls filter_compile to refuse a
 * bad tree with INVALID_ARGUMENT before any fan-out, and each shard compiles
 * the same tree again before planning (node/storage/attr_index.h).
 *
 * A compiled filter points into the Filter message it came from (keys and
 * string values): it must not outlive it. It is immutable once compiled, so
 * any number of threads may test points against it at once.
 */
#ifndef VS_FILTER_FILTER_H
#define VS_FILTER_FILTER_H

#include "common/filter/attrs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FILTER_MAX_DEPTH    16   /* nesting of all_of / any_of / not_filter */
#define FILTER_MAX_NODES    256  /* nodes of one tree */
#define FILTER_MAX_CHILDREN 64   /* sub-filters of one all_of / any_of */
#define FILTER_MAX_VALUES   1024 /* values of one in / tags_any / tags_all */
#define FILTER_ERR_MAX      512

enum filter_op {
    FILTER_AND,
    FILTER_OR,
    FILTER_NOT,
    FILTER_EQ,       /* vals[first..first+count) holds 1 value */
    FILTER_IN,       /* any of count values */
    FILTER_RANGE,    /* bounds below */
    FILTER_EXISTS,   /* has the key */
    FILTER_MISSING,  /* has not (exists: false) */
    FILTER_TAGS_ANY, /* count string values */
    FILTER_TAGS_ALL,
};

/* A value of eq / in / tags_*; s points into the Filter message. */
struct filter_value {
    enum attr_type type; /* ATTR_INT, ATTR_DOUBLE, ATTR_STRING or ATTR_BOOL */
    int64_t i;
    double d;
    bool b;
    const char *s;
    uint32_t len;
};

enum { FILTER_GT = 1, FILTER_GTE = 2, FILTER_LT = 4, FILTER_LTE = 8 };

struct filter_node {
    enum filter_op op;
    const char *key; /* conditions: the attribute name */
    uint32_t key_len;
    /* AND / OR: kids[first..first+count); NOT: nodes[first]; values: vals[first..+count) */
    uint32_t first, count;
    unsigned bounds; /* RANGE: FILTER_GT | ... of the bounds set */
    double gt, gte, lt, lte;
};

struct filter {
    struct filter_node *nodes;
    uint32_t nnodes, root;
    uint32_t *kids;
    uint32_t nkids;
    struct filter_value *vals;
    uint32_t nvals;
};

/*
 * Checks and compiles f. On a bad tree returns -1 with a message naming the
 * node by its path under `what` (e.g. "filter.all_of[1].condition.range has
 * no bound"); -2 when out of memory; 0 with *out set (filter_free).
 */
int filter_compile(const Vecshard__V1__Filter *f, const char *what, struct filter **out,
                   char *err, size_t errlen);
void filter_free(struct filter *f);

/* True if a point with the attribute blob blob[0..len) (len 0: none) matches. */
bool filter_match(const struct filter *f, const uint8_t *blob, size_t len);
/* The same for the subtree at node n. */
bool filter_match_node(const struct filter *f, uint32_t n, const uint8_t *blob, size_t len);

/*
 * Range bounds of a RANGE node as one closed interval [*lo, *hi] that
 * contains every matching number (strict bounds widened to closed ones).
 */
void filter_range_interval(const struct filter_node *n, double *lo, double *hi);

/* ------------------------------------------------------------ JSON (filter_json.c) */

/*
 * Parses the JSON form of a filter (docs/filtering.md), e.g.
 *   {"and":[{"eq":{"color":"red"}},{"range":{"price":{"lt":50}}}]}
 * into a new message (free with vecshard__v1__filter__free_unpacked(f, NULL)).
 * NULL with a message naming the bad part.
 */
Vecshard__V1__Filter *filter_from_json(const char *json, char *err, size_t errlen);
/*
 * Parses a JSON object of attributes, e.g. {"color":"red","price":9.5,
 * "tags":["a","b"]}, into map entries for a Point (*out, *nout; free with
 * filter_attrs_free). Integral numbers within +-2^53 become int_value,
 * other numbers double_value, arrays of strings tags. False with a message.
 */
bool filter_attrs_from_json(const char *json, Vecshard__V1__Point__AttributesEntry ***out,
                            size_t *nout, char *err, size_t errlen);
void filter_attrs_free(Vecshard__V1__Point__AttributesEntry **e, size_t n);
/* The JSON object of a point's attributes (malloc'ed; NULL when out of memory). */
char *filter_attrs_to_json(Vecshard__V1__Point__AttributesEntry *const *e, size_t n);

#endif
