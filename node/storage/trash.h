/*
 * trash.h — <data-dir>/trash.d/: where vecshard-node moves replica
 * folders instead of deleting them (docs/node.md, "Trash").
 *
 * A replica is never deleted on the strength of one etcd view: when it is
 * unassigned, its collection dropped or recreated, or the operator wipes the
 * data dir, its folder is renamed into trash.d/ (same file system, so the
 * move is atomic and costs nothing) and both folders are fsynced. node_meta
 * purges an entry only after the grace period (--trash-grace-ms) and only
 * when etcd, re-read at that moment, confirms that the collection is gone
 * (or was recreated: another created_at) or that the shard no longer lists
 * this node. A replica assigned again while its folder is in the trash is
 * restored from it (node_shards.c).
 *
 * Entry names carry everything the purge and the restore need:
 *   <trashed-at Unix ms>.<seq>.<collection>.<shard>.<created_at>[.wiped]
 * ('.' cannot appear in a collection name, and "trash.d" is not one, so the
 * folder can never be taken for a collection). `.wiped` marks folders moved
 * by --identity-mismatch wipe: they are never restored, only purged.
 *
 * Functions return 0 or -1 with a message naming the path in err
 * (TRASH_ERR_MAX bytes). libc only; callable from any thread.
 */
#ifndef VS_TRASH_H
#define VS_TRASH_H

#include <stdbool.h>
#include <stdint.h>

#define TRASH_DIR     "trash.d"
#define TRASH_ERR_MAX 512

/* One folder in the trash, parsed from its name. */
struct trash_entry {
    char name[256]; /* folder name under trash.d/ */
    char collection[65];
    uint32_t shard;
    int64_t created_at; /* the collection's created_at when the replica was trashed */
    int64_t trashed_at; /* Unix ms */
    bool wiped;
};

/*
 * Moves folder src (a replica of collection/shard, created_at of its
 * collection config) into the trash. A missing src is not an error. On
 * success the entry's name is written to name_out (if not NULL, 256 bytes).
 */
int trash_move(const char *data_dir, const char *src, const char *collection, uint32_t shard,
               int64_t created_at, bool wiped, char *name_out, char *err);

/*
 * Lists the trash (names that do not parse are skipped). *out is malloc'ed
 * (caller frees; NULL when empty). Returns the count, or -1 with err filled.
 */
long trash_list(const char *data_dir, struct trash_entry **out, char *err);

/* Renames trash entry `name` back to dst (which must not exist). */
int trash_restore(const char *data_dir, const char *name, const char *dst, char *err);

/* Deletes trash entry `name` and everything under it. */
int trash_purge(const char *data_dir, const char *name, char *err);

#endif
