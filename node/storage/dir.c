/*
 * dir.c — folder fsync and LSN-named file listing for the replica's storage
 * (see dir.h). The WAL and the snapshot writer name their files by LSN with
 * 20 digits so that names sort by LSN; both list and fsync the same way.
 */
#define _GNU_SOURCE
#include "node/storage/dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fsyncs a folder; see dir.h. */
int dir_fsync(const char *dir, char *err, size_t err_size)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (err) snprintf(err, err_size, "open %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    if (fsync(fd) != 0) {
        if (err) snprintf(err, err_size, "fsync %s: %s", dir, strerror(errno));
        rc = -1;
    }
    close(fd);
    return rc;
}

/* mkdir -p; see dir.h. */
int dir_mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* Parses `<prefix><20 digits><suffix>`; see dir.h. */
bool dir_parse_lsn_name(const char *name, const char *prefix, const char *suffix, uint64_t *lsn)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (strlen(name) != pl + 20 + sl || strncmp(name, prefix, pl) != 0 ||
        strcmp(name + pl + 20, suffix) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = pl; i < pl + 20; i++) {
        if (name[i] < '0' || name[i] > '9') return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *lsn = v;
    return true;
}

/* Ascending order. */
static int cmp_asc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Descending order. */
static int cmp_desc(const void *a, const void *b)
{
    return cmp_asc(b, a);
}

/* Lists the LSN-named files of a folder; see dir.h. */
int dir_list_lsns(const char *dir, const char *prefix, const char *suffix, bool descending,
                  uint64_t **lsns, uint32_t *n, char *err, size_t err_size)
{
    *lsns = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        if (err) snprintf(err, err_size, "open folder %s: %s", dir, strerror(e));
        errno = e;
        return -1;
    }
    uint32_t cap = 0;
    bool nomem = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t lsn;
        if (!dir_parse_lsn_name(e->d_name, prefix, suffix, &lsn)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(*lsns, cap * sizeof *p);
            if (!p) {
                nomem = true;
                break;
            }
            *lsns = p;
        }
        (*lsns)[(*n)++] = lsn;
    }
    closedir(d);
    if (nomem) {
        if (err) snprintf(err, err_size, "out of memory listing %s", dir);
        free(*lsns);
        *lsns = NULL;
        *n = 0;
        errno = ENOMEM;
        return -1;
    }
    if (*n) qsort(*lsns, *n, sizeof **lsns, descending ? cmp_desc : cmp_asc);
    return 0;
}
