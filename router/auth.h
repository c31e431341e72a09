/*
 * auth.h — API keys with roles at the router (docs/security.md §3).
 *
 * The key file (--api-keys FILE) holds one key per line:
 *
 *     <name> <role> sha256:<64 hex digits> [collections=<a>,<b>,...]
 *
 * name: [A-Za-z0-9_.-]{1,64}, unique; role: read, write or admin; the hash
 * is SHA-256 of the key as the client sends it (`vecshard key hash KEY`);
 * collections= limits the key to those collections. '#' starts a comment,
 * blank lines are ignored. The keys themselves are never stored.
 *
 * Roles are ordered: read (Search, Get, DescribeCollection, ListCollections,
 * ClusterStatus) < write (+ Upsert, Delete) < admin (+ CreateCollection,
 * DropCollection, Rebalance, Drain and any method not listed). A scoped key
 * may call a method about one of its collections, and the methods about no
 * collection that its role allows (ListCollections and ClusterStatus show
 * every collection's name); Rebalance and Drain need an unscoped admin key.
 *
 * Threading: struct auth is shared by every handler thread; auth_check
 * takes a read lock, auth_reload builds the new table outside the lock and
 * swaps it under the write lock, so a reload never fails a call in flight.
 */
#ifndef VS_ROUTER_AUTH_H
#define VS_ROUTER_AUTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <grpc/status.h>

#define AUTH_ERR_MAX 256

enum auth_role { AUTH_READ = 1, AUTH_WRITE = 2, AUTH_ADMIN = 3 };

struct auth_keys; /* one parsed key file (immutable) */

struct auth {
    pthread_rwlock_t lock;
    char *path;              /* the key file; NULL: authentication off */
    struct auth_keys *keys;  /* under lock */
};

/* Parses a key file. NULL with err ("FILE:LINE: what") on any bad line. */
struct auth_keys *auth_keys_load(const char *path, char *err, size_t errlen);
void auth_keys_free(struct auth_keys *k);
/* Number of keys in k. */
size_t auth_keys_count(const struct auth_keys *k);

/* The role a VecShard method needs ("Search" -> read); admin when unknown. */
enum auth_role auth_method_role(const char *method);
const char *auth_role_name(enum auth_role r);

/*
 * Checks one call against k: `authorization` is the metadata value (NULL
 * when absent), `collection` the collection the call names ("" for none).
 * Returns GRPC_STATUS_OK, UNAUTHENTICATED (missing, malformed or unknown
 * key) or PERMISSION_DENIED (role too low, or a collection out of the key's
 * scope) with the reason in msg. The presented key's hash is compared with
 * every entry in constant time.
 */
grpc_status_code auth_keys_check(const struct auth_keys *k, const char *authorization,
                                 const char *method, const char *collection, char *msg,
                                 size_t msglen);

/* Loads path (NULL: off). -1 with err when the file is bad. */
int auth_init(struct auth *a, const char *path, char *err, size_t errlen);
/* Re-reads the file; on error the old keys stay (-1, err). 0 when off. */
int auth_reload(struct auth *a, char *err, size_t errlen);
/* auth_keys_check under the read lock; OK when authentication is off. */
grpc_status_code auth_check(struct auth *a, const char *authorization, const char *method,
                            const char *collection, char *msg, size_t msglen);
void auth_destroy(struct auth *a);

#endif
