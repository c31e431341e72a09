/*
 * payload.h — the payload store of one shard replica: an in-memory map from
 * point id to its opaque payload bytes (<= 64 KiB each, docs/design.md §2).
 *
 * The replica owns one store. It is persisted in snapshots and rebuilt by
 * WAL replay; it has no file of its own. Bytes live in 1 MiB arena blocks
 * (no malloc per payload); replaced and removed payloads leave holes that a
 * compaction reclaims once they outweigh the live bytes.
 *
 * Concurrency: one rwlock inside the store. payload_put / payload_remove
 * take it exclusively; payload_read_lock takes it shared for a run of
 * payload_peek calls (searches, gets, snapshot writing), so readers run
 * concurrently with each other and only wait for a single put or remove.
 */
#ifndef VS_NODE_PAYLOAD_H
#define VS_NODE_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest payload the store accepts (docs/design.md §2). */
#define PAYLOAD_MAX_BYTES (64u << 10)

struct payload_store;

/* Creates an empty store; *out is the caller's (payload_store_free). 0 or -1 (out of memory). */
int payload_store_create(struct payload_store **out);
/* Frees the store and every byte it holds. NULL is a no-op. */
void payload_store_free(struct payload_store *ps);

/*
 * Sets id's payload to a copy of data[0..len) (len <= PAYLOAD_MAX_BYTES);
 * len 0 removes it. 0, or -1 when out of memory or len is too large (the
 * store is unchanged).
 */
int payload_put(struct payload_store *ps, uint64_t id, const void *data, uint32_t len);
/* Removes id's payload; absent ids are ignored. */
void payload_remove(struct payload_store *ps, uint64_t id);

/* Takes the store's lock shared, for payload_peek / payload_foreach_locked. */
void payload_read_lock(struct payload_store *ps);
/* Releases it. */
void payload_read_unlock(struct payload_store *ps);
/*
 * With the read lock held: id's payload (store-owned, valid until the lock
 * is released) and its length in *len; NULL and *len = 0 when it has none.
 */
const uint8_t *payload_peek(struct payload_store *ps, uint64_t id, uint32_t *len);
/*
 * With the read lock held: calls fn for every payload (any order) until fn
 * returns non-zero, which is then returned.
 */
int payload_foreach_locked(struct payload_store *ps,
                           int (*fn)(uint64_t id, const uint8_t *data, uint32_t len, void *ctx),
                           void *ctx);

/* Number of ids with a payload. */
uint64_t payload_count(struct payload_store *ps);
/* Sum of the live payload lengths. */
uint64_t payload_bytes(struct payload_store *ps);
/* payload_count and payload_bytes for a caller that holds the read lock. */
uint64_t payload_count_locked(struct payload_store *ps);
uint64_t payload_bytes_locked(struct payload_store *ps);
/* Memory the store holds (blocks and map). */
uint64_t payload_memory(struct payload_store *ps);

#endif
