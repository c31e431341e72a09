/*
 * payload.c — the replica's payload store: an open-addressing map from id to
 * (block, offset, length) over an arena of 1 MiB blocks.
 *
 * Writes append the bytes to the current block (a new block when it is
 * full) and point the map entry at them; the old bytes become a hole. When
 * holes exceed both the live bytes and 8 MiB, the store compacts: it copies
 * every live payload into fresh blocks and frees the old ones, so memory
 * stays under about twice the live bytes and the cost is amortised over the
 * writes that made the holes. The map uses linear probing with
 * backward-shift deletion (no tombstones), grown at 3/4 load.
 */
#include "node/storage/payload.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_BYTES (1u << 20)
#define COMPACT_MIN_HOLES (8ull << 20)
#define EMPTY UINT32_MAX /* block value of an unused map slot */

_Static_assert(PAYLOAD_MAX_BYTES <= BLOCK_BYTES, "a payload must fit in one block");

struct entry {
    uint64_t id;
    uint32_t block; /* EMPTY: slot unused */
    uint32_t off;
    uint32_t len;
};

struct payload_store {
    /* lock protects every field below (writers exclusive, readers shared). */
    pthread_rwlock_t lock;
    struct entry *map;
    uint64_t mask; /* map slots - 1 (a power of two minus one) */
    uint64_t n;    /* entries in use */
    uint8_t **blocks;
    uint32_t nblocks, cap_blocks;
    uint32_t fill; /* bytes used in the last block */
    uint64_t live, holes;
};

/* Finalizer of splitmix64: spreads sequential ids over the map. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* An empty map of `slots` slots (a power of two); NULL when out of memory. */
static struct entry *map_alloc(uint64_t slots)
{
    struct entry *m = malloc(slots * sizeof *m);
    if (m)
        for (uint64_t i = 0; i < slots; i++)
            m[i].block = EMPTY;
    return m;
}

int payload_store_create(struct payload_store **out)
{
    struct payload_store *ps = calloc(1, sizeof *ps);
    if (!ps || !(ps->map = map_alloc(1024))) {
        free(ps);
        *out = NULL;
        return -1;
    }
    ps->mask = 1023;
    pthread_rwlock_init(&ps->lock, NULL);
    *out = ps;
    return 0;
}

void payload_store_free(struct payload_store *ps)
{
    if (!ps)
        return;
    for (uint32_t i = 0; i < ps->nblocks; i++)
        free(ps->blocks[i]);
    free(ps->blocks);
    free(ps->map);
    pthread_rwlock_destroy(&ps->lock);
    free(ps);
}

/* Slot of id, or of the empty slot where it would go. Lock held. */
static uint64_t find(const struct payload_store *ps, uint64_t id)
{
    uint64_t i = mix(id) & ps->mask;
    while (ps->map[i].block != EMPTY && ps->map[i].id != id)
        i = (i + 1) & ps->mask;
    return i;
}

/* Doubles the map; -1 when out of memory. Write lock held. */
static int grow_map(struct payload_store *ps)
{
    uint64_t slots = (ps->mask + 1) * 2;
    struct entry *m = map_alloc(slots), *old = ps->map;
    if (!m)
        return -1;
    uint64_t old_slots = ps->mask + 1;
    ps->map = m;
    ps->mask = slots - 1;
    for (uint64_t i = 0; i < old_slots; i++)
        if (old[i].block != EMPTY)
            ps->map[find(ps, old[i].id)] = old[i];
    free(old);
    return 0;
}

/* Room for len bytes in the arena: sets *block, *off. -1 when out of memory. Write lock held. */
static int arena_reserve(struct payload_store *ps, uint32_t len, uint32_t *block, uint32_t *off)
{
    if (ps->nblocks == 0 || ps->fill + len > BLOCK_BYTES) {
        if (ps->nblocks == ps->cap_blocks) {
            uint32_t c = ps->cap_blocks ? ps->cap_blocks * 2 : 16;
            uint8_t **b = realloc(ps->blocks, c * sizeof *b);
            if (!b)
                return -1;
            ps->blocks = b;
            ps->cap_blocks = c;
        }
        if (!(ps->blocks[ps->nblocks] = malloc(BLOCK_BYTES)))
            return -1;
        if (ps->nblocks)
            ps->holes += BLOCK_BYTES - ps->fill; /* the unused tail of the old block */
        ps->nblocks++;
        ps->fill = 0;
    }
    *block = ps->nblocks - 1;
    *off = ps->fill;
    ps->fill += len;
    return 0;
}

/*
 * Copies every live payload into new blocks and frees the old ones. Leaves
 * the store unchanged when out of memory (compaction is only an
 * optimisation). Write lock held.
 */
static void compact(struct payload_store *ps)
{
    struct payload_store fresh = {.map = ps->map, .mask = ps->mask};
    uint64_t slots = ps->mask + 1;
    struct entry *moved = malloc(slots * sizeof *moved);
    if (!moved)
        return;
    memcpy(moved, ps->map, slots * sizeof *moved);
    for (uint64_t i = 0; i < slots; i++) {
        struct entry *e = &moved[i];
        if (e->block == EMPTY || e->len == 0)
            continue;
        uint32_t b, o;
        if (arena_reserve(&fresh, e->len, &b, &o) != 0)
            goto undo;
        memcpy(fresh.blocks[b] + o, ps->blocks[e->block] + e->off, e->len);
        e->block = b;
        e->off = o;
    }
    for (uint32_t i = 0; i < ps->nblocks; i++)
        free(ps->blocks[i]);
    free(ps->blocks);
    free(ps->map);
    ps->map = moved;
    ps->blocks = fresh.blocks;
    ps->nblocks = fresh.nblocks;
    ps->cap_blocks = fresh.cap_blocks;
    ps->fill = fresh.fill;
    ps->holes = fresh.holes;
    return;
undo:
    for (uint32_t i = 0; i < fresh.nblocks; i++)
        free(fresh.blocks[i]);
    free(fresh.blocks);
    free(moved);
}

/* Removes the entry in slot i, shifting later probes back. Write lock held. */
static void erase_slot(struct payload_store *ps, uint64_t i)
{
    ps->live -= ps->map[i].len;
    ps->holes += ps->map[i].len;
    ps->n--;
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & ps->mask;
        if (ps->map[j].block == EMPTY)
            break;
        uint64_t home = mix(ps->map[j].id) & ps->mask;
        /* Move j back to i if i lies cyclically in [home, j). */
        if (((j - home) & ps->mask) >= ((j - i) & ps->mask)) {
            ps->map[i] = ps->map[j];
            i = j;
        }
    }
    ps->map[i].block = EMPTY;
}

int payload_put(struct payload_store *ps, uint64_t id, const void *data, uint32_t len)
{
    if (len > PAYLOAD_MAX_BYTES)
        return -1;
    if (len == 0) {
        payload_remove(ps, id);
        return 0;
    }
    int rc = -1;
    pthread_rwlock_wrlock(&ps->lock);
    if ((ps->n + 1) * 4 > (ps->mask + 1) * 3 && grow_map(ps) != 0)
        goto out;
    uint32_t b, o;
    if (arena_reserve(ps, len, &b, &o) != 0)
        goto out;
    memcpy(ps->blocks[b] + o, data, len);
    uint64_t i = find(ps, id);
    if (ps->map[i].block != EMPTY) {
        ps->live -= ps->map[i].len;
        ps->holes += ps->map[i].len;
    } else {
        ps->n++;
    }
    ps->map[i] = (struct entry){.id = id, .block = b, .off = o, .len = len};
    ps->live += len;
    if (ps->holes > COMPACT_MIN_HOLES && ps->holes > ps->live)
        compact(ps);
    rc = 0;
out:
    pthread_rwlock_unlock(&ps->lock);
    return rc;
}

void payload_remove(struct payload_store *ps, uint64_t id)
{
    pthread_rwlock_wrlock(&ps->lock);
    uint64_t i = find(ps, id);
    if (ps->map[i].block != EMPTY)
        erase_slot(ps, i);
    if (ps->holes > COMPACT_MIN_HOLES && ps->holes > ps->live)
        compact(ps);
    pthread_rwlock_unlock(&ps->lock);
}

void payload_read_lock(struct payload_store *ps)
{
    pthread_rwlock_rdlock(&ps->lock);
}

void payload_read_unlock(struct payload_store *ps)
{
    pthread_rwlock_unlock(&ps->lock);
}

const uint8_t *payload_peek(struct payload_store *ps, uint64_t id, uint32_t *len)
{
    const struct entry *e = &ps->map[find(ps, id)];
    if (e->block == EMPTY) {
        *len = 0;
        return NULL;
    }
    *len = e->len;
    return ps->blocks[e->block] + e->off;
}

int payload_foreach_locked(struct payload_store *ps,
                           int (*fn)(uint64_t id, const uint8_t *data, uint32_t len, void *ctx),
                           void *ctx)
{
    for (uint64_t i = 0; i <= ps->mask; i++) {
        const struct entry *e = &ps->map[i];
        if (e->block == EMPTY)
            continue;
        int rc = fn(e->id, ps->blocks[e->block] + e->off, e->len, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

uint64_t payload_count(struct payload_store *ps)
{
    pthread_rwlock_rdlock(&ps->lock);
    uint64_t n = ps->n;
    pthread_rwlock_unlock(&ps->lock);
    return n;
}

uint64_t payload_bytes(struct payload_store *ps)
{
    pthread_rwlock_rdlock(&ps->lock);
    uint64_t n = ps->live;
    pthread_rwlock_unlock(&ps->lock);
    return n;
}

uint64_t payload_count_locked(struct payload_store *ps)
{
    return ps->n;
}

uint64_t payload_bytes_locked(struct payload_store *ps)
{
    return ps->live;
}

uint64_t payload_memory(struct payload_store *ps)
{
    pthread_rwlock_rdlock(&ps->lock);
    uint64_t n = (uint64_t)ps->nblocks * BLOCK_BYTES + (ps->mask + 1) * sizeof(struct entry);
    pthread_rwlock_unlock(&ps->lock);
    return n;
}
