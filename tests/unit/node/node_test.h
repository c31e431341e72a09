/*
 * node_test.h — shared pieces of the node storage tests: temp folders,
 * deterministic vectors and payloads per (id, version), WriteBatch
 * building, and the suite registration hooks.
 */
#ifndef VS_TEST_NODE_H
#define VS_TEST_NODE_H

#include "node/storage/replica.h"

#include <CUnit/CUnit.h>
#include <stdint.h>

/* A fresh folder under /tmp; caller frees the string (tn_rmdir removes the folder). */
char *tn_tmpdir(void);
/* Opens the replica c describes; a failure prints replica_open's message and fails the test. */
struct replica *tn_open(const struct replica_config *c);
/* Removes a folder and everything under it. */
void tn_rmdir(const char *dir);
/* Number of files in dir whose names start with prefix and end with suffix. */
int tn_count_files(const char *dir, const char *prefix, const char *suffix);
/* Size of a file, -1 if absent. */
long tn_file_size(const char *path);
/* XORs byte `off` of a file with mask. */
void tn_flip(const char *path, long off, unsigned char mask);

/* splitmix64 step. */
uint64_t tn_rand(uint64_t *s);
/* The vector of (id, version): dim floats in [-1, 1). */
void tn_vector(uint64_t id, uint64_t version, uint32_t dim, float *out);
/* The payload of (id, version) into out (>= 400 bytes); some are empty. Returns its length. */
uint32_t tn_payload(uint64_t id, uint64_t version, uint8_t *out);

/* A WriteBatch and the memory behind it. */
struct tn_batch {
    Vecshard__V1__WriteBatch b;
    Vecshard__V1__Point *pts;
    Vecshard__V1__Point **pp;
    float *vecs;
    uint8_t *pay;
    uint64_t *dels;
};
/* Upserts ids[0..n) at `version` (tn_vector / tn_payload) and deletes dels[0..nd). */
struct tn_batch *tn_batch_new(uint32_t dim, const uint64_t *ids, size_t n, uint64_t version,
                              const uint64_t *dels, size_t nd);
void tn_batch_free(struct tn_batch *t);

void register_wal_tests(void);
void register_history_tests(void);
void register_snapshot_tests(void);
void register_replica_tests(void);
void register_identity_tests(void);
void register_trash_tests(void);
void register_degenerate_tests(void);
void register_replica_transfer_tests(void);
void register_filter_tests(void);

#endif
