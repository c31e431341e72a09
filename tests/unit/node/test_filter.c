/*
 * test_filter.c — attributes and filtered search in one replica: 4,000
 * points with an int, a string and a tags attribute (some without any);
 * for each filter and each plan (exact, scan, graph, post, and the
 * planner's choice) the hits equal the brute-force top-k over the matching
 * subset (graph, post: recall@10 >= 0.95, and k hits whenever k match: post
 * falls back when its candidates hold fewer); upserts that change a value and deletes keep
 * the indexes exact (counts); delete by filter; reopening from the WAL and
 * from a snapshot keeps everything.
 */
#include "tests/unit/node/node_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FDIM 16
#define FN   4000
#define FK   10

/* One point's attribute entries, built in place. */
struct fattrs {
    Vecshard__V1__Point__AttributesEntry e[3], *ep[3];
    Vecshard__V1__AttributeValue v[3];
    Vecshard__V1__StringList tags;
    char *tagp[2];
    char s[16], t0[16], t1[16];
};

/* Attributes of point i at version ver: n = (i + ver) % 100, cat = c<i%10>, tags t<i%20>, g<i%3>. */
static size_t make_attrs(uint64_t i, uint64_t ver, struct fattrs *a)
{
    if (i % 40 == 39) return 0;
    for (int k = 0; k < 3; k++) {
        vecshard__v1__point__attributes_entry__init(&a->e[k]);
        vecshard__v1__attribute_value__init(&a->v[k]);
        a->e[k].value = &a->v[k];
        a->ep[k] = &a->e[k];
    }
    a->e[0].key = "n";
    a->v[0].kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_INT_VALUE;
    a->v[0].int_value = (int64_t)((i + ver) % 100);
    a->e[1].key = "cat";
    snprintf(a->s, sizeof a->s, "c%u", (unsigned)(i % 10));
    a->v[1].kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE;
    a->v[1].string_value = a->s;
    a->e[2].key = "tags";
    snprintf(a->t0, sizeof a->t0, "t%u", (unsigned)(i % 20));
    snprintf(a->t1, sizeof a->t1, "g%u", (unsigned)(i % 3));
    vecshard__v1__string_list__init(&a->tags);
    a->tagp[0] = a->t0;
    a->tagp[1] = a->t1;
    a->tags.values = a->tagp;
    a->tags.n_values = 2;
    a->v[2].kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_TAGS;
    a->v[2].tags = &a->tags;
    return 3;
}

/* Writes points lo..hi at version ver with attributes. */
static void write_points(struct replica *r, uint64_t lo, uint64_t hi, uint64_t ver)
{
    size_t n = hi - lo;
    uint64_t *ids = calloc(n, sizeof *ids);
    CU_ASSERT_FATAL(ids != NULL);
    for (size_t i = 0; i < n; i++)
        ids[i] = lo + i;
    struct tn_batch *t = tn_batch_new(FDIM, ids, n, 1, NULL, 0);
    struct fattrs *a = calloc(n, sizeof *a);
    for (size_t i = 0; i < n; i++) {
        t->pts[i].n_attributes = make_attrs(lo + i, ver, &a[i]);
        t->pts[i].attributes = a[i].ep;
    }
    char err[REPLICA_ERR_MAX];
    int rc = replica_write(r, 1, &t->b, NULL, err);
    if (rc) fprintf(stderr, "replica_write: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, REPLICA_OK);
    free(a);
    tn_batch_free(t);
    free(ids);
}

/* A filter message: n < lt (range), or cat == cat, or tags any t. */
struct ffilter {
    Vecshard__V1__Filter f, kids[2], *kp[2];
    Vecshard__V1__FilterList list;
    Vecshard__V1__Condition c[2];
    Vecshard__V1__Range range;
    Vecshard__V1__Number num;
    Vecshard__V1__AttributeValue val;
    char *tag;
    Vecshard__V1__StringList tl;
};

static void cond_init(Vecshard__V1__Filter *f, Vecshard__V1__Condition *c, const char *key)
{
    vecshard__v1__filter__init(f);
    vecshard__v1__condition__init(c);
    f->expr_case = VECSHARD__V1__FILTER__EXPR_CONDITION;
    f->condition = c;
    c->key = (char *)key;
}

/* all_of(n < lt, cat == cat) when both given; one of them otherwise. */
static struct filter *make_filter(struct ffilter *x, int lt, const char *cat)
{
    memset(x, 0, sizeof *x);
    Vecshard__V1__Filter *a = &x->kids[0], *b = &x->kids[1];
    cond_init(a, &x->c[0], "n");
    vecshard__v1__range__init(&x->range);
    vecshard__v1__number__init(&x->num);
    x->num.value = lt;
    x->range.lt = &x->num;
    x->c[0].test_case = VECSHARD__V1__CONDITION__TEST_RANGE;
    x->c[0].range = &x->range;
    cond_init(b, &x->c[1], "cat");
    vecshard__v1__attribute_value__init(&x->val);
    x->val.kind_case = VECSHARD__V1__ATTRIBUTE_VALUE__KIND_STRING_VALUE;
    x->val.string_value = (char *)cat;
    x->c[1].test_case = VECSHARD__V1__CONDITION__TEST_EQ;
    x->c[1].eq = &x->val;
    const Vecshard__V1__Filter *root = a;
    if (lt >= 0 && cat) {
        vecshard__v1__filter__init(&x->f);
        vecshard__v1__filter_list__init(&x->list);
        x->kp[0] = a;
        x->kp[1] = b;
        x->list.filters = x->kp;
        x->list.n_filters = 2;
        x->f.expr_case = VECSHARD__V1__FILTER__EXPR_ALL_OF;
        x->f.all_of = &x->list;
        root = &x->f;
    } else if (cat) {
        root = b;
    }
    struct filter *f;
    char err[FILTER_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(filter_compile(root, "filter", &f, err, sizeof err), 0);
    return f;
}

/* Does point i (version ver, deleted: not live) match? */
static bool matches(uint64_t i, uint64_t ver, int lt, const char *cat)
{
    if (i % 40 == 39) return false;
    char s[16];
    snprintf(s, sizeof s, "c%u", (unsigned)(i % 10));
    if (lt >= 0 && !((int)((i + ver) % 100) < lt)) return false;
    if (cat && strcmp(s, cat) != 0) return false;
    return true;
}

static float l2(const float *a, const float *b)
{
    float s = 0;
    for (int i = 0; i < FDIM; i++)
        s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}

/* Recall@FK of a filtered search under plan (NULL: planner) for query seed q. */
static double recall(struct replica *r, struct filter *f, const char *plan, int lt,
                     const char *cat, uint64_t ver, uint64_t q, const char **chosen)
{
    float qv[FDIM], v[FDIM];
    tn_vector(100000 + q, 1, FDIM, qv);
    /* Brute force over the matching subset. */
    struct { float d; uint64_t id; } best[FK];
    int nb = 0;
    for (uint64_t i = 0; i < FN; i++) {
        if (!matches(i, ver, lt, cat)) continue;
        tn_vector(i, 1, FDIM, v);
        float d = l2(qv, v);
        int p = nb < FK ? nb++ : FK;
        if (p == FK && d >= best[FK - 1].d) continue;
        if (p == FK) p = FK - 1;
        while (p > 0 && best[p - 1].d > d) {
            best[p] = best[p - 1];
            p--;
        }
        best[p].d = d;
        best[p].id = i;
    }
    struct replica_results res;
    replica_results_init(&res);
    struct replica_plan pl;
    struct replica_query rq = {.vector = qv, .len = FDIM, .k = FK, .ef = 64, .filter = f,
                               .force_plan = plan, .plan = &pl};
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_EQUAL_FATAL(replica_search(r, &rq, &res, err), REPLICA_OK);
    CU_ASSERT_EQUAL(res.n, (uint32_t)nb);
    int found = 0;
    for (uint32_t j = 0; j < res.n; j++) {
        CU_ASSERT(matches(res.points[j].id, ver, lt, cat));
        for (int b = 0; b < nb; b++)
            if (best[b].id == res.points[j].id) found++;
    }
    if (chosen) *chosen = pl.plan;
    replica_results_free(&res);
    return nb ? (double)found / nb : 1.0;
}

static uint64_t count(struct replica *r, struct filter *f)
{
    uint64_t n = 0;
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_EQUAL(replica_count(r, f, &n, err), REPLICA_OK);
    return n;
}

static uint64_t expect_count(uint64_t ver, int lt, const char *cat)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < FN; i++)
        n += matches(i, ver, lt, cat);
    return n;
}

static struct replica *open_f(const char *dir)
{
    struct replica_config c;
    replica_config_init(&c);
    c.dir = dir;
    c.collection = "f";
    c.hnsw.dim = FDIM;
    c.build_threads = 2;
    c.fsync = WAL_FSYNC_NONE;
    return tn_open(&c);
}

static void check_all(struct replica *r, uint64_t ver)
{
    static const struct {
        int lt;
        const char *cat;
    } cases[] = {{50, NULL}, {1, NULL}, {-1, "c3"}, {10, "c2"}, {-1, "none"}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct ffilter x;
        struct filter *f = make_filter(&x, cases[c].lt, cases[c].cat);
        CU_ASSERT_EQUAL(count(r, f), expect_count(ver, cases[c].lt, cases[c].cat));
        static const char *plans[] = {"exact", "scan", "graph", "post", NULL};
        for (int p = 0; p < 5; p++) {
            double sum = 0;
            for (uint64_t q = 0; q < 10; q++)
                sum += recall(r, f, plans[p], cases[c].lt, cases[c].cat, ver, q, NULL);
            if (p < 2) {
                CU_ASSERT_DOUBLE_EQUAL(sum / 10, 1.0, 1e-9);
            } else {
                CU_ASSERT(sum / 10 >= 0.95);
            }
        }
        filter_free(f);
    }
}

static void test_filtered_search(void)
{
    char *dir = tn_tmpdir();
    struct replica *r = open_f(dir);
    for (uint64_t lo = 0; lo < FN; lo += 500)
        write_points(r, lo, lo + 500, 0);
    check_all(r, 0);
    /* The planner picks exact for 1 %. */
    struct ffilter x;
    struct filter *f = make_filter(&x, 1, NULL);
    const char *chosen;
    recall(r, f, NULL, 1, NULL, 0, 0, &chosen);
    CU_ASSERT_STRING_EQUAL(chosen, "exact");
    filter_free(f);
    /* Version 7 moves every n by 7: the indexes follow. */
    for (uint64_t lo = 0; lo < FN; lo += 1000)
        write_points(r, lo, lo + 1000, 7);
    check_all(r, 7);
    char err[REPLICA_ERR_MAX];
    CU_ASSERT_EQUAL(replica_snapshot(r, NULL, err), REPLICA_OK);
    CU_ASSERT_EQUAL(replica_close(r, err), REPLICA_OK);
    r = open_f(dir); /* from the snapshot */
    check_all(r, 7);
    /* Delete by filter: cat c3 (every tenth point, but the 39 mod 40 ones have none). */
    f = make_filter(&x, -1, "c3");
    uint64_t lsn;
    uint32_t deleted;
    CU_ASSERT_EQUAL(replica_delete_matching(r, 1, f, 0, &lsn, &deleted, err), REPLICA_OK);
    CU_ASSERT_EQUAL(deleted, expect_count(7, -1, "c3"));
    CU_ASSERT_EQUAL(count(r, f), 0);
    CU_ASSERT_EQUAL(count(r, NULL), FN - deleted);
    CU_ASSERT_EQUAL(replica_close(r, err), REPLICA_OK);
    r = open_f(dir); /* from the snapshot and the WAL */
    CU_ASSERT_EQUAL(count(r, f), 0);
    CU_ASSERT_EQUAL(count(r, NULL), FN - deleted);
    filter_free(f);
    CU_ASSERT_EQUAL(replica_close(r, err), REPLICA_OK);
    tn_rmdir(dir);
    free(dir);
}

void register_filter_tests(void)
{
    CU_pSuite s = CU_add_suite("filter", NULL, NULL);
    CU_add_test(s, "filtered search per plan vs brute force; upserts, snapshot, delete by filter",
                test_filtered_search);
}
