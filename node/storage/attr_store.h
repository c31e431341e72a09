/*
 * attr_store.h — the typed attributes of one shard replica and the value
 * indexes that plan filtered searches (docs/filtering.md).
 *
 * The store maps a point id to its attribute blob (common/filter/attrs.h)
 * and keeps, per attribute name:
 *   - the set of ids that have it (exists, and the estimate of missing);
 *   - per string, tag and bool value, the set of ids holding it (eq, in,
 *     tags_any, tags_all);
 *   - the (number, id) pairs of int and double values in sorted blocks
 *     (range, and eq / in on numbers), ints keyed by their nearest double.
 * Every put and remove updates the blob and the indexes together, so an
 * upsert that changes a value moves the id from the old value's entries to
 * the new one's. Indexes are memory only: opening a replica rebuilds them
 * from the snapshot's blobs and the WAL replay.
 *
 * The indexes only propose candidates and estimate counts; whether a point
 * matches is always decided by filter_match on its blob, so a candidate
 * list may be a superset (an int beyond 2^53 shares its double key with
 * its neighbours) but never misses a match.
 *
 * Like the payload store it is persisted in snapshots (section ATTR) and
 * has no file of its own.
 *
 * Concurrency: one writer-preferring rwlock. attr_put / attr_remove take it
 * exclusively; attr_read_lock takes it shared for the planning, the
 * candidate lists, the per-point tests of a search (from inside the engine's
 * filter callback) and snapshot writing.
 */
#ifndef VS_NODE_ATTR_STORE_H
#define VS_NODE_ATTR_STORE_H

#include "common/filter/filter.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct attr_store;

/* An empty store into *out (attr_store_free). 0 or -1 (out of memory). */
int attr_store_create(struct attr_store **out);
void attr_store_free(struct attr_store *as);

/*
 * Sets id's attributes to the checked blob[0..len); a blob with no entry
 * (or len 0) removes them. 0, or -1 when out of memory (the store is then
 * unchanged for id).
 */
int attr_put(struct attr_store *as, uint64_t id, const uint8_t *blob, uint32_t len);
/* Removes id's attributes; absent ids are ignored. */
void attr_remove(struct attr_store *as, uint64_t id);

void attr_read_lock(struct attr_store *as);
void attr_read_unlock(struct attr_store *as);
/* With the read lock: id's blob (store-owned) and its length; NULL and 0 when it has none. */
const uint8_t *attr_peek(struct attr_store *as, uint64_t id, uint32_t *len);
/* With the read lock: fn for every point with attributes until fn returns non-zero. */
int attr_foreach_locked(struct attr_store *as,
                        int (*fn)(uint64_t id, const uint8_t *blob, uint32_t len, void *ctx),
                        void *ctx);
/* With the read lock: points with attributes, and the sum of their blob lengths. */
uint64_t attr_count_locked(struct attr_store *as);
uint64_t attr_bytes_locked(struct attr_store *as);
/* Points with attributes (takes the lock). */
uint64_t attr_count(struct attr_store *as);
/* Memory of the blobs and the indexes. */
uint64_t attr_memory(struct attr_store *as);

/* What the indexes say about a filter over `points` live points. */
struct attr_estimate {
    double matches;      /* estimated matching points (exact for a single condition) */
    bool listable;       /* the indexes can list a superset of the matches ... */
    uint64_t candidates; /* ... of this many ids (duplicates counted) */
};

/* With the read lock: the estimate of filter f (attribute independence across and / or). */
void attr_estimate(struct attr_store *as, const struct filter *f, uint64_t points,
                   struct attr_estimate *e);
/*
 * With the read lock, for a listable filter: the ids of the points that
 * match f (each once, ascending), tested on their blobs, into *ids
 * (malloc'ed; the caller frees) and *n. -1 when out of memory.
 */
int attr_matching(struct attr_store *as, const struct filter *f, uint64_t **ids, size_t *n);

#endif
