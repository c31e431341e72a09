/*
 * main.c — CUnit runner for the node storage tests (build/test_node), and
 * the helpers of node_test.h.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "tests/unit/node/node_test.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *tn_tmpdir(void)
{
    char *d = strdup("/tmp/vs-node-test-XXXXXX");
    CU_ASSERT_FATAL(d && mkdtemp(d));
    return d;
}

/* nftw callback: removes one entry. */
static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tn_rmdir(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tn_count_files(const char *dir, const char *prefix, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), ls = strlen(suffix);
        if (!strncmp(e->d_name, prefix, strlen(prefix)) && l >= ls &&
            !strcmp(e->d_name + l - ls, suffix))
            n++;
    }
    closedir(d);
    return n;
}

long tn_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

void tn_flip(const char *path, long off, unsigned char mask)
{
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fseek(f, off, SEEK_SET) == 0);
    int c = fgetc(f);
    CU_ASSERT_FATAL(c != EOF);
    fseek(f, off, SEEK_SET);
    fputc(c ^ mask, f);
    fclose(f);
}

uint64_t tn_rand(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void tn_vector(uint64_t id, uint64_t version, uint32_t dim, float *out)
{
    uint64_t s = id * 1000003 + version;
    for (uint32_t i = 0; i < dim; i++)
        out[i] = (float)((tn_rand(&s) >> 11) * 0x1.0p-52) - 1.0f;
}

struct replica *tn_open(const struct replica_config *c)
{
    struct replica *r = NULL;
    char err[REPLICA_ERR_MAX];
    int rc = replica_open(c, &r, NULL, err);
    if (rc) fprintf(stderr, "replica_open: %s\n", err);
    CU_ASSERT_FATAL(rc == REPLICA_OK);
    return r;
}

uint32_t tn_payload(uint64_t id, uint64_t version, uint8_t *out)
{
    if ((id + version) % 7 == 0)
        return 0;
    int n = snprintf((char *)out, 400, "point %llu version %llu ", (unsigned long long)id,
                     (unsigned long long)version);
    uint32_t len = (uint32_t)n + (uint32_t)((id * 31 + version) % 300);
    for (uint32_t i = (uint32_t)n; i < len; i++)
        out[i] = (uint8_t)(id + i * version);
    return len;
}

struct tn_batch *tn_batch_new(uint32_t dim, const uint64_t *ids, size_t n, uint64_t version,
                              const uint64_t *dels, size_t nd)
{
    struct tn_batch *t = calloc(1, sizeof *t);
    CU_ASSERT_FATAL(t != NULL);
    vecshard__v1__write_batch__init(&t->b);
    t->pts = calloc(n + 1, sizeof *t->pts);
    t->pp = calloc(n + 1, sizeof *t->pp);
    t->vecs = calloc(n * dim + 1, sizeof *t->vecs);
    t->pay = calloc(n * 400 + 1, 1);
    t->dels = calloc(nd + 1, sizeof *t->dels);
    CU_ASSERT_FATAL(t->pts && t->pp && t->vecs && t->pay && t->dels);
    for (size_t i = 0; i < n; i++) {
        Vecshard__V1__Point *p = &t->pts[i];
        vecshard__v1__point__init(p);
        p->id = ids[i];
        p->n_vector = dim;
        p->vector = t->vecs + i * dim;
        tn_vector(ids[i], version, dim, p->vector);
        p->payload.data = t->pay + i * 400;
        p->payload.len = tn_payload(ids[i], version, p->payload.data);
        t->pp[i] = p;
    }
    if (nd)
        memcpy(t->dels, dels, nd * sizeof *dels);
    t->b.n_upserts = n;
    t->b.upserts = t->pp;
    t->b.n_deletes = nd;
    t->b.deletes = t->dels;
    return t;
}

void tn_batch_free(struct tn_batch *t)
{
    if (!t)
        return;
    free(t->pts);
    free(t->pp);
    free(t->vecs);
    free(t->pay);
    free(t->dels);
    free(t);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    register_wal_tests();
    register_history_tests();
    register_snapshot_tests();
    register_replica_tests();
    register_identity_tests();
    register_trash_tests();
    register_degenerate_tests();
    register_filter_tests();
    register_replica_transfer_tests();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
