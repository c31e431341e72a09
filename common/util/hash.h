/*
 * hash.h — the routing hash of vecshard: which shard a point id lives in.
 *
 *   shard = hash_id64(id) % S
 *
 * hash_id64 is the splitmix64 finalizer applied to the id (the first output
 * of a splitmix64 generator seeded with id). It is fixed forever: every
 * router, every client library and every stored collection depends on it,
 * so changing it would send existing ids to the wrong shard. The formula is
 * written out in docs/router.md so any client can compute it; the CUnit
 * tests in tests/unit/util pin known values.
 *
 * Why splitmix64: ids are often sequential (0, 1, 2, …) and a plain modulo
 * would put neighbours in neighbouring shards in lock-step; the finalizer
 * mixes every input bit into every output bit, is two multiplies and three
 * shifts, and has no state or table. Header-only, libc-free.
 */
#ifndef VS_UTIL_HASH_H
#define VS_UTIL_HASH_H

#include <stdint.h>

/* The stable 64-bit hash of a point id (splitmix64, wrapping arithmetic). */
static inline uint64_t hash_id64(uint64_t id)
{
    uint64_t z = id + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The shard of id in a collection of `shards` shards (shards >= 1). */
static inline uint32_t hash_shard(uint64_t id, uint32_t shards)
{
    return (uint32_t)(hash_id64(id) % shards);
}

#endif
