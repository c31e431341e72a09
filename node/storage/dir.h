/*
 * dir.h — the folder operations the replica's storage files share (WAL
 * segments, snapshots, collection files): creating folders, making renames and unlinks durable,
 * and finding files named `<prefix><20-digit LSN><suffix>` in a folder.
 *
 * The callers own their status codes: these functions return 0 or -1 and,
 * when given a buffer, write a message naming the folder and the failed call
 * into it ("open /d: No such file or directory"). libc only.
 */
#ifndef VS_NODE_DIR_H
#define VS_NODE_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fsyncs folder dir so that creations, renames and unlinks in it are durable.
 * 0, or -1 with the reason in err (if not NULL; err_size bytes). */
int dir_fsync(const char *dir, char *err, size_t err_size);

/* mkdir -p: creates path and its missing parents (mode 0755). 0, or -1 with errno set. */
int dir_mkdirs(const char *path);

/* Parses `<prefix><20 digits><suffix>` into *lsn; false for any other name. */
bool dir_parse_lsn_name(const char *name, const char *prefix, const char *suffix, uint64_t *lsn);

/*
 * Lists the LSNs of the files in dir named as dir_parse_lsn_name accepts,
 * sorted ascending (descending if `descending`). *lsns belongs to the caller
 * (free; NULL when *n is 0). 0, or -1 with *lsns NULL, *n 0, the reason in
 * err (if not NULL) and errno ENOMEM when memory ran out (any other errno:
 * the folder could not be opened).
 */
int dir_list_lsns(const char *dir, const char *prefix, const char *suffix, bool descending,
                  uint64_t **lsns, uint32_t *n, char *err, size_t err_size);

#endif
