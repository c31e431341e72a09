/*
 * hnsw_check.c — the index's self-checks: graph invariants (hnsw_check) and
 * recall against exact search (hnsw_self_recall). Tests run them on every
 * index they build; operators can run them on a live shard.
 */
#include "common/hnsw/hnsw_internal.h"

#include <stdlib.h>

/* Checks one link list of slot s on layer l. */
static int check_list(struct hnsw_index *idx, uint32_t s, int l, uint32_t nslots, char *err)
{
    uint32_t cnt, *links = hnsw_links(idx, s, l, &cnt);
    if (cnt > hnsw_mmax(idx, l))
        return hnsw_fail(err, HNSW_ECORRUPT, "slot %u layer %d: %u links, more than Mmax %u", s, l,
                         cnt, hnsw_mmax(idx, l));
    if ((hnsw_flags(idx, s) & HNSW_FLAG_FREE) && cnt)
        return hnsw_fail(err, HNSW_ECORRUPT, "free slot %u still has %u links on layer %d", s, cnt,
                         l);
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t t = links[i];
        if (t >= nslots)
            return hnsw_fail(err, HNSW_ECORRUPT, "slot %u layer %d: link %u out of range", s, l, t);
        if (t == s) return hnsw_fail(err, HNSW_ECORRUPT, "slot %u layer %d links to itself", s, l);
        for (uint32_t j = 0; j < i; j++)
            if (links[j] == t)
                return hnsw_fail(err, HNSW_ECORRUPT, "slot %u layer %d: duplicate link %u", s, l,
                                 t);
        if (hnsw_flags(idx, t) & HNSW_FLAG_FREE)
            return hnsw_fail(err, HNSW_ECORRUPT, "slot %u layer %d links to free slot %u", s, l, t);
        if (hnsw_level(idx, t) < l)
            return hnsw_fail(err, HNSW_ECORRUPT,
                             "slot %u layer %d links to slot %u whose top layer is %d", s, l, t,
                             hnsw_level(idx, t));
    }
    return HNSW_OK;
}

/* SQ8: every non-free slot's code is its vector's (caller holds the mutation lock). */
static int check_codes(struct hnsw_index *idx, uint32_t nslots, char *err)
{
    if (!idx->code_stride) return HNSW_OK;
    uint8_t *code = malloc(idx->code_stride);
    if (!code) return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    uint32_t bad = HNSW_NO_SLOT;
    for (uint32_t s = 0; s < nslots && bad == HNSW_NO_SLOT; s++)
        if (!(hnsw_flags(idx, s) & HNSW_FLAG_FREE) && !hnsw_sq8_code_ok(idx, s, code)) bad = s;
    free(code);
    if (bad != HNSW_NO_SLOT)
        return hnsw_fail(err, HNSW_ECORRUPT, "slot %u: its SQ8 code does not match its vector",
                         bad);
    return HNSW_OK;
}

/* Checks slots, lists, counters and the id map; caller holds the mutation lock. */
static int check_slots(struct hnsw_index *idx, uint32_t nslots, int top, char *err)
{
    uint64_t live = 0, deleted = 0, freed = 0;
    int crc = check_codes(idx, nslots, err);
    if (crc) return crc;
    for (uint32_t s = 0; s < nslots; s++) {
        unsigned f = hnsw_flags(idx, s);
        int level = hnsw_level(idx, s);
        if (f > HNSW_FLAG_FREE)
            return hnsw_fail(err, HNSW_ECORRUPT, "slot %u has unknown flags %#x", s, f);
        if (!(f & HNSW_FLAG_FREE) && level > top)
            return hnsw_fail(err, HNSW_ECORRUPT, "slot %u level %d above the top layer %d", s,
                             level, top);
        uint32_t *up = hnsw_upper(idx, s);
        if (level > 0 && (!up || (int)up[0] < level))
            return hnsw_fail(err, HNSW_ECORRUPT, "slot %u level %d has no upper links", s, level);
        for (int l = level; l >= 0; l--) {
            int rc = check_list(idx, s, l, nslots, err);
            if (rc) return rc;
        }
        if (f == 0) {
            live++;
            uint64_t id = *hnsw_idp(idx, hnsw_elem(idx, s));
            if (hnsw_map_find(&idx->map, id) != s)
                return hnsw_fail(err, HNSW_ECORRUPT, "slot %u (id %llu) is not in the id map", s,
                                 (unsigned long long)id);
        }
        deleted += f == HNSW_FLAG_DELETED;
        freed += f == HNSW_FLAG_FREE;
    }
    if (live != idx->map.n)
        return hnsw_fail(err, HNSW_ECORRUPT, "%llu live slots but %llu ids in the map",
                         (unsigned long long)live, (unsigned long long)idx->map.n);
    if (deleted != atomic_load(&idx->ndeleted))
        return hnsw_fail(err, HNSW_ECORRUPT, "%llu deleted slots but the counter says %llu",
                         (unsigned long long)deleted, (unsigned long long)idx->ndeleted);
    if (freed != idx->nfree)
        return hnsw_fail(err, HNSW_ECORRUPT, "%llu free slots but %llu on the free list",
                         (unsigned long long)freed, (unsigned long long)idx->nfree);
    return HNSW_OK;
}

/* Breadth-first search on layer 0: every non-free slot must be reached from ep. */
static int check_reach(struct hnsw_index *idx, uint32_t nslots, uint32_t ep, char *err)
{
    uint8_t *seen = calloc(nslots, 1);
    uint32_t *queue = malloc((size_t)nslots * sizeof *queue);
    int rc = HNSW_OK;
    if (!seen || !queue) {
        rc = hnsw_fail(err, HNSW_ENOMEM, "out of memory checking reachability");
        goto out;
    }
    uint32_t head = 0, tail = 0;
    queue[tail++] = ep;
    seen[ep] = 1;
    while (head < tail) {
        uint32_t cnt, *links = hnsw_links(idx, queue[head++], 0, &cnt);
        for (uint32_t i = 0; i < cnt; i++)
            if (!seen[links[i]]) {
                seen[links[i]] = 1;
                queue[tail++] = links[i];
            }
    }
    for (uint32_t s = 0; s < nslots; s++)
        if (!seen[s] && hnsw_flags(idx, s) == 0) {
            rc = hnsw_fail(err, HNSW_ECORRUPT,
                           "live slot %u (id %llu) is unreachable from the entry point", s,
                           (unsigned long long)*hnsw_idp(idx, hnsw_elem(idx, s)));
            break;
        }
out:
    free(seen);
    free(queue);
    return rc;
}

/* The checks of hnsw_check; `reach` adds the reachability sweep. Caller holds the locks. */
static int check_locked(struct hnsw_index *idx, bool reach, char *err)
{
    uint32_t nslots = atomic_load(&idx->nslots), ep;
    int top, rc = HNSW_OK;
    hnsw_entry_get(idx, &ep, &top);
    if (top < 0) {
        if (idx->map.n)
            rc = hnsw_fail(err, HNSW_ECORRUPT, "no entry point but %llu live points",
                           (unsigned long long)idx->map.n);
        goto out;
    }
    if (ep >= nslots || (hnsw_flags(idx, ep) & HNSW_FLAG_FREE) || hnsw_level(idx, ep) != top) {
        rc = hnsw_fail(err, HNSW_ECORRUPT, "entry point %u is invalid (top layer %d)", ep, top);
        goto out;
    }
    rc = check_slots(idx, nslots, top, err);
    if (rc == HNSW_OK && reach) rc = check_reach(idx, nslots, ep, err);
out:
    return rc;
}

int hnsw_check(struct hnsw_index *idx, char *err)
{
    pthread_rwlock_wrlock(&idx->mutation_lock);
    pthread_mutex_lock(&idx->map_lock);
    int rc = check_locked(idx, true, err);
    pthread_mutex_unlock(&idx->map_lock);
    pthread_rwlock_unlock(&idx->mutation_lock);
    return rc;
}

int hnsw_check_structure(struct hnsw_index *idx, char *err)
{
    return check_locked(idx, false, err);
}

int hnsw_self_recall(struct hnsw_index *idx, uint32_t nsample, uint32_t k, uint32_t ef,
                     double *recall, char *err)
{
    *recall = 0;
    uint32_t nslots = atomic_load(&idx->nslots);
    struct hnsw_result *a = malloc((size_t)k * sizeof *a), *b = malloc((size_t)k * sizeof *b);
    float *q = malloc(idx->dim * sizeof *q);
    int rc = HNSW_OK;
    if (!a || !b || !q) {
        rc = hnsw_fail(err, HNSW_ENOMEM, "out of memory for self-recall");
        goto out;
    }
    uint32_t step = nsample && nslots > nsample ? nslots / nsample : 1, done = 0;
    uint64_t hits = 0, total = 0;
    for (uint32_t s = 0; s < nslots && done < nsample; s += step) {
        if (hnsw_flags(idx, s) != 0) continue;
        memcpy(q, hnsw_vec(idx, s), idx->dim * sizeof *q);
        uint32_t na, nb;
        rc = hnsw_search(idx, q, k, ef, NULL, NULL, a, &na, err);
        if (rc == HNSW_OK) rc = hnsw_search_exact(idx, q, k, NULL, NULL, b, &nb, err);
        if (rc) goto out;
        for (uint32_t i = 0; i < nb; i++)
            for (uint32_t j = 0; j < na; j++)
                if (a[j].id == b[i].id) {
                    hits++;
                    break;
                }
        total += nb;
        done++;
    }
    *recall = total ? (double)hits / (double)total : 1.0;
out:
    free(a);
    free(b);
    free(q);
    return rc;
}
