/* fuzz_common.c — see fuzz_common.h. */
#define _GNU_SOURCE
#include "tests/fuzz/fuzz_common.h"
#include "common/hnsw/hnsw.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_tree(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void cleanup(void)
{
    if (dir[0]) rm_tree(dir);
}

const char *fuzz_dir(void)
{
    if (dir[0] == '\0') {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/vs-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (mkdtemp(dir) == NULL) abort();
        atexit(cleanup);
    }
    return dir;
}

const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
    FILE *f = fopen(path, "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return path;
}

void fuzz_clear(const char *sub)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), sub);
    rm_tree(p);
}

void fuzz_search_once(struct hnsw_index *idx)
{
    uint32_t dim = hnsw_dim(idx);
    float *q = calloc(dim ? dim : 1, sizeof *q);
    struct hnsw_result res[4];
    uint32_t n = 0;
    char err[HNSW_ERR_MAX];
    if (q != NULL) hnsw_search(idx, q, 4, 16, NULL, NULL, res, &n, err);
    free(q);
}
