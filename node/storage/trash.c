/*
 * trash.c — moving replica folders into <data-dir>/trash.d/, listing,
 * restoring and purging them (see trash.h for the rules and the entry
 * names). A sequence number next to the millisecond keeps two moves in the
 * same millisecond apart; a name taken anyway (a restart within the same
 * millisecond) is retried with the next number.
 */
#define _GNU_SOURCE
#include "node/storage/trash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node/storage/dir.h"

static atomic_uint trash_seq;

/* Formats a message into err (TRASH_ERR_MAX bytes). */
static void tfail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tfail(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, TRASH_ERR_MAX, fmt, ap);
    va_end(ap);
}

/* Unix milliseconds now. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parent folder of path into buf ("." if none). */
static void parent_of(const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash == NULL)
        snprintf(buf, size, ".");
    else if (slash == buf)
        slash[1] = '\0';
    else
        *slash = '\0';
}

/* Moves src into the trash (see trash.h). */
int trash_move(const char *data_dir, const char *src, const char *collection, uint32_t shard,
               int64_t created_at, bool wiped, char *name_out, char *err)
{
    struct stat st;
    if (lstat(src, &st) != 0 && errno == ENOENT) return 0;
    char trash[PATH_MAX], dst[PATH_MAX], name[256], parent[PATH_MAX];
    if (snprintf(trash, sizeof trash, "%s/" TRASH_DIR, data_dir) >= (int)sizeof trash) {
        tfail(err, "data dir path is too long");
        return -1;
    }
    if (mkdir(trash, 0755) != 0 && errno != EEXIST) {
        tfail(err, "mkdir %s: %s", trash, strerror(errno));
        return -1;
    }
    for (int attempt = 0;; attempt++) {
        unsigned seq = atomic_fetch_add(&trash_seq, 1);
        snprintf(name, sizeof name, "%" PRId64 ".%u.%s.%u.%" PRId64 "%s", now_ms(), seq, collection,
                 shard, created_at, wiped ? ".wiped" : "");
        if (snprintf(dst, sizeof dst, "%s/%s", trash, name) >= (int)sizeof dst) {
            tfail(err, "trash path is too long");
            return -1;
        }
        if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0) break;
        if (errno != EEXIST || attempt >= 8) {
            tfail(err, "rename %s to %s: %s", src, dst, strerror(errno));
            return -1;
        }
    }
    parent_of(src, parent, sizeof parent);
    if (dir_fsync(trash, err, TRASH_ERR_MAX) != 0 || dir_fsync(parent, err, TRASH_ERR_MAX) != 0)
        return -1;
    if (name_out != NULL) snprintf(name_out, 256, "%s", name);
    return 0;
}

/* Parses an entry name into *e; false if it is not one of ours. */
static bool parse_name(const char *name, struct trash_entry *e)
{
    memset(e, 0, sizeof *e);
    if (snprintf(e->name, sizeof e->name, "%s", name) >= (int)sizeof e->name) return false;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", name);
    char *part[7];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t != NULL && n < 7;
         t = strtok_r(NULL, ".", &save))
        part[n++] = t;
    if (n != 5 && !(n == 6 && strcmp(part[5], "wiped") == 0)) return false;
    char *end;
    errno = 0;
    e->trashed_at = strtoll(part[0], &end, 10);
    if (*end != '\0' || errno != 0) return false;
    if (strlen(part[2]) >= sizeof e->collection) return false;
    snprintf(e->collection, sizeof e->collection, "%s", part[2]);
    unsigned long sh = strtoul(part[3], &end, 10);
    if (*end != '\0' || sh > UINT32_MAX) return false;
    e->shard = (uint32_t)sh;
    e->created_at = strtoll(part[4], &end, 10);
    if (*end != '\0' || errno != 0) return false;
    e->wiped = n == 6;
    return true;
}

/* Lists the trash. */
long trash_list(const char *data_dir, struct trash_entry **out, char *err)
{
    *out = NULL;
    char trash[PATH_MAX];
    snprintf(trash, sizeof trash, "%s/" TRASH_DIR, data_dir);
    DIR *d = opendir(trash);
    if (d == NULL) {
        if (errno == ENOENT) return 0;
        tfail(err, "open %s: %s", trash, strerror(errno));
        return -1;
    }
    long n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct trash_entry e;
        if (de->d_name[0] == '.' || !parse_name(de->d_name, &e)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct trash_entry *v = realloc(*out, (size_t)cap * sizeof *v);
            if (v == NULL) {
                free(*out);
                *out = NULL;
                closedir(d);
                tfail(err, "out of memory listing %s", trash);
                return -1;
            }
            *out = v;
        }
        (*out)[n++] = e;
    }
    closedir(d);
    return n;
}

/* Renames a trash entry back into place. */
int trash_restore(const char *data_dir, const char *name, const char *dst, char *err)
{
    char src[PATH_MAX], parent[PATH_MAX];
    snprintf(src, sizeof src, "%s/" TRASH_DIR "/%s", data_dir, name);
    parent_of(dst, parent, sizeof parent);
    if (mkdir(parent, 0755) != 0 && errno != EEXIST) {
        tfail(err, "mkdir %s: %s", parent, strerror(errno));
        return -1;
    }
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) != 0) {
        tfail(err, "rename %s to %s: %s", src, dst, strerror(errno));
        return -1;
    }
    char trash[PATH_MAX];
    snprintf(trash, sizeof trash, "%s/" TRASH_DIR, data_dir);
    if (dir_fsync(parent, err, TRASH_ERR_MAX) != 0 || dir_fsync(trash, err, TRASH_ERR_MAX) != 0)
        return -1;
    return 0;
}

/* nftw callback: removes one entry. */
static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* Deletes a trash entry recursively. */
int trash_purge(const char *data_dir, const char *name, char *err)
{
    char path[PATH_MAX], trash[PATH_MAX];
    snprintf(trash, sizeof trash, "%s/" TRASH_DIR, data_dir);
    if (strchr(name, '/') != NULL || name[0] == '.' ||
        snprintf(path, sizeof path, "%s/%s", trash, name) >= (int)sizeof path) {
        tfail(err, "bad trash entry name \"%s\"", name);
        return -1;
    }
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        tfail(err, "delete %s: %s", path, strerror(errno));
        return -1;
    }
    return dir_fsync(trash, err, TRASH_ERR_MAX);
}
