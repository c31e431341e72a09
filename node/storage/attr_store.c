/*
 * attr_store.c — attribute blobs and their value indexes (see attr_store.h).
 *
 * Blobs live in a payload store (node/storage/payload.h: an id map over an
 * arena). The indexes, per attribute name (a column):
 *   - idset: open addressing over ids with linear probing and
 *     backward-shift deletion; 0 marks a free slot, so id 0 is a flag;
 *   - keywords: chained hash from value bytes ('s' + string or tag, 'b' +
 *     0/1) to an idset; a value whose set empties is removed;
 *   - numbers: (key, id) pairs in sorted blocks of up to NUM_BLOCK, found
 *     by binary search over the blocks' last pairs; a full block splits, an
 *     empty one is dropped. Insert and delete cost O(log n + NUM_BLOCK),
 *     a range count O(log n + blocks in the range).
 * Columns are found through a chained hash of names and never removed
 * (there are as many as distinct names ever written, bounded in practice).
 */
#include "node/storage/attr_store.h"
#include "node/storage/payload.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NUM_BLOCK 128

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return mix(h);
}

/* ---------------------------------------------------------------- idset */

struct idset {
    uint64_t *slot; /* 0: free */
    uint64_t mask;  /* slots - 1, or 0 with slot == NULL */
    uint64_t n;     /* ids stored in slot[] */
    bool zero;      /* id 0 is in the set */
};

static uint64_t idset_size(const struct idset *s)
{
    return s->n + (s->zero ? 1 : 0);
}

static int idset_grow(struct idset *s, uint64_t *mem)
{
    uint64_t slots = s->slot ? (s->mask + 1) * 2 : 8;
    uint64_t *m = calloc(slots, sizeof *m);
    if (!m) return -1;
    *mem += (slots - (s->slot ? s->mask + 1 : 0)) * sizeof *m;
    for (uint64_t i = 0; s->slot && i <= s->mask; i++) {
        uint64_t id = s->slot[i];
        if (!id) continue;
        uint64_t j = mix(id) & (slots - 1);
        while (m[j])
            j = (j + 1) & (slots - 1);
        m[j] = id;
    }
    free(s->slot);
    s->slot = m;
    s->mask = slots - 1;
    return 0;
}

static int idset_add(struct idset *s, uint64_t id, uint64_t *mem)
{
    if (id == 0) {
        s->zero = true;
        return 0;
    }
    if (!s->slot || (s->n + 1) * 4 > (s->mask + 1) * 3)
        if (idset_grow(s, mem)) return -1;
    uint64_t j = mix(id) & s->mask;
    while (s->slot[j]) {
        if (s->slot[j] == id) return 0;
        j = (j + 1) & s->mask;
    }
    s->slot[j] = id;
    s->n++;
    return 0;
}

static void idset_del(struct idset *s, uint64_t id)
{
    if (id == 0) {
        s->zero = false;
        return;
    }
    if (!s->slot) return;
    uint64_t j = mix(id) & s->mask;
    while (s->slot[j] && s->slot[j] != id)
        j = (j + 1) & s->mask;
    if (!s->slot[j]) return;
    s->slot[j] = 0;
    s->n--;
    /* Backward-shift: move later entries of the run into the hole when they may. */
    uint64_t hole = j;
    for (uint64_t k = (j + 1) & s->mask; s->slot[k]; k = (k + 1) & s->mask) {
        uint64_t home = mix(s->slot[k]) & s->mask;
        /* k's entry may move to hole if home is not cyclically in (hole, k]. */
        bool in = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (!in) {
            s->slot[hole] = s->slot[k];
            s->slot[k] = 0;
            hole = k;
        }
    }
}

static void idset_free(struct idset *s, uint64_t *mem)
{
    *mem -= s->slot ? (s->mask + 1) * sizeof *s->slot : 0;
    free(s->slot);
    memset(s, 0, sizeof *s);
}

/* Appends every id of s to the vector *v (n used, cap allocated). */
static int push(uint64_t **v, size_t *n, size_t *cap, uint64_t id)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        uint64_t *p = realloc(*v, c * sizeof *p);
        if (!p) return -1;
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = id;
    return 0;
}

static int idset_list(const struct idset *s, uint64_t **v, size_t *n, size_t *cap)
{
    if (s->zero && push(v, n, cap, 0)) return -1;
    for (uint64_t i = 0; s->slot && i <= s->mask; i++)
        if (s->slot[i] && push(v, n, cap, s->slot[i])) return -1;
    return 0;
}

/* ---------------------------------------------------------------- keywords */

struct kw {
    struct kw *next;
    uint64_t h;
    uint32_t len;
    struct idset ids;
    char key[]; /* len bytes: 's' + string or 'b' + 0/1 */
};

struct kwmap {
    struct kw **b;
    uint64_t nb, n;
};

static struct kw *kw_find(const struct kwmap *m, const char *key, uint32_t len, uint64_t h)
{
    if (!m->nb) return NULL;
    for (struct kw *k = m->b[h & (m->nb - 1)]; k; k = k->next)
        if (k->h == h && k->len == len && memcmp(k->key, key, len) == 0) return k;
    return NULL;
}

static int kw_grow(struct kwmap *m, uint64_t *mem)
{
    uint64_t nb = m->nb ? m->nb * 2 : 16;
    struct kw **b = calloc(nb, sizeof *b);
    if (!b) return -1;
    *mem += (nb - m->nb) * sizeof *b;
    for (uint64_t i = 0; i < m->nb; i++)
        for (struct kw *k = m->b[i], *nx; k; k = nx) {
            nx = k->next;
            k->next = b[k->h & (nb - 1)];
            b[k->h & (nb - 1)] = k;
        }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

static int kw_add(struct kwmap *m, const char *key, uint32_t len, uint64_t id, uint64_t *mem)
{
    uint64_t h = hash_bytes(key, len);
    struct kw *k = kw_find(m, key, len, h);
    if (!k) {
        if (m->n + 1 > m->nb && kw_grow(m, mem)) return -1;
        if (!(k = calloc(1, sizeof *k + len))) return -1;
        *mem += sizeof *k + len;
        k->h = h;
        k->len = len;
        memcpy(k->key, key, len);
        k->next = m->b[h & (m->nb - 1)];
        m->b[h & (m->nb - 1)] = k;
        m->n++;
    }
    return idset_add(&k->ids, id, mem);
}

static void kw_del(struct kwmap *m, const char *key, uint32_t len, uint64_t id, uint64_t *mem)
{
    uint64_t h = hash_bytes(key, len);
    struct kw *k = kw_find(m, key, len, h);
    if (!k) return;
    idset_del(&k->ids, id);
    if (idset_size(&k->ids)) return;
    struct kw **pp = &m->b[h & (m->nb - 1)];
    while (*pp != k)
        pp = &(*pp)->next;
    *pp = k->next;
    idset_free(&k->ids, mem);
    *mem -= sizeof *k + k->len;
    free(k);
    m->n--;
}

static void kw_free(struct kwmap *m)
{
    uint64_t unused = 0;
    for (uint64_t i = 0; i < m->nb; i++)
        for (struct kw *k = m->b[i], *nx; k; k = nx) {
            nx = k->next;
            idset_free(&k->ids, &unused);
            free(k);
        }
    free(m->b);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- numbers */

struct num {
    double k;
    uint64_t id;
};

struct numblk {
    uint32_t n;
    struct num e[NUM_BLOCK];
};

struct numtree {
    struct numblk **b;
    uint32_t nb, cap;
    uint64_t n;
};

static int num_cmp(const struct num *a, const struct num *b)
{
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The first block whose last pair is >= x (nb when none). */
static uint32_t blk_for(const struct numtree *t, const struct num *x)
{
    uint32_t lo = 0, hi = t->nb;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const struct numblk *b = t->b[mid];
        if (num_cmp(&b->e[b->n - 1], x) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Position in block b of the first pair >= x. */
static uint32_t pos_in(const struct numblk *b, const struct num *x)
{
    uint32_t lo = 0, hi = b->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (num_cmp(&b->e[mid], x) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int num_add(struct numtree *t, double k, uint64_t id, uint64_t *mem)
{
    struct num x = {k, id};
    if (t->nb == 0) {
        if (t->cap == 0) {
            if (!(t->b = malloc(8 * sizeof *t->b))) return -1;
            t->cap = 8;
            *mem += 8 * sizeof *t->b;
        }
        if (!(t->b[0] = malloc(sizeof *t->b[0]))) return -1;
        *mem += sizeof *t->b[0];
        t->b[0]->n = 1; /* blocks are never empty */
        t->b[0]->e[0] = x;
        t->nb = 1;
        t->n = 1;
        return 0;
    }
    uint32_t bi = blk_for(t, &x);
    if (bi == t->nb) bi--;
    struct numblk *b = t->b[bi];
    uint32_t p = pos_in(b, &x);
    if (p < b->n && num_cmp(&b->e[p], &x) == 0) return 0;
    if (b->n == NUM_BLOCK) {
        /* Split in halves; the pair goes into the half it belongs to. */
        if (t->nb == t->cap) {
            struct numblk **nbp = realloc(t->b, (size_t)t->cap * 2 * sizeof *nbp);
            if (!nbp) return -1;
            t->b = nbp;
            *mem += (uint64_t)t->cap * sizeof *nbp;
            t->cap *= 2;
        }
        struct numblk *r = malloc(sizeof *r);
        if (!r) return -1;
        *mem += sizeof *r;
        r->n = NUM_BLOCK / 2;
        memcpy(r->e, b->e + NUM_BLOCK / 2, (NUM_BLOCK / 2) * sizeof *r->e);
        b->n = NUM_BLOCK / 2;
        memmove(t->b + bi + 2, t->b + bi + 1, (t->nb - bi - 1) * sizeof *t->b);
        t->b[bi + 1] = r;
        t->nb++;
        if (p > b->n) {
            b = r;
            p -= NUM_BLOCK / 2;
        }
    }
    memmove(b->e + p + 1, b->e + p, (b->n - p) * sizeof *b->e);
    b->e[p] = x;
    b->n++;
    t->n++;
    return 0;
}

static void num_del(struct numtree *t, double k, uint64_t id, uint64_t *mem)
{
    struct num x = {k, id};
    uint32_t bi = blk_for(t, &x);
    if (bi == t->nb) return;
    struct numblk *b = t->b[bi];
    uint32_t p = pos_in(b, &x);
    if (p == b->n || num_cmp(&b->e[p], &x) != 0) return;
    memmove(b->e + p, b->e + p + 1, (b->n - p - 1) * sizeof *b->e);
    b->n--;
    t->n--;
    if (b->n == 0) {
        *mem -= sizeof *b;
        free(b);
        memmove(t->b + bi, t->b + bi + 1, (t->nb - bi - 1) * sizeof *t->b);
        t->nb--;
    }
}

/*
 * Pairs with lo <= key <= hi: their number, and when v is not NULL their
 * ids appended to it.
 */
static int num_range(const struct numtree *t, double lo, double hi, uint64_t *count, uint64_t **v,
                     size_t *n, size_t *cap)
{
    *count = 0;
    if (!(lo <= hi)) return 0;
    struct num x = {lo, 0};
    for (uint32_t bi = blk_for(t, &x); bi < t->nb; bi++) {
        const struct numblk *b = t->b[bi];
        uint32_t p = pos_in(b, &x);
        if (b->e[b->n - 1].k <= hi && !v) {
            *count += b->n - p;
            x.k = -INFINITY; /* later blocks start past lo */
            continue;
        }
        for (; p < b->n; p++) {
            if (b->e[p].k > hi) return 0;
            (*count)++;
            if (v && push(v, n, cap, b->e[p].id)) return -1;
        }
        x.k = -INFINITY;
    }
    return 0;
}

static void num_free(struct numtree *t)
{
    for (uint32_t i = 0; i < t->nb; i++)
        free(t->b[i]);
    free(t->b);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- columns */

struct column {
    struct column *next;
    uint64_t h;
    struct idset present;
    struct kwmap kw;
    struct numtree num;
    uint32_t name_len;
    char name[];
};

struct attr_store {
    pthread_rwlock_t lock;
    struct payload_store *blobs;
    struct column **cb;
    uint64_t ncb, ncols;
    uint64_t mem; /* bytes of the columns and indexes, kept as they grow and shrink */
};

int attr_store_create(struct attr_store **out)
{
    *out = NULL;
    struct attr_store *as = calloc(1, sizeof *as);
    if (!as) return -1;
    if (payload_store_create(&as->blobs) != 0) {
        free(as);
        return -1;
    }
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&as->lock, &a);
    pthread_rwlockattr_destroy(&a);
    *out = as;
    return 0;
}

void attr_store_free(struct attr_store *as)
{
    if (!as) return;
    for (uint64_t i = 0; i < as->ncb; i++)
        for (struct column *c = as->cb[i], *nx; c; c = nx) {
            nx = c->next;
            idset_free(&c->present, &as->mem);
            kw_free(&c->kw);
            num_free(&c->num);
            free(c);
        }
    free(as->cb);
    payload_store_free(as->blobs);
    pthread_rwlock_destroy(&as->lock);
    free(as);
}

static struct column *col_find(const struct attr_store *as, const char *name, uint32_t len)
{
    if (!as->ncb) return NULL;
    uint64_t h = hash_bytes(name, len);
    for (struct column *c = as->cb[h & (as->ncb - 1)]; c; c = c->next)
        if (c->h == h && c->name_len == len && memcmp(c->name, name, len) == 0) return c;
    return NULL;
}

static struct column *col_get(struct attr_store *as, const char *name, uint32_t len)
{
    struct column *c = col_find(as, name, len);
    if (c) return c;
    if (as->ncols + 1 > as->ncb) {
        uint64_t nb = as->ncb ? as->ncb * 2 : 16;
        struct column **b = calloc(nb, sizeof *b);
        if (!b) return NULL;
        for (uint64_t i = 0; i < as->ncb; i++)
            for (struct column *x = as->cb[i], *nx; x; x = nx) {
                nx = x->next;
                x->next = b[x->h & (nb - 1)];
                b[x->h & (nb - 1)] = x;
            }
        free(as->cb);
        as->mem += (nb - as->ncb) * sizeof *b;
        as->cb = b;
        as->ncb = nb;
    }
    if (!(c = calloc(1, sizeof *c + len))) return NULL;
    as->mem += sizeof *c + len;
    c->h = hash_bytes(name, len);
    c->name_len = len;
    memcpy(c->name, name, len);
    c->next = as->cb[c->h & (as->ncb - 1)];
    as->cb[c->h & (as->ncb - 1)] = c;
    as->ncols++;
    return c;
}

/* The keyword key of a string: 's' + bytes into buf (ATTR_STRING_MAX + 1). */
static uint32_t str_key(char *buf, const char *s, uint32_t len)
{
    buf[0] = 's';
    memcpy(buf + 1, s, len);
    return len + 1;
}

/* Adds (add) or removes every index entry of id's blob. -1 when an add ran out of memory. */
static int index_blob(struct attr_store *as, uint64_t id, const uint8_t *blob, uint32_t len,
                      bool add)
{
    char key[ATTR_STRING_MAX + 1];
    struct attrs_iter it;
    struct attr_view v = {0};
    attrs_iter_init(&it, blob, len);
    while (attrs_iter_next(&it, &v)) {
        struct column *c = add ? col_get(as, v.name, v.name_len) : col_find(as, v.name, v.name_len);
        if (!c) {
            if (add) return -1;
            continue;
        }
        int rc = 0;
        if (add)
            rc |= idset_add(&c->present, id, &as->mem);
        else
            idset_del(&c->present, id);
        switch (v.type) {
        case ATTR_INT:
        case ATTR_DOUBLE: {
            double k = v.type == ATTR_INT ? (double)v.i : v.d;
            if (add)
                rc |= num_add(&c->num, k, id, &as->mem);
            else
                num_del(&c->num, k, id, &as->mem);
            break;
        }
        case ATTR_BOOL: {
            char b[2] = {'b', v.b ? 1 : 0};
            if (add)
                rc |= kw_add(&c->kw, b, 2, id, &as->mem);
            else
                kw_del(&c->kw, b, 2, id, &as->mem);
            break;
        }
        case ATTR_STRING: {
            uint32_t kl = str_key(key, v.s, v.len);
            if (add)
                rc |= kw_add(&c->kw, key, kl, id, &as->mem);
            else
                kw_del(&c->kw, key, kl, id, &as->mem);
            break;
        }
        case ATTR_TAGS: {
            const char *tit = v.s, *s;
            uint32_t l;
            for (uint32_t j = 0; j < v.len; j++) {
                attr_tag_next(&tit, &s, &l);
                uint32_t kl = str_key(key, s, l);
                if (add)
                    rc |= kw_add(&c->kw, key, kl, id, &as->mem);
                else
                    kw_del(&c->kw, key, kl, id, &as->mem);
            }
            break;
        }
        }
        if (rc) return -1;
    }
    return 0;
}

/* Removes id's blob and index entries. Write lock held. */
static void remove_locked(struct attr_store *as, uint64_t id)
{
    payload_read_lock(as->blobs);
    uint32_t len;
    const uint8_t *old = payload_peek(as->blobs, id, &len);
    if (old) index_blob(as, id, old, len, false);
    payload_read_unlock(as->blobs);
    if (old) payload_remove(as->blobs, id);
}

int attr_put(struct attr_store *as, uint64_t id, const uint8_t *blob, uint32_t len)
{
    pthread_rwlock_wrlock(&as->lock);
    remove_locked(as, id);
    int rc = 0;
    if (len > 1 && blob[0] > 0) {
        if (payload_put(as->blobs, id, blob, len) != 0 || index_blob(as, id, blob, len, true)) {
            index_blob(as, id, blob, len, false); /* undo what was added */
            payload_remove(as->blobs, id);
            rc = -1;
        }
    }
    pthread_rwlock_unlock(&as->lock);
    return rc;
}

void attr_remove(struct attr_store *as, uint64_t id)
{
    pthread_rwlock_wrlock(&as->lock);
    remove_locked(as, id);
    pthread_rwlock_unlock(&as->lock);
}

void attr_read_lock(struct attr_store *as)
{
    pthread_rwlock_rdlock(&as->lock);
    payload_read_lock(as->blobs);
}

void attr_read_unlock(struct attr_store *as)
{
    payload_read_unlock(as->blobs);
    pthread_rwlock_unlock(&as->lock);
}

const uint8_t *attr_peek(struct attr_store *as, uint64_t id, uint32_t *len)
{
    return payload_peek(as->blobs, id, len);
}

int attr_foreach_locked(struct attr_store *as,
                        int (*fn)(uint64_t id, const uint8_t *blob, uint32_t len, void *ctx),
                        void *ctx)
{
    return payload_foreach_locked(as->blobs, fn, ctx);
}

uint64_t attr_count_locked(struct attr_store *as)
{
    return payload_count_locked(as->blobs);
}

uint64_t attr_bytes_locked(struct attr_store *as)
{
    return payload_bytes_locked(as->blobs);
}

uint64_t attr_count(struct attr_store *as)
{
    return payload_count(as->blobs);
}

uint64_t attr_memory(struct attr_store *as)
{
    pthread_rwlock_rdlock(&as->lock);
    uint64_t m = as->mem;
    pthread_rwlock_unlock(&as->lock);
    return payload_memory(as->blobs) + m;
}

/* ---------------------------------------------------------------- planning */

/* The keyword set of a value in column c (NULL if none). */
static const struct idset *kw_set(const struct column *c, const struct filter_value *v)
{
    char key[ATTR_STRING_MAX + 1];
    uint32_t kl;
    if (v->type == ATTR_STRING) {
        kl = str_key(key, v->s, v->len);
    } else if (v->type == ATTR_BOOL) {
        key[0] = 'b';
        key[1] = v->b ? 1 : 0;
        kl = 2;
    } else {
        return NULL;
    }
    const struct kw *k = kw_find(&c->kw, key, kl, hash_bytes(key, kl));
    return k ? &k->ids : NULL;
}

/* Ids of column c holding value v: their count, appended to *out when out is not NULL. */
static int value_ids(const struct column *c, const struct filter_value *v, uint64_t *count,
                     uint64_t **out, size_t *n, size_t *cap)
{
    *count = 0;
    if (!c) return 0;
    if (v->type == ATTR_INT || v->type == ATTR_DOUBLE) {
        double k = v->type == ATTR_INT ? (double)v->i : v->d;
        return num_range(&c->num, k, k, count, out, n, cap);
    }
    const struct idset *s = kw_set(c, v);
    if (!s) return 0;
    *count = idset_size(s);
    return out ? idset_list(s, out, n, cap) : 0;
}

static void est_node(struct attr_store *as, const struct filter *f, uint32_t ni, double N,
                     struct attr_estimate *e)
{
    const struct filter_node *x = &f->nodes[ni];
    const struct column *c = x->key ? col_find(as, x->key, x->key_len) : NULL;
    double present = c ? (double)idset_size(&c->present) : 0;
    uint64_t cnt;
    e->listable = true;
    e->candidates = 0;
    e->matches = 0;
    switch (x->op) {
    case FILTER_AND: {
        double p = 1;
        uint64_t best = UINT64_MAX;
        for (uint32_t i = 0; i < x->count; i++) {
            struct attr_estimate k;
            est_node(as, f, f->kids[x->first + i], N, &k);
            p *= N > 0 ? k.matches / N : 0;
            if (k.listable && k.candidates < best) best = k.candidates;
        }
        e->matches = N * p;
        e->listable = best != UINT64_MAX;
        e->candidates = e->listable ? best : 0;
        return;
    }
    case FILTER_OR: {
        double q = 1;
        for (uint32_t i = 0; i < x->count; i++) {
            struct attr_estimate k;
            est_node(as, f, f->kids[x->first + i], N, &k);
            q *= N > 0 ? 1 - fmin(1, k.matches / N) : 1;
            e->listable = e->listable && k.listable;
            e->candidates += k.candidates;
        }
        e->matches = N * (1 - q);
        return;
    }
    case FILTER_NOT: {
        struct attr_estimate k;
        est_node(as, f, x->first, N, &k);
        e->matches = fmax(0, N - k.matches);
        e->listable = false;
        return;
    }
    case FILTER_EXISTS:
        e->matches = present;
        e->candidates = (uint64_t)present;
        return;
    case FILTER_MISSING:
        e->matches = fmax(0, N - present);
        e->listable = false;
        return;
    case FILTER_RANGE: {
        double lo, hi;
        filter_range_interval(x, &lo, &hi);
        cnt = 0;
        if (c) num_range(&c->num, lo, hi, &cnt, NULL, NULL, NULL);
        e->matches = (double)cnt;
        e->candidates = cnt;
        return;
    }
    case FILTER_EQ:
    case FILTER_IN:
    case FILTER_TAGS_ANY:
    case FILTER_TAGS_ALL: {
        uint64_t sum = 0, min = UINT64_MAX;
        for (uint32_t i = 0; i < x->count; i++) {
            value_ids(c, &f->vals[x->first + i], &cnt, NULL, NULL, NULL);
            sum += cnt;
            if (cnt < min) min = cnt;
        }
        if (x->op == FILTER_TAGS_ALL) {
            e->matches = (double)min;
            e->candidates = min;
        } else {
            e->matches = fmin((double)sum, present);
            e->candidates = sum;
        }
        return;
    }
    }
}

void attr_estimate(struct attr_store *as, const struct filter *f, uint64_t points,
                   struct attr_estimate *e)
{
    est_node(as, f, f->root, (double)points, e);
    if (e->matches > (double)points) e->matches = (double)points;
}

/* Appends the candidates of listable node ni (a superset of its matches). */
static int list_node(struct attr_store *as, const struct filter *f, uint32_t ni, uint64_t **v,
                     size_t *n, size_t *cap)
{
    const struct filter_node *x = &f->nodes[ni];
    const struct column *c = x->key ? col_find(as, x->key, x->key_len) : NULL;
    uint64_t cnt;
    switch (x->op) {
    case FILTER_AND: {
        uint64_t best = UINT64_MAX;
        uint32_t bi = 0;
        for (uint32_t i = 0; i < x->count; i++) {
            struct attr_estimate k;
            est_node(as, f, f->kids[x->first + i], 0, &k);
            if (k.listable && k.candidates < best) {
                best = k.candidates;
                bi = f->kids[x->first + i];
            }
        }
        return list_node(as, f, bi, v, n, cap);
    }
    case FILTER_OR:
        for (uint32_t i = 0; i < x->count; i++)
            if (list_node(as, f, f->kids[x->first + i], v, n, cap)) return -1;
        return 0;
    case FILTER_EXISTS:
        return c ? idset_list(&c->present, v, n, cap) : 0;
    case FILTER_RANGE: {
        double lo, hi;
        filter_range_interval(x, &lo, &hi);
        return c ? num_range(&c->num, lo, hi, &cnt, v, n, cap) : 0;
    }
    case FILTER_EQ:
    case FILTER_IN:
    case FILTER_TAGS_ANY:
        for (uint32_t i = 0; i < x->count; i++)
            if (value_ids(c, &f->vals[x->first + i], &cnt, v, n, cap)) return -1;
        return 0;
    case FILTER_TAGS_ALL: {
        /* The rarest tag's ids. */
        uint64_t best = UINT64_MAX;
        uint32_t bi = 0;
        for (uint32_t i = 0; i < x->count; i++) {
            value_ids(c, &f->vals[x->first + i], &cnt, NULL, NULL, NULL);
            if (cnt < best) {
                best = cnt;
                bi = i;
            }
        }
        return value_ids(c, &f->vals[x->first + bi], &cnt, v, n, cap);
    }
    default:
        return 0; /* not listable: never called */
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int attr_matching(struct attr_store *as, const struct filter *f, uint64_t **ids, size_t *n)
{
    uint64_t *v = NULL;
    size_t nv = 0, cap = 0;
    *ids = NULL;
    *n = 0;
    if (list_node(as, f, f->root, &v, &nv, &cap)) {
        free(v);
        return -1;
    }
    if (nv > 1) qsort(v, nv, sizeof *v, cmp_u64);
    size_t w = 0;
    for (size_t i = 0; i < nv; i++) {
        if (i > 0 && v[i] == v[i - 1]) continue;
        uint32_t len;
        const uint8_t *blob = payload_peek(as->blobs, v[i], &len);
        if (filter_match(f, blob, len)) v[w++] = v[i];
    }
    *ids = v;
    *n = w;
    return 0;
}
