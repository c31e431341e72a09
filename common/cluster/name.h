/*
 * name.h — the collection name rule, [A-Za-z0-9_-]{1,64}, in one place for
 * every process that accepts a name: the router's public calls, the node's
 * ShardNode calls, etcd keys read back by both, and the data directory.
 *
 * The rule is checked on an explicit length, never up to the first NUL, so
 * a name with a NUL inside ("nul\0../x") fails instead of aliasing "nul".
 */
#ifndef VS_CLUSTER_NAME_H
#define VS_CLUSTER_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define CLUSTER_NAME_MAX 64 /* bytes in a collection name */

/* True when the n bytes at s match [A-Za-z0-9_-]{1,64}. */
bool cluster_name_ok(const char *s, size_t n);

/*
 * 0 when the n bytes at s are a valid collection name; otherwise -1 and err
 * (errlen bytes) says why, starting with `field`: "collection is empty",
 * "collection: contains a NUL byte at offset 3", "collection \"a/b\" is not
 * a valid name ([A-Za-z0-9_-]{1,64})".
 */
int cluster_name_check(const char *field, const char *s, size_t n, char *err, size_t errlen);

#endif
